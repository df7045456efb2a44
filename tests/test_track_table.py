"""The track table (``zoo.recommend.tracks``) and the sorted folder walk the index run merges it with."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict

import numpy as np
import pytest

from datamodules.primitives.audio_files import list_audio_files, walk_audio_files
from zoo.recommend import tracks as tracks_module
from zoo.recommend.tracks import LibraryError, TableWriter, Track, TrackTable, rows_digest

IDS = sorted(["a b.wav", "a-c/x.wav", "a/b.wav", "a/b/c.flac", "caf\udcff.wav", "z/\u00e9t\u00e9.mp3", "\u65e5\u672c.ogg"])


def some_tracks() -> list[Track]:
    rng = np.random.default_rng(0)
    return [Track(track_id, int(rng.integers(1, 10**9)), 1_700_000_000_000_000_000 + n, hashlib.sha256(track_id.encode(
        "utf-8", "surrogatepass")).hexdigest(), float(rng.uniform(1, 600)),
        [{"rock": float(rng.random()), "jazz": 0.1}, {"guitar": 1 / 3}] if n % 3 else [])
        for n, track_id in enumerate(IDS)]


def write(folder, tracks, batch=3) -> str:
    writer = TableWriter(folder)
    for start in range(0, len(tracks), batch):
        writer.add(tracks[start:start + batch])
    return writer.close()


def test_a_table_reads_back_what_was_written_and_finds_every_id(tmp_path, monkeypatch):
    tracks = some_tracks()
    digest = write(tmp_path / "t", tracks)
    assert digest == hashlib.sha256(json.dumps(IDS).encode()).hexdigest() == rows_digest(IDS)
    table = TrackTable.open(tmp_path / "t")
    assert table.digest == digest and len(table) == len(tracks)
    assert [asdict(t) for t in table] == [asdict(t) for t in tracks]  # ids, sizes, times, labels exactly
    assert asdict(table[-1]) == asdict(tracks[-1]) and [t.id for t in table[2:4]] == IDS[2:4]
    assert [asdict(t) for t in TrackTable.of(tracks)] == [asdict(t) for t in tracks]
    for row, track_id in enumerate(IDS):
        assert table.row_of(track_id) == row and table.row[track_id] == row and track_id in table.row
    for absent in ("", "a", "a/b.wa", "a/b.wavx", "zzz", "a-c"):
        assert table.row_of(absent) is None and absent not in table.row
    with pytest.raises(KeyError):
        table.row["a"]
    assert list(table.row) == IDS and len(table.row) == len(IDS)
    monkeypatch.setattr(tracks_module, "READ_ROWS", 2)  # a pass goes a batch at a time, through fresh maps
    batches = list(table.batches())
    assert [len(b) for b in batches] == [2, 2, 2, 1] and [row for b in batches for row, _ in b] == list(range(7))
    assert [asdict(t) for b in batches for _, t in b] == [asdict(t) for t in tracks]  # across the batches' borders
    assert list(table.ids()) == list(table.row) == IDS == list(TrackTable.of(tracks).ids())  # ids alone, batch by batch


def test_the_table_refuses_ids_out_of_order_and_bad_digests(tmp_path):
    tracks = some_tracks()
    with pytest.raises(LibraryError, match=r"unique and in order: 'a-c/x.wav' after 'a/b.wav'"):
        TrackTable.of([tracks[2], tracks[1]])
    with pytest.raises(LibraryError, match=r"unique and in order: 'a b.wav' after 'a b.wav'"):
        write(tmp_path / "dup", [tracks[0], tracks[0]])
    with pytest.raises(LibraryError, match=r"track 'a b.wav': sha256 'abc' is not 64 hex digits"):
        TrackTable.of([Track("a b.wav", 1, 1, "abc", 1.0)])


@pytest.mark.parametrize("damage,named", [
    ("no table.json", "table.json: missing (the track table is unfinished)"),
    ("truncated ids", "ids.bin: 40 bytes, not the"),
    ("truncated records", "records.bin: 400 bytes, not whole 72-byte records"),
    ("a record short", "records.bin: holds 6 records, not the 7 of table.json"),
])
def test_a_damaged_table_is_one_line_naming_its_file(tmp_path, damage, named):
    folder = tmp_path / "t"
    write(folder, some_tracks())
    if damage == "no table.json":
        (folder / "table.json").unlink()
    elif damage == "truncated ids":
        os.truncate(folder / "ids.bin", 40)
    elif damage == "truncated records":
        os.truncate(folder / "records.bin", 400)
    else:
        os.truncate(folder / "records.bin", 6 * 72)
    with pytest.raises(LibraryError, match=re.escape(named)):
        TrackTable.open(folder)


def test_the_folder_walk_gives_the_ids_in_string_order(tmp_path):
    """The index run merges the walk with the table's sorted ids, so the walk must be in the ids'
    order as strings: ``a b.wav`` and ``a-c/`` sort before ``a/`` although path components
    (``list_audio_files``) put ``a/`` first. It finds the same files as ``list_audio_files``."""
    for name in ["a b.wav", "a-c/x.wav", "a/b.wav", "a/b/c.flac", "a/.hidden.wav", "a/notes.txt", "z/\u00e9t\u00e9.mp3",
                 "\u65e5\u672c.ogg", ".d/y.wav"]:
        (tmp_path / "m" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "m" / name).write_bytes(b"x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "linked.wav").write_bytes(b"x")
    (tmp_path / "m" / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    walked = list(walk_audio_files(tmp_path / "m"))
    ids = [track_id for track_id, _ in walked]
    assert ids == sorted(ids) == [".d/y.wav", "a b.wav", "a-c/x.wav", "a/b.wav", "a/b/c.flac", "z/\u00e9t\u00e9.mp3",
                                  "\u65e5\u672c.ogg"]
    assert all(path == tmp_path / "m" / track_id for track_id, path in walked)
    assert sorted(p.relative_to(tmp_path / "m").as_posix() for p in list_audio_files(tmp_path / "m")) == ids
