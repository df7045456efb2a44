"""Building a library: embed a music folder's tracks, incrementally, in shards that survive a kill.

Each track of a music folder is cut into evenly spaced chunks that go through one or more
models (typically the genre model and the tagging model); the track keeps, per model, the
mean of its chunks' pooled embeddings and the mean of their genre or tag probabilities,
plus a signal fingerprint (:mod:`zoo.recommend.fingerprint`). The folder format is
:mod:`zoo.recommend.store`'s.

Safety of an interrupted run: the manifest is marked incomplete before anything is
embedded, embedded tracks are written in small shards as they are done (each shard by an
atomic rename), and a finished run writes a new ``data-NNNNNN`` folder and only then
points the manifest at it. A killed run therefore loses at most one shard of work, the
next run reuses every shard, and ``Library.open`` refuses a library whose last run did
not finish instead of answering from a partial one.

Memory does not grow with the library: rank 0 walks the folder and the library's track table
side by side in id order and writes the ids to embed to a work list on disk, which each rank
reads its share of; a finished run merges, in id order, the tracks it keeps (read from the old
table a batch at a time), a killed run's tracks it reuses and the shards every rank wrote (a
shard at a time), and writes each batch's records to the new track table and its rows to
their place in the new vectors file; the means, each feature's unit vectors and its index are
then made from that file a batch at a time too. A run holds one batch of tracks and rows,
one directory listing, the one search index it is building, one byte per track (which of the
library's tracks it keeps), the names of the shards and the records of a killed run's
tracks it reuses.

Two runs on one library take turns: each holds an exclusive lock on ``.<library name>.lock``
beside the folder from its first read of the manifest to its last write (the second then
finds the first's tracks unchanged). Damaged data (a truncated or foreign
``vectors.safetensors``, a damaged track table or pending shard) is embedded again
rather than refused, so ``musiczoo index`` is always the repair.

Many processes (``musiczoo index --devices 2 --strategy ddp``, SLURM, torchrun): every process
of a :class:`lightning.fabric.Fabric` run calls :func:`build`. Global rank 0 alone takes the
writer lock, marks the library incomplete and decides what to embed; each rank embeds its
share of that list on its own device into shards named with its rank; rank 0 then merges
every rank's shards as one process would, and the others write nothing else.

:func:`build` embeds audio; :func:`write_library` writes vectors computed elsewhere (a
benchmark's synthetic collection, an import) in the same format, through the same run.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from datamodules.primitives.files import exclusive_lock, file_digest, write_json

from . import fingerprint as fp
from . import embedding, shards
from .index import VectorIndex, auto_kind, rerank_vectors_path
from .rows import write_npy
from .shards import Ranks, StoredTrack, by_id, gone, kept_tracks, plan_run, shard_name
from .store import (FINGERPRINT, FORMAT, FORMAT_VERSION, MANIFEST, MATCHED_ENTRY_FIELDS, MEANS, READ_ROWS,
                    VECTORS, ArrayFile, LibraryData, LibraryError, column_means, feature_vectors, model_entry,
                    array_names, features_of, read_data, read_manifest, save_model, write_arrays)
from .tracks import TableWriter, Track, TrackTable

log = logging.getLogger(__name__)

DEFAULT_MAX_CHUNKS = 16
#: Tracks per pending shard: an interrupted run loses at most this many tracks' work.
SHARD_TRACKS = 32


def build(models: Sequence, music_dir: str | os.PathLike, out: str | os.PathLike, *, files: Sequence[Path] | None = None,
          max_chunks: int = DEFAULT_MAX_CHUNKS, weights: Sequence[float] | None = None, batch_size: int = 16,
          device: str | None = None, progress: bool = True, fabric=None) -> LibraryData | None:
    """Create or update the library ``out`` of ``music_dir`` with ``models`` (loaded zoo models).

    Only new or changed files are embedded; files gone from the folder are dropped; ``files``
    limits the run to those files (deletions are then not looked for). A library made with
    other models or settings is refused with the differences named.

    ``fabric``: a launched :class:`lightning.fabric.Fabric` whose every process calls this with
    the same arguments. Each embeds its share of the files on ``fabric.device`` (``device`` is
    then not used); the library is returned on global rank 0 and ``None`` on the others. Only
    rank 0 takes the writer lock (a second run waits for it there, and its other ranks at the
    first barrier, which Lightning's process group gives up after its timeout, 30 minutes by
    default, before anything is written): were every rank to take it, rank 1 would wait for
    rank 0's lock while rank 0 waits for rank 1 at a barrier.
    """
    music_dir, out = Path(music_dir).expanduser().resolve(), Path(out)
    if not music_dir.is_dir():
        raise LibraryError(f"{music_dir}: no such music folder")
    settings = check_settings(len(models), max_chunks, weights)
    ranks = Ranks(fabric)
    if fabric is not None:
        device = str(fabric.device)
    with writer_lock(out) if ranks.rank == 0 else contextlib.nullcontext():
        return _build(models, music_dir, out, settings, files, batch_size, device, progress, ranks)


def _build(models: Sequence, music_dir: Path, out: Path, settings: dict, files: Sequence[Path] | None,
           batch_size: int, device: str | None, progress: bool, ranks: Ranks) -> LibraryData | None:
    # Rank 0 holds the lock once every rank is here: if a peer gave up waiting for it, nothing is written.
    ranks.barrier()
    plan = error = None
    if ranks.rank == 0:
        try:
            manifest = _start_run(out, music_dir, models, settings)
            plan = plan_run(manifest, *_read_old_data(out, manifest), music_dir, out, files)
        except Exception as e:  # told to the other ranks first, so that they stop instead of waiting
            error = e
    # The barrier after the manifest is marked incomplete: no rank embeds before.
    work = ranks.broadcast(None if plan is None else (plan.todo, plan.todo_count))
    if error is not None:
        raise error
    if work is None:
        return None  # rank 0 stopped on an error and reports it

    todo, total = work
    share = shards.read_share(out, todo, ranks.rank, ranks.size)  # disjoint, deterministic, in id order
    mine = _embed_share(models, out, music_dir, share, len(range(ranks.rank, total, ranks.size)), settings,
                        batch_size, device, progress and ranks.rank == 0, ranks.rank)
    everyone = ranks.gather(mine)  # also the barrier after the last shard of every rank
    if ranks.rank != 0:
        return None

    failed = sorted((s for rank_skipped, _, _ in everyone for s in rank_skipped), key=lambda s: s["id"])
    embedded = sum(count for _, _, count in everyone)
    run = {"embedded": embedded, "unchanged": int(plan.keep.sum()) + len(plan.reused),
           "skipped": len(plan.skipped) + len(failed),
           # the library's tracks gone from the folder, and those changed whose new content failed
           "dropped": plan.dropped + sum(plan.old.row_of(s["id"]) is not None for s in failed)}
    if ranks.size > 1:
        run["embedded_by_rank"] = [count for _, _, count in everyone]
    new = heapq.merge(*(shards.shard_tracks(out, names) for _, names, _ in everyone), key=by_id)
    tracks = heapq.merge(kept_tracks(plan), plan.reused, new, key=by_id)  # disjoint, each in id order
    skipped = plan.skipped + failed
    data = _finish_run(out, plan.manifest, tracks, run["unchanged"] + embedded, skipped, run)
    if skipped:
        log.warning("skipped %d of %d new or changed files: %s", len(skipped), total + len(plan.skipped),
                    ", ".join(s["id"] for s in skipped[:5]) + (", ..." if len(skipped) > 5 else ""))
    return data


def _embed_share(models: Sequence, out: Path, music_dir: Path, share: Iterator[str], count: int, settings: dict,
                 batch_size: int, device: str | None, progress: bool, rank: int) -> tuple[list[dict], list[str], int]:
    """Embed this rank's ``count`` ids ``share`` into pending shards: ``(skipped, shard names,
    tracks written)``, small enough to send to rank 0. A file's size and time are taken just
    before it is read: changed later, the next run sees it changed."""
    skipped, names, written = [], [], 0
    bar = tqdm(total=count, unit="file", desc="indexing", disable=not progress)
    try:
        while part := list(itertools.islice(share, SHARD_TRACKS)):
            entries = []
            for rel in part:
                path = music_dir / rel
                try:
                    entries.append((rel, path, path.stat()))
                except OSError as e:
                    skipped.append(gone(rel, path, e))
            results = embedding.embed_files(models, [p for _, p, _ in entries], settings, batch_size=batch_size,
                                            device=device) if entries else []
            shard_tracks, shard_rows = [], []
            for (rel, path, st), (arrays, labels, error) in zip(entries, results):
                if error:
                    log.warning("skipping %s", error)
                    skipped.append({"id": rel, "reason": error})
                    continue
                try:
                    digest = file_digest(path, "sha256")
                except OSError as e:  # deleted (or made unreadable) while its shard was embedded
                    skipped.append(gone(rel, path, e))
                    continue
                shard_tracks.append(Track(rel, st.st_size, st.st_mtime_ns, digest, arrays.pop("duration_s"), labels))
                shard_rows.append(arrays)
            if shard_tracks:
                name = shard_name(rank)
                shards.write_shard(out, shard_tracks, shard_rows, name)
                names.append(name)
                written += len(shard_tracks)
            bar.update(len(part))
    finally:
        bar.close()
    return skipped, names, written


def write_library(out: str | os.PathLike, models: Sequence, music_dir: str | os.PathLike, tracks: Sequence[Track],
                  arrays: dict[str, np.ndarray], *, max_chunks: int = DEFAULT_MAX_CHUNKS,
                  weights: Sequence[float] | None = None) -> LibraryData:
    """Write a library of ``tracks`` whose vectors were computed elsewhere, in the real format.

    ``arrays`` holds one row per track (in the order of ``tracks``): ``model<i>.embedding``
    (N, D_i) and ``model<i>.probabilities`` (N, C_i) for each of ``models``, and
    ``fingerprint`` (N, 1152), the widths a model of ``models`` gives. ``models`` are stored
    and checked as :func:`build` does
    (``max_chunks`` and ``weights`` are recorded as the library's settings, so a later
    ``musiczoo index`` of the same folder with them reuses these tracks). ``out`` must be a
    new or empty folder, or a library of the same models and settings, whose tracks these replace.
    """
    arrays = {name: np.asarray(values, np.float32) for name, values in arrays.items()}
    names = array_names(len(models))
    if set(arrays) != names:
        raise LibraryError(f"need exactly the arrays {', '.join(sorted(names))}; got {', '.join(sorted(arrays))}")
    wrong = [f"{name} has shape {value.shape}" for name, value in sorted(arrays.items())
             if value.ndim != 2 or len(value) != len(tracks)]
    for i, model in enumerate(models):  # the widths a later index run's tracks will have
        widths = {"probabilities": (model.spec.num_classes, "classes"),
                  "embedding": (getattr(model, "embed_dim", None), "embedding dimensions")}
        wrong += [f"model{i}.{kind} has {arrays[f'model{i}.{kind}'].shape[-1]} columns for {width} {what}"
                  for kind, (width, what) in widths.items()
                  if width is not None and arrays[f"model{i}.{kind}"].shape[-1] != width]
    if wrong:
        raise LibraryError(f"need one row per track ({len(tracks)} tracks): {'; '.join(wrong)}")
    if len({t.id for t in tracks}) != len(tracks):
        raise LibraryError("track ids must be unique (one per file of the music folder)")
    music_dir, out = Path(music_dir).expanduser().resolve(), Path(out)
    settings = check_settings(len(models), max_chunks, weights)
    with writer_lock(out):
        manifest = _start_run(out, music_dir, models, settings)
        order = sorted(range(len(tracks)), key=lambda i: tracks[i].id)
        old, _ = _read_old_data(out, manifest)
        given = iter(tracks[i].id for i in order)
        remaining = next(given, None)
        kept_of_old = 0
        for track in old:  # both in id order: count the old tracks these replace
            while remaining is not None and remaining < track.id:
                remaining = next(given, None)
            kept_of_old += remaining == track.id
        run = {"embedded": 0, "unchanged": len(tracks), "skipped": 0, "dropped": len(old) - kept_of_old}
        return _finish_run(out, manifest, (StoredTrack(tracks[i], i, arrays) for i in order), len(tracks), [], run)


def check_settings(models: int, max_chunks: int, weights: Sequence[float] | None) -> dict:
    """The library settings of a run with ``models`` models, refused in one line before any work
    (the command line calls this before it loads a model): a NaN or infinite weight would
    otherwise only fail when the manifest is written, after the models were saved."""
    if models < 1:
        raise LibraryError("give at least one model")
    if isinstance(max_chunks, bool) or not isinstance(max_chunks, int) or max_chunks < 1:
        raise LibraryError(f"--max-chunks must be a whole number of at least 1, got {max_chunks!r}")
    weights = [1.0] * models if weights is None else [float(w) for w in weights]
    if len(weights) != models or not all(math.isfinite(w) and w > 0 for w in weights):
        raise LibraryError(f"--weights needs one positive, finite weight per model ({models} models), "
                           f"got {','.join(map(str, weights))}")
    return {"max_chunks": int(max_chunks), "weights": weights, "fingerprint": fp.METHOD}


@contextlib.contextmanager
def writer_lock(out: Path):
    """Hold the library's writer lock, ``.<name>.lock`` beside ``out``: a second ``index`` of the
    same library waits for the first, then finds its tracks unchanged. (Without it the first
    to finish removed ``pending/`` under the other, which then wrote a "complete" library of
    its last shard.) The lock is beside the folder, not in it, so a new library's folder stays
    empty until its first run starts."""
    out = out.expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out.parent / f".{out.name}.lock",
                        on_wait=lambda: log.warning("waiting for another process writing the library %s", out)):
        yield


def _read_old_data(out: Path, manifest: dict) -> tuple[TrackTable, ArrayFile | None]:
    """The library's current tracks and their vectors file (opened, not read); damaged ones are
    dropped with a warning, so this run embeds their tracks again (the repair that
    ``Library.open``'s error advises)."""
    try:
        tracks, vectors, _ = read_data(out, manifest)
        return tracks, vectors
    except LibraryError as e:
        log.warning("%s: embedding its tracks again", e)
        return TrackTable.of([]), None


def _start_run(out: Path, music_dir: Path, models: Sequence, settings: dict) -> dict:
    """Check a library's models and settings against this run's, then mark it incomplete."""
    entries = [model_entry(m) for m in models]
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).is_file():
        manifest = read_manifest(out)
        differences = [f"model {i}: {key} {new[key]!r} (library: {old.get(key)!r})"
                       for i, (old, new) in enumerate(zip(manifest["models"], entries))
                       for key in MATCHED_ENTRY_FIELDS if old.get(key) != new[key]]
        if len(manifest["models"]) != len(entries):
            differences.insert(0, f"{len(entries)} models (library: {len(manifest['models'])})")
        differences += [f"{key} {settings[key]!r} (library: {manifest['settings'].get(key)!r})"
                        for key in settings if key != "fingerprint" and manifest["settings"].get(key) != settings[key]]
        if differences:
            raise LibraryError(f"{out} was built with other models or settings: {'; '.join(differences)}. "
                               f"Index into a new library folder, or use the same models and settings.")
        method = manifest["settings"].get("fingerprint", fp.OLD_METHOD)
        if method != settings["fingerprint"]:  # its fingerprints cannot be compared with this run's
            log.warning("%s: its fingerprints were computed by an older musiczoo (%s); embedding every track again",
                        out, method)
            for stale in (manifest.get("data"), "pending"):
                if stale:
                    shutil.rmtree(out / stale, ignore_errors=True)
            manifest.update(data=None, settings={**manifest["settings"], "fingerprint": settings["fingerprint"]})
        manifest["music_dir"] = str(music_dir)  # the folder may have moved; ids are relative to it
    else:
        if any(out.iterdir()):
            raise LibraryError(f"{out} is not empty and not a musiczoo library; choose a new folder for the library")
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "music_dir": str(music_dir),
                    "models": entries, "settings": settings, "data": None, "skipped": []}
        for i, model in enumerate(models):
            save_model(model, out / "models" / str(i))
    manifest.update(complete=False, format_version=FORMAT_VERSION)  # the run writes this version's data
    write_json(out / MANIFEST, manifest)
    return manifest


