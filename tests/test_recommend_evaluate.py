"""Recommendation metrics against values worked out by hand on tiny collections.

The geometry: six tracks on rays at known angles (lengths differ on purpose; cosine
similarity only sees the angle), so every neighbour list follows from angle differences.
Random-data tests compare with a plain per-query loop and with scikit-learn where the
definitions coincide.
"""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, ndcg_score

from zoo.recommend import evaluate
from zoo.recommend.evaluate import (
    genre_metrics,
    mfcc_stats,
    neighbours,
    random_neighbours,
    standardize,
    tag_metrics,
)

ANGLES = [0, 10, 30, 65, 110, 180]  # degrees
LENGTHS = [1, 3, 1, 2, 0.5, 1]
ARTISTS = ["A", "A", "B", "B", "C", None]
GENRES = ["rock", "rock", "jazz", "rock", "jazz", "jazz"]


def rays(angles, lengths=None):
    theta = np.radians(angles)
    lengths = np.ones(len(angles)) if lengths is None else np.asarray(lengths, dtype=float)
    return np.stack([np.cos(theta), np.sin(theta)], axis=1) * lengths[:, None]


VECTORS = rays(ANGLES, LENGTHS)


def test_neighbours_follow_angles_and_never_include_the_track_itself():
    # Angle differences from each track, sorted:
    # 0 (0°):   1:10  2:30  3:65  4:110 5:180
    # 1 (10°):  0:10  2:20  3:55  4:100 5:170
    # 2 (30°):  1:20  0:30  3:35  4:80  5:150
    # 3 (65°):  2:35  4:45  1:55  0:65  5:115
    # 4 (110°): 3:45  5:70  2:80  1:100 0:110
    # 5 (180°): 4:70  3:115 2:150 1:170 0:180
    expected = [[1, 2, 3, 4, 5], [0, 2, 3, 4, 5], [1, 0, 3, 4, 5], [2, 4, 1, 0, 5], [3, 5, 2, 1, 0], [4, 3, 2, 1, 0]]
    ids = neighbours(VECTORS, 5)
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(neighbours(VECTORS, 2), np.array(expected)[:, :2])


def test_ties_go_to_the_lower_index():
    # Tracks 1 and 2 are both 10° from track 0; track 0 is 10° from 1 and 20° from 2.
    np.testing.assert_array_equal(neighbours(rays([0, 10, -10]), 2), [[1, 2], [0, 2], [0, 1]])


def test_artist_filter_removes_same_artist_neighbours():
    # Same lists as above with the query's artist struck out (A: 0,1; B: 2,3; C: 4; None: 5), first two kept:
    # 0: [1 struck] 2 3   1: [0 struck] 2 3   2: 1 0   3: [2 struck] 4 1   4: 3 5   5: 4 3
    ids = neighbours(VECTORS, 2, exclude_same=ARTISTS)
    np.testing.assert_array_equal(ids, [[2, 3], [2, 3], [1, 0], [4, 1], [3, 5], [4, 3]])
    artists = np.array(ARTISTS, dtype=object)
    assert not (artists[ids] == artists[:, None]).any()


def test_missing_artists_are_groups_of_their_own():
    # None, "" and NaN do not filter each other: the same lists as without a filter.
    vectors = rays([0, 10, 30, 65])
    np.testing.assert_array_equal(
        neighbours(vectors, 3, exclude_same=[None, None, "", float("nan")]), neighbours(vectors, 3)
    )


def test_too_few_candidates_are_padded_with_minus_one():
    # Artists X, X, Y: tracks 0 and 1 have one candidate (2); track 2 has both, 1 (10° away) first.
    ids = neighbours(rays([0, 20, 30]), 2, exclude_same=["X", "X", "Y"])
    np.testing.assert_array_equal(ids, [[2, -1], [2, -1], [1, 0]])


