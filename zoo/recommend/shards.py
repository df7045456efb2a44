"""A run's work list, its pending shards and the processes that write them.

Rank 0 writes the ids a run must embed to ``<library>/pending/todo-*.jsonl`` (one JSON string
a line, in id order) and every rank reads its share from it, so that the list of a first
run over ten million files is never in memory nor sent between processes. A run writes the
tracks it embeds in small shards to ``<library>/pending/`` (so a killed run loses at most
one shard, and the next run reuses the others); each rank's shards hold its tracks in id
order, and rank 0 merges every rank's shards with the library's kept tracks (:mod:`.indexing`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from datamodules.primitives.audio_files import walk_audio_files
from datamodules.primitives.files import file_digest, write_json

from .store import ArrayFile, LibraryError, write_arrays
from .tracks import Track, TrackTable, rows_digest

log = logging.getLogger(__name__)


class StoredTrack(NamedTuple):
    """A track already embedded and where its vectors are: row ``row`` of ``source`` (the
    library's current vectors file or the pending shard it was written to, opened but not
    read; or arrays in memory)."""

    track: Track
    row: int
    source: ArrayFile | dict[str, np.ndarray]


def source_widths(source: ArrayFile | dict[str, np.ndarray]) -> dict[str, int]:
    """The width of each array of a :class:`StoredTrack`'s source."""
    return source.widths if isinstance(source, ArrayFile) else {name: v.shape[1] for name, v in source.items()}


def gather_rows(stored: Sequence[StoredTrack]) -> dict[str, np.ndarray]:
    """The arrays of ``stored`` (one row each, in their order), read from their sources: each
    file through maps of this call's own, so a merge of millions of tracks a batch at a time
    holds one batch's rows, whatever the size of the files they come from."""
    by_source: dict[int, tuple] = {}  # id(source) -> (source, positions in stored, its rows)
    for position, item in enumerate(stored):
        _, positions, rows = by_source.setdefault(id(item.source), (item.source, [], []))
        positions.append(position)
        rows.append(item.row)
    gathered = {}
    for source, positions, rows in by_source.values():
        arrays = source.maps() if isinstance(source, ArrayFile) else source
        for name, values in arrays.items():
            if name not in gathered:
                gathered[name] = np.empty((len(stored), values.shape[1]), np.float32)
            gathered[name][positions] = values[rows]
    return gathered


class Plan(NamedTuple):
    """What rank 0 decided a run must do: the library's tracks it keeps (``keep[row]``, with a new
    modification time for ``touched`` rows), a killed run's tracks it reuses, the files it must
    embed (the work list ``todo``, of ``todo_count`` ids), and what it found gone."""

    manifest: dict
    old: TrackTable
    old_vectors: ArrayFile | None
    keep: np.ndarray
    touched: dict[int, Track]
    reused: list[StoredTrack]
    todo: str
    todo_count: int
    skipped: list[dict]
    dropped: int


def by_id(stored: StoredTrack) -> str:
    return stored.track.id


def plan_run(manifest: dict, old: TrackTable, old_vectors: ArrayFile | None, music_dir: Path, out: Path,
             files: Sequence[Path] | None) -> Plan:
    """Decide a run's work on the library ``old`` (its tracks, and their vectors), walking the folder's
    files and the library's tracks side by side in id order (neither is ever a list in memory):
    a file whose track has the same size and time (or content) is kept, one that a killed run
    embedded unchanged is reused, any other is written to the work list; a track whose file is
    gone is dropped (kept when ``files`` limits the run, an ``add``)."""
    pending = read_pending(out)
    adding = files is not None
    walked = sorted({p.relative_to(music_dir).as_posix(): p for p in files}.items()) if adding \
        else walk_audio_files(music_dir)
    keep, touched, reused, skipped = np.zeros(len(old), bool), {}, [], []
    old_tracks = (item for batch in old.batches() for item in batch)
    current = next(old_tracks, None)
    dropped = 0

    def pass_over() -> None:
        """The current track has no file in the folder (or, adding, was not given): drop (keep) it."""
        nonlocal current, dropped
        keep[current[0]] = adding
        dropped += not adding
        current = next(old_tracks, None)

    def todo():  # consumed by write_todo below, which writes each id it yields
        nonlocal current, dropped
        for rel, path in walked:
            while current is not None and current[1].id < rel:
                pass_over()
            stored = None
            if current is not None and current[1].id == rel:
                stored = StoredTrack(current[1], current[0], old_vectors)
                current = next(old_tracks, None)
            try:
                if found := unchanged(path, stored):
                    keep[found.row] = True
                    if found.track is not stored.track:
                        touched[found.row] = found.track
                elif found := unchanged(path, pending.get(rel)):
                    reused.append(found)
                else:
                    yield rel
            except OSError as e:  # deleted (or made unreadable) since the folder was listed
                skipped.append(gone(rel, path, e))
                dropped += stored is not None
        while current is not None:
            pass_over()

    name, count = write_todo(out, todo())
    return Plan(manifest, old, old_vectors, keep, touched, reused, name, count, skipped, dropped)


