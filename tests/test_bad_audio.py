"""Bad input never gets a confident, wrong answer: garbage, damaged headers, huge samples, odd
names, very short and very long files each give the right result or one line naming the file
and the problem. Every file here is real bytes written to disk."""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

import datamodules.cache as audio_cache
from datamodules.base import AudioDataModule
from datamodules.cache import AudioCache, CacheNotWritableError
from datamodules.items import Item
from datamodules.primitives.audio import (
    AudioDecodeError,
    decode_audio,
    decode_blocks,
    printable_name,
)
from zoo.factory import create_model
from zoo.predict import Prediction, predict_files
from zoo.prediction_formats import predictions_as_csv, predictions_as_json, predictions_as_table

REPO = Path(__file__).resolve().parents[1]
SR = 16000
LABELS = ["a", "b", "c"]


def tone(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    x = (0.4 * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 1234 * t)).astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model("crnn", transform="mel", num_classes=3, sample_rate=SR, channels=[8, 8, 8, 8],
                     label_names=LABELS, chunk_seconds=1.0)
    return m.eval()


# ---- garbage accepted as audio ---------------------------------------------------------------
def write_garbage(folder: Path) -> dict[str, str]:
    """Files that are not audio, and the reason each must be refused with."""
    random = np.random.default_rng(0).bytes(60_000)
    for ext in ("au", "snd", "wav", "mp3"):
        (folder / f"random.{ext}").write_bytes(random)
    (folder / "text.au").write_text("Liner notes, not audio.\n" * 200)
    good = io.BytesIO()
    sf.write(good, tone(2.0, 8000), 8000, format="AU", subtype="PCM_16")
    header = good.getvalue()
    size = struct.unpack(">I", header[8:12])[0]
    (folder / "claims_more.au").write_bytes(header[:8] + struct.pack(">I", size + 4000) + header[12:])
    (folder / "claims_less.au").write_bytes(header[:8] + struct.pack(">I", size - 4000) + header[12:])
    wav = io.BytesIO()
    sf.write(wav, tone(2.0, 8000), 8000, format="WAV")
    (folder / "truncated.wav").write_bytes(wav.getvalue()[:12_000])
    raw_guess = "no valid header; libsndfile guessed a raw stream"
    damaged = "its header states .* the file holds"
    return {"random.au": "not a valid AU file .*" + raw_guess, "random.snd": "not a valid SND file .*" + raw_guess,
            "text.au": "not a valid AU file .*" + raw_guess, "random.wav": "cannot read audio",
            "random.mp3": "cannot read audio", "claims_more.au": damaged, "claims_less.au": damaged,
            "truncated.wav": damaged}


