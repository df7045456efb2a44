"""Any Hugging Face ``datasets`` dataset with an audio column, decoded through the shared cache.

``datasets`` >= 4 decodes (and even encodes) its ``Audio`` feature through torchcodec,
which needs FFmpeg's shared libraries. We never let it decode: the audio column is cast
to ``Audio(decode=False)``, which yields each file's path or encoded bytes, and those
become the :class:`~datamodules.items.Item` sources that :class:`~datamodules.cache.AudioCache`
decodes with soundfile, exactly like every other data module. The same clip therefore
gives the same samples whichever way it was loaded, and no extra dependency is needed.

:func:`hub_dataset_file` fetches one file of a Hub dataset repository (``musiczoo download``'s
Hub mirrors) after checking that the Hub answers at all, so no network is one quick error.
"""

from __future__ import annotations

import csv
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

import datasets
import numpy as np

from datamodules.primitives.audio_files import list_audio_files

from .base import AudioDataModule
from .folder import stratified_split
from .items import Item

log = logging.getLogger(__name__)

#: Our split -> the names a Hugging Face dataset may give it (the dataset's own words, read from it), first match wins.
SPLIT_ALIASES = {"train": ("train",), "val": ("validation", "valid", "val", "dev"), "test": ("test",)}
_ALL_SPLIT_NAMES = {name for names in SPLIT_ALIASES.values() for name in names}


#: Seconds to wait for the Hub to answer at all before a file is fetched from it.
HUB_PROBE_TIMEOUT = 10.0


def check_reachable(url: str, timeout: float) -> None:
    """Raise ``urllib.error.URLError`` unless the server at ``url`` answers (any HTTP status will
    do), through the same proxy settings as the Hub's own requests. Without a network this fails
    at once, where ``huggingface_hub`` retries five times over 23 s, printing two lines a retry."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "musiczoo"})
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError:
        pass  # it answered
    except urllib.error.URLError:
        raise
    except OSError as e:  # a timeout or reset once connected
        raise urllib.error.URLError(e) from None


def hub_dataset_file(repo: str, filename: str, timeout: float = HUB_PROBE_TIMEOUT) -> str:
    """The local path of ``filename`` of the Hub dataset ``repo``: downloaded when the Hub
    (``HF_ENDPOINT``) answers, else taken from the Hugging Face cache, else the ``URLError``."""
    from huggingface_hub import constants, hf_hub_download

    try:
        check_reachable(constants.ENDPOINT, min(timeout, HUB_PROBE_TIMEOUT))
    except urllib.error.URLError as unreachable:
        try:  # a copy already in the cache needs no network
            return hf_hub_download(repo, filename, repo_type="dataset", local_files_only=True)
        except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), or not a valid repo id
            raise unreachable from None
    return hf_hub_download(repo, filename, repo_type="dataset")


def _column(ds: datasets.Dataset, name: str) -> list:
    """A column's stored values: Arrow format never decodes and honours any row selection."""
    return ds.select_columns([name]).with_format("arrow")[name].to_pylist()


def _splits_of(loaded) -> dict[str, datasets.Dataset]:
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}


def read_audiofolder(root: Path) -> dict[str, datasets.Dataset]:
    """The ``audiofolder`` layout read with public ``datasets`` API only, without decoding or torchcodec.

    ``load_dataset("audiofolder")`` encodes every file through torchcodec in ``datasets`` >= 4,
    even to store a path, so the layout is read here: ``metadata.csv`` / ``metadata.jsonl``
    (a ``file_name`` column plus label columns) in ``root`` or in each split folder; else
    labels from folder names, ``<split>/<label>/<file>`` when the top-level folders are split
    names, ``<label>/<file>`` otherwise. The audio column holds ``{"bytes": None, "path"}`` and
    is cast to ``Audio(decode=False)``, the same Arrow data ``audiofolder`` stores.
    """
    split_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name in _ALL_SPLIT_NAMES]
    parts = {d.name: d for d in split_dirs} or {"train": root}
    splits, labelled_by_folder = {}, True
    for split, folder in parts.items():
        metadata = next((m for base in (folder, root) for m in (base / "metadata.jsonl", base / "metadata.csv")
                         if m.is_file()), None)
        if metadata is not None:
            labelled_by_folder = False
            rows = _read_metadata(metadata)
            base = metadata.parent
            columns = {k: [r.get(k) for r in rows] for k in rows[0] if k != "file_name"} if rows else {}
            paths = [str(base / r["file_name"]) for r in rows]
        else:
            files = list_audio_files(folder)
            paths = [str(f) for f in files]
            columns = {"label": [f.relative_to(folder).parts[0] for f in files]}
            if any(len(f.relative_to(folder).parts) < 2 for f in files):
                raise ValueError(f"{folder}: audio files directly in the folder have no label folder and there "
                                 f"is no metadata.csv/metadata.jsonl naming their labels")
        ds = datasets.Dataset.from_dict({"audio": [{"bytes": None, "path": p} for p in paths], **columns})
        splits[split] = ds.cast_column("audio", datasets.Audio(decode=False))
    if labelled_by_folder:  # folder names are class labels, as audiofolder makes them
        names = sorted({v for ds in splits.values() for v in ds["label"]})
        splits = {k: ds.cast_column("label", datasets.ClassLabel(names=names)) for k, ds in splits.items()}
    return splits


