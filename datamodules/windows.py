"""Windows of cached clips as the task's batches: random crops for training, chunks for evaluation.

:class:`CropDataset` draws one randomly placed chunk (a training crop) per clip and epoch;
:class:`ChunkDataset` returns the evenly spaced chunks that cover a whole clip, so evaluation
is clip-level as in the literature. Both read ``chunk_size`` samples from the cache's memory
map and zero-pad past a clip's end; :func:`collate_batch` and :func:`collate_chunks` are their
``collate_fn`` (the batch contract is in :mod:`datamodules.base`).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import CACHE_DTYPE, CachedClip
from .items import Target
from .primitives.chunks import chunk_starts


def target_tensor(target: Target) -> torch.Tensor:
    """long scalar for a class index, float32 vector for a multilabel (0/1) or regression target."""
    if isinstance(target, (int, np.integer)):
        return torch.tensor(int(target), dtype=torch.long)
    return torch.tensor(target, dtype=torch.float32)


class _CacheDataset(Dataset):
    """Reads fixed-length windows of cached clips as float32, zero-padded past the end.

    The memory map is opened lazily in each process (and dropped when pickled to a
    DataLoader worker), so workers share the page cache instead of copying the array.
    """

    def __init__(self, audio_file: str | os.PathLike, clips: Sequence[CachedClip], chunk_size: int):
        self.audio_file = str(audio_file)
        self.clips = list(clips)
        self.chunk_size = int(chunk_size)
        self._audio: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.clips)

    def __getstate__(self):
        return {**self.__dict__, "_audio": None}

    @property
    def audio(self) -> np.memmap:
        """The cache's samples, memory-mapped on first use in this process."""
        if self._audio is None:
            self._audio = np.memmap(self.audio_file, dtype=CACHE_DTYPE, mode="r")
        return self._audio

    def _window(self, clip: CachedClip, start: int) -> torch.Tensor:
        return self._windows([(clip, start)])[0]

    def _windows(self, windows: Sequence[tuple[CachedClip, int]]) -> torch.Tensor:
        """(len(windows), chunk_size) float32 of (clip, start) windows, zero-padded past a clip's end.

        Copied as float16 into one NumPy array and converted in one torch call: a torch op per
        window (a fresh tensor, a copy) costs milliseconds on a busy CPU, where each one wakes
        the thread pool, against microseconds for a NumPy slice copy.
        """
        out = np.zeros((len(windows), self.chunk_size), dtype=CACHE_DTYPE)
        for row, (clip, start) in zip(out, windows):
            stop = min(start + self.chunk_size, clip.length)
            row[: stop - start] = self.audio[clip.offset + start: clip.offset + stop]
        return torch.from_numpy(out).float()


class CropDataset(_CacheDataset):
    """Training: one random crop of ``chunk_size`` per clip and epoch.

    Crop positions come from torch's RNG, which DataLoader seeds per worker and
    ``seed_everything`` makes reproducible. The DataLoader fetches a whole batch with
    :meth:`__getitems__` (pass :func:`collate_batch` as its ``collate_fn``): the crops are
    copied as float16 into one array and converted to float32 in one call, about 7x less
    time per crop than converting each crop on its own (``benchmarks/PERF.md``).
    """

    def _start(self, clip: CachedClip) -> int:
        return int(torch.randint(0, max(clip.length - self.chunk_size, 0) + 1, ()))

    def __getitem__(self, i: int) -> dict:
        clip = self.clips[i]
        return {"audio": self._window(clip, self._start(clip)), "target": target_tensor(clip.target)}

    def __getitems__(self, indices: Sequence[int]) -> dict:
        """The batch of ``indices``, already collated: ``{"audio": (B, chunk_size), "target": (B, ...)}``."""
        clips = [self.clips[i] for i in indices]
        # The same draws, in the same order, as item by item.
        crops = self._windows([(clip, self._start(clip)) for clip in clips])
        return {"audio": crops, "target": torch.stack([target_tensor(c.target) for c in clips])}


def collate_batch(batch: dict) -> dict:
    """``collate_fn`` of a dataset whose ``__getitems__`` returns a collated batch."""
    return batch


class ChunkDataset(_CacheDataset):
    """Evaluation: all evenly spaced chunks of one clip (see :func:`chunk_starts`)."""

    def _starts(self, clip: CachedClip) -> list[tuple[CachedClip, int]]:
        return [(clip, int(s)) for s in chunk_starts(clip.length, self.chunk_size)]

    def __getitem__(self, i: int) -> dict:
        clip = self.clips[i]
        return {"audio": self._windows(self._starts(clip)), "target": target_tensor(clip.target), "key": clip.key}

    def __getitems__(self, indices: Sequence[int]) -> dict:
        """The clips of ``indices`` as :func:`collate_chunks` would join them, with the chunks of
        the whole batch read into one array (the DataLoader passes this through ``collate_chunks``)."""
        clips = [self.clips[i] for i in indices]
        windows = [self._starts(clip) for clip in clips]
        return {
            "audio": self._windows([w for per_clip in windows for w in per_clip]),
            "target": torch.stack([target_tensor(c.target) for c in clips]),
            "clip": torch.repeat_interleave(torch.arange(len(clips)), torch.tensor([len(w) for w in windows])),
            "key": [c.key for c in clips],
        }


def collate_chunks(examples: list[dict] | dict) -> dict:
    """Concatenate the chunks of several clips; ``clip`` maps each chunk to its clip. A batch
    already joined by :meth:`ChunkDataset.__getitems__` passes through."""
    if isinstance(examples, dict):
        return examples
    counts = torch.tensor([len(e["audio"]) for e in examples])
    return {
        "audio": torch.cat([e["audio"] for e in examples]),
        "target": torch.stack([e["target"] for e in examples]),
        "clip": torch.repeat_interleave(torch.arange(len(examples)), counts),
        "key": [e["key"] for e in examples],
    }
