"""Any folder-per-class collection: ``<root>/<label>/<file>`` in any format soundfile reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.primitives.audio_files import AUDIO_EXTENSIONS, list_audio_files

from .base import AudioDataModule
from .items import Item


def read_split_list(path: str | Path) -> list[str]:
    """Entries of a split list: one relative path per line; blank lines and ``#`` comments ignored."""
    lines = Path(path).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def stratified_split(targets: np.ndarray, val_fraction: float, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train/val/test with each class split in the same proportions.

    Each class is shuffled with its own seeded generator, so adding files to one class does
    not reshuffle the others.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"need 0 <= val_fraction, test_fraction and val + test < 1, "
                         f"got {val_fraction}, {test_fraction}")
    parts: tuple[list, list, list] = ([], [], [])
    for label in np.unique(targets):
        idx = np.flatnonzero(targets == label)
        np.random.default_rng([seed, int(label)]).shuffle(idx)
        n_test, n_val = round(len(idx) * test_fraction), round(len(idx) * val_fraction)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    return tuple(np.sort(np.concatenate(p)) if p else np.array([], int) for p in parts)


def stratified_folds(targets: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) of each item: every class spread as evenly as possible over the folds.

    Classes are shuffled, then laid end to end and dealt round-robin, so fold sizes differ by
    at most one and so do the per-class counts within each fold.
    """
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(targets == c)) for c in np.unique(targets)])
    folds = np.empty(len(targets), dtype=np.int64)
    folds[order] = np.arange(len(order)) % k
    return folds


class FolderDataModule(AudioDataModule):
    """Clips in ``<root>/<label>/...``, one folder per class, any format soundfile reads.

    Labels are the sub-folders of ``root`` that contain audio (sorted), or ``labels`` in the
    given order. Splits are either the three user lists (one path relative to ``root`` per
    line, e.g. ``jazz/take5.flac``; the first folder is the label) or, without lists, a
    seeded stratified random split by ``val_fraction`` / ``test_fraction``.

    Clip keys are the paths relative to ``root``. The other arguments are
    :class:`~datamodules.base.AudioDataModule`'s.
    """

    dataset_name = "folder"

    def __init__(
        self,
        root: str,
        labels: list[str] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        train_list: str | None = None,
        val_list: str | None = None,
        test_list: str | None = None,
        **kwargs,
    ):
        super().__init__(root, **kwargs)
        lists = (train_list, val_list, test_list)
        if any(lists) and not all(lists):
            raise ValueError("give all three of train_list, val_list and test_list, or none")
        self.split_lists = dict(zip(("train", "val", "test"), lists)) if all(lists) else None
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        # Known at construction: the model's output size is linked from num_classes.
        self.label_names = list(labels) if labels else self._discover_labels()

    @property
    def data_dir(self) -> Path:
        """The folder holding the label folders."""
        return self.root

    def _discover_labels(self) -> list[str]:
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"dataset folder {self.data_dir} does not exist")
        labels = sorted(d.name for d in self.data_dir.iterdir() if d.is_dir() and list_audio_files(d))
        if not labels:
            raise FileNotFoundError(f"no <label>/<audio file> folders under {self.data_dir} "
                                    f"(audio = {', '.join(AUDIO_EXTENSIONS)})")
        return labels

    def scan(self) -> list[Item]:
        """Every audio file of every label folder, in label then path order."""
        items = []
        for target, label in enumerate(self.label_names):
            folder = self.data_dir / label
            if not folder.is_dir():
                raise FileNotFoundError(f"label folder {folder} does not exist")
            items += [Item(p.relative_to(self.data_dir).as_posix(), str(p), target) for p in list_audio_files(folder)]
        return items

    @property
    def split_name(self) -> str:
        if self.split_lists:
            return "lists:" + ",".join(Path(p).name for p in self.split_lists.values())
        return f"random(val={self.val_fraction:g},test={self.test_fraction:g},seed={self.seed})"

    def locate(self, entry: str) -> str:
        """Relative path on disk of a split-list entry (identity here; GTZAN maps extensions)."""
        return entry

    def items_from_list(self, entries: list[str], source: str) -> list[Item]:
        """Items named by a split list; every named file must exist (``source`` names the list in errors)."""
        items, missing = [], []
        for entry in entries:
            rel = self.locate(entry)
            label = rel.split("/", 1)[0]
            if label not in self.label_names:
                raise ValueError(f"{source}: {entry!r} is not under one of the label folders {self.label_names}")
            path = self.data_dir / rel
            if path.is_file():
                items.append(Item(rel, str(path), self.label_names.index(label)))
            else:
                missing.append(rel)
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of the {len(entries)} files named by {source} are missing under "
                f"{self.data_dir}: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
        return items

    def split_items(self) -> dict[str, list[Item]]:
        if self.split_lists:
            return {name: self.items_from_list(read_split_list(path), str(path))
                    for name, path in self.split_lists.items()}
        items = self.scan()
        parts = stratified_split(np.array([it.target for it in items]), self.val_fraction,
                                 self.test_fraction, self.seed)
        return {name: [items[i] for i in idx] for name, idx in zip(("train", "val", "test"), parts)}
