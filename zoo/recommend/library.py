"""A music library for content-based recommendation: every track as vectors from published models.

Each track of a music folder is cut into evenly spaced chunks that go through one or more
models (typically the genre model and the tagging model); the track keeps, per model, the
mean of its chunks' pooled embeddings and the mean of their genre or tag probabilities.
Tracks are then connected by the cosine similarity of those vectors: no listening history,
so a track can be recommended the day it arrives (the cold-start case) and no user data
is collected.

A library folder holds (no pickle anywhere; NumPy arrays in safetensors, metadata in JSON)::

    library.json                manifest: format, complete flag, music folder, models and their
                                fingerprints, settings, the current data folder, skipped files
    data-NNNNNN/tracks.json     one object per track, in row order: id (path relative to the
                                music folder), size, mtime_ns, sha256, duration_s, top labels
    data-NNNNNN/vectors.safetensors
                                model<i>.embedding (N, D_i), model<i>.probabilities (N, C_i) and
                                fingerprint (N, 1152), float32
    data-NNNNNN/index/<feature>.faiss (+ .json)   one search index per feature choice
    models/<i>/                 each model as a published folder, so the library answers audio
                                queries on its own and a re-run can check it was given the same
    pending/shard-NNNNNN.*      tracks embedded by a run that has not finished yet

Safety of an interrupted run: the manifest is marked incomplete before anything is
embedded, embedded tracks are written in small shards as they are done (each shard by an
atomic rename), and a finished run writes a new ``data-NNNNNN`` folder and only then
points the manifest at it. A killed run therefore loses at most one shard of work, the
next run reuses every shard, and :meth:`Library.open` refuses a library whose last run did
not finish instead of answering from a partial one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from datamodules.primitives.files import file_digest, write_atomically, write_json

from datamodules.primitives.audio import AudioDecodeError, decode_audio, list_audio_files
from ..factory import from_pretrained
from ..hub import save_pretrained
from ..predict import predict_files
from . import fingerprint as fp
from .index import VectorIndex, normalize

log = logging.getLogger(__name__)

FORMAT = "musiczoo-library"
FORMAT_VERSION = 1
MANIFEST = "library.json"
#: The feature choices: each model's embedding, its genre/tag probabilities (interpretable), or both.
FEATURES = ("embedding", "probabilities", "combined")
#: The signal-level fingerprint that finds the same recording twice (``zoo.recommend.fingerprint``).
FINGERPRINT = "fingerprint"
DEFAULT_MAX_CHUNKS = 16
#: Tracks per pending shard: an interrupted run loses at most this many tracks' work.
SHARD_TRACKS = 32
#: Labels kept per model in tracks.json (the "top genres/tags" of a track).
TOP_LABELS = 5
#: Fingerprint similarity from which two tracks of the same length count as one recording.
DUPLICATE_THRESHOLD = 0.95


class LibraryError(ValueError):
    """A library, query or model that cannot be used; the message names it and says why."""


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


@dataclass
class Match:
    """A recommended track: its rank, similarity to the query and the labels it shares with it."""

    rank: int
    id: str
    similarity: float
    shared: list[str]
    labels: dict[str, float]
    duration_s: float
    path: str

    def to_dict(self) -> dict:
        return asdict(self)


# ---- small helpers -----------------------------------------------------------------------
def model_fingerprint(model: torch.nn.Module) -> str:
    """What makes a model this model: its architecture config and every weight."""
    digest = hashlib.sha256(json.dumps(model.spec.build_settings(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    contiguous = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
    write_atomically(path.parent, {path.name: lambda p: save_file(contiguous, str(p))})


def _salient(probs: np.ndarray, names: list[str], task: str) -> set[str]:
    """The labels a listener would say a track has: its top genre (and a close second) for a
    genre model; every tag at or above 0.5 for a tagging model."""
    order = np.argsort(-probs)
    if task == "multiclass":
        keep = [order[0]] + ([order[1]] if len(order) > 1 and probs[order[1]] >= 0.5 * probs[order[0]] else [])
        return {names[i] for i in keep}
    return {names[i] for i in order[:TOP_LABELS] if probs[i] >= 0.5}


def mmr(query: np.ndarray, candidates: np.ndarray, similarities: np.ndarray, k: int, relevance: float) -> list[int]:
    """Maximal marginal relevance (Carbonell & Goldstein 1998): greedily pick the candidate
    maximising ``relevance * sim(query, c) - (1 - relevance) * max sim(c, already picked)``.

    ``relevance`` 1 keeps the plain ranking; lower values trade similarity to the query
    for variety among the results. Returns positions into ``candidates``.
    """
    if not 0.0 <= relevance <= 1.0:
        raise LibraryError(f"--diversify must be between 0 and 1 (1 = no diversification), got {relevance}")
    picked: list[int] = []
    left = list(range(len(candidates)))
    between = candidates @ candidates.T
    while left and len(picked) < k:
        redundancy = between[np.ix_(left, picked)].max(axis=1) if picked else np.zeros(len(left))
        scores = relevance * similarities[left] - (1.0 - relevance) * redundancy
        picked.append(left.pop(int(np.argmax(scores))))
    return picked


# ---- the library ---------------------------------------------------------------------------
class Library:
    """An indexed music folder: open it, query it, grow it.

    ``Library.build(models, music_dir, out)`` builds or updates one; ``Library.open(out)``
    reads a finished one. Queries: :meth:`similar` (a track of the library), :meth:`like`
    (a set of liked tracks), :meth:`similar_to_audio` (any audio file, not added), and
    :meth:`duplicates`. :meth:`add` embeds more files of the music folder.
    """

    def __init__(self, root: Path, manifest: dict, tracks: list[Track], arrays: dict[str, np.ndarray]):
        self.root = Path(root)
        self.manifest = manifest
        self.tracks = tracks
        self.arrays = arrays
        self.row = {t.id: i for i, t in enumerate(tracks)}
        self._vectors: dict[str, np.ndarray] = {}
        self._indexes: dict[str, VectorIndex] = {}
        self._models: list | None = None

    # ---- reading ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> Library:
        """A finished library; refuses a missing, foreign, incomplete or empty one with one line."""
        root = Path(path)
        manifest = cls._read_manifest(root)
        if not manifest.get("complete"):
            raise LibraryError(
                f"{root}: the last index run did not finish (its finished tracks are kept in {root / 'pending'}); "
                f"run `musiczoo index` with the same models and folder again to complete it")
        if not Path(manifest["music_dir"]).is_dir():
            raise LibraryError(
                f"{root}: its music folder {manifest['music_dir']} is gone (moved or deleted); run `musiczoo index` "
                f"with the same models, the folder's new place and --out {root} (unchanged files are not embedded again)")
        tracks, arrays = cls._read_data(root, manifest)
        library = cls(root, manifest, tracks, arrays)
        if not tracks:
            raise LibraryError(f"{root}: the library is empty (no track of {manifest['music_dir']} could be indexed)")
        return library

    @staticmethod
    def _read_manifest(root: Path) -> dict:
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except FileNotFoundError:
            raise LibraryError(f"{root}: not a musiczoo library (no {MANIFEST}); make one with `musiczoo index`") from None
        except json.JSONDecodeError as e:
            raise LibraryError(f"{root / MANIFEST}: invalid JSON ({e})") from None
        if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
            raise LibraryError(f"{root / MANIFEST}: not a musiczoo library of format version <= {FORMAT_VERSION}")
        return manifest

    @staticmethod
    def _read_data(root: Path, manifest: dict) -> tuple[list[Track], dict[str, np.ndarray]]:
        data = manifest.get("data")
        if not data:
            return [], {}
        folder = root / data
        try:
            tracks = [Track(**t) for t in json.loads((folder / "tracks.json").read_text())]
            arrays = load_file(str(folder / "vectors.safetensors"))
        except (OSError, ValueError, TypeError) as e:
            raise LibraryError(f"{folder}: damaged library data ({e}); run `musiczoo index` again to rebuild it") from None
        if any(len(a) != len(tracks) for a in arrays.values()):
            raise LibraryError(f"{folder}: vectors and tracks.json disagree in length; run `musiczoo index` again")
        return tracks, arrays

    @property
    def music_dir(self) -> Path:
        return Path(self.manifest["music_dir"])

    @property
    def model_entries(self) -> list[dict]:
        return self.manifest["models"]

    def path_of(self, track: Track | str) -> Path:
        return self.music_dir / (track.id if isinstance(track, Track) else track)

    def models(self) -> list:
        """The library's own models (loaded once, from ``models/<i>``), for audio queries."""
        if self._models is None:
            self._models = [from_pretrained(self.root / "models" / str(i)) for i in range(len(self.model_entries))]
        return self._models

    # ---- vectors -----------------------------------------------------------------------
    def _parts(self, feature: str, rows: dict[str, np.ndarray]) -> np.ndarray:
        """The feature vectors of ``rows`` (model<i>.embedding / .probabilities arrays).

        Each model's part is centred on the library's mean and L2-normalised, then weighted:
        centring makes the direction in which a track differs from the collection count,
        not what every track shares (raw pooled embeddings of one model are all within a few
        degrees of each other); normalising and weighting keep any model or vector kind
        from dominating by scale, and make the concatenation a unit vector.
        """
        if feature not in FEATURES:
            raise LibraryError(f"unknown feature choice {feature!r}; valid: {', '.join(FEATURES)}")
        kinds = {"embedding": ["embedding"], "probabilities": ["probabilities"],
                 "combined": ["embedding", "probabilities"]}[feature]
        weights = np.asarray(self.manifest["settings"]["weights"], dtype=np.float64)
        parts = []
        for i, w in enumerate(weights):
            for kind in kinds:
                scale = np.sqrt(w / (weights.sum() * len(kinds)))
                name = f"model{i}.{kind}"
                centred = rows[name] - self.arrays[name].mean(axis=0, keepdims=True)
                parts.append(normalize(centred, what=f"model {i} {kind}") * np.float32(scale))
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)

    def vectors(self, feature: str = "combined") -> np.ndarray:
        """(N, D) unit vectors of every track for ``feature`` (one of :data:`FEATURES`, or
        :data:`FINGERPRINT`); row i is ``self.tracks[i]``."""
        if feature not in self._vectors:
            self._vectors[feature] = (normalize(self.arrays[FINGERPRINT], what="fingerprints") if feature == FINGERPRINT
                                      else self._parts(feature, self.arrays))
        return self._vectors[feature]

    def search_index(self, feature: str) -> VectorIndex:
        """The saved search index of ``feature`` (exact or approximate, chosen by size when built)."""
        if feature not in self._indexes:
            path = self.root / self.manifest["data"] / "index" / f"{feature}.faiss"
            self._indexes[feature] = VectorIndex.load(path) if path.is_file() else VectorIndex.build(self.vectors(feature))
        return self._indexes[feature]

    # ---- queries -------------------------------------------------------------------------
    def track(self, ref: str | int) -> Track:
        """A track by id (path relative to the music folder), by a path to the file, or by row number."""
        ref = str(ref)
        if ref in self.row:
            return self.tracks[self.row[ref]]
        path = Path(ref).expanduser()
        if path.exists():
            try:
                rel = path.resolve().relative_to(self.music_dir.resolve()).as_posix()
            except ValueError:
                rel = None
            if rel in self.row:
                return self.tracks[self.row[rel]]
        if ref.isdigit() and int(ref) < len(self.tracks):
            return self.tracks[int(ref)]
        raise LibraryError(f"no track {ref!r} in {self.root} ({len(self.tracks)} tracks; ids are paths relative "
                           f"to {self.music_dir}, e.g. {self.tracks[0].id!r})")

    def similar(self, track: str | int, k: int = 10, *, feature: str = "combined",
                diversify: float | None = None) -> list[Match]:
        """The ``k`` tracks most similar to a track of the library (never the track itself)."""
        row = self.row[self.track(track).id]
        return self._search(self.vectors(feature)[row], k, feature, {row}, diversify, self._salient_of_row(row))

    def like(self, tracks: Sequence[str | int], k: int = 10, *, feature: str = "combined",
             diversify: float | None = None) -> list[Match]:
        """Recommendations for a set of liked tracks: the normalised mean of their vectors (the
        listener's taste profile) as the query; the liked tracks are never recommended back."""
        if not tracks:
            raise LibraryError("--like needs at least one track")
        rows = sorted({self.row[self.track(t).id] for t in tracks})
        profile = normalize(self.vectors(feature)[rows].mean(axis=0, keepdims=True), what="liked profile")[0]
        shared_by_all = set.intersection(*(self._salient_of_row(r) for r in rows))
        return self._search(profile, k, feature, set(rows), diversify, shared_by_all)

    def similar_to_audio(self, path: str | os.PathLike, k: int = 10, *, feature: str = "combined",
                         diversify: float | None = None) -> tuple[dict[str, float], list[Match]]:
        """A file from outside the library (the cold-start query): its top labels and its nearest
        library tracks. Nothing is added to the library."""
        arrays, track_labels, error = self._embed_one(Path(path))
        if error:
            raise LibraryError(error)
        vector = self._parts(feature, arrays)[0]
        salient = set().union(*(_salient(arrays[f"model{i}.probabilities"][0], m.spec.label_names, m.spec.task)
                                for i, m in enumerate(self.models())))
        labels = {name: p for per_model in track_labels for name, p in per_model.items()}
        return labels, self._search(vector, k, feature, set(), diversify, salient)

    def duplicates(self, threshold: float = DUPLICATE_THRESHOLD, *, max_duration_diff: float = 1.0) -> list[tuple[str, str, float]]:
        """Pairs of near-identical tracks: the same recording re-encoded keeps its length and its
        signal fingerprint (:mod:`zoo.recommend.fingerprint`), so a pair needs fingerprint
        similarity >= ``threshold`` and durations within ``max_duration_diff`` seconds.
        Sorted by similarity, most similar first."""
        vectors, index = self.vectors(FINGERPRINT), self.search_index(FINGERPRINT)
        k = min(len(self.tracks), 11)
        sims, ids = index.search(vectors, k)
        pairs = {}
        for a in range(len(self.tracks)):
            for sim, b in zip(sims[a], ids[a]):
                if b < 0 or b == a or sim < threshold:
                    continue
                if abs(self.tracks[a].duration_s - self.tracks[b].duration_s) <= max_duration_diff:
                    key = (min(a, b), max(a, b))
                    pairs[key] = max(pairs.get(key, -1.0), float(sim))
        return sorted(((self.tracks[a].id, self.tracks[b].id, s) for (a, b), s in pairs.items()), key=lambda p: -p[2])

    def _salient_of_row(self, row: int) -> set[str]:
        return set().union(*(_salient(self.arrays[f"model{i}.probabilities"][row], m["label_names"], m["task"])
                             for i, m in enumerate(self.model_entries)))

    def _search(self, query: np.ndarray, k: int, feature: str, exclude: set[int], diversify: float | None,
                query_labels: set[str]) -> list[Match]:
        if k < 1:
            raise LibraryError(f"-k must be at least 1, got {k}")
        pool = k if diversify is None else min(len(self.tracks), max(4 * k, 50))
        sims, ids = self.search_index(feature).search(query[None].astype(np.float32), pool, exclude=[exclude])
        keep = ids[0] >= 0
        sims, ids = sims[0][keep], ids[0][keep]
        if diversify is not None:
            order = mmr(query, self.vectors(feature)[ids], sims, k, diversify)
            sims, ids = sims[order], ids[order]
        matches = []
        for rank, (sim, row) in enumerate(zip(sims[:k], ids[:k]), 1):
            track = self.tracks[row]
            labels = {name: p for per_model in track.labels for name, p in list(per_model.items())[:3]}
            matches.append(Match(rank, track.id, float(sim), sorted(query_labels & self._salient_of_row(row)),
                                 labels, track.duration_s, str(self.path_of(track))))
        return matches

    # ---- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, models: Sequence, music_dir: str | os.PathLike, out: str | os.PathLike, **kwargs) -> Library:
        """Create or update the library ``out`` of ``music_dir`` (see :func:`build`)."""
        return build(models, music_dir, out, **kwargs)

    def _embed_one(self, path: Path):
        return _embed_files(self.models(), [path], self.manifest["settings"])[0]

    def add(self, paths: Iterable[str | os.PathLike], *, progress: bool = True) -> Library:
        """Embed more files of the music folder (new or changed ones) and return the updated library."""
        files = [Path(p).resolve() for p in paths]
        outside = [str(p) for p in files if not p.is_relative_to(self.music_dir.resolve())]
        if outside:
            raise LibraryError(f"{outside[0]} is not inside the library's music folder {self.music_dir}")
        return build(self.models(), self.music_dir, self.root, files=files, progress=progress,
                     max_chunks=self.manifest["settings"]["max_chunks"], weights=self.manifest["settings"]["weights"])


