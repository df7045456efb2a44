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

Memory does not grow with the library's vectors: a finished run's tracks are merged into the
new data folder a batch of rows at a time, read from where they were kept (the old vectors
file and the pending shards, through memory maps made per batch) and written to their place
in the new file; the means, each feature's unit vectors and its index are then made from that
file a batch at a time too. A run holds one batch of rows, the one search index it is
building, and the track records (``tracks.json``, about 1.2 KB a track in memory).

Two runs on one library take turns: each holds an exclusive lock on ``.<library name>.lock``
beside the folder from its first read of the manifest to its last write (the second then
finds the first's tracks unchanged). Damaged data (a truncated or foreign
``vectors.safetensors``, a damaged ``tracks.json`` or pending shard) is embedded again
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
import logging
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from datamodules.primitives.audio import list_audio_files
from datamodules.primitives.files import exclusive_lock, file_digest, write_json, write_json_list

from . import fingerprint as fp
from . import embedding, shards
from .index import VectorIndex, auto_kind, rerank_vectors_path
from .rows import write_npy
from .shards import Ranks, StoredTrack, read_pending, shard_name, unchanged
from .store import (FEATURES, FINGERPRINT, FORMAT, FORMAT_VERSION, MANIFEST, MATCHED_ENTRY_FIELDS, MEANS, READ_ROWS,
                    VECTORS, ArrayFile, LibraryData, LibraryError, Track, column_means, feature_vectors, model_entry,
                    array_names, read_data, read_manifest, save_model, write_arrays)

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
            plan = _plan(models, music_dir, out, settings, files)
        except Exception as e:  # told to the other ranks first, so that they stop instead of waiting
            error = e
    # The barrier after the manifest is marked incomplete: no rank embeds before.
    todo = ranks.broadcast(None if plan is None else plan[0])
    if error is not None:
        raise error
    if todo is None:
        return None  # rank 0 stopped on an error and reports it

    share = todo[ranks.rank::ranks.size]  # disjoint, deterministic: the same sorted list on every rank
    mine = _embed_share(models, out, share, settings, batch_size, device, progress and ranks.rank == 0, ranks.rank)
    everyone = ranks.gather(mine)  # also the barrier after the last shard of every rank
    if ranks.rank != 0:
        return None

    todo, kept, known, skipped, manifest = plan
    vanished = len(skipped)
    skipped = skipped + sorted((s for rank_skipped, _, _ in everyone for s in rank_skipped), key=lambda s: s["id"])
    pending = read_pending(out, last=[name for _, names, _ in everyone for name in names])
    failed = {s["id"] for s in skipped}
    embedded = [rel for rel, _, _ in todo if rel in pending and rel not in failed]
    for rel in embedded:
        kept[rel] = pending[rel]
    run = {"embedded": len(embedded), "unchanged": len(kept) - len(embedded), "skipped": len(skipped),
           "dropped": len(set(known) - set(kept))}
    if ranks.size > 1:
        run["embedded_by_rank"] = [count for _, _, count in everyone]
    data = _finish_run(out, manifest, kept, skipped, run)
    if skipped:
        log.warning("skipped %d of %d new or changed files: %s", len(skipped), len(todo) + vanished,
                    ", ".join(s["id"] for s in skipped[:5]) + (", ..." if len(skipped) > 5 else ""))
    return data


def _plan(models: Sequence, music_dir: Path, out: Path, settings: dict, files: Sequence[Path] | None) -> tuple:
    """Start the run (the manifest marked incomplete) and decide its work: ``(todo, kept, known,
    skipped, manifest)``, where ``todo`` holds ``(id, path, stat)`` of every new or changed file in
    id order, ``kept`` the tracks reused (from the library or a killed run's shards), ``known``
    the library's tracks and ``skipped`` the files gone since the folder was listed."""
    manifest = _start_run(out, music_dir, models, settings)
    old_tracks, old_vectors = _read_old_data(out, manifest)

    # What must be embedded: new files, and files whose size/mtime changed (unless their content did not).
    on_disk = {p.relative_to(music_dir).as_posix(): p for p in (files if files is not None else list_audio_files(music_dir))}
    known = {t.id: StoredTrack(t, i, old_vectors) for i, t in enumerate(old_tracks)}
    pending = read_pending(out)
    todo, kept, skipped = [], {}, []
    for rel, path in sorted(on_disk.items()):
        try:
            stored = unchanged(path, known.get(rel)) or unchanged(path, pending.get(rel))
            if stored:
                kept[rel] = stored
            else:
                todo.append((rel, path, path.stat()))
        except OSError as e:  # deleted (or made unreadable) since the folder was listed
            skipped.append(_gone(rel, path, e))
    if files is not None:  # an ``add`` keeps every other track
        for rel, stored in known.items():
            kept.setdefault(rel, stored)
    return todo, kept, known, skipped, manifest


