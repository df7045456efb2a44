"""datamodules.primitives.audio and .chunks: the decoding, file-listing, chunking and clip-level rules everything shares."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.primitives.audio import AudioDecodeError, decode_audio, expand_audio_paths, list_audio_files
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
