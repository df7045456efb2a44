"""How good are content-based recommendations? Offline scores on a labelled collection.

Each track is a vector and its recommendations are its nearest neighbours by cosine
similarity. With no listening data to judge them by, the music-similarity literature
scores a neighbour by what it shares with the query: the genre (``genre_metrics``:
precision@k, mAP@k) or the tags (``tag_metrics``: Jaccard, nDCG). Two things keep those
numbers honest:

* The artist filter (Pampalk 2006, "Computational Models of Music Similarity and their
  Application in Music Information Retrieval", PhD thesis, TU Vienna; Flexer & Schnitzer
  2010, "Effects of Album and Artist Filters in Audio Similarity Computed for Very Large
  Music Databases", Computer Music Journal 34(3)). Tracks by one artist share voice,
  instruments and production and nearly always the genre, so an embedding that only
  recognises the artist scores high on genre precision. With ``exclude_same=artists`` a
  query's candidates are only other artists' tracks, in the search and in the metrics.
* Baselines to read a number against: ``random_neighbours`` (the floor: what the label
  distribution gives by chance) and ``mfcc_stats`` + ``standardize`` (the classic
  hand-crafted vector: per-coefficient MFCC mean and std, Tzanetakis & Cook 2002).

Search is exact, ``BLOCK_ROWS`` queries against the whole collection at a time, so 10,000
tracks need tens of MB rather than a 10,000 x 10,000 matrix. Ties in similarity go to the
lower track index, so results do not depend on the sort algorithm.

Pure numpy, so a result file from any embedding model can be scored without the rest of
the package.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

BLOCK_ROWS = 256
"""Queries scored at once: BLOCK_ROWS x N float64 scores (20 MB for N = 10,000)."""


def neighbours(vectors: np.ndarray, k: int, *, exclude_same: Sequence | None = None) -> np.ndarray:
    """For each track, the indices of its ``k`` most cosine-similar other tracks, best first.

    Rows are L2-normalised here, so vector length (loudness, track duration in a summed
    embedding) does not move a track. The track itself is never its own neighbour.
    ``exclude_same`` gives a group per track (e.g. the artist): a query's candidates are
    only tracks of another group (the artist filter, see the module docstring). A missing
    group (None, "" or NaN) counts as a group of its own, so unknown artists do not filter
    each other out. A query with fewer than ``k`` candidates gets its row padded with -1.

    Returns an (N, k) int64 array. Raises ValueError for a non-2-D input, ``k`` outside
    1..N-1, NaN or infinite values, or an all-zero vector (it has no direction, so its
    cosine similarity to anything is undefined).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be 2-D (tracks, dims), got shape {vectors.shape}")
    n = len(vectors)
    _check_k(k, n)
    _check_finite(vectors, "vectors")
    norms = np.linalg.norm(vectors, axis=1)
    if (norms == 0).any():
        raise ValueError(
            f"vectors has all-zero rows {_first(norms == 0)}: cosine similarity is undefined without a direction"
        )
    unit = vectors / norms[:, None]
    return _top_k(lambda rows: unit[rows] @ unit.T, _group_codes(exclude_same, n), k)


def random_neighbours(n: int, k: int, seed: int, exclude_same: Sequence | None = None) -> np.ndarray:
    """The random baseline: for each track, ``k`` other tracks in random order, same rules as ``neighbours``.

    Same seed, same result. Candidates are drawn under the same exclusion as the real
    search (never the track itself, never its ``exclude_same`` group, -1 padding), so the
    baseline and the embedding are scored on the same candidate sets.
    """
    _check_k(k, n)
    rng = np.random.default_rng(seed)
    # Ranking by independent uniform keys gives each query a uniformly random order of its candidates.
    return _top_k(lambda rows: rng.random((len(rows), n)), _group_codes(exclude_same, n), k)


