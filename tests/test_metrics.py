"""Tests for softkm.metrics against scikit-learn, slow references and hand-computed cases."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk_metrics
from sklearn.metrics.cluster import contingency_matrix as sk_contingency_matrix

from softkm import metrics
from softkm.errors import OptionError

RTOL = 1e-10


def _labelings(n_samples, n_classes, n_clusters, kind, seed):
    """Build a labeling pair where labels_pred agrees with labels_true on about half the samples."""
    rng = np.random.default_rng(seed)
    labels_true = rng.integers(0, n_classes, n_samples)
    labels_pred = rng.integers(0, n_clusters, n_samples)
    agree = rng.random(n_samples) < 0.5
    labels_pred[agree] = labels_true[agree] % n_clusters

    if kind == "strings":
        names = np.array([f"class-{i}" for i in range(n_classes)])
        labels_true = names[labels_true]
        labels_pred = np.array([f"c{i:03d}" for i in range(n_clusters)])[labels_pred]
    elif kind == "permuted":
        labels_pred = rng.permutation(n_clusters)[labels_pred]
    elif kind == "arbitrary_ints":
        labels_true = rng.choice(np.arange(-1000, 1000), n_classes, replace=False)[labels_true]
        labels_pred = rng.choice(np.arange(10**9, 10**9 + 5000), n_clusters, replace=False)[labels_pred]
    return labels_true, labels_pred


LABELING_CASES = {
    "tiny": (8, 2, 3, "ints"),
    "medium": (300, 4, 6, "ints"),
    "large": (4000, 12, 9, "ints"),
    "strings": (200, 3, 5, "strings"),
    "permuted": (500, 5, 5, "permuted"),
    "arbitrary_ints": (250, 6, 4, "arbitrary_ints"),
    "many_clusters": (400, 80, 120, "ints"),
    "independent": (2000, 7, 5, "independent"),
}


@pytest.fixture(params=sorted(LABELING_CASES))
def labeling_pair(request):
    n_samples, n_classes, n_clusters, kind = LABELING_CASES[request.param]
    if kind == "independent":
        rng = np.random.default_rng(7)
        return rng.integers(0, n_classes, n_samples), rng.integers(0, n_clusters, n_samples)
    return _labelings(n_samples, n_classes, n_clusters, kind, seed=n_samples)


# Pairs of labelings with (expected ARI, expected NMI). The expected values equal
# scikit-learn's, which the tests also check.
DEGENERATE_CASES = {
    "both_single_cluster": ([0] * 6, [1] * 6, 1.0, 1.0),
    "both_all_singletons": (list(range(6)), [5, 3, 1, 0, 2, 4], 1.0, 1.0),
    "identical_relabelled": ([0, 0, 1, 1, 2, 2], [5, 5, 3, 3, 4, 4], 1.0, 1.0),
    "identical_strings": (["a", "b", "a", "c"], ["a", "b", "a", "c"], 1.0, 1.0),
    "single_vs_singletons": ([0] * 6, list(range(6)), 0.0, 0.0),
    "singletons_vs_single": (list(range(6)), [0] * 6, 0.0, 0.0),
    # Every (class, cluster) cell contains one of 16 samples, so the labelings are
    # exactly independent. index = 0, a = b = 4 * C(4, 2) = 24, total = C(16, 2) = 120,
    # ARI = 2 * (0 - 576) / (48 * 120 - 2 * 576) = -0.25.
    "independent_grid": ([i // 4 for i in range(16)], [i % 4 for i in range(16)], -0.25, 0.0),
    "one_sample": ([3], [7], 1.0, 1.0),
}


def _slow_inertia(X, centroids, labels, sample_weight):
    total = 0.0
    for i in range(X.shape[0]):
        weight = 1.0 if sample_weight is None else float(sample_weight[i])
        for j in range(X.shape[1]):
            difference = float(X[i, j]) - float(centroids[labels[i], j])
            total += weight * difference * difference
    return total


# ---------------------------------------------------------------------------
# inertia
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_samples,n_features,n_clusters", [(1, 1, 1), (50, 3, 4), (400, 7, 10)])
def test_inertia_matches_loop(dtype, weighted, n_samples, n_features, n_clusters):
    rng = np.random.default_rng(n_samples + n_features)
    X = rng.normal(size=(n_samples, n_features)).astype(dtype)
    centroids = rng.normal(size=(n_clusters, n_features)).astype(dtype)
    labels = rng.integers(0, n_clusters, n_samples)
    sample_weight = rng.random(n_samples) * 3 if weighted else None

    expected = _slow_inertia(X, centroids, labels, sample_weight)
    assert metrics.inertia(X, centroids, labels, sample_weight) == pytest.approx(expected, rel=RTOL)


def test_inertia_chunked(monkeypatch):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(101, 4))
    centroids = rng.normal(size=(5, 4))
    labels = rng.integers(0, 5, 101)
    sample_weight = rng.random(101)
    expected = metrics.inertia(X, centroids, labels, sample_weight)

    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 10)
    assert metrics.inertia(X, centroids, labels, sample_weight) == pytest.approx(expected, rel=RTOL)


def test_inertia_far_from_origin():
    # The |x|^2 - 2 x.c + |c|^2 expansion would lose nearly every digit here.
    rng = np.random.default_rng(4)
    X = 1e8 + rng.normal(size=(60, 2))
    centroids = np.full((1, 2), 1e8)
    labels = np.zeros(60, dtype=int)

    expected = _slow_inertia(X, centroids, labels, None)
    assert metrics.inertia(X, centroids, labels) == pytest.approx(expected, rel=1e-7)


def test_inertia_hand_example():
    X = [[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]]
    centroids = [[1.0, 0.0], [10.0, 11.0]]
    labels = [0, 0, 1]
    # 1 + 1 + 1 unweighted, and 2 * 1 + 0 * 1 + 5 * 1 weighted.
    assert metrics.inertia(X, centroids, labels) == 3.0
    assert metrics.inertia(X, centroids, labels, sample_weight=[2, 0, 5]) == 7.0


def test_inertia_empty_data():
    assert metrics.inertia(np.empty((0, 3)), np.zeros((2, 3)), np.empty(0, dtype=int)) == 0.0


def test_inertia_label_out_of_range():
    with pytest.raises(OptionError, match=r"labels must be in \[0, n_clusters\) = \[0, 2\)"):
        metrics.inertia(np.zeros((3, 2)), np.zeros((2, 2)), [0, 1, 2])


def test_inertia_float_labels():
    with pytest.raises(OptionError, match="labels must be integers"):
        metrics.inertia(np.zeros((2, 2)), np.zeros((2, 2)), [0.0, 1.0])


def test_inertia_length_mismatch():
    with pytest.raises(OptionError, match="labels must have one entry per row of X, got 2 entries for 3"):
        metrics.inertia(np.zeros((3, 2)), np.zeros((2, 2)), [0, 1])


def test_inertia_feature_mismatch():
    with pytest.raises(OptionError, match="centroids must have as many columns as X, got 3 and 2"):
        metrics.inertia(np.zeros((4, 2)), np.zeros((2, 3)), [0, 1, 0, 1])


def test_inertia_nan_in_X():
    X = np.zeros((4, 2))
    X[2, 1] = np.nan
    with pytest.raises(OptionError, match="X must contain only finite values"):
        metrics.inertia(X, np.zeros((1, 2)), [0, 0, 0, 0])


def test_inertia_negative_weight():
    with pytest.raises(OptionError, match="sample_weight must be non-negative"):
        metrics.inertia(np.zeros((2, 2)), np.zeros((1, 2)), [0, 0], sample_weight=[1.0, -1.0])


def test_inertia_1d_X():
    with pytest.raises(OptionError, match=r"X must be a 2-D array of shape \(n_samples, n_features\)"):
        metrics.inertia(np.zeros(4), np.zeros((1, 1)), [0, 0, 0, 0])


# ---------------------------------------------------------------------------
# contingency_matrix
# ---------------------------------------------------------------------------


def test_contingency_matches_sklearn(labeling_pair):
    labels_true, labels_pred = labeling_pair
    table = metrics.contingency_matrix(labels_true, labels_pred)
    expected = sk_contingency_matrix(labels_true, labels_pred)

    assert table.dtype == np.int64
    np.testing.assert_array_equal(table, expected)


def test_contingency_string_order():
    table = metrics.contingency_matrix(["b", "a", "b", "c"], ["y", "x", "x", "x"])
    # Rows a, b, c and columns x, y in sorted order.
    np.testing.assert_array_equal(table, [[1, 0], [1, 1], [1, 0]])


def test_contingency_unsortable_labels():
    with pytest.raises(OptionError, match="labels_true must contain values of one sortable type"):
        metrics.contingency_matrix(np.array([1, "a", None], dtype=object), [0, 1, 2])


def test_contingency_2d_labels():
    with pytest.raises(OptionError, match=r"labels_pred must be a 1-D array.*got shape \(3, 1\)"):
        metrics.contingency_matrix([0, 1, 2], [[0], [1], [2]])


# ---------------------------------------------------------------------------
# adjusted_rand_index and normalized_mutual_info
# ---------------------------------------------------------------------------


def test_ari_matches_sklearn(labeling_pair):
    labels_true, labels_pred = labeling_pair
    expected = sk_metrics.adjusted_rand_score(labels_true, labels_pred)
    assert metrics.adjusted_rand_index(labels_true, labels_pred) == pytest.approx(expected, rel=RTOL)


def test_nmi_matches_sklearn(labeling_pair):
    labels_true, labels_pred = labeling_pair
    expected = sk_metrics.normalized_mutual_info_score(
        labels_true, labels_pred, average_method="arithmetic"
    )
    assert metrics.normalized_mutual_info(labels_true, labels_pred) == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("case", sorted(DEGENERATE_CASES))
def test_ari_degenerate(case):
    labels_true, labels_pred, expected, _ = DEGENERATE_CASES[case]
    result = metrics.adjusted_rand_index(labels_true, labels_pred)
    assert result == pytest.approx(expected, rel=RTOL, abs=1e-15)
    assert result == pytest.approx(sk_metrics.adjusted_rand_score(labels_true, labels_pred), rel=RTOL)


@pytest.mark.parametrize("case", sorted(DEGENERATE_CASES))
def test_nmi_degenerate(case):
    labels_true, labels_pred, _, expected = DEGENERATE_CASES[case]
    result = metrics.normalized_mutual_info(labels_true, labels_pred)
    assert result == pytest.approx(expected, rel=RTOL, abs=1e-15)
    assert result == pytest.approx(
        sk_metrics.normalized_mutual_info_score(labels_true, labels_pred), rel=RTOL, abs=1e-15
    )


def test_ari_nmi_empty():
    # scikit-learn 1.9 returns 1.0 for both on empty labelings.
    assert metrics.adjusted_rand_index([], []) == 1.0
    assert metrics.normalized_mutual_info([], []) == 1.0


def test_nmi_independent_exact_zero():
    labels_true = np.repeat(np.arange(5), 6)
    labels_pred = np.tile(np.arange(6), 5)
    assert metrics.normalized_mutual_info(labels_true, labels_pred) == 0.0


# labels_true = [0, 0, 0, 1, 1, 1], labels_pred = [0, 0, 1, 1, 2, 2].
# Contingency table (rows classes 0 and 1, columns clusters 0, 1 and 2):
#     [[2, 1, 0],
#      [0, 1, 2]]     row sums 3, 3 and column sums 2, 2, 2, n = 6.
# ARI: index = C(2,2) + C(2,2) = 2, a = 2 * C(3,2) = 6, b = 3 * C(2,2) = 3,
#   total = C(6,2) = 15, expected index = a * b / total = 1.2, max index = (a + b) / 2 = 4.5,
#   ARI = (2 - 1.2) / (4.5 - 1.2) = 8 / 33.
# NMI: MI = 2 * (2/6) * log((2/6) / ((3/6) * (2/6))) + 2 * (1/6) * log(1) = (2/3) log 2,
#   H_true = log 2, H_pred = log 3, NMI = (2/3) log 2 / ((log 2 + log 3) / 2) = 4 log 2 / (3 log 6).
HAND_TRUE = [0, 0, 0, 1, 1, 1]
HAND_PRED = [0, 0, 1, 1, 2, 2]


def test_contingency_hand_example():
    np.testing.assert_array_equal(metrics.contingency_matrix(HAND_TRUE, HAND_PRED), [[2, 1, 0], [0, 1, 2]])


def test_ari_hand_example():
    assert metrics.adjusted_rand_index(HAND_TRUE, HAND_PRED) == pytest.approx(8 / 33, rel=RTOL)


def test_nmi_hand_example():
    expected = 4 * math.log(2) / (3 * math.log(6))
    assert metrics.normalized_mutual_info(HAND_TRUE, HAND_PRED) == pytest.approx(expected, rel=RTOL)


def test_ari_negative_hand_example():
    # index = 0, a = b = 2, total = 6: ARI = 2 * (0 - 4) / (4 * 6 - 8) = -0.5.
    assert metrics.adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == -0.5


def test_ari_exact_large_counts():
    # Pair counts near 10**11 and their products near 10**22 overflow int64 and exceed
    # float64's 53-bit mantissa, so the reference uses exact fractions.
    rng = np.random.default_rng(11)
    n_samples = 600_000
    labels_true = rng.integers(0, 3, n_samples)
    labels_pred = np.where(rng.random(n_samples) < 0.9, labels_true, rng.integers(0, 4, n_samples))

    table = metrics.contingency_matrix(labels_true, labels_pred)
    pairs = lambda counts: sum(int(c) * (int(c) - 1) // 2 for c in counts)
    index = pairs(table.ravel())
    pairs_true = pairs(table.sum(axis=1))
    pairs_pred = pairs(table.sum(axis=0))
    total = Fraction(n_samples * (n_samples - 1) // 2)
    expected_index = Fraction(pairs_true * pairs_pred) / total
    expected = (index - expected_index) / (Fraction(pairs_true + pairs_pred, 2) - expected_index)

    assert metrics.adjusted_rand_index(labels_true, labels_pred) == float(expected)


def test_ari_length_mismatch():
    with pytest.raises(OptionError, match="labels_pred must have the same length as labels_true, got 5 and 6"):
        metrics.adjusted_rand_index([0] * 6, [0] * 5)


def test_nmi_length_mismatch():
    with pytest.raises(OptionError, match="labels_pred must have the same length as labels_true, got 6 and 4"):
        metrics.normalized_mutual_info([0] * 4, [0] * 6)


def test_contingency_length_mismatch():
    with pytest.raises(OptionError, match="got 3 and 2"):
        metrics.contingency_matrix([0, 1], [0, 1, 1])


label_lists = st.lists(st.integers(0, 4), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_ari_nmi_symmetric(data):
    labels_true = data.draw(label_lists)
    labels_pred = data.draw(st.lists(st.integers(0, 4), min_size=len(labels_true), max_size=len(labels_true)))

    ari = metrics.adjusted_rand_index(labels_true, labels_pred)
    nmi = metrics.normalized_mutual_info(labels_true, labels_pred)
    assert ari == pytest.approx(metrics.adjusted_rand_index(labels_pred, labels_true), rel=RTOL, abs=1e-15)
    assert nmi == pytest.approx(metrics.normalized_mutual_info(labels_pred, labels_true), rel=RTOL, abs=1e-15)
    assert 0.0 <= nmi <= 1.0
    assert ari <= 1.0


@settings(max_examples=60, deadline=None)
@given(labels=label_lists, offset=st.integers(-50, 50))
def test_ari_nmi_self_agreement(labels, offset):
    relabelled = [offset - 7 * label for label in labels]
    assert metrics.adjusted_rand_index(labels, relabelled) == 1.0
    assert metrics.normalized_mutual_info(labels, relabelled) == pytest.approx(1.0, rel=RTOL)


# ---------------------------------------------------------------------------
# centroid_index and true_centroids_from_labels
# ---------------------------------------------------------------------------


def test_centroid_index_shared_cluster():
    true_centroids = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]
    # Two fitted centroids sit at true cluster 0, one at true cluster 1, none at 2.
    centroids = [[-1.0, 0.0], [1.0, 0.0], [10.0, 1.0]]
    assert metrics.centroid_index(true_centroids, centroids) == 1


def test_centroid_index_all_found():
    true_centroids = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]
    centroids = [[0.0, 9.0], [0.5, 0.5], [9.0, 0.0]]
    assert metrics.centroid_index(true_centroids, centroids) == 0


def test_centroid_index_tie_lowest():
    # [1, 0] is equally far from both true centroids and must map to index 0, which
    # [0, 0] already takes, so true centroid 1 stays empty.
    true_centroids = [[0.0, 0.0], [2.0, 0.0]]
    centroids = [[1.0, 0.0], [0.0, 0.0]]
    assert metrics.centroid_index(true_centroids, centroids) == 1


def test_centroid_index_fewer_fitted():
    true_centroids = np.arange(12.0).reshape(6, 2)
    assert metrics.centroid_index(true_centroids, true_centroids[:2]) == 4


def test_centroid_index_chunked(monkeypatch):
    rng = np.random.default_rng(5)
    true_centroids = rng.normal(size=(20, 3))
    centroids = rng.normal(size=(15, 3))
    expected = metrics.centroid_index(true_centroids, centroids)

    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 7)
    assert metrics.centroid_index(true_centroids, centroids) == expected


def test_centroid_index_feature_mismatch():
    with pytest.raises(OptionError, match="centroids must have as many columns as true_centroids, got 3 and 2"):
        metrics.centroid_index(np.zeros((2, 2)), np.zeros((2, 3)))


def test_centroid_index_no_true():
    with pytest.raises(OptionError, match="true_centroids must contain at least one centroid"):
        metrics.centroid_index(np.zeros((0, 2)), np.zeros((2, 2)))


def test_true_centroids_means():
    X = [[0.0, 0.0], [2.0, 4.0], [10.0, 10.0], [-1.0, 1.0]]
    classes, centroids = metrics.true_centroids_from_labels(X, ["b", "b", "a", "b"])

    np.testing.assert_array_equal(classes, ["a", "b"])
    np.testing.assert_allclose(centroids, [[10.0, 10.0], [1 / 3, 5 / 3]], rtol=RTOL)


def test_true_centroids_weighted():
    X = np.array([[0.0], [4.0], [7.0]], dtype=np.float32)
    classes, centroids = metrics.true_centroids_from_labels(X, [5, 5, 9], sample_weight=[3, 1, 2])

    np.testing.assert_array_equal(classes, [5, 9])
    np.testing.assert_allclose(centroids, [[1.0], [7.0]], rtol=RTOL)


def test_true_centroids_feed_index():
    rng = np.random.default_rng(6)
    labels_true = np.repeat([0, 1, 2], 50)
    X = rng.normal(scale=0.1, size=(150, 2)) + np.array([[0, 0], [5, 0], [0, 5]])[labels_true]
    _, true_centroids = metrics.true_centroids_from_labels(X, labels_true)
    centroids = [[0.1, 0.0], [-0.1, 0.0], [5.0, 0.2]]
    assert metrics.centroid_index(true_centroids, centroids) == 1


def test_true_centroids_zero_weight_class():
    with pytest.raises(OptionError, match="class 'b' of labels_true has a total sample_weight of 0"):
        metrics.true_centroids_from_labels(np.zeros((3, 1)), ["a", "b", "b"], sample_weight=[1, 0, 0])


def test_true_centroids_length_mismatch():
    with pytest.raises(OptionError, match="labels_true must have one entry per row of X, got 2 entries for 3"):
        metrics.true_centroids_from_labels(np.zeros((3, 2)), [0, 1])


def test_true_centroids_weight_mismatch():
    with pytest.raises(OptionError, match="sample_weight must have one entry per sample, got 2 entries for 3"):
        metrics.true_centroids_from_labels(np.zeros((3, 2)), [0, 1, 1], sample_weight=[1, 1])


# ---------------------------------------------------------------------------
# mean_entropy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_clusters", [1, 2, 5, 100])
def test_entropy_uniform_rows(n_clusters):
    responsibilities = np.full((7, n_clusters), 1.0 / n_clusters)
    assert metrics.mean_entropy(responsibilities) == pytest.approx(math.log(n_clusters), rel=RTOL, abs=1e-15)


def test_entropy_one_hot_rows():
    responsibilities = np.eye(4)[[0, 3, 1, 1, 2]]
    result = metrics.mean_entropy(responsibilities)
    assert not math.isnan(result)
    assert result == 0.0


def test_entropy_weighted_mean():
    responsibilities = [[0.5, 0.5], [1.0, 0.0]]
    # (3 * log 2 + 1 * 0) / 4.
    expected = 0.75 * math.log(2)
    assert metrics.mean_entropy(responsibilities, sample_weight=[3, 1]) == pytest.approx(expected, rel=RTOL)


def test_entropy_float32_rows():
    rng = np.random.default_rng(8)
    probabilities = rng.dirichlet(np.ones(6), size=40)
    expected = float(np.mean(-np.sum(probabilities * np.log(probabilities), axis=1)))
    assert metrics.mean_entropy(probabilities.astype(np.float32)) == pytest.approx(expected, rel=1e-6)


def test_entropy_chunked(monkeypatch):
    rng = np.random.default_rng(9)
    probabilities = rng.dirichlet(np.ones(5), size=33)
    probabilities[::4, 1:] = 0.0
    probabilities[::4, 0] = 1.0
    weights = rng.random(33)
    expected = metrics.mean_entropy(probabilities, weights)

    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 6)
    assert metrics.mean_entropy(probabilities, weights) == pytest.approx(expected, rel=RTOL)


def test_entropy_row_sum_invalid():
    with pytest.raises(OptionError, match="responsibilities rows must sum to 1, but row 1 sums to 0.9"):
        metrics.mean_entropy([[0.5, 0.5], [0.5, 0.4]])


def test_entropy_negative_invalid():
    with pytest.raises(OptionError, match="responsibilities must be non-negative"):
        metrics.mean_entropy([[1.5, -0.5]])


def test_entropy_weight_mismatch():
    with pytest.raises(OptionError, match="sample_weight must have one entry per sample, got 3 entries for 2"):
        metrics.mean_entropy([[1.0, 0.0], [0.0, 1.0]], sample_weight=[1, 1, 1])


def test_entropy_no_rows():
    with pytest.raises(OptionError, match="responsibilities must contain at least one row"):
        metrics.mean_entropy(np.empty((0, 3)))


# ---------------------------------------------------------------------------
# cluster_sizes and size_summary
# ---------------------------------------------------------------------------


def test_sizes_empty_cluster():
    sizes = metrics.cluster_sizes([0, 0, 2, 2, 2], 4)
    assert sizes.dtype == np.int64
    np.testing.assert_array_equal(sizes, [2, 0, 3, 0])


def test_sizes_weighted():
    sizes = metrics.cluster_sizes([0, 0, 2], 3, sample_weight=[0.5, 1.5, 4.0])
    np.testing.assert_array_equal(sizes, [2.0, 0.0, 4.0])


def test_size_summary_empty_cluster():
    summary = metrics.size_summary([0, 0, 2, 2, 2], 4)
    assert summary == {"smallest": 0, "largest": 3, "empty": 2}


def test_size_summary_all_filled():
    summary = metrics.size_summary([1, 0, 1, 2, 1], 3)
    assert summary == {"smallest": 1, "largest": 3, "empty": 0}


def test_sizes_label_out_of_range():
    with pytest.raises(OptionError, match=r"labels must be in \[0, n_clusters\) = \[0, 3\), got values from -1 to 2"):
        metrics.cluster_sizes([0, -1, 2], 3)


def test_sizes_bad_n_clusters():
    with pytest.raises(OptionError, match="n_clusters must be at least 1, got 0"):
        metrics.cluster_sizes([], 0)


def test_sizes_weight_mismatch():
    with pytest.raises(OptionError, match="sample_weight must have one entry per sample, got 2 entries for 3"):
        metrics.cluster_sizes([0, 1, 1], 2, sample_weight=[1.0, 2.0])


# ---------------------------------------------------------------------------
# silhouette_score_sampled
# ---------------------------------------------------------------------------


SILHOUETTE_CASES = {
    "two_blobs": (40, 2, 2, "ints"),
    "five_blobs": (600, 3, 5, "ints"),
    "many_clusters": (300, 4, 60, "ints"),
    "strings": (150, 2, 3, "strings"),
    "float32": (200, 5, 4, "float32"),
}


@pytest.mark.parametrize("case", sorted(SILHOUETTE_CASES))
def test_silhouette_matches_sklearn(case):
    n_samples, n_features, n_clusters, kind = SILHOUETTE_CASES[case]
    rng = np.random.default_rng(n_samples)
    labels = rng.integers(0, n_clusters, n_samples)
    X = rng.normal(size=(n_samples, n_features)) + 3 * rng.normal(size=(n_clusters, n_features))[labels]
    if kind == "strings":
        labels = np.array(["north", "south", "east"])[labels]
    if kind == "float32":
        X = X.astype(np.float32)

    expected = sk_metrics.silhouette_score(X.astype(np.float64), labels)
    result = metrics.silhouette_score_sampled(X, labels, sample_size=n_samples)
    assert result == pytest.approx(expected, rel=RTOL)


def test_silhouette_singleton_clusters():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(30, 2))
    # Clusters 3 and 4 contain one point each and contribute a silhouette of 0.
    labels = np.array([0] * 14 + [1] * 8 + [2] * 6 + [3, 4])

    expected = sk_metrics.silhouette_score(X, labels)
    assert metrics.silhouette_score_sampled(X, labels) == pytest.approx(expected, rel=RTOL)


def test_silhouette_hand_example():
    # The points at 0 and 1 form cluster "a" and the point at 4 is alone in cluster "b".
    # At 0: mean intra-cluster distance 1, mean distance to "b" 4, silhouette 3/4.
    # At 1: 1 and 3, silhouette 2/3. At 4: a singleton, silhouette 0.
    result = metrics.silhouette_score_sampled([[0.0], [1.0], [4.0]], ["a", "a", "b"])
    assert result == pytest.approx((3 / 4 + 2 / 3) / 3, rel=RTOL)


def test_silhouette_subsample_rule():
    rng = np.random.default_rng(13)
    labels = rng.integers(0, 3, 1000)
    X = rng.normal(size=(1000, 2)) + 4 * labels[:, np.newaxis]
    sample = np.random.default_rng(21).choice(1000, 150, replace=False)

    expected = sk_metrics.silhouette_score(X[sample], labels[sample])
    result = metrics.silhouette_score_sampled(X, labels, sample_size=150, seed=21)
    assert result == pytest.approx(expected, rel=RTOL)


def test_silhouette_seed_reproducible():
    rng = np.random.default_rng(14)
    labels = rng.integers(0, 4, 500)
    X = rng.normal(size=(500, 3)) + labels[:, np.newaxis]

    first = metrics.silhouette_score_sampled(X, labels, sample_size=100, seed=3)
    assert metrics.silhouette_score_sampled(X, labels, sample_size=100, seed=3) == first
    assert metrics.silhouette_score_sampled(X, labels, sample_size=100, seed=4) != first


def test_silhouette_chunked(monkeypatch):
    rng = np.random.default_rng(15)
    labels = rng.integers(0, 4, 90)
    X = rng.normal(size=(90, 3)) + labels[:, np.newaxis]
    expected = metrics.silhouette_score_sampled(X, labels)

    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 200)
    assert metrics.silhouette_score_sampled(X, labels) == pytest.approx(expected, rel=RTOL)


def test_silhouette_one_label():
    with pytest.raises(OptionError, match="silhouette needs 2 to m - 1 distinct labels among the m = 5 sampled points, got 1"):
        metrics.silhouette_score_sampled(np.zeros((5, 2)), [1] * 5)


def test_silhouette_all_distinct_labels():
    with pytest.raises(OptionError, match="got 4"):
        metrics.silhouette_score_sampled(np.arange(8.0).reshape(4, 2), [0, 1, 2, 3])


def test_silhouette_length_mismatch():
    with pytest.raises(OptionError, match="labels must have one entry per row of X, got 3 entries for 4"):
        metrics.silhouette_score_sampled(np.zeros((4, 2)), [0, 1, 0])


def test_silhouette_small_sample_size():
    with pytest.raises(OptionError, match="sample_size must be at least 2, got 1"):
        metrics.silhouette_score_sampled(np.zeros((4, 2)), [0, 1, 0, 1], sample_size=1)


def test_silhouette_bad_seed():
    with pytest.raises(OptionError, match="seed must be an integer, got 1.5"):
        metrics.silhouette_score_sampled(np.zeros((4, 2)), [0, 1, 0, 1], seed=1.5)
