"""A library's track records as columns on disk, read through memory maps: ten million tracks
open in constant memory, and a track is found by its id in a binary search.

``data-NNNNNN/tracks/`` holds, in row order (the tracks sorted by id)::

    records.bin    one 72-byte record per track (:data:`RECORD`): where its id and labels end in
                   the two files below, its size, mtime_ns, duration_s and the SHA-256 of its bytes
    ids.bin        the ids (paths relative to the music folder), UTF-8, one after another
    labels.bin     each track's top labels per model, as compact JSON, one after another
    table.json     {"rows": N, "track_ids_sha256": ...}, written last: it marks the table whole

Before this table, a library kept its tracks in ``tracks.json``, a list that had to be parsed
whole (about 1.2 KB of memory a track); :meth:`TrackTable.of` holds such a list in the same
shape, so everything downstream reads both.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from datamodules.primitives.files import read_json, write_json


class LibraryError(ValueError):
    """A library, query or model that cannot be used; the message names it and says why."""

#: The fixed-width part of a track's record; its id and labels are in the blobs beside it.
RECORD = np.dtype([("id_end", "<i8"), ("labels_end", "<i8"), ("size", "<i8"), ("mtime_ns", "<i8"),
                   ("duration_s", "<f8"), ("sha256", "u1", (32,))])
FILES = {"records": "records.bin", "ids": "ids.bin", "labels": "labels.bin"}
TABLE = "table.json"
#: The metadata key (here and in a vectors file) of :func:`rows_digest` of the tracks' ids.
ROWS_KEY = "track_ids_sha256"
#: Rows read at a time by a pass over a library's tracks or arrays: a few MB of records, about
#: 60 MB of a one-model library's vectors.
READ_ROWS = 8192


@dataclass
class Track:
    """One indexed file. ``id`` is its path relative to the music folder (stable when the
    folder moves); ``labels`` holds each model's top labels with their probabilities."""

    id: str
    size: int
    mtime_ns: int
    sha256: str
    duration_s: float
    labels: list[dict[str, float]] = field(default_factory=list)


class RowsDigest:
    """SHA-256 of track ids in row order, fed as they come: stored with the arrays and the table,
    it ties each row to its track. The bytes hashed are ``json.dumps(list(ids))``'s (what
    libraries hold), so millions of ids are never one string."""

    def __init__(self):
        self._sha, self._first = hashlib.sha256(b"["), True

    def update(self, ids: Iterable[str]) -> None:
        for track_id in ids:
            self._sha.update(((", " if not self._first else "") + json.dumps(track_id)).encode())
            self._first = False

    def hexdigest(self) -> str:
        sha = self._sha.copy()
        sha.update(b"]")
        return sha.hexdigest()


def rows_digest(ids: Iterable[str]) -> str:
    """:class:`RowsDigest` of ``ids``."""
    digest = RowsDigest()
    digest.update(ids)
    return digest.hexdigest()


def _encode(text: str) -> bytes:
    # surrogatepass: an id decoded from a file name that is not UTF-8 (a lone surrogate) round-trips
    return text.encode("utf-8", "surrogatepass")


def _decode(data) -> str:
    return bytes(data).decode("utf-8", "surrogatepass")


