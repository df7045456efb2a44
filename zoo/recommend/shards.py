"""A run's pending shards and the processes that write them.

A run writes the tracks it embeds in small shards to ``<library>/pending/`` (so a killed run
loses at most one shard, and the next run reuses the others); with many processes each rank
writes its own shards, tells rank 0 their names, and rank 0 merges them (:mod:`.indexing`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from datamodules.primitives.files import file_digest, write_json

from .store import ArrayFile, Track, write_arrays

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


def write_shard(out: Path, tracks: list[Track], rows: list[dict], name: str) -> None:
    folder = out / "pending"
    folder.mkdir(exist_ok=True)
    arrays = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    write_arrays(folder / f"{name}.safetensors", {k: v.shape[1] for k, v in arrays.items()}, [t.id for t in tracks],
                 [arrays])
    write_json(folder / f"{name}.json", [asdict(t) for t in tracks])  # written last: it marks the shard whole


def read_pending(out: Path, last: Sequence[str] = ()) -> dict[str, StoredTrack]:
    """Tracks of finished shards, latest shard winning, by id. A damaged shard is left out with
    a warning (its tracks are embedded again). ``last``: this run's shards by name, read last so
    that they win over a killed run's whatever the clocks of the machines that wrote them, and
    read even where a network file system's cached listing of ``pending/`` does not show them yet."""
    found = {}
    folder = out / "pending"
    ours = [folder / f"{name}.json" for name in last]
    older = sorted(set(folder.glob("shard-*.json")) - set(ours)) if folder.is_dir() else []
    for meta in older + ours:
        try:
            tracks = [Track(**t) for t in json.loads(meta.read_text())]
            source = ArrayFile(meta.with_suffix(".safetensors"), [t.id for t in tracks])
        except (OSError, ValueError, TypeError) as e:  # LibraryError is a ValueError
            log.warning("ignoring the damaged pending shard %s (%s)", meta, e)
            continue
        for row, track in enumerate(tracks):
            found[track.id] = StoredTrack(track, row, source)
    return found