def genre_metrics(
    neighbour_ids: np.ndarray, labels: Sequence, k: int, *, exclude_same: Sequence | None = None
) -> dict[str, float]:
    """Genre precision@k and mAP@k of neighbour lists (the first ``k`` columns of ``neighbour_ids``).

    For query q, rel_q(i) = 1 when its i-th neighbour has q's label, else 0 (a -1 padding
    slot is 0), and P_q@i = (rel_q(1) + ... + rel_q(i)) / i. Then

        precision@k = mean over all queries of P_q@k
        AP_q@k      = 1 / min(k, R_q) * sum_{i=1..k} P_q@i * rel_q(i)
        mAP@k       = mean of AP_q@k over the queries with R_q > 0

    where R_q is the number of relevant candidates q has in the collection: tracks other
    than q with q's label, outside q's group when ``exclude_same`` is given (pass the same
    ``exclude_same`` as the search). The normaliser min(k, R_q) is the common choice: a
    list that puts all the relevant tracks it can first scores 1 even when R_q < k, while
    dividing by R_q would cap a perfect top-k list at k / R_q. A query with R_q = 0 has no
    right answer and is left out of mAP (``map_queries`` says how many counted; mAP is NaN
    when none does) but counts in precision@k, where its neighbours are all wrong.

    Raises ValueError when shapes disagree, ``k`` is outside 1..min(columns, N-1), an id is
    not a track index or -1, or a query's neighbours include itself or its own group
    (neighbours computed without the exclusion being scored with it).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (one per track), got shape {labels.shape}")
    n = len(labels)
    groups = _group_codes(exclude_same, n)
    ids = _check_neighbour_ids(neighbour_ids, n, k, groups)
    _, label_codes = np.unique(labels, return_inverse=True)
    # ids of -1 index the last track; the ids >= 0 mask turns those padding slots to 0.
    rel = (ids >= 0) & (label_codes[ids] == label_codes[:, None])

    # Tracks with q's label, minus those with q's label in q's own group (q itself among them).
    same_label = np.bincount(label_codes)[label_codes]
    _, pair, pair_counts = np.unique(label_codes * 2 * n + groups, return_inverse=True, return_counts=True)
    relevant = same_label - pair_counts[pair]

    precision_at = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    has = relevant > 0
    ap = (precision_at * rel).sum(axis=1)[has] / np.minimum(k, relevant[has])
    return {
        "precision@k": float(rel.mean()),
        "map@k": float(ap.mean()) if has.any() else math.nan,
        "map_queries": int(has.sum()),
    }


def tag_metrics(
    neighbour_ids: np.ndarray, tags: np.ndarray, k: int, *, exclude_same: Sequence | None = None
) -> dict[str, float]:
    """Tag overlap of neighbour lists: mean Jaccard@k and nDCG@k with Jaccard as the graded gain.

    J(a, b) = |tags(a) & tags(b)| / |tags(a) | tags(b)|, and 0 when neither track has a
    tag: two untagged tracks are not evidence of a good recommendation. Then

        jaccard@k = mean of J(q, i-th neighbour) over all queries and all k slots
                    (a -1 padding slot counts 0; a query without tags counts 0)
        DCG_q@k   = sum_{i=1..k} J(q, i-th neighbour) / log2(i + 1)
        IDCG_q@k  = the same sum over q's k best candidates' Jaccards, best first
        nDCG@k    = mean of DCG_q@k / IDCG_q@k over the queries with IDCG_q@k > 0

    (Järvelin & Kekäläinen 2002, "Cumulated Gain-Based Evaluation of IR Techniques", ACM
    TOIS 20(4)). The ideal list is drawn from q's candidates only: never q itself, never
    q's ``exclude_same`` group (pass the same one as the search), so 1 means "the best
    list that was possible". A query with IDCG 0 (no tags, or no candidate sharing one)
    has no better or worse list and is left out of nDCG; ``ndcg_queries`` says how many
    counted (nDCG is NaN when none does).

    ``tags`` is an (N, T) array of 0/1 or booleans. Raises ValueError for other values or
    shapes, and for ``neighbour_ids`` problems as in ``genre_metrics``.
    """
    tags = np.asarray(tags)
    if tags.ndim != 2:
        raise ValueError(f"tags must be 2-D (tracks, tags), got shape {tags.shape}")
    if not np.isin(tags, (0, 1)).all():
        raise ValueError("tags must hold only 0/1 or booleans (NaN included is an error)")
    tags = tags.astype(np.float64)
    n = len(tags)
    groups = _group_codes(exclude_same, n)
    ids = _check_neighbour_ids(neighbour_ids, n, k, groups)
    discount = 1 / np.log2(np.arange(2, k + 2))
    sizes = tags.sum(axis=1)
    gain_total, ndcg = 0.0, []
    for rows in _blocks(n):
        overlap = tags[rows] @ tags.T
        union = sizes[rows, None] + sizes[None, :] - overlap
        jaccard = np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)
        jaccard[groups[rows, None] == groups[None, :]] = 0  # not candidates: out of the ideal list
        # ids of -1 pick the last column; the ids >= 0 mask turns those padding slots to 0.
        gains = np.where(ids[rows] >= 0, np.take_along_axis(jaccard, ids[rows], axis=1), 0.0)
        ideal = np.sort(jaccard, axis=1)[:, ::-1][:, :k]
        dcg, idcg = gains @ discount, ideal @ discount
        gain_total += gains.sum()
        ndcg.append(dcg[idcg > 0] / idcg[idcg > 0])
    ndcg = np.concatenate(ndcg)
    return {
        "jaccard@k": float(gain_total / (n * k)),
        "ndcg@k": float(ndcg.mean()) if len(ndcg) else math.nan,
        "ndcg_queries": len(ndcg),
    }


def mfcc_stats(mfcc: np.ndarray) -> np.ndarray:
    """The hand-crafted baseline vector of one track: per-coefficient mean, then std, over time.

    ``mfcc`` is (n_mfcc, frames); the result is (2 * n_mfcc,): the means of coefficients
    0..n-1 followed by their standard deviations (population std, ddof=0). The "bag of
    frames" summary of Tzanetakis & Cook 2002 (IEEE TSAP 10(5)): timbre on average and
    how much it moves. Standardise the collection's vectors with ``standardize`` before
    cosine search.
    """
    mfcc = np.asarray(mfcc, dtype=np.float64)
    if mfcc.ndim != 2 or mfcc.shape[1] == 0:
        raise ValueError(f"mfcc must be 2-D (n_mfcc, frames) with at least one frame, got shape {mfcc.shape}")
    _check_finite(mfcc, "mfcc")
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])


def standardize(matrix: np.ndarray) -> np.ndarray:
    """Z-score each column over the collection (population std); a constant column becomes 0.

    Without it MFCC 0 (overall log energy), whose values are an order of magnitude larger
    than the others', decides the cosine similarity alone. A column is constant when its
    max equals its min (its float std can be a rounding-size non-zero that would blow up).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) == 0:
        raise ValueError(f"matrix must be 2-D (tracks, features) with at least one row, got shape {matrix.shape}")
    _check_finite(matrix, "matrix")
    varies = matrix.max(axis=0) > matrix.min(axis=0)
    centred = matrix - matrix.mean(axis=0)
    return np.divide(centred, matrix.std(axis=0), out=np.zeros_like(matrix), where=varies)