def test_genre_metrics_when_fewer_relevant_tracks_than_k():
    # k = 3, no filter. Rock {0,1,3}, jazz {2,4,5}: every query has R = 2 < k, so AP divides by min(3, 2) = 2.
    # query  neighbours  relevant   P@3   AP@3
    # 0 r    1 2 3       1 0 1      2/3   (1 + 2/3)/2   = 5/6
    # 1 r    0 2 3       1 0 1      2/3   (1 + 2/3)/2   = 5/6
    # 2 j    1 0 3       0 0 0      0     0
    # 3 r    2 4 1       0 0 1      1/3   (1/3)/2       = 1/6
    # 4 j    3 5 2       0 1 1      2/3   (1/2 + 2/3)/2 = 7/12
    # 5 j    4 3 2       1 0 1      2/3   (1 + 2/3)/2   = 5/6
    # precision@3 = (4 * 2/3 + 1/3) / 6 = 1/2;  mAP@3 = (10 + 10 + 0 + 2 + 7 + 10)/12 / 6 = 13/24
    metrics = genre_metrics(neighbours(VECTORS, 3), GENRES, 3)
    assert metrics["precision@k"] == pytest.approx(1 / 2)
    assert metrics["map@k"] == pytest.approx(13 / 24)
    assert metrics["map_queries"] == 6


def test_genre_metrics_with_the_artist_filter():
    # k = 2, artists A A B B C None. Relevant candidates R: same genre, other artist.
    # query  R                neighbours  relevant  P@2  AP@2
    # 0 r A  {3}       = 1    2 3         0 1       1/2  (1/2)/min(2,1) = 1/2
    # 1 r A  {3}       = 1    2 3         0 1       1/2  1/2
    # 2 j B  {4,5}     = 2    1 0         0 0       0    0
    # 3 r B  {0,1}     = 2    4 1         0 1       1/2  (1/2)/2 = 1/4
    # 4 j C  {2,5}     = 2    3 5         0 1       1/2  (1/2)/2 = 1/4
    # 5 j -  {2,4}     = 2    4 3         1 0       1/2  1/2
    # precision@2 = (5 * 1/2) / 6 = 5/12;  mAP@2 = (1/2 + 1/2 + 0 + 1/4 + 1/4 + 1/2) / 6 = 1/3
    ids = neighbours(VECTORS, 2, exclude_same=ARTISTS)
    metrics = genre_metrics(ids, GENRES, 2, exclude_same=ARTISTS)
    assert metrics["precision@k"] == pytest.approx(5 / 12)
    assert metrics["map@k"] == pytest.approx(1 / 3)
    assert metrics["map_queries"] == 6


def test_genre_metrics_padding_and_queries_without_relevant_tracks():
    # Labels a b a, artists X X Y, k = 2.
    # 0 a X: R = |{2}| = 1, neighbours 2 -1: rel 1 0, P@2 = 1/2, AP = (P@1 * 1)/1 = 1
    # 1 b X: R = 0 (the only b): P@2 = 0, left out of mAP
    # 2 a Y: R = |{0}| = 1, neighbours 0 1: rel 1 0, P@2 = 1/2, AP = 1
    # precision@2 = (1/2 + 0 + 1/2) / 3 = 1/3;  mAP@2 = 1 over 2 queries
    metrics = genre_metrics([[2, -1], [2, -1], [0, 1]], ["a", "b", "a"], 2, exclude_same=["X", "X", "Y"])
    assert metrics == {"precision@k": pytest.approx(1 / 3), "map@k": pytest.approx(1.0), "map_queries": 2}


def test_genre_metrics_without_any_relevant_track_gives_nan_map():
    metrics = genre_metrics([[1], [2], [0]], ["a", "b", "c"], 1)
    assert metrics["precision@k"] == 0 and math.isnan(metrics["map@k"]) and metrics["map_queries"] == 0


#            a  b  c  d
TAGS = [
    [1, 1, 0, 0],  # 0 {a,b}
    [1, 0, 0, 0],  # 1 {a}
    [0, 1, 1, 0],  # 2 {b,c}
    [0, 0, 0, 0],  # 3 {}
    [1, 1, 1, 0],  # 4 {a,b,c}
    [0, 0, 0, 0],  # 5 {}
]
# Jaccard: J01 = 1/2, J02 = 1/3, J04 = 2/3, J12 = 0, J14 = 1/3, J24 = 2/3; anything with 3 or 5 is 0 (J35 = 0 by rule).
TAG_NEIGHBOURS = [[1, 4], [2, 0], [4, 3], [5, 0], [0, 2], [3, 4]]