def build(models: Sequence, music_dir: str | os.PathLike, out: str | os.PathLike, *, files: Sequence[Path] | None = None,
          max_chunks: int = DEFAULT_MAX_CHUNKS, weights: Sequence[float] | None = None, batch_size: int = 16,
          device: str | None = None, progress: bool = True) -> Library:
    """Create or update the library ``out`` of ``music_dir`` with ``models`` (loaded zoo models).

    Only new or changed files are embedded; files gone from the folder are dropped; ``files``
    limits the run to those files (deletions are then not looked for). A library made with
    other models or settings is refused with the differences named.
    """
    music_dir, out = Path(music_dir).expanduser().resolve(), Path(out)
    if not music_dir.is_dir():
        raise LibraryError(f"{music_dir}: no such music folder")
    if not models:
        raise LibraryError("give at least one model")
    weights = [1.0] * len(models) if weights is None else [float(w) for w in weights]
    if len(weights) != len(models) or min(weights) <= 0:
        raise LibraryError(f"need one positive weight per model ({len(models)} models), got {weights}")
    settings = {"max_chunks": int(max_chunks), "weights": weights}
    entries = [{"label_names": list(m.spec.label_names), "task": m.spec.task, "sample_rate": m.spec.sample_rate,
                "chunk_seconds": m.spec.chunk_seconds, "architecture": m.spec.architecture,
                "transform": m.spec.transform, "fingerprint": model_fingerprint(m)} for m in models]
    out.mkdir(parents=True, exist_ok=True)
    manifest = _start_run(out, music_dir, entries, settings, models)
    old_tracks, old_arrays = Library._read_data(out, manifest)

    # What must be embedded: new files, and files whose size/mtime changed (unless their content did not).
    on_disk = {p.relative_to(music_dir).as_posix(): p for p in (files if files is not None else list_audio_files(music_dir))}
    known = {t.id: (t, i) for i, t in enumerate(old_tracks)}
    pending = _read_pending(out)
    todo, kept = [], {}
    for rel, path in sorted(on_disk.items()):
        source = _unchanged(path, known.get(rel)) or _unchanged(path, pending.get(rel))
        if source:
            kept[rel] = source
        else:
            todo.append((rel, path, path.stat()))
    if files is not None:  # an ``add`` keeps every other track
        for rel, source in known.items():
            kept.setdefault(rel, source)

    skipped = []
    bar = tqdm(total=len(todo), unit="file", desc="indexing", disable=not progress)
    try:
        for start in range(0, len(todo), SHARD_TRACKS):
            part = todo[start:start + SHARD_TRACKS]
            results = _embed_files(models, [p for _, p, _ in part], settings, batch_size=batch_size, device=device)
            shard_tracks, shard_rows = [], []
            for (rel, path, st), (arrays, labels, error) in zip(part, results):
                if error:
                    log.warning("skipping %s", error)
                    skipped.append({"id": rel, "reason": error})
                    continue
                shard_tracks.append(Track(rel, st.st_size, st.st_mtime_ns, file_digest(path, "sha256"),
                                          arrays.pop("duration_s"), labels))
                shard_rows.append(arrays)
            _write_shard(out, shard_tracks, shard_rows)
            bar.update(len(part))
    finally:
        bar.close()
    pending = _read_pending(out)
    failed = {s["id"] for s in skipped}
    embedded = [rel for rel, _, _ in todo if rel in pending and rel not in failed]
    for rel in embedded:
        kept[rel] = pending[rel]
    run = {"embedded": len(embedded), "unchanged": len(kept) - len(embedded), "skipped": len(skipped),
           "dropped": len(set(known) - set(kept))}
    library = _finish_run(out, manifest, kept, old_arrays, skipped, run)
    if skipped:
        log.warning("skipped %d of %d new or changed files: %s", len(skipped), len(todo),
                    ", ".join(s["id"] for s in skipped[:5]) + (", ..." if len(skipped) > 5 else ""))
    return library