class TrackTable(Sequence[Track]):
    """The tracks of a library, in row order, from :func:`write_tracks`'s folder (:meth:`open`) or
    a list in memory (:meth:`of`). Indexing gives a :class:`Track`; :meth:`row_of` finds an id.

    An opened table's random reads (a query's tracks) go through maps kept open; a pass over
    every track (:meth:`batches`) takes fresh maps per batch, because the pages a map has read
    count in the process's memory until the map is dropped."""

    def __init__(self, columns, digest: str, folder: Path | None = None):
        self._columns, self.digest, self.folder = columns, digest, folder
        self.row = RowsOfIds(self)

    @classmethod
    def open(cls, folder: Path) -> TrackTable:
        """The table in ``folder``; a missing, unfinished or damaged one is one line naming the file."""
        folder = Path(folder)
        meta = read_json(folder / TABLE, LibraryError, missing=f"{folder / TABLE}: missing (the track table is unfinished)")
        if not isinstance(meta, dict) or not isinstance(meta.get("rows"), int) or not isinstance(meta.get(ROWS_KEY), str):
            raise LibraryError(f"{folder / TABLE}: damaged (need rows and {ROWS_KEY})")
        columns = _map_files(folder)
        if len(columns["records"]) != meta["rows"]:
            raise LibraryError(f"{folder / FILES['records']}: holds {len(columns['records']):,} records, "
                               f"not the {meta['rows']:,} of {TABLE}")
        for blob, end in (("ids", "id_end"), ("labels", "labels_end")):
            need = int(columns["records"][-1][end]) if meta["rows"] else 0
            if len(columns[blob]) != need:
                raise LibraryError(f"{folder / FILES[blob]}: {len(columns[blob]):,} bytes, not the {need:,} its "
                                   f"records end at (truncated or damaged)")
        return cls(columns, meta[ROWS_KEY], folder)

    @classmethod
    def of(cls, tracks: Sequence[Track]) -> TrackTable:
        """A table in memory of ``tracks`` (in their order), as :meth:`open` would read it."""
        writer = _Columns()
        writer.add(tracks)
        return cls(writer.arrays(), rows_digest(t.id for t in tracks))

    def _maps(self) -> dict[str, np.ndarray]:
        return self._columns if self.folder is None else _map_files(self.folder)

    def __len__(self) -> int:
        return len(self._columns["records"])

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = int(row) + len(self) if row < 0 else int(row)
        if not 0 <= row < len(self):
            raise IndexError(f"track row {row} of {len(self)}")
        return self._track(self._columns, row)

    @staticmethod
    def _track(columns, row: int) -> Track:
        records = columns["records"]
        record = records[row]
        id_start = int(records[row - 1]["id_end"]) if row else 0
        labels_start = int(records[row - 1]["labels_end"]) if row else 0
        return Track(_decode(columns["ids"][id_start:record["id_end"]]), int(record["size"]), int(record["mtime_ns"]),
                     record["sha256"].tobytes().hex(), float(record["duration_s"]),
                     json.loads(bytes(columns["labels"][labels_start:record["labels_end"]])))

    def id(self, row: int) -> str:
        """The id of ``row``, without reading its labels."""
        records = self._columns["records"]
        start = int(records[row - 1]["id_end"]) if row else 0
        return _decode(self._columns["ids"][start:records[row]["id_end"]])

    def row_of(self, track_id: str) -> int | None:
        """The row of ``track_id``, by binary search of the sorted ids; None if it has none."""
        row = bisect.bisect_left(range(len(self)), track_id, key=self.id)
        return row if row < len(self) and self.id(row) == track_id else None

    def _spans(self) -> Iterator[tuple[dict, int, np.ndarray, list[int], list[int]]]:
        """Per :data:`READ_ROWS` rows: fresh maps, the first row, the rows' records, and where
        their ids and labels start and end (one more entry than rows: the record before says
        where the first starts)."""
        for begin in range(0, len(self), READ_ROWS):
            columns = self._maps()
            end = min(begin + READ_ROWS, len(self))
            records = np.array(columns["records"][max(begin - 1, 0):end])
            id_ends, label_ends = records["id_end"].tolist(), records["labels_end"].tolist()
            if begin:
                records = records[1:]
            else:
                id_ends, label_ends = [0, *id_ends], [0, *label_ends]
            yield columns, begin, records, id_ends, label_ends

    @staticmethod
    def _slices(column, ends: list[int]) -> list[bytes]:
        """The values between consecutive ``ends`` of ``column``, read in one piece."""
        data = bytes(column[ends[0]:ends[-1]])
        return [data[a - ends[0]:b - ends[0]] for a, b in zip(ends, ends[1:])]

    def batches(self) -> Iterator[list[tuple[int, Track]]]:
        """``(row, track)`` of every track, :data:`READ_ROWS` at a time, each batch read through
        maps of its own and decoded column by column (a record at a time is several times slower)."""
        for columns, begin, records, id_ends, label_ends in self._spans():
            ids, labels = self._slices(columns["ids"], id_ends), self._slices(columns["labels"], label_ends)
            digests = records["sha256"].tobytes().hex()
            yield [(begin + n, Track(_decode(ids[n]), size, mtime, digests[64 * n:64 * n + 64], duration, json.loads(labels[n])))
                   for n, (size, mtime, duration) in enumerate(zip(records["size"].tolist(), records["mtime_ns"].tolist(),
                                                                   records["duration_s"].tolist()))]

    def ids(self) -> Iterator[str]:
        """Every id in row order, a batch at a time, without reading the labels."""
        for columns, _, _, id_ends, _ in self._spans():
            yield from map(_decode, self._slices(columns["ids"], id_ends))

    def __iter__(self) -> Iterator[Track]:
        for batch in self.batches():
            yield from (track for _, track in batch)