def _finish_run(out: Path, manifest: dict, stored: Iterator[StoredTrack], rows: int, skipped: list,
                run: dict) -> LibraryData:
    """Write the ``rows`` tracks ``stored`` (in id order) to a new data folder with its indexes,
    then switch the manifest to it.

    A batch of tracks at a time: their records are added to the track table, and their rows
    gathered from where they are kept (the old data, the pending shards) and written to their
    place in the new vectors file; then each feature's unit vectors are written, a batch at a
    time, to the file its index is built from. So the run holds one batch of tracks and rows
    and one index under construction, never the library's tracks or vectors."""
    generation = int((manifest.get("data") or "data-000000").split("-")[1]) + 1
    data = out / f"data-{generation:06d}"
    if data.exists():
        shutil.rmtree(data)
    (data / "index").mkdir(parents=True)
    first = next(stored, None)
    widths = shards.source_widths(first.source) if first else {}
    table = TableWriter(data / "tracks")

    def batches():
        items = itertools.chain([first], stored) if first else iter(())
        while batch := list(itertools.islice(items, READ_ROWS)):
            table.add([item.track for item in batch])
            yield [item.track.id for item in batch], shards.gather_rows(batch)

    digest = write_arrays(data / VECTORS, widths, rows, batches())
    table.close()
    vectors, means = ArrayFile(data / VECTORS, rows, digest), {}
    if rows:
        means = column_means(vectors.batches(READ_ROWS))
        write_arrays(data / MEANS, {name: mean.shape[1] for name, mean in means.items()}, 1, [(["mean"], means)])
        tasks = [entry["task"] for entry in manifest["models"]]
        for feature in (*features_of(tasks), FINGERPRINT):
            _write_index(data / "index" / f"{feature}.faiss", vectors, means, manifest["settings"]["weights"], feature, tasks)
    previous = manifest.get("data")
    manifest.update(data=data.name, complete=True, skipped=skipped, tracks=rows, last_run=run,
                    updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_json(out / MANIFEST, manifest)
    # Only now is the old data (and every pending shard and work list, all merged) no longer needed.
    if previous and previous != data.name:
        shutil.rmtree(out / previous, ignore_errors=True)
    shutil.rmtree(out / "pending", ignore_errors=True)
    if not rows:
        raise LibraryError(f"{out}: none of the files of {manifest['music_dir']} could be indexed"
                           + (f" ({len(skipped)} unreadable)" if skipped else " (no audio files found)"))
    return LibraryData(manifest, TrackTable.open(data / "tracks"), vectors.maps(), means)


def _write_index(path: Path, vectors: ArrayFile, means: dict, weights: Sequence[float], feature: str,
                 tasks: Sequence[str]) -> None:
    """Build and save the search index of ``feature`` from the unit vectors of every track,
    written a batch at a time to a ``.npy`` file: the index's own re-rank vectors for an
    ``"ivfpq"`` index, a temporary file for the kinds whose index holds the vectors itself."""
    dim = feature_vectors({name: values[:1] for name, values in vectors.maps().items()}, means, weights, feature,
                          tasks).shape[1]
    compressed = auto_kind(vectors.rows) == "ivfpq"
    rows = rerank_vectors_path(path) if compressed else path.with_name(f".{path.name}.rows.npy")
    write_npy(rows, (vectors.rows, dim), (feature_vectors(batch, means, weights, feature, tasks)
                                          for batch in vectors.batches(READ_ROWS)))
    VectorIndex.build(rows, vectors_path=rows if compressed else None).save(path)
    if not compressed:
        rows.unlink()
