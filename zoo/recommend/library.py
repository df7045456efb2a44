"""A music library for content-based recommendation: open it, query it, grow it.

Every track of a music folder is kept as vectors from published models (each model's
pooled embedding and genre or tag probabilities, and a signal fingerprint). Tracks are
connected by the cosine similarity of those vectors: no listening history, so a track
can be recommended the day it arrives (the cold-start case) and no user data is collected.

:class:`Library` is the one entry point: :meth:`Library.build` indexes a music folder (the
work is :mod:`zoo.recommend.indexing`'s), :meth:`Library.from_vectors` writes a library
from vectors computed elsewhere, :meth:`Library.open` reads a finished one, and the query
methods answer from it. The folder format is :mod:`zoo.recommend.store`'s.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..spec import ModelSpec
from . import embedding, indexing
from .index import VectorIndex, normalize
from .indexing import DEFAULT_MAX_CHUNKS
from .store import (FEATURES, FINGERPRINT, READ_ROWS, TOP_LABELS, LibraryError, default_feature, feature_models,
                    feature_vectors, features_of, load_model, read_data, read_manifest, read_model_spec)
from .tracks import Track, TrackTable

__all__ = ["DEFAULT_MAX_CHUNKS", "DUPLICATE_THRESHOLD", "FEATURES", "FINGERPRINT", "Library", "LibraryError", "Match",
           "Track", "mmr", "salient_labels"]

#: Fingerprint similarity from which two tracks of the same length count as one recording.
DUPLICATE_THRESHOLD = 0.95


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


def salient_labels(probs: np.ndarray, names: Sequence[str], task: str,
                   scale: tuple[float, float] | None = None) -> set[str]:
    """The labels a listener would say a track has: its top genre (and a close second, at
    least half as likely) for a genre model; every tag at or above 0.5 among its top
    :data:`~zoo.recommend.store.TOP_LABELS` for a tagging model; for an emotion model, which
    half of its scale each value is in (``high valence``, ``low arousal``); none for a version
    model (the works it was trained on are not labels a listener would share)."""
    if task == "versions":
        return set()
    if task == "regression":
        middle = sum(scale) / 2 if scale else 0.0
        return {f"{'high' if value >= middle else 'low'} {name}" for name, value in zip(names, probs.tolist())}
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


class Library:
    """An indexed music folder: open it, query it, grow it.

    ``Library.build(models, music_dir, out)`` builds or updates one; ``Library.open(out)``
    reads a finished one. Queries: :meth:`similar` (a track of the library), :meth:`like`
    (a set of liked tracks), :meth:`similar_to_audio` (any audio file, not added),
    :meth:`versions` (other performances of a track's work) and :meth:`duplicates` (the same
    recording). :meth:`add` embeds more files of the music folder. A query's ``feature`` is
    :attr:`default_feature` unless given.
    """

    def __init__(self, root: Path, manifest: dict, tracks: TrackTable, arrays: dict[str, np.ndarray],
                 means: dict[str, np.ndarray]):
        self.root = Path(root)
        self.manifest = manifest
        self.tracks = tracks  # like the arrays, read through memory maps: a query reads only its rows
        self.arrays = arrays
        self.means = means
        self.row = tracks.row  # id -> row, by binary search
        self._vectors: dict[str, np.ndarray] = {}
        self._indexes: dict[str, VectorIndex] = {}
        self._models: list | None = None
        self._specs: list[ModelSpec] | None = None

    # ---- reading ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> Library:
        """A finished library; refuses a missing, foreign, incomplete or empty one with one line."""
        root = Path(path)
        manifest = read_manifest(root)
        if not manifest.get("complete"):
            raise LibraryError(
                f"{root}: the last index run did not finish (its finished tracks are kept in {root / 'pending'}); "
                f"run `musiczoo index` with the same models and folder again to complete it")
        if not isinstance(manifest.get("music_dir"), str) or not manifest["music_dir"]:
            raise LibraryError(f"{root / 'library.json'}: damaged (no music folder, music_dir); run `musiczoo index` "
                               f"with the library's models, its music folder and --out {root} to repair it")
        if not Path(manifest["music_dir"]).is_dir():
            raise LibraryError(
                f"{root}: its music folder {manifest['music_dir']} is gone (moved or deleted); run `musiczoo index` "
                f"with the same models, the folder's new place and --out {root} (unchanged files are not embedded again)")
        try:
            tracks, vectors, means = read_data(root, manifest)
        except LibraryError as e:
            raise LibraryError(f"{e}; `musiczoo index` with the library's models, its music folder and --out {root} "
                               "rebuilds it") from None
        library = cls(root, manifest, tracks, vectors.maps() if vectors else {}, means)
        if not tracks:
            raise LibraryError(f"{root}: the library is empty (no track of {manifest['music_dir']} could be indexed)")
        return library

    @property
    def music_dir(self) -> Path:
        return Path(self.manifest["music_dir"])

    @property
    def model_entries(self) -> list[dict]:
        return self.manifest["models"]

    @property
    def tasks(self) -> list[str]:
        """Each model's task (``multiclass``, ``multilabel``, ``regression``, ``versions``), from the manifest."""
        return [entry["task"] for entry in self.model_entries]

    @property
    def features(self) -> tuple[str, ...]:
        """The feature choices this library offers (``mood`` only with an emotion model, ``versions``
        only with a version model, the others only with a model that is not one)."""
        return features_of(self.tasks)

    @property
    def default_feature(self) -> str:
        """``combined``, or ``versions`` for a library of version models only."""
        return default_feature(self.tasks)

    def path_of(self, track: Track | str) -> Path:
        return self.music_dir / (track.id if isinstance(track, Track) else track)

    def specs(self) -> list[ModelSpec]:
        """The specs of the library's own models (``models/<i>/config.json``, read once; no weights
        loaded): what their outputs are called and mean."""
        if self._specs is None:
            self._specs = [read_model_spec(self.root / "models" / str(i)) for i in range(len(self.model_entries))]
        return self._specs

    def models(self) -> list:
        """The library's own models (loaded once, from ``models/<i>``), for audio queries."""
        if self._models is None:
            self._models = [load_model(self.root / "models" / str(i)) for i in range(len(self.model_entries))]
        return self._models

    # ---- vectors -----------------------------------------------------------------------
    def vectors(self, feature: str = "combined") -> np.ndarray:
        """(N, D) unit vectors of every track for ``feature`` (one of :data:`FEATURES`, or
        :data:`FINGERPRINT`), in memory (kept); row i is ``self.tracks[i]``. For evaluations
        over the whole library: queries read only their own rows (:meth:`feature_rows`)."""
        if feature not in self._vectors:
            self._vectors[feature] = self.feature_rows(feature, slice(None))
        return self._vectors[feature]

    def feature_rows(self, feature: str, rows) -> np.ndarray:
        """Unit vectors of ``feature`` for the tracks ``rows`` (row numbers, or a slice), read
        from the library's files alone."""
        if feature in self._vectors:
            return self._vectors[feature][rows]
        picked = {name: values[rows] for name, values in self.arrays.items()}
        return feature_vectors(picked, self.means, self.manifest["settings"]["weights"], feature, self.tasks)

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

    def similar(self, track: str | int, k: int = 10, *, feature: str | None = None,
                diversify: float | None = None) -> list[Match]:
        """The ``k`` tracks most similar to a track of the library (never the track itself)."""
        row, feature = self.row[self.track(track).id], feature or self.default_feature
        return self._search(self.feature_rows(feature, [row])[0], k, feature, {row}, diversify, self._salient(self.arrays, row))

    def like(self, tracks: Sequence[str | int], k: int = 10, *, feature: str | None = None,
             diversify: float | None = None) -> list[Match]:
        """Recommendations for a set of liked tracks: the normalised mean of their vectors (the
        listener's taste profile) as the query; the liked tracks are never recommended back."""
        if not tracks:
            raise LibraryError("--like needs at least one track")
        rows, feature = sorted({self.row[self.track(t).id] for t in tracks}), feature or self.default_feature
        profile = normalize(self.feature_rows(feature, rows).mean(axis=0, keepdims=True), what="liked profile")[0]
        shared_by_all = set.intersection(*(self._salient(self.arrays, r) for r in rows))
        return self._search(profile, k, feature, set(rows), diversify, shared_by_all)

    def similar_to_audio(self, path: str | os.PathLike, k: int = 10, *, feature: str | None = None,
                         diversify: float | None = None) -> tuple[dict[str, float], list[Match]]:
        """A file from outside the library (the cold-start query): its top labels (a version
        model's training works left out) and its nearest library tracks. Nothing is added."""
        feature = feature or self.default_feature
        feature_models(feature, self.tasks)  # a feature the library cannot give is refused before any embedding
        arrays, track_labels, error = self._embed_one(Path(path))
        if error:
            raise LibraryError(error)
        vector = feature_vectors(arrays, self.means, self.manifest["settings"]["weights"], feature, self.tasks)[0]
        return self._shown_labels(track_labels), self._search(vector, k, feature, set(), diversify,
                                                               self._salient(arrays, 0))

    def versions(self, track: str | int, k: int = 10) -> list[Match]:
        """Other performances of a track's work (a cover in another key, tempo or instrumentation):
        the ``k`` tracks nearest to it by the ``versions`` feature, its version models' embeddings
        (never the track itself). Refused with one line by a library without a version model."""
        return self.similar(track, k, feature="versions")

    def duplicates(self, threshold: float = DUPLICATE_THRESHOLD, *, max_duration_diff: float = 1.0) -> list[tuple[str, str, float]]:
        """Pairs of near-identical tracks: the same recording re-encoded keeps its length and its
        signal fingerprint (:mod:`zoo.recommend.fingerprint`), so a pair needs fingerprint
        similarity >= ``threshold`` and durations within ``max_duration_diff`` seconds.
        Sorted by similarity, most similar first."""
        index, k = self.search_index(FINGERPRINT), min(len(self.tracks), 11)
        pairs = {}
        for start in range(0, len(self.tracks), READ_ROWS):  # a batch of queries at a time: bounded memory
            # A slice, not row numbers: the other arrays' maps are sliced without being read.
            sims, ids = index.search(self.feature_rows(FINGERPRINT, slice(start, start + READ_ROWS)), k)
            for a, row_sims, row_ids in zip(range(start, start + len(sims)), sims, ids):
                for sim, b in zip(row_sims, row_ids.tolist()):
                    if b < 0 or b == a or sim < threshold:
                        continue
                    if abs(self.tracks[a].duration_s - self.tracks[b].duration_s) <= max_duration_diff:
                        key = (min(a, b), max(a, b))
                        pairs[key] = max(pairs.get(key, -1.0), float(sim))
        return sorted(((self.tracks[a].id, self.tracks[b].id, s) for (a, b), s in pairs.items()), key=lambda p: -p[2])

    def _salient(self, arrays, row: int) -> set[str]:
        """The labels a listener would say row ``row`` of ``arrays`` (the library's, or a query's) has,
        over every model (:func:`salient_labels`)."""
        return set().union(*(salient_labels(arrays[f"model{i}.probabilities"][row], spec.label_names, spec.task,
                                            spec.target_scale)
                             for i, spec in enumerate(self.specs())))

    def _shown_labels(self, track_labels, top: int | None = None) -> dict[str, float]:
        """The labels shown beside a track: each model's (its first ``top``), a version model's left
        out (its training works are not labels a listener would share)."""
        return {name: p for task, per_model in zip(self.tasks, track_labels) if task != "versions"
                for name, p in list(per_model.items())[:top]}

    def _search(self, query: np.ndarray, k: int, feature: str, exclude: set[int], diversify: float | None,
                query_labels: set[str]) -> list[Match]:
        if k < 1:
            raise LibraryError(f"-k must be at least 1, got {k}")
        k = min(k, len(self.tracks))  # more than every track cannot be found; a huge k would only allocate padding
        pool = k if diversify is None else min(len(self.tracks), max(4 * k, 50))
        sims, ids = self.search_index(feature).search(query[None].astype(np.float32), pool, exclude=[exclude])
        keep = ids[0] >= 0
        sims, ids = sims[0][keep], ids[0][keep]
        if diversify is not None:
            order = mmr(query, self.feature_rows(feature, ids), sims, k, diversify)
            sims, ids = sims[order], ids[order]
        matches = []
        for rank, (sim, row) in enumerate(zip(sims[:k], ids[:k]), 1):
            track = self.tracks[row]
            matches.append(Match(rank, track.id, float(sim), sorted(query_labels & self._salient(self.arrays, row)),
                                 self._shown_labels(track.labels, top=3), track.duration_s, str(self.path_of(track))))
        return matches

    # ---- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, models: Sequence, music_dir: str | os.PathLike, out: str | os.PathLike, **kwargs) -> Library | None:
        """Create or update the library ``out`` of ``music_dir`` with ``models`` (loaded zoo models);
        only new or changed files are embedded (see :func:`zoo.recommend.indexing.build`). With
        ``fabric=`` (a launched Fabric, every process calling this), ``None`` on ranks other than 0."""
        data = indexing.build(models, music_dir, out, **kwargs)
        return None if data is None else cls(Path(out), *data)

    @classmethod
    def from_vectors(cls, out: str | os.PathLike, models: Sequence, music_dir: str | os.PathLike,
                     tracks: Sequence[Track], arrays: dict[str, np.ndarray], **settings) -> Library:
        """A library of ``tracks`` (files of ``music_dir``) whose vectors were computed elsewhere:
        ``arrays`` holds ``model<i>.embedding``, ``model<i>.probabilities`` and ``fingerprint``,
        one row per track (see :func:`zoo.recommend.indexing.write_library`)."""
        return cls(Path(out), *indexing.write_library(out, models, music_dir, tracks, arrays, **settings))

    def _embed_one(self, path: Path):
        return embedding.embed_files(self.models(), [path], self.manifest["settings"])[0]

    def add(self, paths: Iterable[str | os.PathLike], *, progress: bool = True) -> Library:
        """Embed more files of the music folder (new or changed ones) and return the updated library."""
        files = [Path(p).resolve() for p in paths]
        outside = [str(p) for p in files if not p.is_relative_to(self.music_dir.resolve())]
        if outside:
            raise LibraryError(f"{outside[0]} is not inside the library's music folder {self.music_dir}")
        settings = self.manifest["settings"]
        return Library.build(self.models(), self.music_dir, self.root, files=files, progress=progress,
                             max_chunks=settings["max_chunks"], weights=settings["weights"])