def _map_files(folder: Path) -> dict[str, np.ndarray]:
    """Read-only maps of a table's three files."""
    maps = {}
    for name, file in FILES.items():
        path, dtype = folder / file, RECORD if name == "records" else np.dtype(np.uint8)
        try:
            size = path.stat().st_size
            if size % dtype.itemsize:
                raise LibraryError(f"{path}: {size:,} bytes, not whole {dtype.itemsize}-byte records")
            maps[name] = np.memmap(path, dtype=dtype, mode="r") if size else np.zeros(0, dtype)
        except OSError as e:
            raise LibraryError(f"{path}: unreadable ({e.strerror or e})") from None
    return maps


class RowsOfIds(Mapping):
    """A table's ``id -> row`` mapping, answered by binary search (no dict of every id)."""

    def __init__(self, table: TrackTable):
        self._table = table

    def __getitem__(self, track_id: str) -> int:
        row = self._table.row_of(track_id) if isinstance(track_id, str) else None
        if row is None:
            raise KeyError(track_id)
        return row

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[str]:
        return self._table.ids()


class _Columns:
    """Tracks turned into the table's columns, a batch at a time (ids checked to be sorted and unique)."""

    def __init__(self):
        self.ends = {"id_end": 0, "labels_end": 0}  # where the ids and labels written so far end
        self.last: str | None = None
        self.parts: dict[str, list[bytes]] = {name: [] for name in FILES}

    def encode(self, tracks: Sequence[Track]) -> dict[str, bytes]:
        ids, labels, digests = [], [], []
        for track in tracks:
            if self.last is not None and not track.id > self.last:
                raise LibraryError(f"track ids must be unique and in order: {track.id!r} after {self.last!r}")
            try:
                digests.append(bytes.fromhex(track.sha256))
                if len(digests[-1]) != 32:
                    raise ValueError
            except (TypeError, ValueError):
                raise LibraryError(f"track {track.id!r}: sha256 {track.sha256!r} is not 64 hex digits") from None
            ids.append(_encode(track.id))
            labels.append(json.dumps(track.labels, separators=(",", ":"), allow_nan=False).encode())
            self.last = track.id
        records = np.zeros(len(tracks), RECORD)
        for name, blob in (("id_end", ids), ("labels_end", labels)):
            records[name] = self.ends[name] + np.cumsum([len(part) for part in blob], dtype=np.int64)
            self.ends[name] = int(records[name][-1]) if len(tracks) else self.ends[name]
        for name in ("size", "mtime_ns", "duration_s"):
            records[name] = [getattr(track, name) for track in tracks]
        records["sha256"] = np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32)
        return {"records": records.tobytes(), "ids": b"".join(ids), "labels": b"".join(labels)}

    def add(self, tracks: Sequence[Track]) -> None:
        for name, data in self.encode(tracks).items():
            self.parts[name].append(data)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.frombuffer(b"".join(parts), RECORD if name == "records" else np.uint8)
                for name, parts in self.parts.items()}


class TableWriter:
    """Writes a :class:`TrackTable` into ``folder`` a batch of tracks at a time (:meth:`add`, in
    id order); :meth:`close` writes ``table.json``, which makes it whole, and returns the
    ids' digest. The folder is a new data folder's: nothing reads it before the run ends."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._columns, self._digest, self.rows = _Columns(), RowsDigest(), 0
        self._files = {name: open(self.folder / file, "wb") for name, file in FILES.items()}

    def add(self, tracks: Sequence[Track]) -> None:
        for name, data in self._columns.encode(tracks).items():
            self._files[name].write(data)
        self._digest.update(t.id for t in tracks)
        self.rows += len(tracks)

    def close(self) -> str:
        for f in self._files.values():
            f.close()
        digest = self._digest.hexdigest()
        write_json(self.folder / TABLE, {"rows": self.rows, ROWS_KEY: digest})
        return digest


def read_track_list(path: Path) -> TrackTable:
    """A ``tracks.json`` of a library written before the table (a list of track objects)."""
    try:
        return TrackTable.of([Track(**t) for t in read_json(path, LibraryError)])
    except TypeError as e:
        raise LibraryError(f"{path}: not a list of tracks ({e})") from None