def _unchanged(path: Path, source: tuple | None) -> tuple | None:
    """``source`` (a stored track and where its vectors are) if ``path`` still holds its content:
    same size and modification time, or, when only the time changed, the same SHA-256."""
    if source is None:
        return None
    track, st = source[0], path.stat()
    if (track.size, track.mtime_ns) == (st.st_size, st.st_mtime_ns):
        return source
    if track.size == st.st_size and file_digest(path, "sha256") == track.sha256:  # touched, not changed
        return (Track(**{**asdict(track), "mtime_ns": st.st_mtime_ns}), *source[1:])
    return None


def _start_run(out: Path, music_dir: Path, entries: list[dict], settings: dict, models: Sequence) -> dict:
    """Check a library's models and settings against this run's, then mark it incomplete."""
    if (out / MANIFEST).is_file():
        manifest = Library._read_manifest(out)
        differences = [f"model {i}: {key} {new[key]!r} (library: {old[key]!r})"
                       for i, (old, new) in enumerate(zip(manifest["models"], entries))
                       for key in ("architecture", "transform", "sample_rate", "chunk_seconds", "fingerprint")
                       if old.get(key) != new[key]]
        if len(manifest["models"]) != len(entries):
            differences.insert(0, f"{len(entries)} models (library: {len(manifest['models'])})")
        differences += [f"{key} {settings[key]!r} (library: {manifest['settings'][key]!r})"
                        for key in settings if manifest["settings"].get(key) != settings[key]]
        if differences:
            raise LibraryError(f"{out} was built with other models or settings: {'; '.join(differences)}. "
                               f"Index into a new library folder, or use the same models and settings.")
        manifest["music_dir"] = str(music_dir)  # the folder may have moved; ids are relative to it
    else:
        if any(out.iterdir()):
            raise LibraryError(f"{out} is not empty and not a musiczoo library; choose a new folder for the library")
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "music_dir": str(music_dir),
                    "models": entries, "settings": settings, "data": None, "skipped": []}
        for i, model in enumerate(models):
            save_pretrained(model, out / "models" / str(i))
    manifest["complete"] = False
    write_json(out / MANIFEST, manifest)
    return manifest


