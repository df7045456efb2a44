"""Nearest-neighbour index of the recommender: exact and approximate search, exclusions,
save/load, input checks and the automatic choice of kind."""

import numpy as np
import pytest

from zoo.recommend.index import VectorIndex, normalize


def clustered(count: int, dim: int = 32, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """Gaussian clusters, like real embeddings (the approximate index relies on structure)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return (centres[rng.integers(clusters, size=count)] + 0.5 * rng.standard_normal((count, dim))).astype(np.float32)


def true_top_k(library: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(normalize(queries) @ normalize(library).T), axis=1)[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return np.mean([len(set(f) & set(t)) / truth.shape[1] for f, t in zip(found, truth)])


@pytest.fixture(scope="module")
def tracks() -> np.ndarray:
    return clustered(20_050)


@pytest.fixture(scope="module")
def library(tracks) -> np.ndarray:
    return tracks[:20_000]


@pytest.fixture(scope="module")
def queries(tracks) -> np.ndarray:
    """Held-out tracks from the library's clusters."""
    return tracks[20_000:]


@pytest.fixture(scope="module")
def indexes(library) -> dict[str, VectorIndex]:
    """One index of each kind over ``library``, built once (the "ivf" build trains k-means)."""
    return {kind: VectorIndex.build(library, kind) for kind in ("exact", "ivf")}


def test_normalize_gives_unit_rows_and_keeps_zero_rows_zero():
    rows = normalize([[3.0, 4.0], [0.0, 0.0]])
    assert rows.dtype == np.float32 and rows.flags.c_contiguous
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 0.0]])


def test_exact_search_returns_the_true_top_k(library, queries, indexes):
    index = indexes["exact"]
    similarities, ids = index.search(queries, 10)
    assert (index.kind, index.size, index.dim) == ("exact", 20_000, 32)
    assert similarities.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (50, 10)
    np.testing.assert_array_equal(ids, true_top_k(library, queries, 10))
    expected = np.take_along_axis(normalize(queries) @ normalize(library).T, ids, axis=1)
    np.testing.assert_allclose(similarities, expected, atol=1e-5)


def test_approximate_search_finds_most_true_neighbours(library, queries, indexes):
    index = indexes["ivf"]
    assert index.kind == "ivf" and index.params["nprobe"] < index.params["nlist"]  # really approximate
    _, ids = index.search(queries, 10)
    assert recall(ids, true_top_k(library, queries, 10)) >= 0.9


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_excluded_ids_are_left_out_and_k_results_remain(queries, indexes, kind):
    index = indexes[kind]
    _, nearest = index.search(queries[:2], 5)
    exclude = [set(nearest[0][:3].tolist()), {int(nearest[1][0]), 10**9}]
    similarities, ids = index.search(queries[:2], 5, exclude=exclude)
    assert ids.shape == (2, 5) and (ids >= 0).all() and np.isfinite(similarities).all()
    assert not set(ids[0]) & exclude[0] and not set(ids[1]) & exclude[1]
    assert list(ids[0][:2]) == list(nearest[0][3:])  # the rest keep their order


def test_a_library_smaller_than_k_is_padded():
    similarities, ids = VectorIndex.build(clustered(3)).search(clustered(1, seed=1), 5, exclude=[{0}])
    assert sorted(ids[0][:2]) == [1, 2] and list(ids[0][2:]) == [-1, -1, -1]
    assert np.isneginf(similarities[0][2:]).all() and np.isfinite(similarities[0][:2]).all()


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_save_and_load_give_identical_results(queries, indexes, kind, tmp_path):
    index = indexes[kind]
    index.save(tmp_path / "library.faiss")
    loaded = VectorIndex.load(tmp_path / "library.faiss")
    assert (loaded.kind, loaded.params, loaded.size, loaded.dim) == (index.kind, index.params, index.size, index.dim)
    for got, expected in zip(loaded.search(queries, 10), index.search(queries, 10)):
        np.testing.assert_array_equal(got, expected)


def test_auto_picks_exact_up_to_the_threshold_and_ivf_above(library):
    assert VectorIndex.build(library, exact_max=20_000).kind == "exact"
    assert VectorIndex.build(library, exact_max=19_999).kind == "ivf"


@pytest.mark.parametrize("vectors, message", [
    (np.zeros((0, 32)), "library vectors is empty"),
    (np.zeros(32), "library vectors must be a 2-D array"),
    (np.array([[1.0, np.nan], [1.0, 2.0]]), r"library vectors contain NaN or infinite values \(first in row 0\)"),
    (np.array([[1.0, 2.0], [np.inf, 2.0]]), r"library vectors contain NaN or infinite values \(first in row 1\)"),
])
def test_bad_library_vectors_are_refused(vectors, message):
    with pytest.raises(ValueError, match=message):
        VectorIndex.build(vectors)


def test_bad_searches_are_refused(library):
    index = VectorIndex.build(library[:100])
    with pytest.raises(ValueError, match="queries have 16 dimensions but the index holds 32-dimensional vectors"):
        index.search(np.ones((1, 16)), 10)
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        index.search(library[:1], 0)
    with pytest.raises(ValueError, match=r"queries contain NaN or infinite values \(first in row 0\)"):
        index.search(np.full((1, 32), np.nan), 10)
    with pytest.raises(ValueError, match="exclude must hold one set per query: got 2 sets for 1 queries"):
        index.search(library[:1], 10, exclude=[set(), set()])
    with pytest.raises(ValueError, match="kind must be 'auto', 'exact' or 'ivf', got 'hnsw'"):
        VectorIndex.build(library[:100], "hnsw")