def _top_k(score_rows: Callable[[np.ndarray], np.ndarray], groups: np.ndarray, k: int) -> np.ndarray:
    """Per query, the ``k`` best-scoring candidates (ties to the lower index); -1 once candidates run out.

    ``score_rows(rows)`` gives the (len(rows), N) scores of those queries against every track.
    """
    n = len(groups)
    out = np.full((n, k), -1, dtype=np.int64)
    for rows in _blocks(n):
        scores = score_rows(rows)
        scores[groups[rows, None] == groups[None, :]] = -np.inf  # the query itself and its group
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out[rows] = np.where(np.isneginf(np.take_along_axis(scores, order, axis=1)), -1, order)
    return out


def _blocks(n: int):
    """Row indices of consecutive blocks of at most BLOCK_ROWS queries."""
    for start in range(0, n, BLOCK_ROWS):
        yield np.arange(start, min(start + BLOCK_ROWS, n))


def _group_codes(groups: Sequence | None, n: int) -> np.ndarray:
    """One integer per track, shared by tracks of the same named group.

    Named groups get codes below N; a missing group (None, "" or NaN) gets N + its index,
    a group of its own. No ``groups`` at all: every track is its own group, so only the
    query itself is excluded.
    """
    if groups is None:
        return np.arange(n)
    if np.ndim(groups) != 1 or len(groups) != n:
        raise ValueError(f"exclude_same must hold one group per track ({n}), got shape {np.shape(groups)}")
    codes: dict = {}
    return np.array(
        [n + i if _missing(g) else codes.setdefault(g, len(codes)) for i, g in enumerate(groups)], dtype=np.int64
    )


def _missing(group) -> bool:
    return group is None or (isinstance(group, str) and group == "") or (isinstance(group, float) and math.isnan(group))


def _check_k(k: int, n: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k >= n:
        raise ValueError(f"k={k} must be smaller than the number of tracks ({n}): a track is never its own neighbour")


def _check_finite(array: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(array).reshape(len(array), -1).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} has NaN or infinite values in rows {_first(bad)}")


def _check_neighbour_ids(neighbour_ids: np.ndarray, n: int, k: int, groups: np.ndarray) -> np.ndarray:
    """The first ``k`` columns of ``neighbour_ids``, after checking they can be neighbour lists of these N tracks."""
    ids = np.asarray(neighbour_ids)
    if ids.ndim != 2 or len(ids) != n:
        raise ValueError(f"neighbour_ids must have shape ({n}, >= k), one row per track, got {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"neighbour_ids must be integer track indices, got dtype {ids.dtype}")
    _check_k(k, n)
    if k > ids.shape[1]:
        raise ValueError(f"k={k} but neighbour_ids has only {ids.shape[1]} columns")
    ids = ids[:, :k]
    if ((ids < -1) | (ids >= n)).any():
        raise ValueError(f"neighbour_ids must be track indices in [0, {n}) or -1 for padding")
    # ids of -1 index the last track; the ids >= 0 mask keeps padding out of the check.
    own = (ids >= 0) & (groups[ids] == groups[:, None])
    if own.any():
        raise ValueError(
            f"queries {_first(own.any(axis=1))} have themselves or a track of their own exclude_same group "
            "among their neighbours: score with the exclude_same the neighbours were searched with"
        )
    return ids


def _first(mask: np.ndarray, shown: int = 5) -> str:
    """The first few True positions of a 1-D mask, for error messages."""
    where = np.flatnonzero(mask)
    return ", ".join(map(str, where[:shown])) + (f" (and {len(where) - shown} more)" if len(where) > shown else "")