def _embed_files(models: Sequence, paths: list[Path], settings: dict, *, batch_size: int = 16,
                 device: str | None = None) -> list[tuple[dict, list[dict], str | None]]:
    """Per file: (arrays ``model<i>.embedding``/``.probabilities`` of shape (1, D), ``fingerprint``
    and ``duration_s``, top labels per model, error). A file that cannot be decoded gets its
    error instead; the fingerprint's decoding finds it before any model runs."""
    arrays = [{} for _ in paths]
    labels = [[] for _ in paths]
    errors: list[str | None] = [None] * len(paths)
    for j, path in enumerate(paths):
        try:
            arrays[j][FINGERPRINT] = fp.fingerprint(decode_audio(str(path), fp.SAMPLE_RATE))[None]
        except (AudioDecodeError, OSError) as e:
            errors[j] = f"{path}: {e}"
    readable = [j for j in range(len(paths)) if errors[j] is None]
    for i, model in enumerate(models):
        results = predict_files(model, [paths[j] for j in readable], top_k=0, embeddings=True,
                                max_chunks=settings["max_chunks"], batch_size=batch_size, device=device, progress=False)
        for j, result in zip(readable, results):
            if result.error:  # decodable at the fingerprint's rate but not at the model's: rare, but possible
                errors[j] = errors[j] or result.error
                continue
            arrays[j][f"model{i}.embedding"] = np.asarray(result.embedding, np.float32)[None]
            arrays[j][f"model{i}.probabilities"] = np.asarray([result.labels[n] for n in model.spec.label_names], np.float32)[None]
            arrays[j]["duration_s"] = float(result.duration_s)
            labels[j].append({name: round(p, 4) for name, p in list(result.labels.items())[:TOP_LABELS]})
    return list(zip(arrays, labels, errors))


