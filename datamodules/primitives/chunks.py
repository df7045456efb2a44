"""Chunks: the chunk length, where chunks start, and chunk outputs -> clip-level probabilities (or values).

The chunk length is named ``chunk_seconds`` everywhere and ``chunk_size`` in samples
(:func:`chunk_samples` is the one conversion). Training crops, evaluation chunks, prediction
chunks and the recommender's chunks all have it and start where :func:`chunk_starts` says, and
the clip-level rule (:func:`probabilities`, then :func:`clip_mean`) is the one the test metrics
use, so a published number and a prediction on a user's file mean the same thing.
Imports torch and numpy, nothing of Lightning and nothing of the project.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Length of training crops, evaluation chunks and prediction chunks unless a config says otherwise.
DEFAULT_CHUNK_SECONDS = 3.0

#: One label per clip (softmax), independent tags (sigmoid), continuous targets such as
#: valence and arousal (the outputs as they are), or version identification: which work a
#: performance is of, learnt over the training works (softmax) for an embedding that retrieves
#: other performances of any work (:mod:`zoo.problems`).
TASKS = ("multiclass", "multilabel", "regression", "versions")


def chunk_samples(chunk_seconds: float, sample_rate: int) -> int:
    """The chunk length in samples: the only seconds -> samples conversion of the project."""
    return int(round(float(chunk_seconds) * int(sample_rate)))


def chunk_starts(length: int, chunk_size: int, max_chunks: int | None = None) -> np.ndarray:
    """Start samples of ``ceil(length / chunk_size)`` evenly spaced chunks that cover ``length``.

    The first chunk starts at 0 and the last ends at ``length``; chunks overlap a little
    when ``chunk_size`` does not divide ``length``. A clip shorter than a chunk gives one chunk.
    ``max_chunks`` caps the count: a long track is then sampled by that many chunks spread
    evenly from its start to its end (what indexing a music library needs; a 10-minute
    track need not cost 200 forward passes to be placed among its neighbours).
    """
    n = max(1, math.ceil(length / chunk_size))
    if max_chunks is not None:
        n = min(n, max(1, int(max_chunks)))
    return np.rint(np.linspace(0, max(length - chunk_size, 0), n)).astype(np.int64)


def probabilities(logits: torch.Tensor, task: str, target_scale: tuple[float, float] | None = None) -> torch.Tensor:
    """What a chunk's outputs mean before they are averaged over the clip: softmax for one label
    per clip (``multiclass``; ``versions``: which training work), independent sigmoids for tags (``multilabel``), and values for
    continuous targets (``regression``: a clip's value is its chunks' mean).

    A regression model's output 0 is the middle of its ``target_scale`` (lo, hi) and +-1 its
    ends (values beyond them are not clipped), so that a freshly initialised head already
    predicts the middle of the scale and learns differences, not the scale's offset; without
    a scale the outputs are the values."""
    if task == "regression":
        if target_scale is None:
            return logits
        lo, hi = target_scale
        return (lo + hi) / 2 + (hi - lo) / 2 * logits
    return logits.sigmoid() if task == "multilabel" else logits.softmax(-1)


def clip_mean(values: torch.Tensor, clip: torch.Tensor, num_clips: int) -> torch.Tensor:
    """Average chunk rows of ``values`` into one row per clip (``clip`` gives each row's clip index)."""
    sums = values.new_zeros((num_clips, *values.shape[1:])).index_add_(0, clip, values)
    counts = torch.bincount(clip, minlength=num_clips).clamp_min(1).to(values.dtype)
    return sums / counts.view(-1, *([1] * (values.dim() - 1)))


def default_label_names(num_classes: int) -> list[str]:
    """Names of outputs nobody named: their indices as strings."""
    return [str(i) for i in range(num_classes)]
