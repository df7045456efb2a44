"""Audio primitives that training, prediction and the recommender share, without Lightning.

One rule each, used everywhere, so a clip gives the same samples, chunks and clip-level
probabilities whether it is cached for training, predicted from the command line or
indexed for recommendation:

* :func:`decode_audio`: any file soundfile reads -> mono float32 at the model's rate;
* :func:`list_audio_files` / :func:`expand_audio_paths`: which files count as audio;
* :data:`DEFAULT_CHUNK_SECONDS`, :func:`chunk_samples`, :func:`chunk_starts`: the chunk
  length (the one name for it everywhere is ``chunk_seconds``) and where chunks start;
* :func:`probabilities`, :func:`clip_mean`: chunk logits -> clip-level probabilities;
* :func:`default_label_names`: what outputs are called when nobody named them.

Importing this module imports torch, torchaudio's functional resampler, numpy and
soundfile, and nothing of Lightning.
"""

from __future__ import annotations

import io
import logging
import math
import os
from pathlib import Path
from typing import Iterable, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

log = logging.getLogger(__name__)

Source = Union[str, os.PathLike, bytes]

#: File name endings taken as audio; anything else in a music folder (notes, cover art) is ignored.
AUDIO_EXTENSIONS = (".wav", ".au", ".snd", ".aif", ".aiff", ".flac", ".ogg", ".oga", ".opus", ".mp3")

#: Length of training crops, evaluation chunks and prediction chunks unless a config says otherwise.
DEFAULT_CHUNK_SECONDS = 3.0

TASKS = ("multiclass", "multilabel")


class AudioDecodeError(ValueError):
    """A source that gives no usable audio; the message says why (the caller names the file)."""


def decode_audio(source: Source, sample_rate: int) -> np.ndarray:
    """Decode a file path or encoded bytes to mono float32 at ``sample_rate``.

    The one decoding rule of the project: the training cache, ``musiczoo predict`` and the
    recommender all use it, so a clip gives the same samples in each.
    """
    try:
        if (len(source) if isinstance(source, bytes) else os.path.getsize(source)) == 0:
            raise AudioDecodeError("empty file (0 bytes)")
        data, sr = sf.read(io.BytesIO(source) if isinstance(source, bytes) else source,
                           dtype="float32", always_2d=True)
    except AudioDecodeError:
        raise
    except Exception as e:  # libsndfile reports truncated/unknown formats in many ways
        # (for a truncated mp3 it says "File does not exist...", though the file does exist)
        raise AudioDecodeError(f"cannot read audio: truncated, corrupt or not audio (libsndfile: {e})") from None
    if data.shape[0] == 0:
        raise AudioDecodeError("empty (no audio frames)")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if not np.isfinite(mono).all():
        raise AudioDecodeError("contains NaN or infinite samples")
    if sr != sample_rate:
        mono = AF.resample(torch.from_numpy(mono), sr, sample_rate).numpy()
    return mono


def is_audio_file(path: Path) -> bool:
    """An audio file by its ending; hidden files are not (macOS archives carry ``._name.wav`` twins)."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def list_audio_files(folder: str | os.PathLike) -> list[Path]:
    """The audio files below ``folder``, recursively, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if is_audio_file(p))


def expand_audio_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to their audio files (:func:`list_audio_files`).

    A path that does not exist is kept, so a caller reports it with the other unreadable
    files instead of stopping the run.
    """
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = list_audio_files(p)
            if not found:
                log.warning("no audio files (%s) under %s", ", ".join(AUDIO_EXTENSIONS), p)
            files += found
        else:
            files.append(p)
    return files


def chunk_samples(chunk_seconds: float, sample_rate: int) -> int:
    """The chunk length in samples: the only seconds -> samples conversion of the project."""
    return int(round(float(chunk_seconds) * int(sample_rate)))


def chunk_starts(length: int, size: int, max_chunks: int | None = None) -> np.ndarray:
    """Start samples of ``ceil(length / size)`` evenly spaced chunks that cover ``length``.

    The first chunk starts at 0 and the last ends at ``length``; chunks overlap a little
    when ``size`` does not divide ``length``. A clip shorter than a chunk gives one chunk.
    ``max_chunks`` caps the count: a long track is then sampled by that many chunks spread
    evenly from its start to its end (what indexing a music library needs; a 10-minute
    track need not cost 200 forward passes to be placed among its neighbours).
    """
    n = max(1, math.ceil(length / size))
    if max_chunks is not None:
        n = min(n, max(1, int(max_chunks)))
    return np.rint(np.linspace(0, max(length - size, 0), n)).astype(np.int64)


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Softmax for one label per clip (``multiclass``), independent sigmoids for tags (``multilabel``)."""
    return logits.softmax(-1) if task == "multiclass" else logits.sigmoid()


def clip_mean(values: torch.Tensor, clip: torch.Tensor, num_clips: int) -> torch.Tensor:
    """Average chunk rows of ``values`` into one row per clip (``clip`` gives each row's clip index)."""
    sums = values.new_zeros((num_clips, *values.shape[1:])).index_add_(0, clip, values)
    counts = torch.bincount(clip, minlength=num_clips).clamp_min(1).to(values.dtype)
    return sums / counts.view(-1, *([1] * (values.dim() - 1)))


def default_label_names(num_classes: int) -> list[str]:
    """Names of outputs nobody named: their indices as strings."""
    return [str(i) for i in range(num_classes)]
