"""HFDataModule: save_to_disk and audiofolder sources, multiclass and multilabel, offline.

The datasets are written with ``datasets`` itself. ``datasets`` >= 4 needs torchcodec to
*encode* an ``Audio`` column from Python values, so the tests build plain ``{"bytes", "path"}``
columns and cast them to ``Audio`` (the Arrow layout is the same as an encoded one).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, List, Value

import datamodules.cache as audio_cache
import datamodules.hf as hf
from datamodules.hf import HFDataModule

SR = 8000
GENRES = ["jazz", "rock", "techno"]


def _tone(i: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 200 * (1 + i % 7) * t)).astype(np.float32)


def _encoded(y: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format=fmt)
    return buf.getvalue()


def _audio_column(n: int, offset: int = 0, fmt: str = "WAV") -> list[dict]:
    return [{"bytes": _encoded(_tone(offset + i), fmt), "path": f"clip{offset + i}.{fmt.lower()}"} for i in range(n)]


def _module(root, tmp_path, **kw) -> HFDataModule:
    kw = {"sample_rate": SR, "chunk_seconds": 0.25, "batch_size": 4, "decode_workers": 1,
          "cache_dir": str(tmp_path / "cache"), **kw}
    return HFDataModule(str(root), **kw)


def _keys(dm: HFDataModule) -> dict[str, list[str]]:
    return {name: [it.key for it in items] for name, items in dm.split_items().items()}


# ---- save_to_disk -----------------------------------------------------------------------------
@pytest.fixture()
def multiclass_on_disk(tmp_path) -> Path:
    """train/validation/test, ClassLabel labels, audio embedded as WAV, FLAC and MP3 bytes."""
    features = Features({"audio": Audio(), "label": ClassLabel(names=GENRES)})
    splits = {}
    for k, (name, n, fmt) in enumerate((("train", 6, "WAV"), ("validation", 3, "FLAC"), ("test", 3, "MP3"))):
        rows = {"audio": _audio_column(n, 10 * k, fmt), "label": [i % 3 for i in range(n)]}
        splits[name] = Dataset.from_dict(rows).cast(features)
    DatasetDict(splits).save_to_disk(tmp_path / "on_disk")
    return tmp_path / "on_disk"


def test_save_to_disk_multiclass_uses_its_own_splits(multiclass_on_disk, tmp_path):
    dm = _module(multiclass_on_disk, tmp_path)
    assert (dm.task, dm.label_names, dm.num_classes) == ("multiclass", GENRES, 3)
    items = dm.split_items()
    assert {k: len(v) for k, v in items.items()} == {"train": 6, "val": 3, "test": 3}
    assert [it.key for it in items["val"]] == ["validation/0", "validation/1", "validation/2"]
    assert [it.target for it in items["train"]] == [0, 1, 2, 0, 1, 2]
    assert all(isinstance(it.source, bytes) for v in items.values() for it in v)

    dm.prepare_data()
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    assert batch["target"].tolist() == [0, 1, 2] and batch["key"] == ["validation/0", "validation/1", "validation/2"]
    # The bytes were decoded by soundfile into the shared cache: the samples are the file's.
    first = dm.clips("val")[0]
    cached = np.memmap(dm._audio_file, dtype=audio_cache.CACHE_DTYPE, mode="r")[first.offset:first.offset + first.length]
    np.testing.assert_allclose(cached.astype(np.float32), _tone(10), atol=1e-3)


def test_keys_are_stable_and_the_cache_is_reused(multiclass_on_disk, tmp_path, monkeypatch):
    first = _module(multiclass_on_disk, tmp_path)
    first.prepare_data()
    monkeypatch.setattr(audio_cache.AudioCache, "build", lambda self: pytest.fail("the cache was rebuilt"))
    again = _module(multiclass_on_disk, tmp_path)
    again.prepare_data()
    again.setup()
    assert _keys(again) == _keys(first) and len(again.clips("train")) == 6


def test_save_to_disk_multilabel_columns_without_own_splits(tmp_path):
    """Several 0/1 columns -> multilabel; a single Dataset is split (seeded) into train/val/test."""
    n = 20
    rng = np.random.default_rng(0)
    flags = {tag: rng.integers(0, 2, n).tolist() for tag in ("guitar", "piano", "vocals")}
    names = list(flags)
    as_list = [[k for k, tag in enumerate(names) if flags[tag][i]] for i in range(n)]  # the same tags as a list
    features = Features({"sound": Audio(), **{tag: Value("int64") for tag in flags}, "title": Value("string"),
                         "tags": List(ClassLabel(names=names))})
    rows = {"sound": _audio_column(n), **flags, "title": [f"song {i}" for i in range(n)], "tags": as_list}
    Dataset.from_dict(rows).cast(features).save_to_disk(tmp_path / "tags")

    dm = _module(tmp_path / "tags", tmp_path, audio_column="sound", label_column=["guitar", "piano", "vocals"],
                 val_fraction=0.2, test_fraction=0.25, seed=3)
    assert (dm.task, dm.label_names) == ("multilabel", ["guitar", "piano", "vocals"])
    items = dm.split_items()
    assert {k: len(v) for k, v in items.items()} == {"train": 11, "val": 4, "test": 5}
    everything = {it.key: it.target for v in items.values() for it in v}
    assert sorted(everything) == sorted(f"train/{i}" for i in range(n))
    assert everything["train/7"] == [flags["guitar"][7], flags["piano"][7], flags["vocals"][7]]
    assert _keys(dm) == _keys(_module(tmp_path / "tags", tmp_path, audio_column="sound", seed=3,
                                      label_column=["guitar", "piano", "vocals"], val_fraction=0.2, test_fraction=0.25))
    listed = _module(tmp_path / "tags", tmp_path, audio_column="sound", label_column="tags", seed=3)
    assert (listed.task, listed.label_names) == ("multilabel", names)
    assert {it.key: it.target for v in listed.split_items().values() for it in v} == everything

    dm.prepare_data()
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape == (4, SR // 4) and batch["target"].shape == (4, 3)
    assert batch["target"].dtype == torch.float32


def test_missing_columns_name_the_column_and_list_the_available_ones(multiclass_on_disk, tmp_path):
    with pytest.raises(KeyError, match=r"no audio column 'sound'.*\['audio', 'label'\]"):
        _module(multiclass_on_disk, tmp_path, audio_column="sound")
    with pytest.raises(KeyError, match=r"no label column 'genre'.*\['audio', 'label'\]"):
        _module(multiclass_on_disk, tmp_path, label_column="genre")


def test_unusable_label_column_is_a_clear_error(tmp_path):
    features = Features({"audio": Audio(), "tempo": Value("float32")})
    Dataset.from_dict({"audio": _audio_column(2), "tempo": [90.0, 120.0]}).cast(features).save_to_disk(tmp_path / "d")
    with pytest.raises(TypeError, match="label column 'tempo'"):
        _module(tmp_path / "d", tmp_path, label_column="tempo")


# ---- audiofolder ------------------------------------------------------------------------------
def _write_wav(path: Path, i: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tone(i), SR)


def test_audiofolder_labels_from_folders(tmp_path):
    """``<split>/<label>/<file>``: labels are the folder names, sources the file paths."""
    root = tmp_path / "af"
    for i in range(12):
        _write_wav(root / "train" / GENRES[i % 3] / f"{i:02d}.wav", i)
    for i in range(3):
        _write_wav(root / "test" / GENRES[i] / f"t{i}.wav", 20 + i)
    dm = _module(root, tmp_path, val_fraction=0.25)
    assert (dm.task, dm.label_names) == ("multiclass", GENRES)
    items = dm.split_items()
    assert {k: len(v) for k, v in items.items()} == {"train": 9, "val": 3, "test": 3}
    assert sorted(it.target for it in items["val"]) == [0, 1, 2]  # stratified
    for it in items["test"]:
        assert Path(it.source).is_file() and Path(it.source).parent.name == GENRES[it.target]

    dm.prepare_data()
    dm.setup()
    assert len(dm.clips("train")) == 9 and next(iter(dm.test_dataloader()))["target"].tolist() == [0, 1, 2]


def test_audiofolder_metadata_tags_and_string_labels(tmp_path):
    """``metadata.jsonl``: a list-of-tags column is multilabel, a string column multiclass."""
    root = tmp_path / "af"
    records = []
    for i in range(8):
        _write_wav(root / "clips" / f"c{i}.wav", i)
        tags = [t for t, on in (("calm", i % 2), ("drums", i % 3 == 0), ("voice", i >= 4)) if on]
        records.append({"file_name": f"clips/c{i}.wav", "tags": tags, "genre": GENRES[i % 3]})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    tags = _module(root, tmp_path, label_column="tags", val_fraction=0.25, test_fraction=0.25)
    assert (tags.task, tags.label_names) == ("multilabel", ["calm", "drums", "voice"])
    targets = {it.key: it.target for v in tags.split_items().values() for it in v}
    assert targets["train/3"] == [1, 1, 0] and targets["train/4"] == [0, 0, 1] and targets["train/5"] == [1, 0, 1]

    genre = _module(root, tmp_path, label_column="genre", val_fraction=0.25, test_fraction=0.25)
    assert (genre.task, genre.label_names) == ("multiclass", GENRES)
    assert {it.key: it.target for v in genre.split_items().values() for it in v}["train/5"] == 2
    genre.prepare_data()
    genre.setup()
    assert sum(len(genre.clips(s)) for s in ("train", "val", "test")) == 8


def test_audiofolder_without_torchcodec_support(tmp_path):
    """The environment has no torchcodec, which plain ``load_dataset("audiofolder")`` needs in datasets >= 4."""
    _write_wav(tmp_path / "af" / "jazz" / "a.wav", 0)
    _write_wav(tmp_path / "af" / "rock" / "b.wav", 1)
    if int(datasets.__version__.split(".")[0]) >= 4 and not datasets.config.TORCHCODEC_AVAILABLE:
        with pytest.raises(Exception):
            datasets.load_dataset("audiofolder", data_dir=str(tmp_path / "af"), cache_dir=str(tmp_path / "plain"))
    splits = hf.load_hf(str(tmp_path / "af"), cache_dir=str(tmp_path / "hf"))
    assert list(splits) == ["train"] and splits["train"].num_rows == 2


# ---- hub ids and bad sources --------------------------------------------------------------------
def test_hub_id_goes_to_the_hub_loader(tmp_path, monkeypatch):
    """Offline stand-in for the Hub: a Parquet-backed dataset (how most Hub datasets are stored);
    the id and config reach ``load_dataset_builder`` unchanged and nothing is decoded."""
    rows = []
    for i in range(6):
        _write_wav(tmp_path / "files" / f"{i}.wav", i)
        rows.append({"audio": {"bytes": (tmp_path / "files" / f"{i}.wav").read_bytes(), "path": f"{i}.wav"},
                     "label": i % 2})
    features = Features({"audio": Audio(decode=False), "label": ClassLabel(names=GENRES[:2])})
    Dataset.from_list(rows).cast(features).to_parquet(str(tmp_path / "train.parquet"))
    calls = []
    real = datasets.load_dataset_builder

    def fake(path, name=None, **kw):
        calls.append((path, name))
        return real("parquet", data_files={"train": str(tmp_path / "train.parquet")}, **kw)

    monkeypatch.setattr(datasets, "load_dataset_builder", fake)
    dm = HFDataModule("someone/music-genres", hub_config="small", sample_rate=SR, cache_dir=str(tmp_path / "c"),
                      val_fraction=0.34, test_fraction=0.34)
    assert calls == [("someone/music-genres", "small")] and dm.label_names == GENRES[:2]
    items = dm.split_items()
    assert {k: len(v) for k, v in items.items()} == {"train": 2, "val": 2, "test": 2}
    assert all(isinstance(it.source, bytes) for v in items.values() for it in v)  # embedded bytes, never decoded


def test_bad_sources(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        HFDataModule(str(tmp_path / "nowhere"))

    def offline(*args, **kw):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset_builder", offline)
    with pytest.raises(RuntimeError, match="'someone/music' is not a local folder and could not be loaded"):
        HFDataModule("someone/music")
