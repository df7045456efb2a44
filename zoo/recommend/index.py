"""Cosine-similarity nearest-neighbour search over track vectors, for the recommender.

A track is a vector (its embedding); "tracks like this one" are the library vectors with
the highest cosine similarity to it. Rows are L2-normalised on the way in, so cosine
similarity is the inner product and faiss's inner-product indexes rank by it.

Three kinds of index:

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
  keeping the full vectors for the re-ranking in memory, saved no memory.
* ``"ivfpq"``: for libraries whose vectors should not be in memory (``IVF_MAX``). faiss
  ``IndexIVFPQ`` keeps a 64-byte code per 256-d vector (1/16 of its float32 size) and picks
  the ``rerank`` best candidates of the probed lists by their codes; those are then ranked
  by their exact similarity, computed from the library's unit rows in a float32 ``.npy``
  file beside the index, memory-mapped: only the candidates' rows are read, so the
  process holds the codes, not the vectors. (Re-ranking from a file rather than in memory
  is what the IndexRefineFlat tried for ``"ivf"`` lacked.) IVF rather than HNSW over the
  codes (HNSW+PQ, not measured itself): HNSW's recall on these clustered vectors was poor
  (above), and its graph alone, 64 links of 4 bytes per vector at M=32, is 4x the codes.

``VectorIndex.build(..., kind="auto")`` picks ``"exact"`` up to ``EXACT_MAX`` tracks,
``"ivf"`` up to ``IVF_MAX`` and ``"ivfpq"`` above. Ids are row positions in the vectors given
to ``build``. Indexes are saved with faiss's own format plus a JSON sidecar (kind and
parameters, and for ``"ivfpq"`` the file of its re-rank vectors): no pickle, so loading a
file runs no code from it. Indexes saved before ``"ivfpq"`` existed load unchanged.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import faiss
import numpy as np

from .rows import normalize, npy_rows, sample_rows, unit_batches, write_npy

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


IVF_MAX = 1_000_000
"""Largest library given an ``"ivf"`` index by ``kind="auto"``; ``"ivfpq"`` above. IVF-Flat
holds every vector in RAM: 1 GiB per 256-d feature at 1M tracks (4.3 GiB for the 1152-d
fingerprint), 10 GiB at 10M, which no longer fits beside the rest on a 16 GB machine. At 1M IVF-Flat
is still the better index (idle 2 cores: 1.4 ms a query, recall@10 1.000, 26 s to build;
``"ivfpq"``: 1.9 ms, 0.995, 55 s) and its 1 GiB fits; above, it grows by 1 GiB per
million tracks, ``"ivfpq"`` by 70 MB (10M: 6.8 ms, recall 0.987, peak RSS 2 GB while the
vectors are 10 GB; benchmarks/PERF.md (g))."""

PQ_LISTS = 1024
"""``nlist`` of ``"ivfpq"`` (fewer for small libraries: 40 training points a list). Fixed,
not grown with the size like ``"ivf"``'s: adding a vector costs ``nlist`` inner products to
find its list: building 10M 256-d tracks into 1,024 lists took 5.6 minutes on 2 cores
(4,096 lists would take 4x as long). Fewer lists cost
recall: on 1M benchmark vectors (2,000 clusters), 512 lists gave recall@10 0.93 at 16
probed, whatever the re-rank count (so the lists, not the codes, missed the neighbours);
1,024 gave 0.99."""

PQ_PROBED_LISTS = 16
"""``nprobe`` of ``"ivfpq"``: on 1M benchmark vectors (1,024 lists) recall@10 was 0.99 at 8,
16 and 32 lists probed, with 300 candidates re-ranked; at 10M (32-byte codes) 32 lists
found no more than 16 (0.804 against 0.803), only more candidates did."""

PQ_SUBVECTOR_DIMS = 4
"""The product quantiser splits a vector into ``m`` sub-vectors of at most 4 dimensions, one
byte each (``m`` the smallest divisor of the dimension that allows it): 64 bytes for 256-d
(1/16 of its float32 size), 127 for the 508-d combined vector, 288 for the fingerprint.
Sub-vectors of 8 dimensions (32 bytes) were too coarse at 10M benchmark tracks: the true
neighbours fell outside the 500 best by their codes, recall@10 0.80 (2,000 re-ranked: 0.98,
but 12 ms a query), whatever the lists probed (16 or 32: the same)."""

RERANK = 500
"""Candidates an ``"ivfpq"`` search takes from the compressed codes and ranks by their exact
similarity (from the memory-mapped unit rows). On 10M benchmark tracks (64-byte codes, 16
lists probed) 300 give recall@10 0.973 at 5.4 ms a query, 500 give 0.987 at 6.8 ms, 1,000
0.993 at 7.6 ms (benchmarks/PERF.md (g)); 500 keeps a margin above 0.95 under 10 ms."""

RERANK_QUERIES = 64
"""Queries re-ranked at a time: their candidates' rows (64 x 500 x 256-d: 33 MB) are gathered at once."""

