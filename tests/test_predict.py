"""Prediction on anyone's audio: any format, rate, channel count and length; bad files reported.

The model is a tiny CRNN with random weights saved as a published folder (prediction does
not care whether weights are trained); the audio is written by the test in the formats
users have: wav, flac, ogg, mp3, stereo 44.1 kHz and mono 8 kHz, 2 s and 5 min.
"""

import csv
import io
import json
import math
import re

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from datamodules.primitives.audio_files import expand_audio_paths
from zoo.cli.models import cmd_predict
from zoo.factory import create_model, from_pretrained
from zoo.hub import save_pretrained
from datamodules.primitives.audio import AudioDecodeError, load_audio
from zoo.predict import predict_files

SR = 16000
CHUNK = 3.0
LABELS = ["ambient", "blues", "jazz", "rock"]
GOOD = ["a.mp3", "a.ogg", "b.flac", "b.wav", "nested/c.mp3", "nested/c.ogg"]  # sorted, as folders are expanded


pytestmark = pytest.mark.usefixtures("no_network")


def music(seconds: float, sr: int, channels: int, seed: int = 0) -> np.ndarray:
    """A few harmonic tones and noise, different in each channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    chans = [sum(np.sin(2 * np.pi * f * (c + 1) * t) / (k + 1) for k, f in enumerate(rng.uniform(100, 800, 3)))
             for c in range(channels)]
    x = np.stack(chans, axis=1) * 0.2 + rng.normal(0, 0.01, (len(t), channels))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("crnn", transform="mel", num_classes=4, sample_rate=SR, channels=[8, 16, 16, 16])
    return save_pretrained(model.eval(), tmp_path_factory.mktemp("model"), label_names=LABELS, chunk_seconds=CHUNK)


@pytest.fixture(scope="module")
def model(folder):
    return from_pretrained(folder)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """short/: 2-second files in four formats (stereo 44.1 kHz and mono 8 kHz), a corrupt mp3, an
    empty wav and a text file; long/: a 5-minute mono 8 kHz file."""
    root = tmp_path_factory.mktemp("audio")
    short = root / "short"
    (short / "nested").mkdir(parents=True)
    stereo, mono = music(2.0, 44100, 2, seed=1), music(2.0, 8000, 1, seed=2)
    for name in ("a.mp3", "a.ogg", "b.wav", "b.flac"):
        sf.write(short / name, stereo, 44100)
    for name in ("nested/c.mp3", "nested/c.ogg"):
        sf.write(short / name, mono, 8000)
    (short / "corrupt.mp3").write_bytes(b"ID3" + bytes(range(256)) * 20)
    sf.write(short / "empty.wav", np.zeros((0, 1), np.float32), 8000)
    (short / "notes.txt").write_text("not audio")
    (root / "long").mkdir()
    sf.write(root / "long" / "five_minutes.wav", music(300.0, 8000, 1, seed=3), 8000)
    return root


# ---- decoding -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GOOD)
def test_load_audio_any_format_rate_and_channels(audio, name):
    x = load_audio(audio / "short" / name, SR)
    assert x.dtype == torch.float32 and x.dim() == 1 and torch.isfinite(x).all()
    assert abs(len(x) - 2 * SR) < 0.05 * SR  # mp3 decoders may add a few ms of padding
    source, sr = sf.read(audio / "short" / name, dtype="float32", always_2d=True)
    rms = float(np.sqrt(np.mean(source.mean(axis=1) ** 2)))
    assert abs(float(x.square().mean().sqrt()) - rms) < 0.1 * rms


def test_load_audio_mixes_down_and_resamples_exactly(audio):
    source, sr = sf.read(audio / "short" / "b.wav", dtype="float32", always_2d=True)
    expected = AF.resample(torch.from_numpy(source.mean(axis=1)), sr, SR)
    torch.testing.assert_close(load_audio(audio / "short" / "b.wav", SR), expected)
    torch.testing.assert_close(load_audio(audio / "short" / "b.flac", SR), expected, rtol=0, atol=1e-4)  # lossless


@pytest.mark.parametrize("name, why", [("corrupt.mp3", "cannot read audio"), ("empty.wav", "empty"),
                                       ("missing.wav", "no such file"), ("notes.txt", "cannot read audio")])
def test_unusable_files_are_clear_errors(audio, name, why):
    path = audio / "short" / name
    with pytest.raises(AudioDecodeError, match=re.escape(str(path)) + ".*" + why):
        load_audio(path, SR)


def test_folders_are_expanded_recursively(audio):
    files = expand_audio_paths([audio / "short", audio / "long" / "five_minutes.wav", audio / "nowhere.wav"])
    names = [f.relative_to(audio).as_posix() for f in files]
    assert names == sorted(f"short/{n}" for n in GOOD + ["corrupt.mp3", "empty.wav"]) + ["long/five_minutes.wav", "nowhere.wav"]


# ---- predict_files ----------------------------------------------------------------------------
def test_corrupt_files_are_reported_and_the_rest_predicted(model, audio, caplog):
    with caplog.at_level("WARNING"):
        results = list(predict_files(model, [audio / "short"], top_k=0, progress=False))
    by_name = {r.path.split("short/")[1]: r for r in results}
    assert sorted(by_name) == sorted(GOOD + ["corrupt.mp3", "empty.wav"])
    for name in ("corrupt.mp3", "empty.wav"):
        assert name in by_name[name].error and by_name[name].labels == {}
    for name in GOOD:
        r = by_name[name]
        assert r.error is None and list(r.labels) != [] and set(r.labels) == set(LABELS)
        assert math.isclose(sum(r.labels.values()), 1.0, abs_tol=1e-5)  # multiclass: softmax mean
        assert list(r.labels.values()) == sorted(r.labels.values(), reverse=True)
        assert r.duration_s == pytest.approx(2.0, abs=0.1)
    assert "corrupt.mp3" in caplog.text and "2 of 8 files could not be read" in caplog.text
    # Lossless copies of one signal predict the same; the same music in lossy formats nearly so.
    for a, b, tol in (("b.wav", "b.flac", 1e-4), ("b.wav", "a.ogg", 0.05), ("nested/c.ogg", "nested/c.mp3", 0.05)):
        np.testing.assert_allclose([by_name[a].labels[k] for k in LABELS], [by_name[b].labels[k] for k in LABELS], atol=tol)


def test_batches_across_files_do_not_change_predictions(model, audio):
    files = [audio / "short" / n for n in GOOD]
    runs = [list(predict_files(model, files, top_k=0, batch_size=b, progress=False)) for b in (1, 4, 64)]
    for results in runs[1:]:
        for r, ref in zip(results, runs[0]):
            assert r.path == ref.path
            np.testing.assert_allclose([r.labels[k] for k in LABELS], [ref.labels[k] for k in LABELS], atol=1e-5)


@pytest.fixture(scope="module")
def long_result(model, audio):
    (r,) = predict_files(model, [audio / "long" / "five_minutes.wav"], top_k=0, segments=True, batch_size=32, progress=False)
    return r


def test_long_file_segments_cover_it(long_result):
    r = long_result
    assert r.duration_s == pytest.approx(300.0)
    assert len(r.segments) == 100  # ceil(300 s / 3 s)
    starts, ends = [s for s, _, _ in r.segments], [e for _, e, _ in r.segments]
    assert starts[0] == 0.0 and ends[-1] == pytest.approx(300.0)
    assert all(e - s == pytest.approx(CHUNK) for s, e in zip(starts, ends))
    assert all(next_start <= end for next_start, end in zip(starts[1:], ends))  # no gaps
    mean = np.mean([[labs[k] for k in LABELS] for _, _, labs in r.segments], axis=0)
    np.testing.assert_allclose([r.labels[k] for k in LABELS], mean, atol=1e-5)  # the file = mean of its chunks


def test_short_file_is_one_zero_padded_chunk(model, audio):
    path = audio / "short" / "b.wav"
    (r,) = predict_files(model, [path], top_k=0, segments=True, progress=False)
    assert [(s, e) for s, e, _ in r.segments] == [(0.0, 2.0)]
    padded = torch.nn.functional.pad(load_audio(path, SR), (0, int(CHUNK * SR) - 2 * SR))
    with torch.no_grad():
        expected = model(padded[None]).softmax(-1)[0]
    np.testing.assert_allclose([r.labels[k] for k in LABELS], expected.numpy(), atol=1e-5)


def test_multilabel_averages_sigmoids(folder, audio):
    model = from_pretrained(folder)
    model.spec = model.spec.replace(task="multilabel")
    path = audio / "long" / "five_minutes.wav"
    (r,) = predict_files(model, [path], top_k=0, segments=True, progress=False)
    x = load_audio(path, SR)
    chunks = torch.stack([x[s:s + int(CHUNK * SR)] for s in range(0, len(x), int(CHUNK * SR))])
    with torch.no_grad():
        expected = model(chunks).sigmoid().mean(0)
    np.testing.assert_allclose([r.labels[k] for k in LABELS], expected.numpy(), atol=1e-5)
    assert not math.isclose(sum(r.labels.values()), 1.0, abs_tol=1e-3)


def test_top_k_device_and_training_mode(folder, audio):
    model = from_pretrained(folder).train()
    (r,) = predict_files(model, [audio / "short" / "a.ogg"], top_k=2, device="cpu", progress=False)
    assert len(r.labels) == 2 and model.training  # the caller's mode is restored


def test_waveform_model_predict(model, audio):
    probs = model.predict(audio / "short" / "a.mp3")
    assert list(probs) != [] and set(probs) == set(LABELS)
    assert list(probs.values()) == sorted(probs.values(), reverse=True)
    with pytest.raises(AudioDecodeError, match="corrupt.mp3"):
        model.predict(audio / "short" / "corrupt.mp3")
    with pytest.raises(IsADirectoryError, match="predict_files"):
        model.predict(audio / "short")
    fresh = create_model("fcn", num_classes=3, sample_rate=SR).eval()  # no metadata: index labels, 3 s chunks
    assert set(fresh.predict(audio / "short" / "b.wav")) == {"0", "1", "2"}


# ---- musiczoo predict ------------------------------------------------------------------------
def run_cli(capsys, *args, expect_exit=None):
    if expect_exit is None:
        cmd_predict([str(a) for a in args])
    else:
        with pytest.raises(SystemExit) as e:
            cmd_predict([str(a) for a in args])
        assert e.value.code == expect_exit
    return capsys.readouterr()


def test_cli_json(folder, audio, capsys):
    out = run_cli(capsys, folder, audio / "short", "--format", "json", "--top-k", "3", "--segments", expect_exit=1)
    results = json.loads(out.out)
    assert len(results) == 8
    errors = [r for r in results if r["error"]]
    assert sorted(r["path"].rsplit("/", 1)[1] for r in errors) == ["corrupt.mp3", "empty.wav"]
    ok = [r for r in results if not r["error"]]
    assert all(len(r["labels"]) == 3 and len(r["segments"]) == 1 for r in ok)
    assert ok[0]["segments"][0]["start_s"] == 0.0 and set(ok[0]["segments"][0]["labels"]) <= set(LABELS)
    assert "2 of 8 files could not be read" in out.err


def test_cli_csv(folder, audio, capsys):
    out = run_cli(capsys, folder, audio / "long", audio / "short" / "b.wav", "--format", "csv", "--segments",
                  "--top-k", "2", "--batch-size", "7")
    rows = list(csv.DictReader(io.StringIO(out.out)))
    assert list(rows[0]) == ["path", "scope", "start_s", "end_s", "rank", "label", "probability", "error"]
    long_rows = [r for r in rows if r["path"].endswith("five_minutes.wav")]
    assert [r["rank"] for r in long_rows if r["scope"] == "file"] == ["1", "2"]
    segments = [r for r in long_rows if r["scope"] == "segment"]
    assert len(segments) == 100 * 2 and float(segments[-1]["end_s"]) == pytest.approx(300.0)
    assert all(r["label"] in LABELS and 0 <= float(r["probability"]) <= 1 for r in rows)
    assert {r["path"].rsplit("/", 1)[1] for r in rows} == {"five_minutes.wav", "b.wav"}


def test_cli_table(folder, audio, capsys):
    out = run_cli(capsys, folder, audio / "short" / "a.mp3", audio / "short" / "corrupt.mp3", "--top-k", "4",
                  expect_exit=1)
    lines = out.out.splitlines()
    assert lines[0].endswith("a.mp3  (2.0 s)")
    parsed = [re.fullmatch(r"  (\S+)\s+(\d\.\d{3})", line) for line in lines[1:5]]
    assert [m.group(1) for m in parsed if m] != [] and {m.group(1) for m in parsed} == set(LABELS)
    assert "corrupt.mp3  ERROR: " in lines[5]


def test_cli_errors_are_one_line(folder, tmp_path, capsys):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(SystemExit, match="no audio files in"):
        cmd_predict([str(folder), str(tmp_path / "empty_dir")])
    with pytest.raises(SystemExit, match="neither a folder nor a Hugging Face Hub id"):
        cmd_predict([str(tmp_path / "no_model"), str(tmp_path)])


def test_a_pipe_is_read_like_the_file_it_carries(model, folder, audio, tmp_path):
    """``-`` (standard input of the real command) and a pipe's name (``/dev/fd/N``, what
    ``/dev/stdin`` and ``<(...)`` are) give the file's own prediction."""
    import os
    import subprocess
    import sys
    import threading
    from pathlib import Path

    path = audio / "short" / "b.flac"
    (expected,) = predict_files(model, [path], progress=False, top_k=0)
    read, write = os.pipe()
    feeder = threading.Thread(target=lambda: (os.write(write, path.read_bytes()), os.close(write)))
    feeder.start()  # a pipe holds 64 KiB: the file goes in while it is read
    try:
        (piped,) = predict_files(model, [f"/dev/fd/{read}"], progress=False, top_k=0)
    finally:
        feeder.join()
        os.close(read)
    assert piped.error is None and piped.labels == expected.labels and piped.duration_s == expected.duration_s
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "predict", str(folder), "-", "--format", "json",
                           "--top-k", "0"], input=path.read_bytes(), capture_output=True, timeout=300, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    (row,) = json.loads(proc.stdout)
    assert row["path"] == "-" and row["labels"] == pytest.approx(expected.labels, abs=1e-6)


def test_a_url_is_one_line_saying_urls_are_not_read(folder, capsys):
    url = "http://example.com/song.mp3"
    with pytest.raises(SystemExit) as e:
        cmd_predict([str(folder), url])
    assert str(e.value) == (f"musiczoo predict: error: {url}: URLs are not read; download the file first "
                            f"(e.g. curl -o song.mp3 '{url}') or pipe it in: curl -s URL | musiczoo predict MODEL -")
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="^https://x/y.wav: URLs are not read"):
        next(predict_files(None, ["https://x/y.wav"]))