def test_tag_metrics_hand_values():
    # gains per query (k = 2)   ideal (best 2 candidates)
    # 0: J01 J04 = 1/2 2/3      2/3 1/2
    # 1: J12 J10 = 0   1/2      1/2 1/3
    # 2: J24 J23 = 2/3 0        2/3 1/3
    # 3: 0 0                    0 0      -> left out of nDCG (no tags)
    # 4: J40 J42 = 2/3 2/3      2/3 2/3
    # 5: 0 0 (J53: two untagged) 0 0     -> left out of nDCG
    # jaccard@2 = (1/2 + 2/3 + 1/2 + 2/3 + 2/3 + 2/3) / 12 = (11/3) / 12 = 11/36
    # DCG = g1 / log2(2) + g2 / log2(3)
    log3 = math.log2(3)
    ndcg = [
        (1 / 2 + (2 / 3) / log3) / (2 / 3 + (1 / 2) / log3),  # 0: 0.9374
        ((1 / 2) / log3) / (1 / 2 + (1 / 3) / log3),  # 1: 0.4441
        (2 / 3) / (2 / 3 + (1 / 3) / log3),  # 2: 0.7602
        1.0,  # 4: already the ideal order
    ]
    metrics = tag_metrics(np.array(TAG_NEIGHBOURS), np.array(TAGS, dtype=bool), 2)
    assert metrics["jaccard@k"] == pytest.approx(11 / 36)
    assert metrics["ndcg@k"] == pytest.approx(sum(ndcg) / 4)
    assert metrics["ndcg@k"] == pytest.approx(0.78542, abs=1e-5)
    assert metrics["ndcg_queries"] == 4


def test_tag_metrics_ideal_list_uses_only_candidates():
    # Query 0 and track 4 share an artist, so J04 = 2/3 is not on offer: query 0's ideal is
    # J01 J02 = 1/2 1/3 and neighbours 1 2 are that ideal (nDCG 1); query 4 likewise gets J42 J41 = 2/3 1/3.
    artists = ["P", "Q", "R", "S", "P", "T"]
    ids = [[1, 2], [0, 4], [4, 0], [0, 1], [2, 1], [0, 1]]
    per_query = tag_metrics(ids, TAGS, 2, exclude_same=artists)
    # 0: 1;  1: gains 1/2 1/3 = ideal, 1;  2: gains 2/3 1/3 = ideal, 1;  4: gains 2/3 1/3 = ideal, 1
    assert per_query["ndcg@k"] == pytest.approx(1.0)
    assert per_query["ndcg_queries"] == 4


def test_a_query_without_tags():
    # Track 0 has no tags: its Jaccards are all 0 (also with the untagged track 2), it counts 0 in jaccard@1
    # and is left out of nDCG. Track 1 {a} -> 2 {}: J = 0, but track 3 {a} was possible: nDCG 0.
    # Track 2 {} likewise left out; track 3 {a} -> 1 {a}: J = 1, nDCG 1.
    tags = [[0, 0], [1, 0], [0, 0], [1, 0]]
    metrics = tag_metrics([[2], [2], [0], [1]], tags, 1)
    assert metrics["jaccard@k"] == pytest.approx(1 / 4)  # (0 + 0 + 0 + 1) / 4
    assert metrics["ndcg@k"] == pytest.approx(1 / 2)  # (0 + 1) / 2
    assert metrics["ndcg_queries"] == 2


def test_tag_metrics_without_tags_at_all():
    metrics = tag_metrics([[1], [0]], np.zeros((2, 3)), 1)
    assert metrics["jaccard@k"] == 0 and math.isnan(metrics["ndcg@k"]) and metrics["ndcg_queries"] == 0