PQ_MIN_SIZE = 39 * 256
"""Fewest tracks an ``"ivfpq"`` index is built for: its codebooks of 256 codes need 39
training points a code. (``"auto"`` gives it millions.)"""


KINDS = ("exact", "ivf", "ivfpq")
"""The index kinds this version builds and reads (``"ivfpq"`` since the index-pq change)."""


class VectorIndex:
    """A library of unit track vectors and a faiss index over them; use ``build`` or ``load``.

    ``vectors`` holds the library's unit rows for the exact re-ranking of ``"ivfpq"``: the
    array given to ``build``, or (built from a file or loaded) a read-only memory map of the
    ``.npy`` file they were written to. It is None for the other kinds, whose faiss index
    holds the full vectors itself.
    """

    def __init__(self, index: faiss.Index, kind: str, params: dict, vectors: np.ndarray | None = None):
        self.index, self.kind, self.params, self.vectors = index, kind, params, vectors
        if kind in ("ivf", "ivfpq"):  # the search-time setting comes from params, on build and on load alike
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
    def build(cls, vectors, kind: str = "auto", *, exact_max: int = EXACT_MAX, ivf_max: int = IVF_MAX,
              seed: int = 0, vectors_path=None) -> VectorIndex:
        """Index ``vectors`` (tracks x dims); a track's id is its row number.

        ``vectors`` is an array, or the path of a float32 ``.npy`` file of one: a file is read
        and normalised ``rows.BATCH_BYTES`` at a time, so building from it never holds more
        than a batch of it in memory besides the index (a 10M x 256 library is 10 GB, its
        ``"ivfpq"`` index about 0.7 GB); the file is left unchanged.

        ``kind``: one of ``KINDS``, or ``"auto"``: ``"exact"`` up to ``exact_max`` tracks,
        ``"ivf"`` up to ``ivf_max``, ``"ivfpq"`` above. ``seed`` fixes the k-means sample and
        start of the approximate kinds, so a rebuild from the same vectors gives the same index.

        ``vectors_path``: where an ``"ivfpq"`` index writes the library's unit rows (a
        float32 ``.npy``) and re-ranks from, memory-mapped. Needed when ``vectors`` is a
        file (the point of which is not holding them in memory); give the name ``save`` will
        use, ``<index file>.vectors.npy`` (:func:`rerank_vectors_path`), and saving copies
        nothing. ``vectors_path`` may be the file ``vectors`` itself when that holds unit rows
        already (a library's feature vectors are written so): it is then used as it is.
        Without it, the rows stay in memory until ``save`` writes them there. The other kinds
        ignore it.
        """
        if isinstance(vectors, (str, os.PathLike)):
            source = Path(vectors)
            size, dim = npy_rows(source, "library vectors file").shape
        else:
            source = normalize(vectors, what="library vectors")
            size, dim = source.shape
        if kind == "auto":
            kind = auto_kind(size, exact_max, ivf_max)
        if kind not in KINDS:
            raise ValueError(f"kind must be 'auto', {', '.join(map(repr, KINDS))}, got {kind!r}")
        index, params = _empty_index(kind, size, dim)
        unit = None
        if kind == "ivfpq" and vectors_path is not None:
            vectors_path = Path(vectors_path)
            if not (isinstance(source, Path) and vectors_path.exists() and vectors_path.samefile(source)):
                write_npy(vectors_path, (size, dim), unit_batches(source))
            unit, source = npy_rows(vectors_path, "re-rank vectors file"), vectors_path
        elif kind == "ivfpq":
            if isinstance(source, Path):
                raise ValueError(f"building an 'ivfpq' index from {source} needs vectors_path: the file its "
                                 f"unit rows are written to, for the exact re-ranking")
            unit = source
        if kind != "exact":
            index.cp.seed = seed
            index.cp.max_points_per_centroid = TRAINING_POINTS_PER_LIST
            index.train(sample_rows(source, size, params["nlist"] * TRAINING_POINTS_PER_LIST, seed))
        for batch in unit_batches(source):
            index.add(batch)
        return cls(index, kind, params, unit)

    def search(self, queries, k: int, exclude: list[set[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` library tracks most cosine-similar to each query, best first.

        ``queries`` is (Q, dim). ``exclude``, if given, holds one set of ids per query that
        must not be in that query's results (the query track itself, tracks already played,
        the same artist). Returns (similarities float32 (Q, k), ids int64 (Q, k)). A row is
        padded with id -1 and similarity -inf only when the library holds fewer than ``k``
        tracks outside the query's excluded set (or, for the approximate kinds, the probed
        lists do). ``"ivfpq"`` takes the ``rerank`` best candidates by their compressed codes
        (or more, where exclusions need them) and ranks them by their exact similarity.
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
        if self.vectors is None:
            similarities, ids = self.index.search(queries, fetched)
        else:
            _, candidates = self.index.search(queries, min(max(fetched, self.params["rerank"]), self.size))
            similarities, ids = self._rerank(queries, candidates, fetched)
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

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``keep`` best of each query's ``candidates`` (ids, -1 for none) by exact inner
        product with their rows of ``self.vectors``, best first; -inf for the -1 ids.

        A few queries at a time, so the gathered rows stay small for a batch of many queries.
        A file's rows are read through a map of this call's own: the pages read (and the ones
        around them the kernel maps in with them) count in the process's RSS only as long as
        their map lives, so one map kept open would grow, search by search, to the whole file.
        While a call runs it can still hold about 2 MB of the file per row read (Linux 6.18
        maps the page cache's large folios whole; ``MADV_RANDOM`` does not change that): up
        to ``rerank`` x 2 MB, 1 GB for 500. These are the page cache's own clean pages, no
        memory of the process's, but they count in its RSS; reading the rows with ``pread``
        instead would not map them, at 3x the re-rank time (1.8 ms for 500 rows against 0.7)."""
        vectors = self.vectors
        if isinstance(vectors, np.memmap):
            vectors = np.load(vectors.filename, mmap_mode="r")
        similarities = np.empty(candidates.shape, dtype=np.float32)
        for start in range(0, len(queries), RERANK_QUERIES):
            ids = candidates[start:start + RERANK_QUERIES]
            rows = vectors[np.maximum(ids, 0).ravel()].reshape(*ids.shape, self.dim)
            similarities[start:start + RERANK_QUERIES] = np.einsum("qcd,qd->qc", rows, queries[start:start + RERANK_QUERIES])
        similarities[candidates < 0] = -np.inf
        order = np.argsort(-similarities, axis=1, kind="stable")[:, :keep]
        return np.take_along_axis(similarities, order, axis=1), np.take_along_axis(candidates, order, axis=1)

    def save(self, path) -> None:
        """Write the index to ``path`` (faiss format) and its kind, parameters and shape to
        ``path`` + ``.json``: what ``load`` needs besides the faiss file, readable by people.
        An ``"ivfpq"`` index's unit rows go to ``path`` + ``.vectors.npy`` (named in the
        sidecar), unless they are that file already (``build``'s ``vectors_path``)."""
        path = Path(path)
        faiss.write_index(self.index, str(path))
        sidecar = {"kind": self.kind, "params": self.params, "size": self.size, "dim": self.dim}
        if self.vectors is not None:
            rows_path = rerank_vectors_path(path)
            sidecar["vectors"] = rows_path.name
            mapped = getattr(self.vectors, "filename", None)
            if mapped is None:
                write_npy(rows_path, self.vectors.shape, unit_batches(self.vectors))
            elif not rows_path.exists() or not rows_path.samefile(mapped):
                write_npy(rows_path, self.vectors.shape, unit_batches(Path(mapped)))
        _sidecar_path(path).write_text(json.dumps(sidecar, indent=2) + "\n")

    @classmethod
    def load(cls, path) -> VectorIndex:
        """Read an index written by ``save`` (by this version or an earlier one: sidecars
        without ``vectors`` are of the kinds that need none); raises ValueError if the sidecar
        names a kind this version does not read or does not match the index or its vectors."""
        path = Path(path)
        sidecar = json.loads(_sidecar_path(path).read_text())
        if sidecar.get("kind") not in KINDS:
            raise ValueError(f"{_sidecar_path(path)}: unknown index kind {sidecar.get('kind')!r}; "
                             f"this version reads {', '.join(KINDS)}")
        index = faiss.read_index(str(path))
        if (index.ntotal, index.d) != (sidecar["size"], sidecar["dim"]):
            raise ValueError(f"{_sidecar_path(path)} describes {sidecar['size']} x {sidecar['dim']} vectors "
                             f"but {path} holds {index.ntotal} x {index.d}")
        vectors = None
        if sidecar["kind"] == "ivfpq":
            if not sidecar.get("vectors"):
                raise ValueError(f"{_sidecar_path(path)}: an 'ivfpq' index needs its re-rank vectors file (\"vectors\")")
            rows_path = path.parent / sidecar["vectors"]
            vectors = npy_rows(rows_path, f"re-rank vectors file of {path}")
            if vectors.shape != (index.ntotal, index.d):
                raise ValueError(f"{rows_path}: re-rank vectors of shape {vectors.shape}, but {path} "
                                 f"holds {index.ntotal} x {index.d} vectors")
        return cls(index, sidecar["kind"], sidecar["params"], vectors)


def auto_kind(size: int, exact_max: int = EXACT_MAX, ivf_max: int = IVF_MAX) -> str:
    """The kind ``build(kind="auto")`` gives ``size`` vectors."""
    return "exact" if size <= exact_max else "ivf" if size <= ivf_max else "ivfpq"


def _empty_index(kind: str, size: int, dim: int) -> tuple[faiss.Index, dict]:
    """An untrained index of ``kind`` for ``size`` vectors of ``dim``, and its parameters.

    Fewer than 39 training points per list would give faiss too little to train on, which
    caps ``nlist`` for small libraries. Spherical k-means (faiss's choice for the
    inner-product metric) puts the list centres on the unit sphere with the vectors.
    """
    if kind == "exact":
        return faiss.IndexFlatIP(dim), {}
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivf":
        nlist = max(1, min(round(LISTS_PER_SQRT_SIZE * math.sqrt(size)), size // 39))
        params = {"nlist": nlist, "nprobe": min(nlist, PROBED_LISTS)}
        return faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT), params
    if size < PQ_MIN_SIZE:
        raise ValueError(f"an 'ivfpq' index needs at least {PQ_MIN_SIZE:,} tracks (39 per code of its "
                         f"256-code codebooks, to train them), got {size:,}")
    nlist = min(PQ_LISTS, size // TRAINING_POINTS_PER_LIST)
    m = next(m for m in range(1, dim + 1) if dim % m == 0 and dim // m <= PQ_SUBVECTOR_DIMS)
    params = {"nlist": nlist, "nprobe": min(nlist, PQ_PROBED_LISTS), "m": m, "nbits": 8, "rerank": RERANK}
    return faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT), params


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def rerank_vectors_path(path: Path) -> Path:
    """Where ``save`` keeps the re-rank vectors of an ``"ivfpq"`` index saved at ``path``."""
    return path.with_name(path.name + ".vectors.npy")
