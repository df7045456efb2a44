"""The base of every data module: a subclass says what the clips of each split are, this does the rest.

Every dataset (GTZAN, MagnaTagATune, a folder of files, a Hugging Face dataset) reduces to a
list of :class:`~datamodules.items.Item` per split: a unique ``key``, a ``source`` soundfile can
read and a ``target``. :class:`AudioDataModule` decodes them once into the shared
:class:`~datamodules.cache.AudioCache` and serves windows of them
(:mod:`datamodules.windows`) with the batch contract the task relies on:

- training batch: ``{"audio": float32 (B, S), "target": ...}``
- evaluation/predict batch: ``{"audio": float32 (M, S), "target": ..., "clip": long (M,),
  "key": list[str] (B)}``: all chunks of the B clips concatenated, ``clip`` giving each
  chunk's clip index 0..B-1.

``S`` is ``chunk_size``, the chunk length in samples. ``target`` is long (B,) for
``multiclass``, float32 (B, C) 0/1 for ``multilabel``, float32 (B, C) for ``regression``
(one column per target, e.g. valence and arousal) and long (B,) for ``versions`` (the work's index:
the training works are 0..C-1, the classes, and the evaluation parts' works come after them). ``batch_size`` counts clips in every split.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .cache import AudioCache, CachedClip
from .items import Item, plain_target
from .primitives.chunks import DEFAULT_CHUNK_SECONDS, chunk_samples
from .synthetic_marker import is_synthetic
from .windows import ChunkDataset, CropDataset, collate_batch, collate_chunks

log = logging.getLogger(__name__)

#: The splits a data module serves, one per loader (``predict`` defaults to ``test``).
SPLITS = ("train", "val", "test", "predict")


class AudioDataModule(L.LightningDataModule):
    """Base of every data module: a subclass only says what the clips of each split are.

    Subclasses set ``dataset_name``, set ``label_names`` in ``__init__`` (and ``task =
    "multilabel"`` for tagging, ``task = "regression"`` for continuous targets, whose names
    are then the ``label_names``), implement :meth:`split_items` and name their split in
    :attr:`split_name`; a subclass's ``__init__`` declares only its own arguments and passes
    ``**kwargs`` on (LightningCLI still lists and type-checks the base arguments). ``prepare_data`` builds (or reuses) the cache of all
    splits' items; ``setup`` reads its index; the loaders follow the batch contract in the
    module docstring. Files skipped by the cache are left out of their split.

    Args:
        root: where the dataset lives.
        sample_rate: rate every clip is resampled to (the model's input rate).
        chunk_seconds: length of training crops and evaluation chunks (the model's chunk length).
        batch_size: clips per batch, for training and evaluation alike.
        num_workers: DataLoader worker processes.
        cache_dir: where decoded caches live (default ``$MUSICZOO_CACHE`` or ``~/.cache/musiczoo``).
        decode_workers: processes decoding files while building the cache (default min(4, CPUs)).
        seed: seed of any random split the subclass draws.
        prepare_data_per_node: build the cache once per node (Lightning's default, for a
            node-local ``cache_dir``); ``False`` builds it once on global rank 0, for a
            ``cache_dir`` on storage that all nodes share.
        min_clip_seconds: clips shorter than this, or than half of ``chunk_seconds`` if that is
            less, are skipped by the cache (named and counted): a crop that is mostly zero padding
            teaches the model silence, not the label, and a clip of half a chunk or more never
            gives one. 0 keeps every clip.
    """

    task: str = "multiclass"
    #: For ``regression``: the (lo, hi) scale every target is served on (e.g. DEAM's 1-9), linked
    #: into the model's spec; None for classification and tagging.
    target_scale: tuple[float, float] | None = None
    #: The dataset's name in provenance, results and cache folder names.
    dataset_name: str = "audio"

    def __init__(
        self,
        root: str,
        sample_rate: int = 22050,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        batch_size: int = 16,
        num_workers: int = 0,
        cache_dir: str | None = None,
        decode_workers: int | None = None,
        seed: int = 0,
        min_clip_seconds: float = 1.0,
        prepare_data_per_node: bool = True,
    ):
        super().__init__()
        # The init arguments of the whole class chain (e.g. a subclass's split), recorded in checkpoints.
        self.save_hyperparameters()
        if chunk_seconds <= 0 or sample_rate <= 0 or batch_size <= 0:
            raise ValueError("chunk_seconds, sample_rate and batch_size must be positive")
        if min_clip_seconds < 0:
            raise ValueError(f"min_clip_seconds must not be negative, got {min_clip_seconds}")
        self.root = Path(root).expanduser()
        self.sample_rate = int(sample_rate)
        self.chunk_seconds = float(chunk_seconds)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.cache_dir = cache_dir
        self.decode_workers = decode_workers
        self.seed = int(seed)
        self.min_clip_seconds = float(min_clip_seconds)
        self.prepare_data_per_node = bool(prepare_data_per_node)
        self.label_names: list[str] = []
        self._clips: dict[str, list[CachedClip]] = {}
        self._audio_file: Path | None = None

    # ---- what a subclass supplies ------------------------------------------------
    def split_items(self) -> dict[str, list[Item]]:
        """Items of each split: keys ``train``, ``val``, ``test`` and optionally ``predict``
        (which defaults to ``test``). Called in ``prepare_data`` and ``setup``."""
        raise NotImplementedError

    # ---- derived -------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def synthetic(self) -> bool:
        """True for data written by ``musiczoo synth`` (see :data:`~datamodules.synthetic_marker.SYNTHETIC_MARKER`)."""
        return is_synthetic(self.root)

    @property
    def split_name(self) -> str:
        """How the clips were split, as results and model cards should name it."""
        raise NotImplementedError

    @property
    def provenance(self) -> dict:
        """Where results come from: ``{"dataset", "split", "synthetic"}``.

        The one owner of these facts: the CLI links it into the task (so checkpoints record
        it), published configs and model cards copy it from there, and the benchmark runner
        reads it for the leaderboard.
        """
        return {"dataset": self.dataset_name, "split": self.split_name, "synthetic": self.synthetic}

    @property
    def chunk_size(self) -> int:
        """Samples per training crop and evaluation chunk."""
        return chunk_samples(self.chunk_seconds, self.sample_rate)

    def _splits_and_cache(self) -> tuple[dict[str, list[Item]], AudioCache]:
        splits = self.split_items()
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split names {sorted(unknown)}; expected a subset of {SPLITS}")
        union: dict[str, Item] = {}
        for name, items in splits.items():
            for it in items:
                self._check_target(it)
                it = Item(it.key, it.source, plain_target(it.target))
                if union.setdefault(it.key, it) != it:
                    raise ValueError(f"clip {it.key!r} appears twice with different sources or targets")
        cache = AudioCache(list(union.values()), sample_rate=self.sample_rate, name=self.dataset_name,
                           cache_dir=self.cache_dir, decode_workers=self.decode_workers,
                           min_seconds=min(self.min_clip_seconds, self.chunk_seconds / 2))
        return splits, cache

    def _check_target(self, it: Item):
        is_index = isinstance(it.target, (int, np.integer))
        if self.task == "multiclass":
            if not (is_index and 0 <= it.target < self.num_classes):
                raise ValueError(f"{it.key}: target {it.target!r} is not a class index below {self.num_classes}")
        elif self.task == "versions":  # the work's index; evaluation works lie past the trained classes
            if not (is_index and it.target >= 0):
                raise ValueError(f"{it.key}: target {it.target!r} is not a work index (an integer >= 0)")
        elif self.task == "regression":
            if is_index or len(it.target) != self.num_classes or not np.isfinite(np.asarray(it.target, float)).all():
                raise ValueError(f"{it.key}: regression target must be {self.num_classes} finite numbers "
                                 f"({', '.join(self.label_names)}), got {it.target!r}")
        elif is_index or len(it.target) != self.num_classes or any(v not in (0, 1) for v in it.target):
            raise ValueError(f"{it.key}: multilabel target must be {self.num_classes} values of 0/1, got {it.target!r}")

    # ---- Lightning hooks -------------------------------------------------------------
    def prepare_data(self):
        self._splits_and_cache()[1].ensure()

    def setup(self, stage: str | None = None):
        splits, cache = self._splits_and_cache()
        by_key = {c.key: c for c in cache.load()}
        self._audio_file = cache.audio_file
        self._clips = {name: [by_key[it.key] for it in items if it.key in by_key] for name, items in splits.items()}
        self._clips.setdefault("predict", self._clips.get("test", []))
        log.info("%s: %s clips", type(self).__name__,
                 ", ".join(f"{name} {len(c)}" for name, c in self._clips.items()))
        short = sum(c.length < self.chunk_size for c in by_key.values())
        if short > len(by_key) / 2:
            log.warning("chunk_seconds %g s is longer than %d of the %d clips of %s: their crops and chunks are "
                        "zero-padded; a shorter chunk_seconds fits this dataset", self.chunk_seconds, short,
                        len(by_key), self.dataset_name)

    def clips(self, split: str) -> list[CachedClip]:
        """The decoded clips of ``split`` (after ``setup``)."""
        if split not in self._clips:
            raise RuntimeError(f"split {split!r} is not available: call prepare_data() and setup() first")
        return self._clips[split]

    def _loader(self, dataset: Dataset, shuffle: bool, collate_fn=None, drop_last: bool = False,
                sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available(), collate_fn=collate_fn)

    def train_dataloader(self) -> DataLoader:
        clips = self.clips("train")
        # A ragged last batch of one clip breaks BatchNorm; keep it only if it is all there is.
        return self._loader(CropDataset(self._audio_file, clips, self.chunk_size), shuffle=True,
                            drop_last=len(clips) > self.batch_size, collate_fn=collate_batch)

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = ChunkDataset(self._audio_file, self.clips(split), self.chunk_size)
        return self._loader(dataset, shuffle=False, collate_fn=collate_chunks)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict")