def _write_shard(out: Path, tracks: list[Track], rows: list[dict]) -> None:
    if not tracks:
        return
    folder = out / "pending"
    folder.mkdir(exist_ok=True)
    name = f"shard-{time.time_ns():020d}-{os.getpid()}"
    _save_arrays(folder / f"{name}.safetensors", {k: np.concatenate([r[k] for r in rows]) for k in rows[0]})
    write_json(folder / f"{name}.json", [asdict(t) for t in tracks])  # written last: it marks the shard whole


def _read_pending(out: Path) -> dict[str, tuple[Track, int, dict]]:
    """Tracks of finished shards, latest shard winning: id -> (track, row, arrays of its shard)."""
    found = {}
    for meta in sorted((out / "pending").glob("shard-*.json")) if (out / "pending").is_dir() else []:
        arrays = load_file(str(meta.with_suffix(".safetensors")))
        for row, t in enumerate(json.loads(meta.read_text())):
            found[t["id"]] = (Track(**t), row, arrays)
    return found


def _finish_run(out: Path, manifest: dict, kept: dict, old_arrays: dict, skipped: list, run: dict) -> Library:
    """Write the tracks in id order to a new data folder with its indexes, then switch the manifest to it."""
    ids = sorted(kept)
    tracks, columns = [], {}
    for rel in ids:
        source = kept[rel]
        track, row = source[0], source[1]
        arrays = source[2] if len(source) == 3 else old_arrays
        tracks.append(track)
        for name, values in arrays.items():
            columns.setdefault(name, []).append(values[row])
    generation = int((manifest.get("data") or "data-000000").split("-")[1]) + 1
    data = out / f"data-{generation:06d}"
    if data.exists():
        shutil.rmtree(data)
    (data / "index").mkdir(parents=True)
    arrays = {k: np.stack(v) for k, v in columns.items()}
    _save_arrays(data / "vectors.safetensors", arrays)
    write_json(data / "tracks.json", [asdict(t) for t in tracks])
    library = Library(out, {**manifest, "data": data.name}, tracks, arrays)
    if tracks:
        for feature in (*FEATURES, FINGERPRINT):
            VectorIndex.build(library.vectors(feature)).save(data / "index" / f"{feature}.faiss")
    previous = manifest.get("data")
    manifest.update(data=data.name, complete=True, skipped=skipped, tracks=len(tracks), last_run=run,
                    updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_json(out / MANIFEST, manifest)
    # Only now is the old data (and every pending shard, all merged) no longer needed.
    if previous and previous != data.name:
        shutil.rmtree(out / previous, ignore_errors=True)
    shutil.rmtree(out / "pending", ignore_errors=True)
    library.manifest = manifest
    if not tracks:
        raise LibraryError(f"{out}: none of the files of {manifest['music_dir']} could be indexed"
                           + (f" ({len(skipped)} unreadable)" if skipped else " (no audio files found)"))
    return library

