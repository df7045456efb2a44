"""The library folder on disk: its format, its manifest, its tracks and vectors, read and written.

A library folder holds (no pickle anywhere; NumPy arrays in safetensors, metadata in JSON)::

    library.json                manifest: format, complete flag, music folder, models and their
                                digests, settings, the current data folder, skipped files
    data-NNNNNN/tracks.json     one object per track, in row order: id (path relative to the
                                music folder), size, mtime_ns, sha256, duration_s, top labels
    data-NNNNNN/vectors.safetensors
                                model<i>.embedding (N, D_i), model<i>.probabilities (N, C_i) and
                                fingerprint (N, 1152), float32
    data-NNNNNN/index/<feature>.faiss (+ .json)   one search index per feature choice
    models/<i>/                 each model as a published folder, so the library answers audio
                                queries on its own and a re-run can check it was given the same
    pending/shard-NNNNNN.*      tracks embedded by a run that has not finished yet

This module is the bottom of the recommender: :mod:`zoo.recommend.indexing` writes this
format and :mod:`zoo.recommend.library` reads and queries it, and both take the format's
names, the manifest's model entries and the feature vectors from here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from datamodules.primitives.files import read_json, write_atomically

from .index import normalize

FORMAT = "musiczoo-library"
#: 2: a model entry's hash of the model is ``model_digest`` (version 1 called it ``fingerprint``).
FORMAT_VERSION = 2
MANIFEST = "library.json"
#: The feature choices: each model's embedding, its genre/tag probabilities (interpretable), or both.
FEATURES = ("embedding", "probabilities", "combined")
#: The signal-level fingerprint that finds the same recording twice (``zoo.recommend.fingerprint``).
FINGERPRINT = "fingerprint"
#: Labels kept per model in tracks.json (the "top genres/tags" of a track).
TOP_LABELS = 5


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


class LibraryData(NamedTuple):
    """What a library folder holds: its manifest, its tracks in row order and their arrays."""

    manifest: dict
    tracks: list[Track]
    arrays: dict[str, np.ndarray]


# ---- models ----------------------------------------------------------------------------------
def model_digest(model) -> str:
    """What makes a model this model: the spec's build settings and every weight, hashed.

    The recipe (SHA-256 of ``json.dumps(spec.build_settings(), sort_keys=True)``, then each
    weight's name and bytes in name order) never changes: libraries indexed before hold it.
    """
    digest = hashlib.sha256(json.dumps(model.spec.build_settings(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


#: The entry fields a re-run must match (the others describe the outputs those decide).
MATCHED_ENTRY_FIELDS = ("architecture", "transform", "sample_rate", "chunk_seconds", "model_digest")


def model_entry(model) -> dict:
    """The manifest's record of one model, from its spec alone (plus the digest of its weights)."""
    spec = model.spec
    return {"label_names": list(spec.label_names), "task": spec.task, "sample_rate": spec.sample_rate,
            "chunk_seconds": spec.chunk_seconds, "architecture": spec.architecture, "transform": spec.transform,
            "model_digest": model_digest(model)}


# ---- reading and writing ---------------------------------------------------------------------
def read_manifest(root: Path) -> dict:
    """The manifest of ``root`` in the current format (a library of an earlier version is upgraded in memory)."""
    manifest = read_json(root / MANIFEST, LibraryError,
                         missing=f"{root}: not a musiczoo library (no {MANIFEST}); make one with `musiczoo index`")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or manifest.get("format_version", 0) > FORMAT_VERSION:
        raise LibraryError(f"{root / MANIFEST}: not a musiczoo library of format version <= {FORMAT_VERSION}")
    if manifest.get("format_version", 1) < 2:
        manifest["models"] = [{("model_digest" if key == "fingerprint" else key): value for key, value in entry.items()}
                              for entry in manifest.get("models", [])]
        manifest["format_version"] = FORMAT_VERSION
    return manifest


def read_data(root: Path, manifest: dict) -> tuple[list[Track], dict[str, np.ndarray]]:
    """The tracks and arrays of the manifest's current data folder (none before the first finished run)."""
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


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` as float32 safetensors at ``path``, by an atomic rename."""
    contiguous = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
    write_atomically(path.parent, {path.name: lambda p: save_file(contiguous, str(p))})


# ---- feature vectors ---------------------------------------------------------------------------
def feature_vectors(library_arrays: dict[str, np.ndarray], weights: Sequence[float], feature: str,
                    rows: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Unit vectors of ``feature`` (one of :data:`FEATURES`) for ``rows`` (arrays named as in a
    library; default: the library's own).

    Each model's part is centred on the library's mean and L2-normalised, then weighted:
    centring makes the direction in which a track differs from the collection count, not
    what every track shares (raw pooled embeddings of one model are all within a few
    degrees of each other); normalising and weighting keep any model or vector kind from
    dominating by scale, and make the concatenation a unit vector.
    """
    rows = library_arrays if rows is None else rows
    if feature not in FEATURES:
        raise LibraryError(f"unknown feature choice {feature!r}; valid: {', '.join(FEATURES)}")
    kinds = {"embedding": ["embedding"], "probabilities": ["probabilities"],
             "combined": ["embedding", "probabilities"]}[feature]
    weights = np.asarray(weights, dtype=np.float64)
    parts = []
    for i, w in enumerate(weights):
        for kind in kinds:
            scale = np.sqrt(w / (weights.sum() * len(kinds)))
            name = f"model{i}.{kind}"
            centred = rows[name] - library_arrays[name].mean(axis=0, keepdims=True)
            parts.append(normalize(centred, what=f"model {i} {kind}") * np.float32(scale))
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def library_vectors(arrays: dict[str, np.ndarray], weights: Sequence[float], feature: str) -> np.ndarray:
    """(N, D) unit vectors of every track of a library for ``feature``: one of :data:`FEATURES`
    (:func:`feature_vectors`) or :data:`FINGERPRINT` (the normalised signal fingerprints)."""
    if feature == FINGERPRINT:
        return normalize(arrays[FINGERPRINT], what="fingerprints")
    return feature_vectors(arrays, weights, feature)
