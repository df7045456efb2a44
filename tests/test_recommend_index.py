"""Nearest-neighbour index of the recommender: exact and approximate search, exclusions,
save/load (and indexes saved before "ivfpq"), building from a file, input checks and the
automatic choice of kind."""

import json

import faiss
import numpy as np
import pytest

from zoo.recommend import rows as rows_module
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
    """One index of each kind over ``library``, built once (the approximate kinds train k-means)."""
    return {kind: VectorIndex.build(library, kind) for kind in ("exact", "ivf", "ivfpq")}


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


@pytest.mark.parametrize("kind", ["exact", "ivf", "ivfpq"])
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


@pytest.mark.parametrize("kind", ["exact", "ivf", "ivfpq"])
def test_save_and_load_give_identical_results(queries, indexes, kind, tmp_path):
    index = indexes[kind]
    index.save(tmp_path / "library.faiss")
    loaded = VectorIndex.load(tmp_path / "library.faiss")
    assert (loaded.kind, loaded.params, loaded.size, loaded.dim) == (index.kind, index.params, index.size, index.dim)
    sidecar = json.loads((tmp_path / "library.faiss.json").read_text())
    if kind == "ivfpq":  # re-ranked from the rows beside the index, memory-mapped
        assert sidecar["vectors"] == "library.faiss.vectors.npy" and isinstance(loaded.vectors, np.memmap)
        np.testing.assert_array_equal(np.load(tmp_path / "library.faiss.vectors.npy"), index.vectors)
    else:
        assert "vectors" not in sidecar and loaded.vectors is None
    for got, expected in zip(loaded.search(queries, 10), index.search(queries, 10)):
        np.testing.assert_array_equal(got, expected)


def test_auto_picks_exact_up_to_the_threshold_and_ivf_above(library):
    assert VectorIndex.build(library, exact_max=20_000).kind == "exact"
    assert VectorIndex.build(library, exact_max=19_999).kind == "ivf"


def test_auto_picks_the_compressed_index_above_ivf_max(library):
    assert VectorIndex.build(library, exact_max=100, ivf_max=20_000).kind == "ivf"
    index = VectorIndex.build(library, exact_max=100, ivf_max=19_999)
    assert index.kind == "ivfpq" and index.vectors.shape == (20_000, 32)


def test_compressed_search_re_ranks_candidates_exactly(library, queries, indexes):
    """The codes only choose ``rerank`` candidates: the similarities returned are the exact
    ones (the codes' own estimates are not), and recall is close to exact search's."""
    index = indexes["ivfpq"]
    assert index.params == {"nlist": 500, "nprobe": 16, "m": 8, "nbits": 8, "rerank": 500}
    assert index.index.code_size == 8  # 8 bytes a vector in the index instead of 128
    similarities, ids = index.search(queries, 10)
    assert recall(ids, true_top_k(library, queries, 10)) >= 0.95
    exact = np.take_along_axis(normalize(queries) @ normalize(library).T, ids, axis=1)
    np.testing.assert_allclose(similarities, exact, atol=1e-5)
    assert (np.diff(similarities, axis=1) <= 0).all()
    estimated, _ = index.index.search(normalize(queries), 10)  # the codes alone: approximate scores
    assert np.abs(estimated - np.sort(exact, axis=1)[:, ::-1]).max() > 1e-3


def test_compressed_search_finds_more_than_rerank_when_many_are_excluded(queries, indexes):
    index = indexes["ivfpq"]
    banned = index.params["rerank"] + 20
    _, nearest = index.search(queries[:1], banned + 10)
    _, ids = index.search(queries[:1], 10, exclude=[set(nearest[0][:banned].tolist())])
    assert (ids >= 0).all() and not set(ids[0]) & set(nearest[0][:banned])
    assert list(ids[0]) == list(nearest[0][banned:])


@pytest.mark.parametrize("kind", ["exact", "ivfpq"])
def test_building_from_a_file_in_batches_gives_the_in_memory_index(library, queries, tmp_path, monkeypatch, kind):
    """A .npy file is read, normalised and added batch by batch (a small batch here, so rows of
    the training sample come from several batches) and gives the index built from the array."""
    np.save(tmp_path / "raw.npy", library)  # not normalised: build does that
    monkeypatch.setattr(rows_module, "BATCH_BYTES", 3_000 * 4 * library.shape[1])  # 3,000 rows
    rows_path = tmp_path / "library.faiss.vectors.npy"
    from_file = VectorIndex.build(tmp_path / "raw.npy", kind, vectors_path=rows_path)
    in_memory = VectorIndex.build(library, kind)
    assert (from_file.kind, from_file.params, from_file.size) == (in_memory.kind, in_memory.params, 20_000)
    expected = in_memory.search(queries, 10)
    got = from_file.search(queries, 10)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[0], expected[0], atol=1e-6)
    if kind == "ivfpq":  # the unit rows went to vectors_path, and saving there copies nothing
        assert isinstance(from_file.vectors, np.memmap)
        np.testing.assert_allclose(np.load(rows_path), normalize(library), atol=1e-6)
        written = rows_path.stat().st_mtime_ns
        from_file.save(tmp_path / "library.faiss")
        assert rows_path.stat().st_mtime_ns == written
        np.testing.assert_array_equal(VectorIndex.load(tmp_path / "library.faiss").search(queries, 10)[1], expected[1])
    else:
        assert from_file.vectors is None and not rows_path.exists()
    np.testing.assert_array_equal(np.load(tmp_path / "raw.npy"), library)  # the input is left alone


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_indexes_saved_before_the_compressed_kind_still_load(library, queries, tmp_path, kind):
    """A faiss file and sidecar as the version before "ivfpq" wrote them (no "vectors" field)."""
    library_unit, dim = normalize(library), library.shape[1]
    if kind == "exact":
        old, params = faiss.IndexFlatIP(dim), {}
    else:
        old, params = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, 100, faiss.METRIC_INNER_PRODUCT), {"nlist": 100, "nprobe": 100}
        old.train(library_unit)
    old.add(library_unit)
    faiss.write_index(old, str(tmp_path / "embedding.faiss"))
    (tmp_path / "embedding.faiss.json").write_text(json.dumps({"kind": kind, "params": params, "size": 20_000, "dim": 32}))
    loaded = VectorIndex.load(tmp_path / "embedding.faiss")
    assert (loaded.kind, loaded.params, loaded.vectors) == (kind, params, None)
    _, ids = loaded.search(queries, 10)
    np.testing.assert_array_equal(ids, true_top_k(library, queries, 10))  # nprobe = nlist: exhaustive