def _embed_share(models: Sequence, out: Path, share: list, settings: dict, batch_size: int, device: str | None,
                 progress: bool, rank: int) -> tuple[list[dict], list[str], int]:
    """Embed this rank's ``(id, path, stat)`` entries into pending shards: ``(skipped, shard names,
    tracks written)``, small enough to send to rank 0."""
    skipped, names, written = [], [], 0
    bar = tqdm(total=len(share), unit="file", desc="indexing", disable=not progress)
    try:
        for start in range(0, len(share), SHARD_TRACKS):
            part = share[start:start + SHARD_TRACKS]
            results = embedding.embed_files(models, [p for _, p, _ in part], settings, batch_size=batch_size,
                                            device=device)
            shard_tracks, shard_rows = [], []
            for (rel, path, st), (arrays, labels, error) in zip(part, results):
                if error:
                    log.warning("skipping %s", error)
                    skipped.append({"id": rel, "reason": error})
                    continue
                try:
                    digest = file_digest(path, "sha256")
                except OSError as e:  # deleted (or made unreadable) while its shard was embedded
                    skipped.append(_gone(rel, path, e))
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
        kept = {t.id: StoredTrack(t, i, arrays) for i, t in enumerate(tracks)}
        old_ids = {t.id for t in _read_old_data(out, manifest)[0]}
        run = {"embedded": 0, "unchanged": len(kept), "skipped": 0, "dropped": len(old_ids - set(kept))}
        return _finish_run(out, manifest, kept, [], run)


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


def _gone(rel: str, path: Path, error: OSError) -> dict:
    """The skipped-file record of a file that vanished (or became unreadable) during the run."""
    reason = f"{path}: gone or unreadable during indexing ({error.strerror or error})"
    log.warning("skipping %s", reason)
    return {"id": rel, "reason": reason}


def _read_old_data(out: Path, manifest: dict) -> tuple[list[Track], ArrayFile | None]:
    """The library's current tracks and their vectors file (opened, not read); damaged ones are
    dropped with a warning, so this run embeds their tracks again (the repair that
    ``Library.open``'s error advises)."""
    try:
        tracks, vectors, _ = read_data(out, manifest)
        return tracks, vectors
    except LibraryError as e:
        log.warning("%s: embedding its tracks again", e)
        return [], None


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
    manifest["complete"] = False
    write_json(out / MANIFEST, manifest)
    return manifest


def _finish_run(out: Path, manifest: dict, kept: dict[str, StoredTrack], skipped: list, run: dict) -> LibraryData:
    """Write the tracks in id order to a new data folder with its indexes, then switch the manifest to it.

    A batch of tracks at a time: their rows are gathered from where they are kept (the old
    data, the pending shards) and written to their place in the new vectors file; then each
    feature's unit vectors are written, a batch at a time, to the file its index is built
    from. So the run holds one batch of rows and one index under construction, never the
    library's vectors, however many tracks it has."""
    ids = sorted(kept)
    stored = [kept[rel] for rel in ids]
    tracks = [item.track for item in stored]
    generation = int((manifest.get("data") or "data-000000").split("-")[1]) + 1
    data = out / f"data-{generation:06d}"
    if data.exists():
        shutil.rmtree(data)
    (data / "index").mkdir(parents=True)
    widths = shards.source_widths(stored[0].source) if stored else {}
    write_arrays(data / VECTORS, widths, ids,
                 (shards.gather_rows(stored[start:start + READ_ROWS]) for start in range(0, len(stored), READ_ROWS)))
    write_json_list(data / "tracks.json", (asdict(t) for t in tracks))
    vectors, means = ArrayFile(data / VECTORS, ids), {}
    if tracks:
        means = column_means(vectors.batches(READ_ROWS))
        write_arrays(data / MEANS, {name: mean.shape[1] for name, mean in means.items()}, ["mean"], [means])
        for feature in (*FEATURES, FINGERPRINT):
            _write_index(data / "index" / f"{feature}.faiss", vectors, means, manifest["settings"]["weights"], feature)
    previous = manifest.get("data")
    manifest.update(data=data.name, complete=True, skipped=skipped, tracks=len(tracks), last_run=run,
                    updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_json(out / MANIFEST, manifest)
    # Only now is the old data (and every pending shard, all merged) no longer needed.
    if previous and previous != data.name:
        shutil.rmtree(out / previous, ignore_errors=True)
    shutil.rmtree(out / "pending", ignore_errors=True)
    if not tracks:
        raise LibraryError(f"{out}: none of the files of {manifest['music_dir']} could be indexed"
                           + (f" ({len(skipped)} unreadable)" if skipped else " (no audio files found)"))
    return LibraryData(manifest, tracks, vectors.maps(), means)


def _write_index(path: Path, vectors: ArrayFile, means: dict, weights: Sequence[float], feature: str) -> None:
    """Build and save the search index of ``feature`` from the unit vectors of every track,
    written a batch at a time to a ``.npy`` file: the index's own re-rank vectors for an
    ``"ivfpq"`` index, a temporary file for the kinds whose index holds the vectors itself."""
    dim = feature_vectors({name: values[:1] for name, values in vectors.maps().items()}, means, weights, feature).shape[1]
    compressed = auto_kind(vectors.rows) == "ivfpq"
    rows = rerank_vectors_path(path) if compressed else path.with_name(f".{path.name}.rows.npy")
    write_npy(rows, (vectors.rows, dim), (feature_vectors(batch, means, weights, feature)
                                          for batch in vectors.batches(READ_ROWS)))
    VectorIndex.build(rows, vectors_path=rows if compressed else None).save(path)
    if not compressed:
        rows.unlink()