def _read_metadata(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    if rows and "file_name" not in rows[0]:
        raise ValueError(f"{path}: no file_name column")
    return rows


def load_hf(source: str, *, hub_config: str | None = None, cache_dir: str | None = None) -> dict[str, datasets.Dataset]:
    """The splits of a dataset given as a ``save_to_disk`` folder, an ``audiofolder`` folder or a hub id.

    * a folder written by ``Dataset(Dict).save_to_disk`` (it holds ``dataset_dict.json`` or
      ``state.json``): ``datasets.load_from_disk``;
    * any other folder: the ``audiofolder`` layout (:func:`read_audiofolder`);
    * anything else is a Hub id (``owner/name``), optionally with a ``hub_config``; needs network.
      Hub datasets stored as Parquet/Arrow (most are) load as they are; a Hub repository of
      plain audio files is fetched with ``huggingface_hub.snapshot_download`` and read as an
      ``audiofolder``.

    A plain ``Dataset`` becomes the single split ``train``.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return _splits_of(datasets.load_from_disk(str(path)))
        return read_audiofolder(path)
    if source.startswith((".", "/", "~")) or path.exists():
        raise FileNotFoundError(f"{source} is not a folder (expected a save_to_disk or audiofolder folder, "
                                "or a hub id)")
    try:
        builder = datasets.load_dataset_builder(source, hub_config, cache_dir=cache_dir)
        if builder.name == "audiofolder":
            from huggingface_hub import snapshot_download

            return read_audiofolder(Path(snapshot_download(source, repo_type="dataset", cache_dir=cache_dir)))
        builder.download_and_prepare()
    except Exception as e:
        raise RuntimeError(f"{source!r} is not a local folder and could not be loaded from the Hugging Face "
                           f"Hub: {type(e).__name__}: {e}") from e
    return _splits_of(builder.as_dataset())


class HFDataModule(AudioDataModule):
    """A Hugging Face dataset: an audio column plus the labels, as a multiclass or multilabel task.

    Args:
        root: a ``save_to_disk`` folder, an ``audiofolder`` folder or a Hub id (see :func:`load_hf`).
        audio_column: the ``Audio`` column.
        label_column: one column, or several 0/1 columns. One ``ClassLabel``, integer or string
            column is a multiclass task (names: the ClassLabel's, ``0..max`` for integers, the
            sorted values for strings); one list column (of ``ClassLabel`` or of strings) is a
            multilabel task over its tags; several columns are a multilabel task named by them.
        hub_config: the dataset configuration, for Hub datasets that have several.
        val_fraction, test_fraction: share of the ``train`` split drawn (stratified by class, seeded)
            as validation / test set when the dataset has no such split of its own.

    The dataset's own ``train`` / ``validation`` (or ``valid``, ``val``, ``dev``) / ``test`` splits
    are used when present; other splits are ignored. Clip keys are ``<dataset split>/<row index>``:
    unique, and stable while the dataset is unchanged. Sources are the embedded bytes when the
    dataset stores them, else the file path. The dataset is opened in ``__init__`` (memory-mapped,
    no audio is read) because the label names size the model. The other arguments are
    :class:`~datamodules.base.AudioDataModule`'s.
    """

    dataset_name = "hf"

    def __init__(
        self,
        root: str,
        audio_column: str = "audio",
        label_column: str | list[str] = "label",
        hub_config: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        **kwargs,
    ):
        super().__init__(root, **kwargs)
        self.source = str(root)
        self.audio_column = audio_column
        self.label_columns = [label_column] if isinstance(label_column, str) else list(label_column)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        hf_cache = str(Path(self.cache_dir).expanduser() / "hf_datasets") if self.cache_dir else None
        self.hf_dataset = load_hf(self.source, hub_config=hub_config, cache_dir=hf_cache)
        self._check_columns()
        self.task, self.label_names = self._label_space()

    # ---- labels ------------------------------------------------------------------------
    def _check_columns(self):
        for split, ds in self.hf_dataset.items():
            for column in (self.audio_column, *self.label_columns):
                if column not in ds.column_names:
                    role = "audio" if column == self.audio_column else "label"
                    raise KeyError(f"{self.source}: split {split!r} has no {role} column {column!r}; "
                                   f"its columns are {ds.column_names}")
            if not isinstance(ds.features[self.audio_column], datasets.Audio):
                raise TypeError(f"{self.source}: column {self.audio_column!r} is "
                                f"{ds.features[self.audio_column]}, not an Audio feature")

    def _feature(self) -> datasets.features.features.FeatureType:
        return next(iter(self.hf_dataset.values())).features[self.label_columns[0]]

    def _values(self, column: str) -> list:
        return [v for ds in self.hf_dataset.values() for v in _column(ds, column)]

    def _label_space(self) -> tuple[str, list[str]]:
        """(task, label names), from the label features and, for plain values, the data."""
        if len(self.label_columns) > 1:
            return "multilabel", list(self.label_columns)
        column, feature = self.label_columns[0], self._feature()
        if isinstance(feature, datasets.ClassLabel):
            return "multiclass", list(feature.names)
        if isinstance(feature, (datasets.List, datasets.LargeList)):
            inner = feature.feature
            if isinstance(inner, datasets.ClassLabel):
                return "multilabel", list(inner.names)
            if isinstance(inner, datasets.Value) and inner.dtype in ("string", "large_string"):
                return "multilabel", sorted({t for tags in self._values(column) for t in tags or []})
        if isinstance(feature, datasets.Value):
            if feature.dtype in ("string", "large_string"):
                return "multiclass", sorted(set(self._values(column)))
            if feature.dtype.startswith(("int", "uint")):
                return "multiclass", [str(i) for i in range(max(self._values(column)) + 1)]
        raise TypeError(f"{self.source}: label column {column!r} has feature {feature}; expected a ClassLabel, "
                        f"int or string column (multiclass), a list of tags, or several 0/1 columns (multilabel)")

    def _targets(self, ds: datasets.Dataset) -> list:
        """Each row's target: a class index, or a 0/1 list over ``label_names``."""
        columns = [_column(ds, c) for c in self.label_columns]
        if len(columns) > 1:
            return [[int(v) for v in row] for row in zip(*columns)]
        (values,) = columns
        feature = ds.features[self.label_columns[0]]
        if self.task == "multiclass":
            if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
                return [self.label_names.index(v) for v in values]
            return [int(v) for v in values]  # ClassLabel stores the index
        index = {name: i for i, name in enumerate(self.label_names)}
        targets = []
        for tags in values:
            row = [0] * len(index)
            for tag in tags or []:
                row[tag if isinstance(tag, int) else index[tag]] = 1
            targets.append(row)
        return targets

    # ---- splits ------------------------------------------------------------------------
    def _items(self, split: str) -> list[Item]:
        ds = self.hf_dataset[split]
        audio = _column(ds.cast_column(self.audio_column, datasets.Audio(decode=False)), self.audio_column)
        items, missing = [], []
        for row, (a, target) in enumerate(zip(audio, self._targets(ds))):
            source = (a or {}).get("bytes") or (a or {}).get("path")
            if isinstance(source, str) and not Path(source).is_file():
                missing.append(source)
            items.append(Item(f"{split}/{row}", source, target))
        if missing:
            raise FileNotFoundError(f"{len(missing)} audio files of split {split!r} of {self.source} are missing: "
                                    f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
        return items

    def _own_splits(self) -> dict[str, str | None]:
        """Our split name -> the dataset's name for it, or None where it has none."""
        return {ours: next((n for n in names if n in self.hf_dataset), None) for ours, names in SPLIT_ALIASES.items()}

    @property
    def split_name(self) -> str:
        drawn = [f"{ours}={fraction:g}" for ours, fraction in (("val", self.val_fraction), ("test", self.test_fraction))
                 if self._own_splits()[ours] is None]
        return "own" if not drawn else f"own+random({','.join(drawn)},seed={self.seed})"

    def split_items(self) -> dict[str, list[Item]]:
        own = self._own_splits()
        if own["train"] is None:
            raise ValueError(f"{self.source} has no 'train' split; its splits are {sorted(self.hf_dataset)}")
        ignored = sorted(set(self.hf_dataset) - set(own.values()))
        if ignored:
            log.info("%s: ignoring splits %s", self.source, ignored)
        splits = {ours: self._items(name) for ours, name in own.items() if name is not None}
        if own["val"] is None or own["test"] is None:
            train = splits["train"]
            # Multilabel rows have no single class to stratify by: a plain seeded random split.
            strata = np.array([t if self.task == "multiclass" else 0 for t in (it.target for it in train)])
            parts = stratified_split(strata, self.val_fraction if own["val"] is None else 0.0,
                                     self.test_fraction if own["test"] is None else 0.0, self.seed)
            drawn = dict(zip(("train", "val", "test"), ([train[i] for i in idx] for idx in parts)))
            splits["train"] = drawn["train"]
            for name in ("val", "test"):
                splits.setdefault(name, drawn[name])
        return splits
