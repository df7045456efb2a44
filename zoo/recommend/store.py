"""The library folder on disk: its format, its manifest, its tracks and vectors, read and written.

A library folder holds (no pickle anywhere; NumPy arrays in safetensors, metadata in JSON)::

    library.json                manifest: format, complete flag, music folder, models and their
                                digests, settings, the current data folder, skipped files
    data-NNNNNN/tracks/         the tracks in row order, sorted by id (path relative to the music
                                folder), with their size, mtime_ns, sha256, duration_s and top
                                labels: columns read through memory maps (:mod:`.tracks`); a
                                library of format version 2 has a ``tracks.json`` list instead
    data-NNNNNN/vectors.safetensors
                                model<i>.embedding (N, D_i), model<i>.probabilities (N, C_i) and
                                fingerprint (N, 1152), float32; its metadata ``track_ids_sha256``
                                ties the rows to the tracks' ids in their order
    data-NNNNNN/means.safetensors
                                the mean row (1, D_i) of each model array, which the feature
                                vectors are centred on (a library without it has them computed)
    data-NNNNNN/index/<feature>.faiss (+ .json)   one search index per feature choice (an
                                "ivfpq" one, past IVF_MAX tracks, with its re-rank vectors in
                                <feature>.faiss.vectors.npy)
    models/<i>/                 each model as a published folder (or, indexed with an exported file,
                                that file and its config.json), so the library answers audio
                                queries on its own and a re-run can check it was given the same
    pending/shard-NNNNNN.*      tracks embedded by a run that has not finished yet

Below this module is only :mod:`.tracks` (the track records): :mod:`zoo.recommend.indexing` writes this
format and :mod:`zoo.recommend.library` reads and queries it, and both take the format's
names, the manifest's model entries and the feature vectors from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from datamodules.primitives.files import read_json, write_atomically

from ..exported import holds_export, load_exported, read_exported_spec
from ..factory import from_pretrained
from ..hub import read_spec, save_pretrained
from ..predict import runtime_of
from ..spec import ModelSpec
from .index import normalize
from .tracks import READ_ROWS, ROWS_KEY, LibraryError, RowsDigest, TrackTable, read_track_list

FORMAT = "musiczoo-library"
#: 2: a model entry's hash of the model is ``model_digest`` (version 1 called it ``fingerprint``).
#: 3: the tracks are a memory-mapped table, ``data-NNNNNN/tracks/`` (version 2 has ``tracks.json``),
#: and an index may be ``"ivfpq"`` (:mod:`.index`), which earlier versions cannot search.
FORMAT_VERSION = 3
MANIFEST = "library.json"
#: The feature choices: the kind of music (each genre, tag or emotion model's embedding, its
#: probabilities or emotion values, or both); ``mood``: the emotion models' values alone (valence
#: and arousal); ``versions``: the version identification models' embeddings alone (the same work).
FEATURES = ("embedding", "probabilities", "combined", "mood", "versions")
#: The model task a feature takes alone; the other features take every model but the version ones.
_ONLY = {"mood": ("regression", "an emotion (regression) model"),
         "versions": ("versions", "a version identification (versions) model")}


def features_of(tasks: Sequence[str]) -> tuple[str, ...]:
    """The :data:`FEATURES` a library of models of these tasks offers: ``mood`` needs a regression
    model, ``versions`` a versions model, the others a model that is not a versions model."""
    return tuple(f for f in FEATURES if (_ONLY[f][0] in tasks if f in _ONLY else any(t != "versions" for t in tasks)))


def default_feature(tasks: Sequence[str]) -> str:
    """What a query ranks by unless told: ``combined``, or ``versions`` for a library of version models only."""
    offered = features_of(tasks)
    return "combined" if "combined" in offered else offered[0]


#: The signal-level fingerprint that finds the same recording twice (``zoo.recommend.fingerprint``).
FINGERPRINT = "fingerprint"
#: Labels kept per model in a track's record (the "top genres/tags" of a track).
TOP_LABELS = 5
#: Every track's arrays, and the mean of each model array (what feature vectors are centred on).
VECTORS, MEANS = "vectors.safetensors", "means.safetensors"


class LibraryData(NamedTuple):
    """What a library folder holds: its manifest, its tracks in row order, their arrays
    (read-only memory maps of ``vectors.safetensors``) and the means of the model arrays."""

    manifest: dict
    tracks: TrackTable
    arrays: dict[str, np.ndarray]
    means: dict[str, np.ndarray]


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


def read_data(root: Path, manifest: dict) -> tuple[TrackTable, ArrayFile | None, dict[str, np.ndarray]]:
    """The tracks of the manifest's current data folder (opened, not read), its vectors file
    (opened, not read) and the means its feature vectors are centred on (none of them before
    the first finished run).

    Damage is one line naming the file: an unreadable track table (or ``tracks.json``), a
    ``vectors.safetensors`` that is truncated, not safetensors, missing a model's arrays or
    holding its rows for other tracks or in another order than the tracks (a row read for
    the wrong track would give confident recommendations of another track's neighbours). A
    library written before ``means.safetensors`` existed has its means computed here, a
    batch of rows at a time."""
    data = manifest.get("data")
    if not data:
        return TrackTable.of([]), None, {}
    folder = root / data
    tracks = read_track_list(folder / "tracks.json") if (folder / "tracks.json").is_file() \
        else TrackTable.open(folder / "tracks")
    vectors = ArrayFile(folder / VECTORS, len(tracks), tracks.digest)
    names = array_names(len(manifest["models"]))
    if set(vectors.layout) != names:
        raise LibraryError(f"{vectors.path}: holds {', '.join(sorted(vectors.layout)) or 'nothing'}, "
                           f"not the library's {', '.join(sorted(names))}")
    if not (folder / MEANS).is_file():
        return tracks, vectors, column_means(vectors.batches(READ_ROWS))
    means = ArrayFile(folder / MEANS, 1)
    widths = {name: width for name, width in vectors.widths.items() if name != FINGERPRINT}
    if means.widths != widths:
        raise LibraryError(f"{means.path}: holds means of {means.widths}, not of the library's arrays {widths}")
    return tracks, vectors, means.maps()


def array_names(models: int) -> set[str]:
    """The arrays of a library of ``models`` models: each model's embedding and probabilities, and the fingerprint."""
    return {FINGERPRINT} | {f"model{i}.{kind}" for i in range(models) for kind in ("embedding", "probabilities")}


def write_arrays(path: Path, widths: dict[str, int], rows: int,
                 batches: Iterable[tuple[Sequence[str], dict[str, np.ndarray]]]) -> str:
    """A float32 safetensors file at ``path`` of one (rows, width) array per name of ``widths``,
    filled from ``batches`` (the ids of consecutive rows and every array's values for them,
    in order), by an atomic rename, with the ids' digest (:class:`~.tracks.RowsDigest`) in its
    metadata; returns that digest.

    Written here, not by ``safetensors.numpy.save_file``, because that needs every array in
    memory at once, and a library of millions of tracks does not fit: each batch goes
    straight to its place in the file, and the digest, known at the end, is written over
    its placeholder (a digest has a fixed length). The layout is safetensors' own (a
    little-endian header length, the JSON header padded to 8 bytes, the arrays in name
    order), so ``safe_open`` reads the file and this version reads ``save_file``'s."""
    names, placeholder = sorted(widths), "0" * 64
    header, offset = {"__metadata__": {ROWS_KEY: placeholder}}, 0
    for name in names:
        size = rows * widths[name] * 4
        header[name] = {"dtype": "F32", "shape": [rows, widths[name]], "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    start, digest = 8 + len(text), RowsDigest()

    def write(temp: Path) -> None:
        with open(temp, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            f.truncate(start + offset)
            done = 0
            for ids, batch in batches:
                for name in names:
                    values = np.ascontiguousarray(batch[name], dtype="<f4")
                    if values.shape != (len(ids), widths[name]) or done + len(ids) > rows:
                        raise ValueError(f"{path}: {name} rows {done:,} onwards have shape {values.shape}, "
                                         f"not ({len(ids)}, {widths[name]}) within {rows:,} rows")
                    f.seek(start + header[name]["data_offsets"][0] + done * widths[name] * 4)
                    f.write(values)
                digest.update(ids)
                done += len(ids)
            if done != rows:
                raise ValueError(f"{path}: given {done:,} rows of {rows:,}")
            f.seek(8 + text.index(placeholder.encode()))
            f.write(digest.hexdigest().encode())

    write_atomically(path.parent, {path.name: write})
    return digest.hexdigest()


class ArrayFile:
    """A safetensors file of float32 arrays, one row per track, checked once when opened and
    read through fresh read-only memory maps (:meth:`maps`), so that only the rows used are
    read from disk: a library of any size opens in constant memory.

    Opening reads the header alone; anything wrong is one line naming the file. It must have
    ``rows`` rows and, given ``digest`` (:class:`~.tracks.RowsDigest` of the tracks' ids), be
    theirs in their order (files written before the digest was stored, with no metadata, are
    read unchecked; the next index run writes it)."""

    def __init__(self, path: Path, rows: int, digest: str | None = None):
        self.path, self.rows = Path(path), rows
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                (length,) = struct.unpack("<Q", f.read(8))
                if length > size - 8:
                    raise ValueError(f"its header of {length:,} bytes is past the end of the file ({size:,} bytes)")
                header = json.loads(f.read(length))
            if not isinstance(header, dict):
                raise ValueError("its header is not a JSON object")
        except (OSError, ValueError, struct.error) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise LibraryError(f"{path}: not a readable safetensors file ({e})") from None
        stored = (header.pop("__metadata__", None) or {}).get(ROWS_KEY)
        if stored is not None and digest is not None and stored != digest:
            raise LibraryError(f"{path}: its rows are not those of the {rows} tracks listed beside it "
                               f"(other tracks, or another order)")
        #: name -> (byte offset of the array in the file, its width)
        self.layout: dict[str, tuple[int, int]] = {}
        for name, entry in sorted(header.items()):
            try:
                dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
                count, width = shape
            except (TypeError, KeyError, ValueError):
                raise LibraryError(f"{path}: not a readable safetensors file (damaged entry {name!r})") from None
            if dtype != "F32" or count != rows:
                raise LibraryError(f"{path}: not one float32 row per track ({rows} tracks): {name} is "
                                   f"{dtype} of shape {shape}")
            if end - begin != rows * width * 4 or begin < 0 or 8 + length + end > size:
                raise LibraryError(f"{path}: not a readable safetensors file (truncated or damaged: {name} needs "
                                   f"bytes {begin:,}-{end:,} of its {size - 8 - length:,} bytes of data)")
            self.layout[name] = (8 + length + begin, width)

    @property
    def widths(self) -> dict[str, int]:
        return {name: width for name, (_, width) in self.layout.items()}

    def maps(self) -> dict[str, np.ndarray]:
        """Every array as a read-only memory map of its own. The pages a map has read count in
        the process's RSS until the map is dropped, so a pass over many rows takes new maps for
        each batch rather than reading one set end to end."""
        return {name: np.asarray(np.memmap(self.path, dtype="<f4", mode="r", offset=offset, shape=(self.rows, width)))
                if self.rows and width else np.zeros((self.rows, width), np.float32)
                for name, (offset, width) in self.layout.items()}

    def batches(self, rows: int) -> Iterator[dict[str, np.ndarray]]:
        """The arrays ``rows`` rows at a time, each batch through maps of its own."""
        for start in range(0, self.rows, rows):
            yield {name: values[start:start + rows] for name, values in self.maps().items()}


# ---- feature vectors ---------------------------------------------------------------------------
def column_means(batches: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The mean row (1, D) of each model array (not the fingerprint, which is not centred) over
    ``batches`` of a library's rows, summed in float64 a batch at a time: what
    :func:`feature_vectors` centres on, without the library in memory."""
    sums, count = {}, 0
    for batch in batches:
        for name, values in batch.items():
            if name != FINGERPRINT:
                sums[name] = sums.get(name, 0) + np.asarray(values, np.float64).sum(axis=0, keepdims=True)
        count += len(next(iter(batch.values()), ()))
    return {name: (total / max(count, 1)).astype(np.float32) for name, total in sums.items()}


def feature_models(feature: str, tasks: Sequence[str]) -> list[int]:
    """The models (by position) whose vectors make ``feature``: one line refusing an unknown
    feature or one that none of the library's models (of ``tasks``) can give."""
    if feature not in FEATURES:
        raise LibraryError(f"unknown feature choice {feature!r}; valid: {', '.join(FEATURES)}")
    task, needs = _ONLY.get(feature, (None, "a genre, tag or emotion model"))
    models = [i for i, t in enumerate(tasks) if t == task or (task is None and t != "versions")]
    if not models:
        raise LibraryError(f"the {feature} feature needs {needs} among the library's models; its models are "
                           f"{', '.join(tasks)}" + ("" if task else " (a version model finds other performances "
                                                    "of a work, the versions feature, not music of the same kind)"))
    return models


def feature_vectors(rows: dict[str, np.ndarray], means: dict[str, np.ndarray], weights: Sequence[float],
                    feature: str, tasks: Sequence[str]) -> np.ndarray:
    """Unit vectors of ``feature`` for ``rows`` (arrays named as in a library): one of
    :data:`FEATURES`, or :data:`FINGERPRINT` (the normalised signal fingerprints).

    Each model's part is centred on the library's mean (``means``, :func:`column_means`) and
    L2-normalised, then weighted: centring makes the direction in which a track differs from
    the collection count, not what every track shares (raw pooled embeddings of one model are
    all within a few degrees of each other); normalising and weighting keep any model or
    vector kind from dominating by scale, and make the concatenation a unit vector.

    ``mood`` takes only the regression models' values (``tasks`` says which models those are):
    centred on the library's mean, a track's valence and arousal become a direction, and the
    cosine of two directions is how close their angles are, the angle that names an emotion in
    Russell's circumplex (happy, tense, sad, calm), whatever its intensity.

    ``versions`` takes only the version identification models' embeddings (what finds another
    performance of the same work), and the kind-of-music features leave those models out: their
    probabilities are over the works they were trained on, their embeddings about melody and harmony.
    """
    if feature == FINGERPRINT:
        return normalize(rows[FINGERPRINT], what="fingerprints")
    kinds = {"embedding": ["embedding"], "probabilities": ["probabilities"], "combined": ["embedding", "probabilities"],
             "mood": ["probabilities"], "versions": ["embedding"]}.get(feature)
    models = feature_models(feature, tasks)
    weights = np.asarray(weights, dtype=np.float64)
    total = weights[models].sum()
    parts = []
    for i in models:
        for kind in kinds:
            scale = np.sqrt(weights[i] / (total * len(kinds)))
            name = f"model{i}.{kind}"
            parts.append(normalize(rows[name] - means[name], what=f"model {i} {kind}") * np.float32(scale))
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
