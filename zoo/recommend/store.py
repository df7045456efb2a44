"""The library folder on disk: its format, its manifest, its tracks and vectors, read and written.

A library folder holds (no pickle anywhere; NumPy arrays in safetensors, metadata in JSON)::

    library.json                manifest: format, complete flag, music folder, models and their
                                digests, settings, the current data folder, skipped files
    data-NNNNNN/tracks.json     one object per track, in row order: id (path relative to the
                                music folder), size, mtime_ns, sha256, duration_s, top labels
    data-NNNNNN/vectors.safetensors
                                model<i>.embedding (N, D_i), model<i>.probabilities (N, C_i) and
                                fingerprint (N, 1152), float32; its metadata ``track_ids_sha256``
                                ties the rows to tracks.json's ids in their order
    data-NNNNNN/index/<feature>.faiss (+ .json)   one search index per feature choice (an
                                "ivfpq" one, past IVF_MAX tracks, with its re-rank vectors in
                                <feature>.faiss.vectors.npy)
    models/<i>/                 each model as a published folder (or, indexed with an exported file,
                                that file and its config.json), so the library answers audio
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
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from datamodules.primitives.files import read_json, write_atomically

from ..exported import holds_export, load_exported, read_exported_spec
from ..factory import from_pretrained
from ..hub import read_spec, save_pretrained
from ..predict import runtime_of
from ..spec import ModelSpec
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
#: The safetensors metadata key holding :func:`rows_digest` of the tracks the rows belong to.
ROWS_KEY = "track_ids_sha256"


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
    if runtime_of(model) != "torch":  # an exported file (zoo.exported): its weights are in its bytes
        digest.update(model.data)
        return digest.hexdigest()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_model(model, folder: Path) -> None:
    """``models/<i>``: a published folder (``zoo.hub.save_pretrained``), or an exported file and its
    ``config.json`` as ``musiczoo export`` wrote them, so the library runs the model it was built with."""
    if runtime_of(model) == "torch":
        save_pretrained(model, folder)
    else:
        model.save(folder)


def load_model(folder: Path):
    """The model :func:`save_model` wrote into ``folder``."""
    return load_exported(folder) if holds_export(folder) else from_pretrained(folder)


def read_model_spec(folder: Path) -> ModelSpec:
    """The spec of the model :func:`save_model` wrote into ``folder``, from its ``config.json`` (no weights loaded)."""
    return read_exported_spec(folder) if holds_export(folder) else read_spec(folder)


#: The entry fields a re-run must match (the others describe the outputs those decide).
MATCHED_ENTRY_FIELDS = ("architecture", "transform", "sample_rate", "chunk_seconds", "model_digest")


def model_entry(model) -> dict:
    """The manifest's record of one model, from its spec alone (plus the digest of its weights)."""
    spec = model.spec
    return {"label_names": list(spec.label_names), "task": spec.task, "sample_rate": spec.sample_rate,
            "chunk_seconds": spec.chunk_seconds, "architecture": spec.architecture, "transform": spec.transform,
            "runtime": runtime_of(model), "model_digest": model_digest(model)}


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
    wrong = [what for what, ok in (
        ("models", isinstance(manifest.get("models"), list) and manifest["models"]
         and all(isinstance(m, dict) for m in manifest["models"])),
        ("settings", isinstance(manifest.get("settings"), dict)
         and {"max_chunks", "weights"} <= set(manifest["settings"])),
        ("data", manifest.get("data") is None or isinstance(manifest.get("data"), str)
         and manifest["data"].startswith("data-") and "/" not in manifest["data"]))
        if not ok]
    if wrong:  # what identifies the library's models is gone, so no index run can check a model against it
        raise LibraryError(f"{root / MANIFEST}: damaged (no valid {', '.join(wrong)}); index into a new folder, "
                           f"or delete {root} and index again")
    return manifest


def read_data(root: Path, manifest: dict) -> tuple[list[Track], dict[str, np.ndarray]]:
    """The tracks and arrays of the manifest's current data folder (none before the first finished run).

    Damage is one line naming the file: an unreadable ``tracks.json``, a ``vectors.safetensors``
    that is truncated, not safetensors, missing a model's arrays or holding its rows for other
    tracks or in another order than ``tracks.json`` (a row read for the wrong track would give
    confident recommendations of another track's neighbours)."""
    data = manifest.get("data")
    if not data:
        return [], {}
    folder = root / data
    try:
        tracks = [Track(**t) for t in read_json(folder / "tracks.json", LibraryError)]
    except TypeError as e:
        raise LibraryError(f"{folder / 'tracks.json'}: not a list of tracks ({e})") from None
    path = folder / "vectors.safetensors"
    arrays = load_arrays(path, [t.id for t in tracks])
    names = {FINGERPRINT} | {f"model{i}.{kind}" for i in range(len(manifest["models"]))
                             for kind in ("embedding", "probabilities")}
    if set(arrays) != names:
        raise LibraryError(f"{path}: holds {', '.join(sorted(arrays)) or 'nothing'}, "
                           f"not the library's {', '.join(sorted(names))}")
    return tracks, arrays


def rows_digest(ids: Sequence[str]) -> str:
    """SHA-256 of the track ids in row order: stored with the arrays, it ties each row to its track."""
    return hashlib.sha256(json.dumps(list(ids)).encode()).hexdigest()


def save_arrays(path: Path, arrays: dict[str, np.ndarray], ids: Sequence[str]) -> None:
    """``arrays`` (one row per id of ``ids``) as float32 safetensors at ``path``, by an atomic
    rename, with the ids' :func:`rows_digest` in its metadata."""
    contiguous = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
    metadata = {ROWS_KEY: rows_digest(ids)}
    write_atomically(path.parent, {path.name: lambda p: save_file(contiguous, str(p), metadata=metadata)})


def load_arrays(path: Path, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays of ``path``, whose rows must be the tracks ``ids`` in that order; anything else
    is one line naming the file. Arrays written before the digest was stored (no metadata) are
    read unchecked; the next index run writes it."""
    try:
        with safe_open(str(path), "np") as f:
            stored = (f.metadata() or {}).get(ROWS_KEY)
            names = f.keys()
            arrays = {name: f.get_tensor(name) for name in names}
    except (OSError, SafetensorError) as e:
        raise LibraryError(f"{path}: not a readable safetensors file ({e})") from None
    if stored is not None and stored != rows_digest(ids):
        raise LibraryError(f"{path}: its rows are not those of the {len(ids)} tracks listed beside it "
                           f"(other tracks, or another order)")
    wrong = [f"{name} {a.shape}" for name, a in sorted(arrays.items()) if a.ndim != 2 or len(a) != len(ids)]
    if wrong:
        raise LibraryError(f"{path}: not one row per track ({len(ids)} tracks): {', '.join(wrong)}")
    return arrays


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