@pytest.fixture
def saved_pq(indexes, tmp_path):
    indexes["ivfpq"].save(tmp_path / "library.faiss")
    return tmp_path / "library.faiss"


def test_an_ivfpq_index_re_ranks_from_the_unit_rows_file_it_was_built_from(library, queries, tmp_path):
    """A library writes its unit feature vectors once, where the index re-ranks from: built
    with that file as its vectors and its vectors_path, the index copies nothing and answers
    as one built from the array."""
    rows_path = tmp_path / "library.faiss.vectors.npy"
    np.save(rows_path, normalize(library))
    written = rows_path.stat().st_mtime_ns
    from_rows = VectorIndex.build(rows_path, "ivfpq", vectors_path=rows_path)
    from_rows.save(tmp_path / "library.faiss")
    assert rows_path.stat().st_mtime_ns == written and sorted(p.name for p in tmp_path.iterdir()) == [
        "library.faiss", "library.faiss.json", "library.faiss.vectors.npy"]
    np.testing.assert_array_equal(VectorIndex.load(tmp_path / "library.faiss").search(queries, 10)[1],
                                  VectorIndex.build(library, "ivfpq").search(queries, 10)[1])


def test_a_missing_or_wrong_re_rank_vectors_file_is_named(saved_pq):
    rows_path = saved_pq.with_name("library.faiss.vectors.npy")
    np.save(rows_path, np.zeros((19_999, 32), np.float32))
    with pytest.raises(ValueError, match=rf"{rows_path}: re-rank vectors of shape \(19999, 32\), but {saved_pq} "
                                         r"holds 20000 x 32 vectors"):
        VectorIndex.load(saved_pq)
    np.save(rows_path, np.zeros((20_000, 32), np.float64))
    with pytest.raises(ValueError, match=rf"{rows_path}: re-rank vectors file of {saved_pq} must hold a 2-D float32"):
        VectorIndex.load(saved_pq)
    rows_path.write_text("not an array")
    with pytest.raises(ValueError, match=rf"{rows_path}: not a NumPy .npy file"):
        VectorIndex.load(saved_pq)
    rows_path.unlink()
    with pytest.raises(ValueError, match=rf"{rows_path}: missing \(re-rank vectors file of {saved_pq}\)"):
        VectorIndex.load(saved_pq)


def test_a_sidecar_of_an_unknown_kind_or_without_its_vectors_is_refused(saved_pq):
    sidecar_path = saved_pq.with_name("library.faiss.json")
    sidecar = json.loads(sidecar_path.read_text())
    sidecar_path.write_text(json.dumps({**sidecar, "kind": "hnswpq"}))
    with pytest.raises(ValueError, match=rf"{sidecar_path}: unknown index kind 'hnswpq'; this version reads exact, ivf, ivfpq"):
        VectorIndex.load(saved_pq)
    del sidecar["vectors"]
    sidecar_path.write_text(json.dumps(sidecar))
    with pytest.raises(ValueError, match=rf"{sidecar_path}: an 'ivfpq' index needs its re-rank vectors file"):
        VectorIndex.load(saved_pq)


def test_bad_library_files_are_refused(library, tmp_path):
    with pytest.raises(ValueError, match=rf"{tmp_path / 'none.npy'}: missing \(library vectors file\)"):
        VectorIndex.build(tmp_path / "none.npy")
    np.save(tmp_path / "flat.npy", np.zeros(32, np.float32))
    with pytest.raises(ValueError, match=r"flat.npy: library vectors file must hold a 2-D float32 array .* shape \(32,\)"):
        VectorIndex.build(tmp_path / "flat.npy")
    np.save(tmp_path / "raw.npy", library)
    with pytest.raises(ValueError, match=r"building an 'ivfpq' index from .*raw.npy needs vectors_path"):
        VectorIndex.build(tmp_path / "raw.npy", "ivfpq")
    with pytest.raises(ValueError, match="an 'ivfpq' index needs at least 9,984 tracks"):
        VectorIndex.build(library[:5_000], "ivfpq")


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
    with pytest.raises(ValueError, match="kind must be 'auto', 'exact', 'ivf', 'ivfpq', got 'hnsw'"):
        VectorIndex.build(library[:100], "hnsw")