@pytest.fixture(scope="module")
def garbage(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("garbage")
    return folder, write_garbage(folder)


@pytest.mark.parametrize("name", ["random.au", "random.snd", "random.wav", "random.mp3", "text.au",
                                  "claims_more.au", "claims_less.au", "truncated.wav"])
def test_garbage_and_damaged_headers_are_refused(garbage, name):
    folder, why = garbage
    with pytest.raises(AudioDecodeError, match=why[name]):
        decode_audio(str(folder / name), SR)
    with pytest.raises(AudioDecodeError, match=why[name]):
        decode_blocks(str(folder / name), SR)  # refused when opened, before any audio is decoded


def test_an_intact_au_file_still_decodes(tmp_path):
    sf.write(tmp_path / "ok.au", tone(2.0, 8000), 8000, subtype="PCM_16")
    assert len(decode_audio(str(tmp_path / "ok.au"), 8000)) == 16000


def test_predict_names_each_garbage_file_and_counts_them(model, garbage, tmp_path, caplog):
    folder, why = garbage
    sf.write(tmp_path / "good.wav", tone(2.0, 22050), 22050)
    files = [folder / n for n in sorted(why)] + [tmp_path / "good.wav"]
    with caplog.at_level(logging.WARNING):
        results = list(predict_files(model, files, top_k=0, progress=False, device="cpu"))
    for r, name in zip(results, sorted(why)):
        assert r.labels == {} and r.error.startswith(str(folder / name) + ": ")
    assert results[-1].error is None and set(results[-1].labels) == set(LABELS)
    assert f"{len(why)} of {len(files)} files could not be read" in caplog.text


def test_cache_skips_garbage_and_short_clips_and_counts_both(garbage, tmp_path, caplog):
    folder, why = garbage
    for name, seconds in (("long.wav", 2.0), ("short.wav", 0.4)):
        sf.write(tmp_path / name, tone(seconds, 8000), 8000)
    items = [Item(n, str(folder / n), 0) for n in why] + [Item(n, str(tmp_path / n), 0) for n in ("long.wav", "short.wav")]
    cache = AudioCache(items, sample_rate=8000, cache_dir=tmp_path / "cache", decode_workers=2, min_seconds=1.0)
    with caplog.at_level(logging.WARNING):
        cache.ensure()
    assert [c.key for c in cache.load()] == ["long.wav"]
    summary = f"skipped {len(why) + 1} of {len(why) + 2} files ({len(why)} unreadable, 1 too short): "
    assert summary in caplog.text and "short.wav (too short: 0.40 s, the minimum is 1 s)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        AudioCache(items, sample_rate=8000, cache_dir=tmp_path / "cache", min_seconds=1.0).ensure()  # reused
    assert summary in caplog.text


class ShortClips(AudioDataModule):
    """A data module of in-memory clips, all 0.5 s (one split for everything)."""

    dataset_name = "short"
    split_name = "all"

    def __init__(self, cache_dir: str, **kw):
        super().__init__(root=".", sample_rate=8000, cache_dir=cache_dir, decode_workers=1, **kw)
        self.label_names = ["x"]

    def split_items(self):
        items = []
        for i, seconds in enumerate([0.5, 0.5, 0.5, 2.0]):
            buf = io.BytesIO()
            sf.write(buf, tone(seconds, 8000), 8000, format="WAV")
            items.append(Item(f"clip{i}", buf.getvalue(), 0))
        return {"train": items, "val": items, "test": items}


def test_datamodule_minimum_clip_length_and_chunk_warning(tmp_path, caplog):
    dm = ShortClips(str(tmp_path))  # default min_clip_seconds 1.0 with the 3 s chunk: 0.5 s clips are skipped
    dm.prepare_data()
    dm.setup()
    assert [c.key for c in dm.clips("train")] == ["clip3"]
    with caplog.at_level(logging.WARNING):
        dm = ShortClips(str(tmp_path), min_clip_seconds=0.0, chunk_seconds=1.0)
        dm.prepare_data()
        dm.setup()
    assert len(dm.clips("train")) == 4
    assert "chunk_seconds 1 s is longer than 3 of the 4 clips of short" in caplog.text
    # The minimum never exceeds half a chunk: with 1 s chunks a 0.5 s clip is at most half padding.
    dm = ShortClips(str(tmp_path), chunk_seconds=1.0)
    dm.prepare_data()
    dm.setup()
    assert len(dm.clips("train")) == 4
    with pytest.raises(ValueError, match="min_clip_seconds"):
        ShortClips(str(tmp_path), min_clip_seconds=-1)


# ---- streaming equals one-shot -------------------------------------------------------------------
def one_shot(path, rate: int) -> np.ndarray:
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return AF.resample(torch.from_numpy(data.mean(axis=1)), sr, rate).numpy()


def chirp(seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    top = 0.45 * sr
    return (0.5 * np.sin(2 * np.pi * (20 * t + (top - 20) / (2 * seconds) * t ** 2))).astype(np.float32)


@pytest.mark.parametrize("orig, new", [(44100, 22050), (22050, 16000), (48000, 16000)])
def test_streamed_resampling_matches_one_shot_on_a_chirp(tmp_path, orig, new):
    path = tmp_path / "chirp.wav"
    x = chirp(7.3, orig)
    sf.write(path, np.stack([x, x[::-1]], axis=1), orig, subtype="FLOAT")
    expected = one_shot(path, new)
    for block_seconds in (0.013, 0.37, 1.0, 10.0):  # seams everywhere, and one block
        stream = decode_blocks(str(path), new, block_seconds=block_seconds)
        blocks = list(stream)
        got = np.concatenate(blocks)
        assert stream.length == len(got) == len(expected)
        assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
        assert np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize("name, new", [("sorohanro_-_solo-trumpet-06.hq.ogg", 22050),  # 44.1 kHz stereo
                                       ("Kevin_MacLeod_-_Vibe_Ace.ogg", 16000)])  # 22,050 Hz, one minute
def test_streamed_resampling_matches_one_shot_on_real_music(name, new, shared_data):
    path = shared_data / "audio" / name
    expected = one_shot(path, new)
    got = np.concatenate(list(decode_blocks(str(path), new, block_seconds=0.77)))
    assert len(got) == len(expected) and np.abs(got - expected).max() < 1e-4
    np.testing.assert_array_equal(decode_audio(str(path), new), np.concatenate(list(decode_blocks(str(path), new))))


def test_blocks_are_bounded(tmp_path):
    sf.write(tmp_path / "long.wav", tone(30.0, 44100, channels=2), 44100)
    sizes = [len(b) for b in decode_blocks(str(tmp_path / "long.wav"), 16000, block_seconds=2.0)]
    assert sum(sizes) == 30 * 16000 and max(sizes) <= 2 * 16000 + 500


# ---- memory on a long file -----------------------------------------------------------------------
# Peak RSS of this process's own memory (VmHWM): getrusage's ru_maxrss would also count the
# pytest process it was forked from, which Linux carries across exec.
PEAK = """
import re, sys, torch
import zoo.predict
from zoo.factory import create_model
torch.set_num_threads(1)
torch.manual_seed(0)
model = create_model("crnn", transform="mel", num_classes=3, sample_rate=16000, channels=[8, 8, 8, 8], chunk_seconds=3.0).eval()
if sys.argv[1] == "predict":
    (r,) = zoo.predict.predict_files(model, [sys.argv[2]], device="cpu", progress=False)
    assert r.error is None and abs(r.duration_s - 600) < 1e-3, r
if sys.argv[1] == "one-shot":  # the old decoding, only to show the bound tells the two apart
    import soundfile as sf, torchaudio.functional as AF
    data, sr = sf.read(sys.argv[2], dtype="float32", always_2d=True)
    wave = AF.resample(torch.from_numpy(data.mean(axis=1)), sr, 16000)
print(int(re.search(r"VmHWM:\\s*(\\d+) kB", open("/proc/self/status").read()).group(1)) // 1024)
"""


def peak_mib(*args: str) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK, *args], check=True, capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from Linux's /proc")
def test_predict_memory_does_not_grow_with_duration(tmp_path):
    """10 minutes of 44.1 kHz stereo: decoding it whole takes ~480 MiB above the imports and
    the model (float32 stereo 212 MiB, its mono mix, the resampler's buffers); streamed,
    predict takes ~75 MiB (a block, a batch, the model's activations). Both are measured here;
    benchmarks/decode_memory.py measures up to 2 hours."""
    path = tmp_path / "ten_minutes.wav"
    with sf.SoundFile(path, "w", 44100, 2, subtype="PCM_16") as f:
        for _ in range(20):
            f.write(tone(30.0, 44100, channels=2))
    floor, streaming, whole = peak_mib("floor"), peak_mib("predict", str(path)), peak_mib("one-shot", str(path))
    assert streaming - floor < 150 < whole - floor, (floor, streaming, whole)


# ---- non-finite results --------------------------------------------------------------------------
def test_huge_samples_are_refused_everywhere(model, tmp_path, caplog):
    huge = np.full((8000, 2), 1e30, np.float32)
    huge[:, 1] *= -1  # the channels cancel in the mono mix: the raw samples are checked
    sf.write(tmp_path / "huge.wav", huge, 8000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match=r"sample values out of range \(max \|x\| = 1e\+30\); not normalised"):
        decode_audio(str(tmp_path / "huge.wav"), SR)
    # A problem found mid-file: 20 s of music, then huge samples; the chunks already queued are dropped.
    late = np.concatenate([tone(20.0, 8000), np.full(8000, 5e4, np.float32)])
    sf.write(tmp_path / "late.wav", late, 8000, subtype="FLOAT")
    sf.write(tmp_path / "ok.wav", tone(3.0, 8000), 8000)
    files = [tmp_path / n for n in ("huge.wav", "late.wav", "ok.wav")]
    results = list(predict_files(model, files, top_k=0, batch_size=4, progress=False, device="cpu"))
    assert "out of range" in results[0].error and "out of range (max |x| = 5e+04)" in results[1].error
    assert results[1].error.startswith(str(files[1])) and results[1].labels == {}
    (alone,) = predict_files(model, [files[2]], top_k=0, progress=False, device="cpu")
    assert results[2].labels == pytest.approx(alone.labels, abs=1e-6)
    out = io.StringIO()
    predictions_as_json(results, out)
    json.loads(out.getvalue(), parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    cache = AudioCache([Item(f.name, str(f), 0) for f in files], sample_rate=8000, cache_dir=tmp_path / "c",
                       decode_workers=1)
    cache.ensure()
    assert [c.key for c in cache.load()] == ["ok.wav"]


def test_loud_float_audio_is_cached_finite(tmp_path):
    sf.write(tmp_path / "loud.wav", 3000 * tone(1.0, 8000), 8000, subtype="FLOAT")  # far above full scale, not garbage
    cache = AudioCache([Item("loud", str(tmp_path / "loud.wav"), 0)], sample_rate=8000, cache_dir=tmp_path, decode_workers=1)
    cache.ensure()
    audio = np.fromfile(cache.audio_file, dtype=audio_cache.CACHE_DTYPE)
    assert np.isfinite(audio).all() and np.abs(audio).max() == pytest.approx(1500, rel=0.01)


def test_write_json_never_writes_nan():
    with pytest.raises(ValueError):
        predictions_as_json([Prediction("x.wav", {"a": float("nan")}, 1.0)], io.StringIO())


@pytest.mark.parametrize("reader, kind", [("read_json", "JSON"), ("read_yaml", "YAML")])
def test_config_readers_name_the_file_and_the_problem(reader, kind, tmp_path):
    from datamodules.primitives import files

    read = getattr(files, reader)
    (tmp_path / "bytes").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "broken").write_text("{a: [1, 2" if kind == "YAML" else '{"a": [1, 2')
    cases = [(tmp_path / "absent", "absent: no such file"), (tmp_path, "is a folder, not a " + kind + " file"),
             (tmp_path / "bytes", "bytes: not a text file (invalid UTF-8), so not " + kind),
             (tmp_path / "broken", "broken: invalid " + kind)]
    for path, message in cases:
        with pytest.raises(LookupError) as e:
            read(path, LookupError)
        assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(LookupError, match="^run musiczoo download$"):
        read(tmp_path / "absent", LookupError, missing="run musiczoo download")


# ---- odd names, very short files -----------------------------------------------------------------
def test_a_name_that_is_not_utf8_decodes_and_prints(model, tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9 \xff.wav"
    buf = io.BytesIO()
    sf.write(buf, tone(2.0, 8000), 8000, format="WAV")
    with open(raw, "wb") as f:
        f.write(buf.getvalue())
    path = os.fsdecode(raw)
    assert len(decode_audio(path, 8000)) == 16000
    (r,) = predict_files(model, [tmp_path], top_k=0, progress=False, device="cpu")
    assert r.error is None and r.path == printable_name(path) and r.path.endswith("caf\\xe9 \\xff.wav")
    for writer in (predictions_as_table, predictions_as_json, predictions_as_csv):
        out = io.BytesIO()
        text = io.TextIOWrapper(out, encoding="utf-8")  # strict, as a UTF-8 terminal or file
        writer([r], text)
        text.flush()
        assert "caf\\xe9 \\xff.wav" in out.getvalue().decode("utf-8").replace("\\\\", "\\")
    cache = AudioCache([Item(Path(path).name, path, 0)], sample_rate=8000, cache_dir=tmp_path / "c", decode_workers=1)
    cache.ensure()
    assert cache.load()[0].length == 16000


def test_a_very_short_file_is_padded_with_a_warning(model, tmp_path, caplog):
    sf.write(tmp_path / "blip.wav", tone(0.2, 44100), 44100)
    with caplog.at_level(logging.WARNING):
        (r,) = predict_files(model, [tmp_path / "blip.wav"], top_k=0, segments=True, progress=False, device="cpu")
    assert r.error is None and r.duration_s == pytest.approx(0.2) and [s[:2] for s in r.segments] == [(0.0, 0.2)]
    assert "blip.wav: 0.20 s of audio is zero-padded to the model's 1.00 s chunk" in caplog.text
    padded = torch.nn.functional.pad(torch.from_numpy(decode_audio(str(tmp_path / "blip.wav"), SR)), (0, SR - 3200))
    with torch.no_grad():
        expected = model(padded[None]).softmax(-1)[0]
    assert [r.labels[k] for k in LABELS] == pytest.approx(expected.tolist(), abs=1e-5)


# ---- the cache's own failures --------------------------------------------------------------------
def small_cache(tmp_path: Path) -> AudioCache:
    buf = io.BytesIO()
    sf.write(buf, tone(1.0, 8000), 8000, format="WAV")
    return AudioCache([Item("a", buf.getvalue(), 0)], sample_rate=8000, cache_dir=tmp_path, decode_workers=1)


def test_a_killed_build_is_cleaned_at_the_next_start_unless_its_builder_runs(tmp_path):
    cache = small_cache(tmp_path)
    cache.ensure()  # the cache exists: the next starts only reuse it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folders = {}
    for name, pid in (("dead", dead.pid), ("running", os.getpid())):
        folders[name] = tmp_path / f".{cache.folder.name}.building-{name}"
        folders[name].mkdir()
        (folders[name] / audio_cache.BUILDER_FILE).write_text(f"{os.uname().nodename} {pid}\n")
        old = time.time() - 120
        os.utime(folders[name] / audio_cache.BUILDER_FILE, (old, old))
    just_killed = tmp_path / f".{cache.folder.name}.building-young"
    just_killed.mkdir()
    (just_killed / audio_cache.BUILDER_FILE).write_text(f"{os.uname().nodename} {dead.pid}\n")
    cache.ensure()
    assert not folders["dead"].exists() and folders["running"].exists() and just_killed.exists()


def test_a_truncated_cache_is_rebuilt_with_a_warning(tmp_path, caplog):
    cache = small_cache(tmp_path)
    cache.ensure()
    with open(cache.audio_file, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(RuntimeError, match="is damaged .*audio.f16 holds 1000 bytes, its index describes 16000"):
        cache.load()
    with caplog.at_level(logging.WARNING):
        cache.ensure()
    assert "is damaged" in caplog.text and "rebuilding it" in caplog.text
    assert cache.audio_file.stat().st_size == 16000 and cache.load()[0].length == 8000
    cache.index_file.write_text("{not json")
    cache.ensure()
    assert cache.load()[0].length == 8000


def test_a_cache_dir_that_is_not_writable_is_named(tmp_path, monkeypatch):
    cache_dir = tmp_path / "read_only"
    cache_dir.mkdir()
    cache = AudioCache(small_cache(tmp_path).items, sample_rate=8000, cache_dir=cache_dir, decode_workers=1)
    if os.geteuid() == 0:  # root writes anywhere: make the folder refuse as it would for a user
        def refuse(*args, dir=None, **kwargs):
            raise PermissionError(13, "Permission denied", f"{dir}/.tmp-building-xyz")
        monkeypatch.setattr(audio_cache.tempfile, "mkdtemp", refuse)
    else:
        cache_dir.chmod(0o555)
    try:
        with pytest.raises(CacheNotWritableError, match=f"cache directory {cache_dir} is not writable") as e:
            cache.ensure()
        assert isinstance(e.value, PermissionError) and "building" not in str(e.value)
    finally:
        cache_dir.chmod(0o755)
