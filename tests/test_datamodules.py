"""Data modules: GTZAN layouts and splits, folder datasets, the decode cache, the batch contract."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import datamodules.cache as audio_cache
from datamodules.base import AudioDataModule
from datamodules.cache import AudioCache
from datamodules.folder import FolderDataModule
from datamodules.gtzan import GENRES, GTZANDataModule, artist_split, split_list
from datamodules.items import Item
from datamodules.primitives.chunks import chunk_starts
from datamodules.split_lists import MissingListError
from datamodules.synthetic import make_synthetic_gtzan

# Per-genre counts of the fault-filtered split (shared/data README), genres in GENRES order.
FILTERED_COUNTS = {
    "train": [46, 48, 45, 42, 47, 43, 44, 41, 43, 44],
    "val": [23, 20, 23, 22, 18, 17, 20, 13, 17, 24],
    "test": [31, 31, 30, 29, 27, 27, 27, 30, 26, 32],
}
EMPTY = "jazz/jazz.00054.wav"  # empty in the re-release fixture, as in the real one


def genre_counts(items_or_clips) -> list[int]:
    counts = Counter(x.target for x in items_or_clips)
    return [counts[g] for g in range(len(GENRES))]


def tone(seconds: float, sr: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def skip_messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name in ("datamodules.base", "datamodules.cache") and r.levelno == logging.WARNING]


@pytest.fixture
def count_decodes(monkeypatch):
    """Counts calls of the per-file decoder (use decode_workers=1 so they run in this process)."""
    calls = []

    def counting(job):
        calls.append(job[0])
        return real(job)

    real = audio_cache._decode
    monkeypatch.setattr(audio_cache, "_decode", counting)
    return calls


# ---- GTZAN ------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["rerelease", "original"])
def test_gtzan_fault_filtered_split_in_both_layouts(layout, request, tmp_path, caplog, tree_rate):
    root = request.getfixturevalue(f"gtzan_{layout}")
    caplog.set_level(logging.INFO)
    dm = GTZANDataModule(str(root), sample_rate=tree_rate, chunk_seconds=0.5, cache_dir=str(tmp_path), decode_workers=2)
    assert (dm.task, dm.num_classes, dm.label_names) == ("multiclass", 10, list(GENRES))
    ext = ".wav" if layout == "rerelease" else ".au"
    assert dm.data_dir == root / ("genres_original" if layout == "rerelease" else "genres")

    items = dm.split_items()
    assert {k: len(v) for k, v in items.items()} == {"train": 443, "val": 197, "test": 290}
    for name, counts in FILTERED_COUNTS.items():
        assert genre_counts(items[name]) == counts
    assert all(it.key.endswith(ext) and Path(it.source).is_file() for v in items.values() for it in v)
    assert not set.intersection(*({it.key for it in v} for v in items.values()))

    dm.prepare_data()
    dm.setup("fit")
    clips = {name: dm.clips(name) for name in ("train", "val", "test", "predict")}
    skipped = [m for m in skip_messages(caplog) if m.startswith("skipping")]
    if layout == "rerelease":  # the empty jazz.00054.wav (a training file) is skipped, named once
        assert len(skipped) == 1 and EMPTY in skipped[0] and "empty" in skipped[0]
        assert any(m.startswith("skipped 1 of 930 files") and EMPTY in m for m in skip_messages(caplog))
        expected_train = [c - (g == GENRES.index("jazz")) for g, c in enumerate(FILTERED_COUNTS["train"])]
    else:
        assert skipped == []
        expected_train = FILTERED_COUNTS["train"]
    assert genre_counts(clips["train"]) == expected_train
    assert genre_counts(clips["val"]) == FILTERED_COUNTS["val"]
    assert genre_counts(clips["test"]) == FILTERED_COUNTS["test"]
    assert clips["predict"] == clips["test"]
    assert all(c.length == tree_rate for c in clips["test"])  # 1 s clips


def test_gtzan_fault_filtered_split_comes_from_torchaudio(gtzan_rerelease, tree_rate):
    lists = {part: split_list("fault_filtered", part) for part in ("train", "val", "test")}
    assert {part: len(entries) for part, entries in lists.items()} == {"train": 443, "val": 197, "test": 290}
    assert all(re.fullmatch(r"(\w+)/\1\.\d{5}\.wav", e) for entries in lists.values() for e in entries)
    assert len(set().union(*lists.values())) == 930  # no overlap
    items = GTZANDataModule(str(gtzan_rerelease), sample_rate=tree_rate).split_items()
    assert {part: [it.key for it in items[part]] for part in lists} == lists


def test_gtzan_fault_filtered_split_is_the_published_one(shared_data):
    for part, word in (("train", "train"), ("val", "valid"), ("test", "test")):
        assert split_list("fault_filtered", part) == (shared_data / "gtzan" / f"{word}_filtered.txt").read_text().split()


def test_gtzan_stratified_split_is_read_beside_the_data(gtzan_original, shared_data, tmp_path, tree_rate):
    """The lists as ``musiczoo download gtzan`` stores them (here: the real ones, copied)."""
    root = Path(shutil.copytree(gtzan_original, tmp_path / "gtzan", ignore=shutil.ignore_patterns("splits")))
    (root / "splits").mkdir()
    for word in ("train", "valid", "test"):
        shutil.copyfile(shared_data / "gtzan" / f"{word}_stratified.txt", root / "splits" / f"{word}_stratified.txt")
    items = GTZANDataModule(str(root / "genres"), split="stratified", sample_rate=tree_rate).split_items()
    for part, word in (("train", "train"), ("val", "valid"), ("test", "test")):
        real = (shared_data / "gtzan" / f"{word}_stratified.txt").read_text().split()
        assert [it.key for it in items[part]] == [e.replace(".wav", ".au") for e in real]
        assert genre_counts(items[part]) == [50 if part == "train" else 25] * 10


def test_gtzan_stratified_split_without_its_lists_is_one_line(gtzan_original, tmp_path):
    root = Path(shutil.copytree(gtzan_original, tmp_path / "gtzan", ignore=shutil.ignore_patterns("splits")))
    with pytest.raises(MissingListError) as raised:
        GTZANDataModule(str(root), split="stratified").prepare_data()
    assert str(raised.value) == (f"GTZAN stratified split needs its lists (train_stratified.txt is not in "
                                 f"{root / 'splits'}): run musiczoo download gtzan --root DIR (or --lists-only)")


def test_synthetic_gtzan_writes_stratified_lists_of_the_literature_s_sizes(gtzan_rerelease):
    lists = {part: split_list("stratified", part, [gtzan_rerelease]) for part in ("train", "val", "test")}
    assert {part: len(entries) for part, entries in lists.items()} == {"train": 500, "val": 250, "test": 250}
    assert len(set().union(*lists.values())) == 1000
    for part, entries in lists.items():
        assert Counter(e.split("/")[0] for e in entries) == {g: len(entries) // 10 for g in GENRES}


def test_gtzan_reused_cache_reports_the_skipped_file_again(gtzan_rerelease, tmp_path, caplog, count_decodes, tree_rate):
    kwargs = dict(sample_rate=tree_rate, cache_dir=str(tmp_path), decode_workers=1, split="stratified")
    GTZANDataModule(str(gtzan_rerelease), **kwargs).prepare_data()
    assert len(count_decodes) == 1000
    caplog.clear()
    dm = GTZANDataModule(str(gtzan_rerelease), **kwargs)
    dm.prepare_data()
    assert len(count_decodes) == 1000  # nothing decoded the second time
    (summary,) = skip_messages(caplog)
    assert summary.startswith("skipped 1 of 1000 files") and EMPTY in summary
    dm.setup()
    assert {n: len(dm.clips(n)) for n in ("train", "val", "test")} == {"train": 499, "val": 250, "test": 250}


def test_gtzan_root_may_be_the_genre_folder(gtzan_original):
    dm = GTZANDataModule(str(gtzan_original / "genres"), split="stratified")
    assert dm.layout == (gtzan_original / "genres", ".au")
    assert {k: len(v) for k, v in dm.split_items().items()} == {"train": 500, "val": 250, "test": 250}


def test_gtzan_without_data_says_what_it_found(tmp_path):
    (tmp_path / "mtat").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    dm = GTZANDataModule(str(tmp_path))  # constructing never touches the disk
    with pytest.raises(FileNotFoundError, match=r"no GTZAN data under .*found 2 entries: mtat/, notes.txt"):
        dm.prepare_data()
    with pytest.raises(FileNotFoundError, match="no such folder"):
        GTZANDataModule(str(tmp_path / "absent")).split_items()


def test_gtzan_files_missing_from_disk_are_an_error_listing_them(tmp_path):
    make_synthetic_gtzan(tmp_path, seconds=0.05, sample_rate=8000, clips_per_genre=30)
    missing = [e for e in split_list("fault_filtered", "train") if int(e[-9:-4]) >= 30]
    dm = GTZANDataModule(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert f"{len(missing)} of the 443 files named by the GTZAN fault_filtered train list are missing" in message
    assert missing[0] in message and missing[4] in message and missing[5] not in message
    assert not (tmp_path / "cache").exists()


def test_gtzan_kfold_is_disjoint_stratified_and_seeded(gtzan_original):
    tests = []
    for fold in range(10):
        split = GTZANDataModule(str(gtzan_original), split="kfold", k=10, fold=fold).split_items()
        keys = {name: {it.key for it in items} for name, items in split.items()}
        assert not (keys["train"] & keys["val"] or keys["train"] & keys["test"] or keys["val"] & keys["test"])
        assert len(keys["train"] | keys["val"] | keys["test"]) == 1000
        assert genre_counts(split["test"]) == [10] * 10 and genre_counts(split["val"]) == [10] * 10
        assert genre_counts(split["train"]) == [80] * 10
        tests.append(keys)
    for fold in range(10):  # test folds partition the data; validation is the next fold
        assert tests[fold]["val"] == tests[(fold + 1) % 10]["test"]
    assert set.union(*(t["test"] for t in tests)) == tests[0]["train"] | tests[0]["val"] | tests[0]["test"]
    other_seed = GTZANDataModule(str(gtzan_original), split="kfold", seed=1).split_items()
    assert {it.key for it in other_seed["test"]} != tests[0]["test"]
    with pytest.raises(ValueError, match="k >= 3"):
        GTZANDataModule(str(gtzan_original), split="kfold", k=10, fold=10)


# ---- folder datasets --------------------------------------------------------------------
MIXED = {  # name -> (seconds, sample rate, channels, soundfile format)
    "a.wav": (1.0, 8000, 1, "WAV"), "b.flac": (1.0, 22050, 2, "FLAC"),
    "c.ogg": (1.0, 44100, 2, "OGG"), "d.mp3": (1.0, 24000, 1, "MP3"),
}


def write_mixed_tree(root: Path, labels=("jazz", "rock", "pop")) -> Path:
    for k, label in enumerate(labels):
        for name, (seconds, sr, channels, fmt) in MIXED.items():
            (root / label).mkdir(parents=True, exist_ok=True)
            sf.write(root / label / name, tone(seconds, sr, channels, freq=220 * (k + 1)), sr, format=fmt)
    (root / "jazz" / "cover.jpg").write_bytes(b"not audio")  # ignored: not an audio extension
    (root / "rock" / "._a.wav").write_bytes(b"mac metadata")  # ignored: hidden
    return root


def test_folder_mixed_formats_and_stratified_split(tmp_path, caplog):
    root = write_mixed_tree(tmp_path / "data")
    dm = FolderDataModule(str(root), sample_rate=16000, chunk_seconds=0.5, cache_dir=str(tmp_path / "cache"),
                          val_fraction=0.25, test_fraction=0.25, decode_workers=2)
    assert dm.label_names == ["jazz", "pop", "rock"]
    dm.prepare_data()
    dm.setup()
    assert skip_messages(caplog) == []
    for name, per_label in (("train", 2), ("val", 1), ("test", 1)):
        assert Counter(c.target for c in dm.clips(name)) == {0: per_label, 1: per_label, 2: per_label}
    all_clips = dm.clips("train") + dm.clips("val") + dm.clips("test")
    assert sorted(c.key for c in all_clips) == sorted(f"{lab}/{n}" for lab in dm.label_names for n in MIXED)
    audio = np.memmap(dm._audio_file, dtype=np.float16, mode="r")
    for c in all_clips:  # every format decoded, downmixed and resampled to 1 s at 16 kHz
        assert abs(c.length - 16000) <= (1200 if c.key.endswith(".mp3") else 1)
        x = audio[c.offset:c.offset + c.length].astype(np.float32)
        assert 0.3 < np.sqrt(np.mean(x[2000:-2000] ** 2)) < 0.4  # a 0.5-amplitude tone: RMS 0.354
    again = FolderDataModule(str(root), sample_rate=16000, val_fraction=0.25, test_fraction=0.25, seed=0)
    assert again.split_items() == dm.split_items()
    reseeded = FolderDataModule(str(root), sample_rate=16000, val_fraction=0.25, test_fraction=0.25, seed=1)
    assert reseeded.split_items() != dm.split_items()


def test_folder_split_lists(tmp_path):
    root = write_mixed_tree(tmp_path / "data")
    lists = {}
    for name, entries in {"train": ["jazz/a.wav", "rock/b.flac"], "val": ["# comment", "", "pop/c.ogg"],
                          "test": ["pop/d.mp3"]}.items():
        lists[name] = tmp_path / f"{name}.txt"
        lists[name].write_text("\n".join(entries) + "\n")
    dm = FolderDataModule(str(root), train_list=str(lists["train"]), val_list=str(lists["val"]),
                          test_list=str(lists["test"]))
    split = dm.split_items()
    assert {k: [(it.key, it.target) for it in v] for k, v in split.items()} == {
        "train": [("jazz/a.wav", 0), ("rock/b.flac", 2)], "val": [("pop/c.ogg", 1)], "test": [("pop/d.mp3", 1)]}
    lists["test"].write_text("pop/d.mp3\npop/gone.wav\n")
    with pytest.raises(FileNotFoundError, match=r"1 of the 2 files named by .*test.txt are missing .*pop/gone.wav"):
        dm.split_items()
    with pytest.raises(ValueError, match="all three"):
        FolderDataModule(str(root), train_list=str(lists["train"]))


def test_bad_files_are_skipped_with_a_warning_and_a_count(tmp_path, caplog):
    root = write_mixed_tree(tmp_path / "data")
    (root / "jazz" / "garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    (root / "pop" / "truncated.flac").write_bytes((root / "pop" / "b.flac").read_bytes()[:60])
    (root / "rock" / "empty.ogg").write_bytes(b"")
    dm = FolderDataModule(str(root), sample_rate=8000, cache_dir=str(tmp_path / "cache"),
                          val_fraction=0.0, test_fraction=0.0, decode_workers=2)
    dm.prepare_data()
    messages = skip_messages(caplog)
    bad = ["jazz/garbage.wav", "pop/truncated.flac", "rock/empty.ogg"]
    for key in bad:
        assert sum(m.startswith(f"skipping {key}:") for m in messages) == 1
    (summary,) = [m for m in messages if m.startswith("skipped")]
    assert summary.startswith("skipped 3 of 15 files") and all(key in summary for key in bad)
    dm.setup()
    assert len(dm.clips("train")) == 12 and not {c.key for c in dm.clips("train")} & set(bad)


# ---- the cache ----------------------------------------------------------------------------
def small_tree(root: Path) -> Path:
    for label in ("x", "y"):
        for i in range(3):
            (root / label).mkdir(parents=True, exist_ok=True)
            sf.write(root / label / f"{i}.wav", tone(0.5 + 0.1 * i, 8000, freq=300 + 50 * i), 8000)
    return root


def cache_folders(cache_dir: Path) -> list[str]:
    """Everything in a cache directory but the build locks (``.<cache>.lock``, kept beside each cache)."""
    return sorted(p.name for p in cache_dir.iterdir() if not p.name.endswith(".lock")) if cache_dir.exists() else []


def test_cache_is_reused_and_rebuilt_when_sources_or_settings_change(tmp_path, count_decodes, monkeypatch):
    root, cache_dir = small_tree(tmp_path / "data"), tmp_path / "cache"

    def module(**kw):
        return FolderDataModule(str(root), sample_rate=8000, cache_dir=str(cache_dir), decode_workers=1,
                                min_clip_seconds=0.0, **kw)

    module().prepare_data()
    assert len(count_decodes) == 6
    (first,) = cache_folders(cache_dir)
    stamps = {p: p.stat().st_mtime_ns for p in (cache_dir / first).iterdir()}

    module().prepare_data()  # unchanged: reused, nothing decoded or rewritten
    assert len(count_decodes) == 6 and cache_folders(cache_dir) == [first]
    assert {p: p.stat().st_mtime_ns for p in (cache_dir / first).iterdir()} == stamps

    module(val_fraction=0.5).prepare_data()  # another split of the same files: same cache
    assert len(count_decodes) == 6

    source = root / "y" / "1.wav"
    sf.write(source, tone(0.6, 8000, freq=999), 8000)  # same size, new content
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    dm = module()
    dm.prepare_data()
    assert len(count_decodes) == 12 and len(cache_folders(cache_dir)) == 2
    dm.setup()
    assert dm._audio_file.parent.name != first

    monkeypatch.setenv("MUSICZOO_CACHE", str(tmp_path / "env_cache"))
    FolderDataModule(str(root), sample_rate=16000, decode_workers=1, min_clip_seconds=0.0).prepare_data()  # new rate, cache from env
    assert len(count_decodes) == 18
    (by_env,) = cache_folders(tmp_path / "env_cache")
    assert by_env.startswith("folder-16000hz-")


def test_interrupted_build_leaves_no_valid_looking_cache(tmp_path, monkeypatch):
    root, cache_dir = small_tree(tmp_path / "data"), tmp_path / "cache"
    real, calls = audio_cache._decode, []

    def dies_on_third_file(job):
        calls.append(job)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(audio_cache, "_decode", dies_on_third_file)
    dm = FolderDataModule(str(root), sample_rate=8000, cache_dir=str(cache_dir), decode_workers=1, min_clip_seconds=0.0)
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_data()
    assert cache_folders(cache_dir) == []  # neither a finished-looking cache nor a leftover temp folder
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        dm.setup()

    monkeypatch.setattr(audio_cache, "_decode", real)
    dm.prepare_data()
    dm.setup()
    assert len(dm.clips("train")) + len(dm.clips("val")) + len(dm.clips("test")) == 6


def test_a_build_killed_long_ago_is_cleaned_up(tmp_path):
    """SIGKILL skips the temp-folder cleanup; the next build removes stale leftovers only."""
    items = [Item("a", encoded_tone(), 0)]
    cache = AudioCache(items, sample_rate=8000, cache_dir=tmp_path, decode_workers=1)
    stale, fresh = (tmp_path / f".{cache.folder.name}.building-{n}" for n in ("old", "new"))
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "audio.f16").write_bytes(b"\0" * 64)
    old = time.time() - 7 * 3600
    os.utime(stale / "audio.f16", (old, old))
    os.utime(stale, (old, old))
    cache.ensure()
    assert cache.exists() and not stale.exists() and fresh.exists()


def encoded_tone() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(0.5, 8000), 8000, format="WAV")
    return buf.getvalue()


def test_cache_of_undecodable_sources_only_is_an_error(tmp_path):
    items = [Item("a", b"", 0), Item("b", b"not audio", 0)]
    cache = AudioCache(items, sample_rate=8000, cache_dir=tmp_path, decode_workers=1)
    with pytest.raises(RuntimeError, match="none of the 2 files could be decoded"):
        cache.ensure()
    assert not cache.exists() and cache_folders(tmp_path) == []


# ---- chunks and the batch contract ---------------------------------------------------------
@pytest.fixture
def contract_module(tmp_path):
    """Four clips of 0.3, 2.5, 1.0 and 1.6 s (8 kHz); 1 s chunks; batches of 3 clips."""
    root = tmp_path / "data"
    for rel, seconds in {"a/short.wav": 0.3, "a/long.wav": 2.5, "b/exact.wav": 1.0, "b/two.flac": 1.6}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, np.random.default_rng(len(rel)).uniform(-0.5, 0.5, int(seconds * 8000)), 8000)
    order = "a/short.wav\na/long.wav\nb/exact.wav\nb/two.flac\n"
    for name in ("train", "val", "test"):
        (tmp_path / f"{name}.txt").write_text(order)
    dm = FolderDataModule(str(root), sample_rate=8000, chunk_seconds=1.0, batch_size=3, cache_dir=str(tmp_path / "c"),
                          min_clip_seconds=0.0,
                          decode_workers=1, **{f"{n}_list": str(tmp_path / f"{n}.txt") for n in ("train", "val", "test")})
    dm.prepare_data()
    dm.setup()
    return dm, root


def test_batch_contract_train(contract_module):
    dm, _ = contract_module
    (batch,) = list(dm.train_dataloader())  # 4 clips, batches of 3: the ragged last batch is dropped
    assert set(batch) == {"audio", "target"}
    assert batch["audio"].shape == (3, 8000) and batch["audio"].dtype == torch.float32
    assert batch["target"].shape == (3,) and batch["target"].dtype == torch.long


def test_train_crops_are_windows_of_the_clip_zero_padded_when_short(contract_module):
    dm, root = contract_module
    dataset = dm.train_dataloader().dataset
    short = dataset[0]["audio"].numpy()
    source = sf.read(root / "a/short.wav", dtype="float32")[0].astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(short[:2400], source)
    assert not short[2400:].any()
    source = sf.read(root / "a/long.wav", dtype="float32")[0].astype(np.float16).astype(np.float32)
    starts = set()
    for _ in range(20):
        crop = dataset[1]["audio"].numpy()
        (start,) = [s for s in np.flatnonzero(source[:-7999] == crop[0]) if np.array_equal(source[s:s + 8000], crop)]
        starts.add(start)
    assert len(starts) > 1  # random positions


def test_batch_contract_eval_and_chunks_rebuild_the_clip(contract_module):
    dm, root = contract_module
    for loader in (dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        first, second = list(loader)
        assert set(first) == {"audio", "target", "clip", "key"}
        assert first["audio"].shape == (1 + 3 + 1, 8000) and first["audio"].dtype == torch.float32
        assert first["clip"].tolist() == [0, 1, 1, 1, 2] and first["clip"].dtype == torch.long
        assert first["key"] == ["a/short.wav", "a/long.wav", "b/exact.wav"]
        assert first["target"].tolist() == [0, 0, 1] and first["target"].dtype == torch.long
        assert second["audio"].shape == (2, 8000) and second["clip"].tolist() == [0, 0]
        assert second["key"] == ["b/two.flac"] and second["target"].tolist() == [1]
    # The chunks of the 2.5 s clip, put back at their starts, are the clip.
    source = sf.read(root / "a/long.wav", dtype="float32")[0].astype(np.float16).astype(np.float32)
    chunks = first["audio"][first["clip"] == 1].numpy()
    rebuilt = np.zeros_like(source)
    for s, chunk in zip(chunk_starts(len(source), 8000), chunks):
        rebuilt[s:s + 8000] = chunk
    np.testing.assert_array_equal(rebuilt, source)


def test_loaders_work_in_worker_processes(contract_module):
    dm, _ = contract_module
    dm.num_workers = 1
    (batch,) = list(dm.train_dataloader())
    assert batch["audio"].shape == (3, 8000)
    assert [b["audio"].shape[0] for b in dm.val_dataloader()] == [5, 2]


class TagModule(AudioDataModule):
    """A multilabel data module whose items are in-memory encoded files (as a hub dataset gives)."""

    task = "multilabel"
    dataset_name = "tags"
    split_name = "all"

    def __init__(self, items: list, cache_dir: str):
        super().__init__(root=".", sample_rate=8000, chunk_seconds=0.5, batch_size=2, cache_dir=cache_dir,
                         decode_workers=1)
        self.label_names = ["guitar", "piano", "vocal"]
        self.items = items

    def split_items(self):
        return {"train": self.items, "val": self.items, "test": self.items[:1]}


def encoded(seconds: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, 8000), 8000, format="FLAC")
    return buf.getvalue()


def test_multilabel_targets_and_in_memory_sources(tmp_path):
    items = [Item("one", encoded(1.0), [1, 0, 1]), Item("two", encoded(0.4), (0, 1, 0)),
             Item("three", encoded(0.7), np.array([0, 0, 0]))]
    dm = TagModule(items, str(tmp_path))
    dm.prepare_data()
    dm.setup()
    train = next(iter(dm.train_dataloader()))
    assert train["target"].dtype == torch.float32 and train["target"].shape == (2, 3)
    val = next(iter(dm.val_dataloader()))
    assert val["target"].tolist() == [[1, 0, 1], [0, 1, 0]] and val["target"].dtype == torch.float32
    assert val["clip"].tolist() == [0, 0, 1] and val["key"] == ["one", "two"]
    with pytest.raises(ValueError, match="multilabel target must be 3 values of 0/1"):
        TagModule([Item("bad", encoded(0.1), [1, 0])], str(tmp_path)).prepare_data()


def test_the_artist_split_of_the_real_excerpts_keeps_every_artist_in_one_part(gtzan_excerpts, shared_data):
    """On the 409 real excerpts and Sturm's real index: no artist in two parts (the index read
    here on its own), every genre in every part, sizes near 60/20/20, the clips without an
    artist of each genre together, and the same parts every time."""
    index = {}
    for line in (shared_data / "gtzan" / "GTZANindex.txt").read_text(encoding="latin-1").splitlines():
        if ":::" in line and not line.startswith("##"):
            name, artist = (part.strip() for part in line.split(":::")[:2])
            index[name] = artist
    module = GTZANDataModule(str(gtzan_excerpts), split="artist", sample_rate=22050)
    parts = {name: [it.key for it in items] for name, items in module.split_items().items()}
    assert sum(map(len, parts.values())) == 409 and len(set().union(*map(set, parts.values()))) == 409
    artists = {name: {index[Path(key).name].casefold() for key in keys if index[Path(key).name]}
               for name, keys in parts.items()}
    assert not artists["train"] & artists["val"] and not artists["train"] & artists["test"]
    assert not artists["val"] & artists["test"]
    for name, share in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        assert abs(len(parts[name]) / 409 - share) < 0.03, (name, len(parts[name]))
        assert set(GENRES) == {key.split("/")[0] for key in parts[name]}
    nameless = {}
    for name, keys in parts.items():
        for key in keys:
            if not index[Path(key).name]:
                nameless.setdefault(key.split("/")[0], set()).add(name)
    assert nameless and all(len(where) == 1 for where in nameless.values())
    again = GTZANDataModule(str(gtzan_excerpts), split="artist", sample_rate=22050, seed=7).split_items()
    assert {name: [it.key for it in items] for name, items in again.items()} == parts
    assert module.split_name == "artist"


def test_the_artist_split_moves_an_artist_whole_and_refuses_a_genre_of_two_artists():
    entries = [f"{genre}/{genre}.{n:05d}.wav" for genre in ("blues", "jazz") for n in range(30)]
    artist_of = {f"blues.{n:05d}.wav": f"blues artist {n // 5}" for n in range(30)}
    artist_of |= {f"jazz.{n:05d}.wav": f"jazz artist {n // 5}" for n in range(25)}  # 25-29: no artist
    artist_of["jazz.00000.wav"] = "  Blues   ARTIST 0 "  # the same artist, spelled otherwise, in another genre
    parts = artist_split(entries, artist_of)
    part_of = {entry: name for name, members in parts.items() for entry in members}
    assert len({part_of[e] for e in ["jazz/jazz.00000.wav"] + [f"blues/blues.{n:05d}.wav" for n in range(5)]}) == 1
    assert len({part_of[f"jazz/jazz.{n:05d}.wav"] for n in range(25, 30)}) == 1
    assert all({e.split("/")[0] for e in members} == {"blues", "jazz"} for members in parts.values())
    two = {f"blues.{n:05d}.wav": f"artist {n // 15}" for n in range(30)}
    with pytest.raises(ValueError, match="blues has too few artists"):
        artist_split(entries[:30], two)