def kept_tracks(plan: Plan):
    """The library's tracks the plan keeps, in id order, read a batch at a time."""
    for batch in plan.old.batches():
        for row, track in batch:
            if plan.keep[row]:
                yield StoredTrack(plan.touched.get(row, track), row, plan.old_vectors)


def gone(rel: str, path: Path, error: OSError) -> dict:
    """The skipped-file record of a file that vanished (or became unreadable) during the run."""
    reason = f"{path}: gone or unreadable during indexing ({error.strerror or error})"
    log.warning("skipping %s", reason)
    return {"id": rel, "reason": reason}


class Ranks:
    """This process's part in a run (rank, world size) and the three collectives a run needs:
    a barrier, rank 0's broadcast and a gather of small Python objects. Without a Fabric there
    is one process and each is a no-op, so one-process runs take exactly the path they always did."""

    def __init__(self, fabric=None):
        self.fabric = fabric
        self.rank = fabric.global_rank if fabric is not None else 0
        self.size = fabric.world_size if fabric is not None else 1

    def barrier(self) -> None:
        if self.size > 1:
            self.fabric.barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        return self.fabric.broadcast(obj, src=0) if self.size > 1 else obj

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank (Fabric's own gather is for tensors)."""
        if self.size == 1:
            return [obj]
        import torch.distributed

        found = [None] * self.size
        torch.distributed.all_gather_object(found, obj)
        return found


def unchanged(path: Path, stored: StoredTrack | None) -> StoredTrack | None:
    """``stored`` if ``path`` still holds its content: same size and modification time, or,
    when only the time changed, the same SHA-256 (the track then takes the new time)."""
    if stored is None:
        return None
    track, st = stored.track, path.stat()
    if (track.size, track.mtime_ns) == (st.st_size, st.st_mtime_ns):
        return stored
    if track.size == st.st_size and file_digest(path, "sha256") == track.sha256:  # touched, not changed
        return stored._replace(track=Track(**{**asdict(track), "mtime_ns": st.st_mtime_ns}))
    return None


def shard_name(rank: int) -> str:
    """A new shard's name: in time order, and unique across the ranks and machines of a run."""
    return f"shard-{time.time_ns():020d}-{rank:05d}-{os.getpid()}"


def write_todo(out: Path, ids: Iterable[str]) -> tuple[str, int]:
    """``ids`` (in id order) to a new work list in ``pending/``, a line each: its name and length."""
    folder = out / "pending"
    folder.mkdir(exist_ok=True)
    name, count = f"todo-{time.time_ns():020d}.jsonl", 0
    with open(folder / name, "w") as f:
        for track_id in ids:
            f.write(json.dumps(track_id) + "\n")
            count += 1
    return name, count


def read_share(out: Path, name: str, rank: int, size: int) -> Iterator[str]:
    """Every ``size``-th id of the work list ``name`` from the ``rank``-th on: this rank's share,
    disjoint from the others' and in id order."""
    with open(out / "pending" / name) as f:
        for n, line in enumerate(f):
            if n % size == rank:
                yield json.loads(line)


def write_shard(out: Path, tracks: list[Track], rows: list[dict], name: str) -> None:
    folder = out / "pending"
    folder.mkdir(exist_ok=True)
    arrays = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    write_arrays(folder / f"{name}.safetensors", {k: v.shape[1] for k, v in arrays.items()}, len(tracks),
                 [([t.id for t in tracks], arrays)])
    write_json(folder / f"{name}.json", [asdict(t) for t in tracks])  # written last: it marks the shard whole


def _read_shard(meta: Path) -> list[StoredTrack]:
    tracks = [Track(**t) for t in json.loads(meta.read_text())]
    source = ArrayFile(meta.with_suffix(".safetensors"), len(tracks), rows_digest(t.id for t in tracks))
    return [StoredTrack(track, row, source) for row, track in enumerate(tracks)]


def shard_tracks(out: Path, names: Sequence[str]) -> Iterator[StoredTrack]:
    """The tracks of a rank's shards ``names`` (this run's, in the order written: id order), a
    shard read at a time. A shard this run wrote that cannot be read stops the run: its
    tracks' work would otherwise vanish without a word."""
    for name in names:
        try:
            yield from _read_shard(out / "pending" / f"{name}.json")
        except (OSError, ValueError, TypeError) as e:
            raise LibraryError(f"{out / 'pending' / name}: this run's shard cannot be read ({e}); "
                               f"run `musiczoo index` again (its other shards are kept)") from None


def read_pending(out: Path) -> dict[str, StoredTrack]:
    """Tracks of the finished shards of killed runs, latest shard winning, by id (what a resumed
    run reuses; their records are in memory, about 1 KB a track). A damaged shard is left out
    with a warning (its tracks are embedded again)."""
    found = {}
    folder = out / "pending"
    for meta in sorted(folder.glob("shard-*.json")) if folder.is_dir() else []:
        try:
            found.update((stored.track.id, stored) for stored in _read_shard(meta))
        except (OSError, ValueError, TypeError) as e:  # LibraryError is a ValueError
            log.warning("ignoring the damaged pending shard %s (%s)", meta, e)
    return found
