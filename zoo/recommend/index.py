"""Cosine-similarity nearest-neighbour search over track vectors, for the recommender.

A track is a vector (its embedding); "tracks like this one" are the library vectors with
the highest cosine similarity to it. Rows are L2-normalised on the way in, so cosine
similarity is the inner product and faiss's inner-product indexes rank by it.

Two kinds of index:

* ``"exact"``: faiss ``IndexFlatIP``, every library vector scored for every query.
  Recall is 1 by construction and there is nothing to train or tune; on an idle 2-core
  machine one query against 50,000 256-d tracks takes about 2 ms, so up to
  ``EXACT_MAX`` tracks an approximation would buy nothing worth its recall loss.
* ``"ivf"``: faiss ``IndexIVFFlat``: k-means splits the library into ``nlist`` lists and a
  query scores only the vectors of its ``nprobe`` nearest lists, exactly (no compression).
  Chosen over HNSW and IVF-PQ by measurement on 1M clustered 256-d vectors, 2 cores:
  HNSW (M=32, efConstruction=40) links the clusters poorly and reached only 0.83
  recall@10 at efSearch=128, after a build 4x slower than IVF's; IVF-PQ with exact
  re-ranking (IndexRefineFlat) matched IVF's recall but took 2.5x longer to build and,
  keeping the full vectors for the re-ranking, saved no memory.

``VectorIndex.build(..., kind="auto")`` picks ``"exact"`` up to ``EXACT_MAX`` tracks and
``"ivf"`` above. Ids are row positions in the vectors given to ``build``. Indexes are
saved with faiss's own format plus a JSON sidecar (kind and parameters): no pickle, so
loading a file runs no code from it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import faiss
import numpy as np

EXACT_MAX = 50_000
"""Largest library searched exactly by ``kind="auto"``: exact costs O(size) per query
and stays around 2 ms up to here on an idle 2-core machine, with recall 1 and no training."""

LISTS_PER_SQRT_SIZE = 4
"""``nlist = 4 * sqrt(size)`` (4,000 lists for 1M tracks): lists of a few hundred vectors.
Recall needs more lists than the data has natural clusters, so that k-means seldom
leaves a cluster without a list of its own (its tracks then scatter over many lists):
on 1M benchmark vectors in 2,000 loose clusters recall@10 is 0.96, in 4,000 it is 0.71."""

TRAINING_POINTS_PER_LIST = 40
"""k-means trains on a seeded sample of 40 vectors per list: faiss asks for at least 39,
and training time grows with the sample (a 1M-track build takes about 25 s on 2 cores)."""

PROBED_LISTS = 128
"""Lists a query scores (``nprobe``, at most ``nlist``): 3% of a 1M-track library, about
1.5 ms per query on 2 cores, with recall@10 of 1.0 on the default benchmark data and
0.96 on its looser ``--spread 2`` clusters, where 64 lists give about 0.96 at 0.7 ms
and 256 about 0.98 at 2.6 ms: 128 keeps a margin above 0.95 at under a third of a 5 ms
budget. A fixed count rather than a share of the lists: small libraries have short
lists whose clusters straddle more of them, so they need a larger share probed."""


def normalize(vectors, *, what: str = "vectors") -> np.ndarray:
    """``vectors`` as float32, C-contiguous (faiss's layout), each row scaled to length 1.

    Unit rows make the inner product the cosine similarity. An all-zero row stays zero
    rather than becoming NaN: it has no direction, so it is similar to nothing (0 with
    everything). The input is never modified. ``what`` names the input in error messages.

    Raises ValueError for an input that is not 2-D, has no rows or no columns, or holds
    NaN or infinite values (also values too large for float32).
    """
    rows = np.array(vectors, dtype=np.float32, order="C")
    if rows.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (one row per track), got shape {rows.shape}")
    if rows.size == 0:
        raise ValueError(f"{what} is empty (shape {rows.shape}): need at least one row and one column")
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        raise ValueError(f"{what} contain NaN or infinite values (first in row {int(np.argmin(finite))})")
    lengths = np.linalg.norm(rows, axis=1, keepdims=True)
    lengths[lengths == 0] = 1
    rows /= lengths
    return rows


class VectorIndex:
    """A library of unit track vectors and a faiss index over them; use ``build`` or ``load``."""

    def __init__(self, index: faiss.Index, kind: str, params: dict):
        self.index, self.kind, self.params = index, kind, params
        if kind == "ivf":  # the search-time setting comes from params, on build and on load alike
            index.nprobe = params["nprobe"]

    @property
    def size(self) -> int:
        """Number of tracks in the library."""
        return self.index.ntotal

    @property
    def dim(self) -> int:
        """Length of a track vector."""
        return self.index.d

    @classmethod
    def build(cls, vectors, kind: str = "auto", *, exact_max: int = EXACT_MAX, seed: int = 0) -> VectorIndex:
        """Index ``vectors`` (tracks x dims); a track's id is its row number.

        ``kind``: ``"exact"``, ``"ivf"``, or ``"auto"`` (``"exact"`` up to ``exact_max``
        tracks, ``"ivf"`` above). ``seed`` fixes the k-means sample and start of ``"ivf"``,
        so a rebuild from the same vectors gives the same index.
        """
        library = normalize(vectors, what="library vectors")
        size, dim = library.shape
        if kind == "auto":
            kind = "exact" if size <= exact_max else "ivf"
        if kind == "exact":
            index, params = faiss.IndexFlatIP(dim), {}
        elif kind == "ivf":
            index, params = _trained_ivf(library, seed)
        else:
            raise ValueError(f"kind must be 'auto', 'exact' or 'ivf', got {kind!r}")
        index.add(library)
        return cls(index, kind, params)

    def search(self, queries, k: int, exclude: list[set[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` library tracks most cosine-similar to each query, best first.

        ``queries`` is (Q, dim). ``exclude``, if given, holds one set of ids per query that
        must not be in that query's results (the query track itself, tracks already played,
        the same artist). Returns (similarities float32 (Q, k), ids int64 (Q, k)). A row is
        padded with id -1 and similarity -inf only when the library holds fewer than ``k``
        tracks outside the query's excluded set (or, for ``"ivf"``, the probed lists do).
        """
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        queries = normalize(queries, what="queries")
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have {queries.shape[1]} dimensions but the index holds {self.dim}-dimensional vectors")
        if exclude is not None and len(exclude) != len(queries):
            raise ValueError(f"exclude must hold one set per query: got {len(exclude)} sets for {len(queries)} queries")

        # Excluded ids may be among the nearest, so ask for enough extra to still have k.
        most_excluded = max(map(len, exclude), default=0) if exclude is not None else 0
        fetched = min(k + most_excluded, self.size)
        similarities, ids = self.index.search(queries, fetched)
        if fetched < k:
            padding = ((0, 0), (0, k - fetched))
            similarities = np.pad(similarities, padding, constant_values=-np.inf)
            ids = np.pad(ids, padding, constant_values=-1)

        kept = ids >= 0
        for row, banned in enumerate(exclude or ()):
            if banned:
                kept[row] &= ~np.isin(ids[row], list(banned))
        # A stable sort on "dropped" moves the kept results to the front in their order.
        order = np.argsort(~kept, axis=1, kind="stable")[:, :k]
        kept = np.take_along_axis(kept, order, axis=1)
        similarities = np.where(kept, np.take_along_axis(similarities, order, axis=1), -np.inf).astype(np.float32)
        ids = np.where(kept, np.take_along_axis(ids, order, axis=1), -1).astype(np.int64)
        return similarities, ids

    def save(self, path) -> None:
        """Write the index to ``path`` (faiss format) and its kind, parameters and shape to
        ``path`` + ``.json``: what ``load`` needs besides the faiss file, readable by people."""
        path = Path(path)
        faiss.write_index(self.index, str(path))
        sidecar = {"kind": self.kind, "params": self.params, "size": self.size, "dim": self.dim}
        _sidecar_path(path).write_text(json.dumps(sidecar, indent=2) + "\n")

    @classmethod
    def load(cls, path) -> VectorIndex:
        """Read an index written by ``save``; raises ValueError if the sidecar does not match it."""
        path = Path(path)
        sidecar = json.loads(_sidecar_path(path).read_text())
        index = faiss.read_index(str(path))
        if (index.ntotal, index.d) != (sidecar["size"], sidecar["dim"]):
            raise ValueError(f"{_sidecar_path(path)} describes {sidecar['size']} x {sidecar['dim']} vectors "
                             f"but {path} holds {index.ntotal} x {index.d}")
        return cls(index, sidecar["kind"], sidecar["params"])


def _trained_ivf(library: np.ndarray, seed: int) -> tuple[faiss.IndexIVFFlat, dict]:
    """An empty IVF index whose lists are k-means clusters of (a sample of) ``library``.

    Spherical k-means (faiss's choice for the inner-product metric) puts the list
    centres on the unit sphere with the vectors. Fewer than 39 points per list would
    give faiss too little to train on, which caps ``nlist`` for small libraries.
    """
    size, dim = library.shape
    nlist = max(1, min(round(LISTS_PER_SQRT_SIZE * math.sqrt(size)), size // 39))
    params = {"nlist": nlist, "nprobe": min(nlist, PROBED_LISTS)}
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.max_points_per_centroid = TRAINING_POINTS_PER_LIST
    index.train(library)
    return index, params


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")
