"""datamodules.primitives.audio and .chunks: the decoding, file-listing, chunking and clip-level rules everything shares."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.gtzan import GENRES, GTZANDataModule
from datamodules.primitives.audio import AudioDecodeError, decode_audio, load_audio
from datamodules.primitives.audio_files import expand_audio_paths, list_audio_files
from datamodules.primitives.chunks import chunk_samples, chunk_starts, clip_mean, default_label_names, probabilities


@pytest.mark.parametrize("length", [1, 7999, 8000, 8001, 12345, 20000, 80000])
def test_chunk_starts_cover_the_clip(length):
    size = 8000
    starts = chunk_starts(length, size)
    assert len(starts) == max(1, math.ceil(length / size))
    assert starts[0] == 0 and starts[-1] == max(length - size, 0)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + size] = True
    assert covered.all()
    assert np.all(np.diff(starts) <= size) and np.all(np.diff(starts) > 0)



def test_chunk_samples_is_the_one_conversion():
    assert chunk_samples(3.6905625, 16000) == 59049  # the literature's MTAT crop
    assert chunk_samples(3.0, 22050) == 66150 and chunk_samples(29, 16000) == 464000


def test_clip_mean_averages_each_clips_chunks():
    values = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 1.0]])
    clip = torch.tensor([0, 0, 1, 2])
    assert torch.equal(clip_mean(values, clip, 3), torch.tensor([[2.0, 1.0], [5.0, 5.0], [0.0, 1.0]]))



def test_probabilities_by_task():
    logits = torch.tensor([[0.0, 1.0, -1.0]])
    torch.testing.assert_close(probabilities(logits, "multiclass"), logits.softmax(-1))
    torch.testing.assert_close(probabilities(logits, "multilabel"), torch.sigmoid(logits))
    assert probabilities(logits, "multiclass").sum().item() == pytest.approx(1.0)


def test_listing_audio_files(tmp_path):
    sr = 8000
    tone = np.sin(np.arange(sr) / 10).astype(np.float32)
    for name in ("b/x.wav", "a/deep/y.FLAC", "a/z.ogg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / name, tone, sr)
    (tmp_path / "a" / "._z.ogg").write_bytes(b"macOS metadata twin")
    (tmp_path / "a" / "cover.jpg").write_bytes(b"not audio")
    assert [p.relative_to(tmp_path).as_posix() for p in list_audio_files(tmp_path)] == ["a/deep/y.FLAC", "a/z.ogg", "b/x.wav"]
    expanded = expand_audio_paths([tmp_path / "b", tmp_path / "missing.wav"])
    assert expanded == [tmp_path / "b" / "x.wav", tmp_path / "missing.wav"]  # a missing file is kept, to be reported


def test_decode_audio_mixes_down_resamples_and_refuses_garbage(tmp_path):
    t = np.arange(16000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, 16000)
    mono = decode_audio(str(tmp_path / "s.wav"), 8000)
    assert mono.dtype == np.float32 and mono.shape == (8000,)
    assert np.abs(mono).max() == pytest.approx(0.5, abs=0.02)  # the mean of a full-scale and a silent channel
    assert np.array_equal(decode_audio((tmp_path / "s.wav").read_bytes(), 8000), mono)  # bytes decode the same
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty file"):
        decode_audio(str(tmp_path / "empty.wav"), 8000)


def test_default_label_names():
    assert default_label_names(3) == ["0", "1", "2"]


# ---- GTZAN's .au files as Marsyas wrote them --------------------------------------------------
# No copy of the original tarball is reachable from the tests, so its files are written here
# byte by byte as Marsyas wrote them: the 24-byte Sun AU header (magic, data offset, data size,
# encoding 3 = 16-bit big-endian linear PCM, 22050 Hz, 1 channel), then Marsyas's 33-byte
# comment, so the audio data starts at the odd offset 57, then the samples.
MARSYAS_COMMENT = b"MARSYAS 2001, George Tzanetakis.\n"
UNKNOWN_SIZE = 0xFFFFFFFF  # what an AU writer that cannot seek back puts in the data size field


def write_marsyas_au(path: Path, samples: np.ndarray, data_size: int | None = None) -> Path:
    """``samples`` (int16) as GTZAN's ``.au``; ``data_size`` overrides the (correct) size field."""
    data = samples.astype(">i2").tobytes()
    offset = 24 + len(MARSYAS_COMMENT)
    header = b".snd" + struct.pack(">5I", offset, len(data) if data_size is None else data_size, 3, 22050, 1)
    path.write_bytes(header + MARSYAS_COMMENT + data)
    return path


def int16_noise(seconds: float, seed: int) -> np.ndarray:
    """Samples over the whole int16 range, its two extremes included."""
    samples = np.random.default_rng(seed).integers(-32768, 32768, int(seconds * 22050), dtype=np.int16)
    samples[:2] = (-32768, 32767)
    return samples


def test_a_gtzan_au_as_marsyas_wrote_it_decodes_to_exactly_its_samples(tmp_path):
    samples = int16_noise(2.0, seed=0)
    path = write_marsyas_au(tmp_path / "blues.00000.au", samples)
    raw = path.read_bytes()
    assert len(MARSYAS_COMMENT) == 33 and struct.unpack(">I", raw[4:8]) == (57,) and raw[24:57] == MARSYAS_COMMENT
    expected = samples / 32768
    assert np.array_equal(decode_audio(str(path), 22050), expected)
    assert np.array_equal(decode_audio(raw, 22050), expected)
    assert np.array_equal(load_audio(path, 22050).numpy(), expected)