def test_random_baseline_is_seeded_and_respects_the_artist_filter():
    artists = [i // 3 for i in range(30)]  # ten artists with three tracks each
    first = random_neighbours(30, 10, seed=7, exclude_same=artists)
    np.testing.assert_array_equal(first, random_neighbours(30, 10, seed=7, exclude_same=artists))
    assert not np.array_equal(first, random_neighbours(30, 10, seed=8, exclude_same=artists))
    assert (first >= 0).all()
    assert not (np.array(artists)[first] == np.array(artists)[:, None]).any()  # also never the track itself
    assert all(len(set(row)) == 10 for row in first)


def test_random_baseline_pads_like_the_search():
    ids = random_neighbours(3, 2, seed=0, exclude_same=["X", "X", "Y"])
    np.testing.assert_array_equal(ids[:2], [[2, -1], [2, -1]])
    assert sorted(ids[2]) == [0, 1]


def test_random_baseline_scores_the_chance_level():
    # Two balanced genres of 200 tracks: a random other track shares the genre with probability 199/399.
    labels = np.arange(400) % 2
    metrics = genre_metrics(random_neighbours(400, 20, seed=0), labels, 20)
    assert metrics["precision@k"] == pytest.approx(199 / 399, abs=0.02)


def test_mfcc_stats():
    # coefficient 0: 1 2 3 -> mean 2, std sqrt(((1-2)^2 + 0 + (3-2)^2) / 3) = sqrt(2/3)
    # coefficient 1: 4 4 4 -> mean 4, std 0
    np.testing.assert_allclose(mfcc_stats([[1, 2, 3], [4, 4, 4]]), [2, 4, math.sqrt(2 / 3), 0])


def test_standardize():
    # column 0: 1 3 -> mean 2, std 1 -> -1 1;  column 1: 5 5 -> constant -> 0;
    # column 2: 0.1 0.1 0.1 would have a rounding-size std, still 0.
    np.testing.assert_allclose(standardize([[1, 5], [3, 5]]), [[-1, 0], [1, 0]])
    np.testing.assert_array_equal(standardize(np.full((3, 1), 0.1)), np.zeros((3, 1)))


def brute_force_neighbours(vectors, k, groups):
    """The obvious per-query loop: sort the other groups' tracks by cosine similarity, lower index on ties."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    out = []
    for q in range(len(vectors)):
        candidates = [j for j in range(len(vectors)) if groups[j] != groups[q]]
        ranked = sorted(candidates, key=lambda j: (-(unit[q] @ unit[j]), j))[:k]
        out.append(ranked + [-1] * (k - len(ranked)))
    return np.array(out)


def brute_force_ap(ids, labels, groups, k):
    """AP@k by the formula, one query at a time."""
    aps = []
    for q, row in enumerate(ids[:, :k]):
        relevant = sum(1 for j in range(len(labels)) if groups[j] != groups[q] and labels[j] == labels[q])
        if relevant == 0:
            continue
        hits, total = 0, 0.0
        for rank, j in enumerate(row, start=1):
            if j >= 0 and labels[j] == labels[q]:
                hits += 1
                total += hits / rank
        aps.append(total / min(k, relevant))
    return np.mean(aps)


def test_blocked_search_matches_the_plain_loop(monkeypatch):
    monkeypatch.setattr(evaluate, "BLOCK_ROWS", 4)  # several blocks and a ragged last one
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(23, 5))
    artists = rng.integers(0, 8, size=23)
    np.testing.assert_array_equal(
        neighbours(vectors, 6, exclude_same=artists), brute_force_neighbours(vectors, 6, artists)
    )


def test_map_matches_the_plain_loop_on_random_data():
    rng = np.random.default_rng(1)
    vectors, labels, artists = rng.normal(size=(60, 8)), rng.integers(0, 4, size=60), rng.integers(0, 15, size=60)
    ids = neighbours(vectors, 7, exclude_same=artists)
    for k in (1, 3, 7):
        metrics = genre_metrics(ids, labels, k, exclude_same=artists)
        assert metrics["map@k"] == pytest.approx(brute_force_ap(ids, labels, artists, k))


def test_full_ranking_ap_matches_scikit_learn():
    # With k = N - 1 every candidate is ranked and min(k, R) = R: AP@k is the usual average precision.
    rng = np.random.default_rng(2)
    vectors, labels = rng.normal(size=(30, 4)), rng.integers(0, 3, size=30)
    assert np.bincount(labels).min() >= 2  # every query has a relevant track
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = []
    for q in range(30):
        others = np.arange(30) != q
        expected.append(average_precision_score(labels[others] == labels[q], (unit @ unit[q])[others]))
    assert genre_metrics(neighbours(vectors, 29), labels, 29)["map@k"] == pytest.approx(np.mean(expected))


def test_ndcg_matches_scikit_learn():
    # scikit-learn's ndcg_score with Jaccard as relevance and cosine as score, over a query's other tracks,
    # is the same definition (log2(rank + 1) discount, ideal from the best k); it scores IDCG = 0 as 0, skipped here.
    rng = np.random.default_rng(3)
    vectors, tags = rng.normal(size=(40, 6)), rng.random((40, 5)) < 0.3
    k = 5
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    overlap = tags.astype(float) @ tags.T.astype(float)
    union = tags.sum(1)[:, None] + tags.sum(1)[None, :] - overlap
    jaccard = np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)
    expected = []
    for q in range(40):
        others = np.arange(40) != q
        if np.sort(jaccard[q, others])[-k:].sum() > 0:
            expected.append(ndcg_score([jaccard[q, others]], [(unit @ unit[q])[others]], k=k))
    metrics = tag_metrics(neighbours(vectors, k), tags, k)
    assert metrics["ndcg_queries"] == len(expected)
    assert metrics["ndcg@k"] == pytest.approx(np.mean(expected))


IDS = np.array([[1], [2], [0]])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: neighbours(np.ones(3), 1), "2-D"),
        (lambda: neighbours(VECTORS, 0), "at least 1"),
        (lambda: neighbours(VECTORS, 6), "smaller than the number of tracks"),
        (lambda: neighbours(np.array([[1.0, 0], [np.nan, 1], [0, 1]]), 1), "NaN or infinite values in rows 1"),
        (lambda: neighbours(np.array([[1.0, 0], [0, 0], [0, 1]]), 1), "all-zero rows 1"),
        (lambda: neighbours(VECTORS, 1, exclude_same=["A", "B"]), "one group per track"),
        (lambda: random_neighbours(3, 0, seed=0), "at least 1"),
        (lambda: random_neighbours(3, 3, seed=0), "smaller than the number of tracks"),
        (lambda: random_neighbours(3, 1, seed=0, exclude_same=["A"]), "one group per track"),
        (lambda: genre_metrics(IDS, ["a", "b"], 1), r"shape \(2, >= k\)"),
        (lambda: genre_metrics(IDS, [["a"], ["b"], ["c"]], 1), "labels must be 1-D"),
        (lambda: genre_metrics(IDS, ["a", "b", "c"], 2), "only 1 columns"),
        (lambda: genre_metrics(IDS, ["a", "b", "c"], 0), "at least 1"),
        (lambda: genre_metrics(IDS.astype(float), ["a", "b", "c"], 1), "integer track indices"),
        (lambda: genre_metrics([[1], [3], [0]], ["a", "b", "c"], 1), r"in \[0, 3\) or -1"),
        (lambda: genre_metrics([[1], [-2], [0]], ["a", "b", "c"], 1), r"in \[0, 3\) or -1"),
        (lambda: genre_metrics([[1], [1], [0]], ["a", "b", "c"], 1), "queries 1 have themselves"),
        (lambda: genre_metrics(IDS, ["a", "b", "c"], 1, exclude_same=["X", "X", "Y"]), "queries 0 have"),
        (lambda: tag_metrics(IDS, [[0, 2], [1, 0], [0, 1]], 1), "only 0/1"),
        (lambda: tag_metrics(IDS, [[0, np.nan], [1, 0], [0, 1]], 1), "only 0/1"),
        (lambda: tag_metrics(IDS, [0, 1, 1], 1), "tags must be 2-D"),
        (lambda: tag_metrics(IDS, [[0, 1], [1, 0]], 1), r"shape \(2, >= k\)"),
        (lambda: mfcc_stats(np.ones(13)), "n_mfcc, frames"),
        (lambda: mfcc_stats(np.ones((13, 0))), "at least one frame"),
        (lambda: mfcc_stats([[1.0, np.nan]]), "NaN or infinite"),
        (lambda: standardize(np.ones(4)), "2-D"),
        (lambda: standardize(np.ones((0, 4))), "at least one row"),
        (lambda: standardize([[1.0, np.inf], [0.0, 1.0]]), "NaN or infinite values in rows 0"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
