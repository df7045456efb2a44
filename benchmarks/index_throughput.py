"""``musiczoo index`` against the decoding floor: seconds per track vs a whole-file soundfile decode.

Building a library is where recommender users wait. This measures it on real-format files:
the CC recordings of ``../shared/data/audio`` (never copied into the repository) concatenated
into ``--tracks`` four-minute 44.1 kHz stereo MP3s, written once into ``--dir``. In one run:

* ``decode``: each file decoded whole with ``soundfile.read``, the baseline a user's own
  script would pay before any model runs;
* ``old index``: what ``musiczoo index`` did per track before reading excerpts: the
  fingerprint of the whole track decoded at 8 kHz, then ``predict_files`` per model (each
  decoding the whole file again at its rate);
* ``index``: :func:`zoo.recommend.embedding.embed_files`, today's per-track work: each file
  opened once, only its chunks' excerpts decoded, shared by the models and the fingerprint,
  read ahead in a thread while the models run;

each with one model (the genre model: resnet_gru at the quickstart's size, 22.05 kHz, 3 s
chunks) and two (plus the tagging model: resnet_vit at the same size, at MTAT's 16 kHz and
3.69 s chunks, 50 tags), and ``index`` in one and in two processes (the files split in halves,
each process with half the cores, timed from when both have their models loaded). Weights
are random: the time does not depend on them. Start-up (imports, loading models) is
excluded everywhere; each figure is the best of ``--repeats`` passes over warm files.

    python benchmarks/index_throughput.py [--tracks 12] [--dir /tmp/musiczoo-index-bench] [--repeats 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks.cell import cpu_name

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"
TRACK_SECONDS, RATE = 240, 44100
MAX_CHUNKS = 16


def make_tracks(folder: Path, count: int) -> list[Path]:
    """``count`` 4-minute 44.1 kHz stereo MP3s, each the stereo CC recordings in a rotated order,
    repeated to length (written once; later runs reuse them)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"song{i:02d}.mp3" for i in range(count)]
    if all(p.is_file() for p in paths):
        return paths
    sources = sorted(SHARED_AUDIO.glob("*.hq.ogg"))
    if not sources:
        raise SystemExit(f"{SHARED_AUDIO}: no *.hq.ogg recordings to build the tracks from")
    clips = [sf.read(s, dtype="float32", always_2d=True)[0] for s in sources]
    for i, path in enumerate(paths):
        if path.is_file():
            continue
        order = clips[i % len(clips):] + clips[:i % len(clips)]
        music = np.concatenate(order * (1 + TRACK_SECONDS * RATE // sum(map(len, clips))))
        sf.write(path, music[:TRACK_SECONDS * RATE], RATE, format="MP3")
    return paths


def models(count: int) -> list:
    from zoo.factory import create_model

    torch.manual_seed(0)
    genre = create_model("resnet_gru", num_classes=10, sample_rate=22050, chunk_seconds=3.0,
                         transform_params={"hop_length": 1024}, channels=[16, 32, 64, 64])
    tagger = create_model("resnet_vit", num_classes=50, sample_rate=16000, chunk_seconds=3.6905625, task="multilabel",
                          transform_params={"hop_length": 1024}, channels=[16, 32, 64, 64])
    return [m.eval() for m in (genre, tagger)[:count]]


def old_index(loaded: list, paths: list[Path]) -> None:
    from datamodules.primitives.audio import decode_audio
    from zoo.predict import predict_files
    from zoo.recommend import fingerprint as fp

    for path in paths:
        fp.fingerprint(decode_audio(path, fp.SAMPLE_RATE))
    for model in loaded:
        for result in predict_files(model, paths, top_k=0, embeddings=True, max_chunks=MAX_CHUNKS, device="cpu",
                                    progress=False):
            assert result.error is None, result.error


def new_index(loaded: list, paths: list[Path]) -> None:
    from zoo.recommend.embedding import embed_files
    from zoo.recommend.indexing import check_settings

    for _, _, error in embed_files(loaded, paths, check_settings(len(loaded), MAX_CHUNKS, None), device="cpu"):
        assert error is None, error


def decode(paths: list[Path]) -> None:
    for path in paths:
        sf.read(path, dtype="float32")


def best_of(repeats: int, fn, *args) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def _worker(paths, model_count, threads, barrier, repeats, results):
    torch.set_num_threads(threads)
    loaded = models(model_count)
    new_index(loaded, paths[:1])  # warm-up: kernels, resamplers
    times = []
    for _ in range(repeats):
        barrier.wait()
        start = time.perf_counter()
        new_index(loaded, paths)
        times.append(time.perf_counter() - start)
        barrier.wait()
    results.put(times)


def in_processes(paths: list[Path], model_count: int, processes: int, repeats: int) -> float:
    """Wall seconds of ``index`` with the files split over ``processes`` processes (best pass)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    threads = max(1, (os.cpu_count() or 1) // processes)
    workers = [context.Process(target=_worker, args=(paths[i::processes], model_count, threads, barrier, repeats, results))
               for i in range(processes)]
    for w in workers:
        w.start()
    per_worker = [results.get() for _ in workers]
    for w in workers:
        w.join()
    return min(max(times) for times in zip(*per_worker))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=12)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/musiczoo-index-bench"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    paths = make_tracks(args.dir, args.tracks)
    n = len(paths)
    print(f"{n} x {TRACK_SECONDS / 60:g}-minute 44.1 kHz stereo MP3 (CC recordings of {SHARED_AUDIO}), "
          f"{MAX_CHUNKS} chunks per track per model; {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}")
    decode(paths)  # warm the page cache
    floor = best_of(args.repeats, decode, paths) / n
    print("\n| what | models | processes | s / track | vs whole-file decode |")
    print("|---|---:|---:|---:|---:|")
    print(f"| decode whole file (soundfile.read) | - | 1 | {floor:.3f} | 1.00x |")
    for count in (1, 2):
        loaded = models(count)
        new_index(loaded, paths[:1])
        old = best_of(args.repeats, old_index, loaded, paths) / n
        print(f"| old index (whole decodes) | {count} | 1 | {old:.3f} | {old / floor:.2f}x |", flush=True)
        new = best_of(args.repeats, new_index, loaded, paths) / n
        print(f"| index (excerpts, read ahead) | {count} | 1 | {new:.3f} | {new / floor:.2f}x |", flush=True)
        two = in_processes(paths, count, 2, args.repeats) / n
        print(f"| index (excerpts, read ahead) | {count} | 2 | {two:.3f} | {two / floor:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