def test_a_gtzan_au_of_unknown_size_decodes_to_its_last_sample(tmp_path):
    samples = int16_noise(2.0, seed=1)
    path = write_marsyas_au(tmp_path / "jazz.00000.au", samples, data_size=UNKNOWN_SIZE)
    assert np.array_equal(decode_audio(str(path), 22050), samples / 32768)


def test_a_gtzan_au_whose_data_size_runs_past_the_file_is_one_error_naming_it(tmp_path):
    samples = int16_noise(1.0, seed=2)
    path = write_marsyas_au(tmp_path / "rock.00000.au", samples, data_size=2 * len(samples) + 1000)
    with pytest.raises(AudioDecodeError) as refused:
        load_audio(path, 22050)
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{path}: not a valid AU file (its header states ")


def test_the_gtzan_data_module_reads_marsyas_au_files_sample_for_sample(tmp_path):
    """The original tarball's layout (``genres/<genre>/<genre>.000NN.au``), three 1 s clips per
    genre, one of them with the unknown size: every clip reaches the cache as it was written
    (the cache holds float16, so as the float16 of int16 / 32768)."""
    written = {}
    for g, genre in enumerate(GENRES):
        (tmp_path / "genres" / genre).mkdir(parents=True)
        for n in range(3):
            samples = int16_noise(1.0, seed=10 * g + n)
            write_marsyas_au(tmp_path / "genres" / genre / f"{genre}.{n:05d}.au", samples,
                             data_size=UNKNOWN_SIZE if n == 2 else None)
            written[f"{genre}/{genre}.{n:05d}.au"] = samples
    data = GTZANDataModule(str(tmp_path), split="kfold", k=3, sample_rate=22050, chunk_seconds=1.0,
                           cache_dir=str(tmp_path / "cache"), decode_workers=1)
    data.prepare_data()
    data.setup("fit")
    assert sum(len(data.clips(s)) for s in ("train", "val", "test")) == 30
    val = data.val_dataloader().dataset
    assert len(val) == 10
    for i in range(len(val)):
        clip = val[i]
        expected = torch.from_numpy((written[clip["key"]] / 32768).astype(np.float16).astype(np.float32))
        assert clip["audio"].shape == (1, 22050) and torch.equal(clip["audio"][0], expected), clip["key"]


# ---- excerpts: only what a track's chunks need, read once ------------------------------------------
def _excerpt_spans(length: int, rate: int) -> list[tuple[int, int]]:
    """Spans at the start, across a block boundary, in the middle, at the end and past it."""
    from datamodules.primitives.audio import BLOCK_SECONDS

    block = int(BLOCK_SECONDS * rate)
    return [(0, 700), (block - 333, block + 4000), (length // 2, length // 2 + rate), (length - rate, length),
            (length - 50, length + 900)]


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_excerpts_equal_slices_of_the_whole_decode_at_every_rate(fmt, tmp_path):
    """44.1 kHz stereo in the formats libraries hold: each excerpt, at the source rate and at three
    resampled rates requested together, equals that slice of ``decode_audio`` (zero past the end)."""
    from datamodules.primitives.audio import decode_blocks

    rng = np.random.default_rng(0)
    t = np.arange(int(23.5 * 44100)) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 97 * t)], axis=1)
    stereo += 0.05 * rng.standard_normal(stereo.shape)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, stereo.astype(np.float32), 44100, format=fmt)
    rates = (44100, 22050, 16000, 8000)
    whole = {rate: decode_audio(path, rate) for rate in rates}
    spans = {rate: _excerpt_spans(len(whole[rate]), rate) for rate in rates}
    excerpts = decode_blocks(path, 22050).excerpts(spans)
    for rate in rates:
        padded = np.pad(whole[rate], (0, 1000))
        for (a, b), x in zip(spans[rate], excerpts[rate]):
            assert x.dtype == np.float32 and len(x) == b - a
            np.testing.assert_allclose(x, padded[a:b], atol=1e-6, err_msg=f"{fmt} at {rate} Hz, samples {a}-{b}")


def test_excerpts_of_a_file_that_cannot_seek_are_read_through(tmp_path, monkeypatch):
    """Where libsndfile cannot seek, the file is read on through in blocks: the same samples."""
    from datamodules.primitives.audio import decode_blocks

    path = tmp_path / "x.flac"
    sf.write(path, np.random.default_rng(1).standard_normal(int(25 * 16000)).astype(np.float32) * 0.1, 16000)
    stream = decode_blocks(path, 16000)
    monkeypatch.setattr(stream._file, "seekable", lambda: False)
    spans = {16000: [(5000, 9000), (300_000, 310_000)], 8000: [(100_000, 101_000)]}
    got = stream.excerpts(spans)
    for rate, rate_spans in spans.items():
        whole = decode_audio(path, rate)
        for (a, b), x in zip(rate_spans, got[rate]):
            np.testing.assert_allclose(x, whole[a:b], atol=1e-6)


def test_excerpts_of_a_truncated_file_are_one_error(tmp_path):
    """A FLAC cut short (its header still states 4 s) reads its first second, and fails in one
    line on an excerpt that reaches past where the file now ends."""
    from datamodules.primitives.audio import decode_blocks

    path = tmp_path / "cut.flac"
    sf.write(path, np.random.default_rng(0).standard_normal(16000 * 4).astype(np.float32) * 0.1, 16000)
    path.write_bytes(path.read_bytes()[:path.stat().st_size * 3 // 4])
    assert len(decode_blocks(path, 16000).excerpts({16000: [(0, 16000)]})[16000][0]) == 16000
    with pytest.raises(AudioDecodeError, match=r"^(cannot seek to frame 48500 of 64000|truncated|cannot read audio)"):
        decode_blocks(path, 16000).excerpts({16000: [(0, 100), (16000 * 3 + 500, 16000 * 4)]})
