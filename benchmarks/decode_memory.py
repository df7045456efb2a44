"""Peak memory of prediction and of the cache build on long files: one-shot decoding vs streaming.

Until streaming, a file was decoded whole (``sf.read``), mixed to mono and resampled in one
``torchaudio.functional.resample`` call, so memory grew with the duration: a 20-minute
44.1 kHz stereo WAV took gigabytes in ``musiczoo predict``. Now ``datamodules.primitives.audio.decode_blocks``
reads, mixes and resamples block by block, ``predict_files`` fills chunks as blocks arrive
and the cache build writes each block into its float16 file.

For 1 min, 20 min and 2 h of 44.1 kHz stereo 16-bit audio (WAVs written in blocks; the 2 h
one is 1.27 GB and is deleted afterwards) this measures the peak resident memory
(``resource.getrusage``, ``ru_maxrss``) of a fresh process per case:

* ``floor``: the imports (the same in every case) and the model, nothing decoded;
* ``predict``: a small random CRNN (16 kHz, 3 s chunks, batches of 16) on the file;
  one-shot = the old method (``sf.read`` whole + ``AF.resample``, chunks of the whole wave),
  streaming = ``zoo.predict.predict_files``;
* ``cache``: decoding the file into a float16 cache at 16 kHz; one-shot = the old
  ``_decode`` (whole clip decoded, converted, written), streaming =
  ``datamodules.cache.AudioCache.build`` with in-process decoding;
* ``index``: what ``musiczoo index`` does per track, one model, 16 chunks; one-shot = the
  first index (the signal fingerprint of the whole decoded track and its whole STFT, then
  ``predict_files``), streaming = ``zoo.recommend.embedding.embed_files`` (only the 16 chunks'
  excerpts are decoded, for the model and the fingerprint alike).

    python benchmarks/decode_memory.py [--minutes 1 20 120] [--dir /tmp] [--what predict cache index]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATE, CHANNELS, MODEL_RATE = 44100, 2, 16000
REPO = Path(__file__).resolve().parents[1]


def write_wav(path: Path, seconds: float, block_seconds: float = 30.0) -> None:
    """A stereo 16-bit WAV of tones and noise, written in blocks so writing it needs little memory."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    total, block = int(seconds * RATE), int(block_seconds * RATE)
    with sf.SoundFile(path, "w", RATE, CHANNELS, subtype="PCM_16") as f:
        for start in range(0, total, block):
            t = np.arange(start, min(start + block, total)) / RATE
            tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 3520 * t)
            noise = rng.normal(0, 0.02, (len(t), CHANNELS))
            f.write((tone[:, None] + noise).astype(np.float32))


def _model():
    import torch

    from zoo.factory import create_model

    torch.manual_seed(0)
    model = create_model("crnn", transform="mel", num_classes=4, sample_rate=MODEL_RATE, channels=[8, 16, 16, 16],
                         chunk_seconds=3.0)
    return model.eval()


def _one_shot_decode(path: str):
    """The old decoding: the whole file in memory, mixed and resampled in one call."""
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    data, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    del data
    return AF.resample(torch.from_numpy(mono), sr, MODEL_RATE)


def case(name: str, path: str, workdir: str) -> None:
    """Run one case in this (fresh) process."""
    import torch

    import datamodules.base  # noqa: F401  every case imports the same modules, so only the decoding differs
    import zoo.predict  # noqa: F401

    torch.set_num_threads(1)
    if name == "floor":
        _model()
    elif name == "predict-one-shot":
        from datamodules.primitives.chunks import chunk_starts, probabilities

        model, size = _model(), 3 * MODEL_RATE
        wave = _one_shot_decode(path)
        starts = chunk_starts(len(wave), size).tolist()
        with torch.inference_mode():
            for i in range(0, len(starts), 16):
                batch = torch.stack([wave[s:s + size] for s in starts[i:i + 16]])
                probabilities(model(batch), "multiclass")
    elif name == "predict-streaming":
        from zoo.predict import predict_files

        (result,) = predict_files(_model(), [path], batch_size=16, device="cpu", progress=False)
        assert result.error is None, result.error
    elif name == "cache-one-shot":
        import numpy as np

        _model()  # the same floor as the other cases
        audio = _one_shot_decode(path).numpy().astype(np.dtype("<f2"))
        Path(workdir, "audio.f16").write_bytes(audio.tobytes())
    elif name == "cache-streaming":
        from datamodules.cache import AudioCache
        from datamodules.items import Item

        _model()
        AudioCache([Item("x", path, 0)], sample_rate=MODEL_RATE, cache_dir=workdir, decode_workers=1).build()
    elif name == "index-one-shot":  # the index before excerpts: the fingerprint of the whole decode, then predict
        from datamodules.primitives.audio import decode_audio
        from zoo.predict import predict_files
        from zoo.recommend import fingerprint as fp

        model = _model()
        fp.fingerprint(decode_audio(path, fp.SAMPLE_RATE))
        (result,) = predict_files(model, [path], embeddings=True, max_chunks=16, device="cpu", progress=False)
        assert result.error is None, result.error
    elif name == "index-streaming":  # musiczoo index: only the chunks' excerpts, for the model and the fingerprint
        from zoo.recommend.embedding import embed_files
        from zoo.recommend.indexing import check_settings

        ((_, _, error),) = embed_files([_model()], [Path(path)], check_settings(1, 16, None), device="cpu")
        assert error is None, error
    else:
        raise SystemExit(f"unknown case {name}")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def measure(name: str, path: Path, workdir: Path) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of ``name`` in a fresh interpreter."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--case", name, "--file", str(path), "--dir", str(workdir)],
                         check=True, capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return int(out.stdout.split()[-1]) / 1024, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 20, 120])
    parser.add_argument("--dir", default=None, help="where the WAVs are written (default: a temporary folder)")
    parser.add_argument("--what", nargs="+", choices=("predict", "cache", "index"),
                        default=["predict", "cache", "index"])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        return case(args.case, args.file, args.dir)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        wav = tmp / "tiny.wav"
        write_wav(wav, 1.0)
        floor, _ = measure("floor", wav, tmp)
        print(f"floor (imports + model, nothing decoded): {floor:.0f} MiB peak RSS\n")
        print("| audio (44.1 kHz stereo) | what | one-shot peak MiB | streaming peak MiB | one-shot / streaming "
              "| above floor: one-shot / streaming MiB | seconds one-shot / streaming |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for minutes in args.minutes:
            wav = tmp / f"{minutes:g}min.wav"
            write_wav(wav, minutes * 60)
            for what in args.what:
                (old, t_old), (new, t_new) = (measure(f"{what}-{how}", wav, Path(tempfile.mkdtemp(dir=tmp)))
                                              for how in ("one-shot", "streaming"))
                print(f"| {minutes:g} min ({wav.stat().st_size / 2**20:.0f} MiB WAV) | {what} | {old:.0f} | {new:.0f} "
                      f"| {old / new:.1f}x | {old - floor:.0f} / {new - floor:.0f} | {t_old:.1f} / {t_new:.1f} |",
                      flush=True)
            wav.unlink()


if __name__ == "__main__":
    main()
