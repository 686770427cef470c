"""Chunk kernels of softkm.kernels against slow per-row references.

The references loop over rows in float64 on the same input values that the kernel
receives, so the only differences are the kernel's rounding errors. The kernels compute
the expansion ``|x|^2 - 2 x.c + |c|^2``, so their errors scale with ``|x|^2 + |c|^2``.
``ROUNDING`` is the relative error allowed against that scale: 1e-6 in float32 (unit
roundoff 6e-8) and 1e-12 in float64. Quantities derived from the distances get
first-order error bounds built from it.
"""

import math

import numpy as np
import pytest

from softkm.chunks import ChunkedData, farthest_points
from softkm.kernels import (
    _BLOCK_ENTRIES,
    _exp_floor,
    _largest_norms,
    _hit_labels,
    ChunkStats,
    FarthestRows,
    assign_chunk,
    assign_two_nearest,
    block_rows,
    chunk_rows,
    cluster_sums,
    distance_block,
    gumbel_noise,
    hard_chunk,
    relaxed_chunk,
    row_norms_squared,
    softmax_rows,
)
from softkm.preprocessing import Preprocessing

DTYPES = [np.float32, np.float64]
ROUNDING = {np.float32: 1e-6, np.float64: 1e-12}
# The float64 kernel clips exponents below -700 and subtracts exp(-700) (see _exp_floor),
# so a membership can move by up to exp(-700), about 1e-304, beyond the rounding bounds.
CLIPPED_MEMBERSHIP = math.exp(-700.0)
CASES = ["random", "offset"]
N_SAMPLES = 240
N_FEATURES = 5
N_CLUSTERS = 6


def make_case(case, dtype, seed=0, weighted=False, n_features=N_FEATURES):
    """Build X (n, d), centroids (k, d) in ``dtype`` and float64 weights or None.

    ``random`` is N(0, 3^2) data. ``offset`` is 1e4 + N(0, 1) data, centred and scaled
    by ``Preprocessing`` as the engine does before it calls a kernel. The centroids are
    data rows plus small noise, so every point has a few close centroids.
    """
    rng = np.random.default_rng(seed)
    if case == "random":
        X = rng.normal(scale=3.0, size=(N_SAMPLES, n_features))
    else:
        raw = 1e4 + rng.normal(size=(N_SAMPLES, n_features))
        X = Preprocessing.fit(raw).transform(raw, np.float64)
    centroids = X[rng.choice(N_SAMPLES, N_CLUSTERS, replace=False)]
    centroids = centroids + rng.normal(scale=0.1, size=centroids.shape)

    sample_weight = None
    if weighted:
        sample_weight = rng.uniform(0.1, 3.0, size=N_SAMPLES)
        sample_weight[::17] = 0.0
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(centroids, dtype=dtype), sample_weight


def reference_distances(X, centroids):
    """Return squared distances (n, k) in float64, one row at a time."""
    X = X.astype(np.float64)
    centroids = centroids.astype(np.float64)
    distances = np.empty((X.shape[0], centroids.shape[0]))
    for i, row in enumerate(X):
        distances[i] = ((row - centroids) ** 2).sum(axis=1)
    return distances


def expansion_scale(X, centroids):
    """Return ``|x|^2 + |c|^2`` (n, k) in float64, the scale of the kernels' rounding error."""
    x_norms = (X.astype(np.float64) ** 2).sum(axis=1)
    c_norms = (centroids.astype(np.float64) ** 2).sum(axis=1)
    return x_norms[:, None] + c_norms[None, :]


def weights_or_ones(sample_weight, n_samples):
    return np.ones(n_samples) if sample_weight is None else sample_weight


def reference_cluster_sums(X, labels, sample_weight, n_clusters):
    """Return per-cluster weighted sums (k, d) and weights (k,) by a loop over rows."""
    weights = weights_or_ones(sample_weight, len(X))
    sums = np.zeros((n_clusters, X.shape[1]))
    totals = np.zeros(n_clusters)
    for row, label, weight in zip(X.astype(np.float64), labels, weights):
        sums[label] += weight * row
        totals[label] += weight
    return sums, totals


def reference_relaxed(X, sample_weight, centroids, temperature, noise, straight_through):
    """Return the relaxed statistics and memberships (n, k), one row at a time in float64.

    Follows the definitions in ``relaxed_chunk``: ``p = softmax(-d / T + g)``, objective
    ``w * sum_c p_c d_c`` (or ``w * d_argmax`` straight through) and gradient weights
    ``G = w p (1 - (d - dbar) / T)`` (or ``w (h - p (d - dbar) / T)``).
    """
    distances = reference_distances(X, centroids)
    weights = weights_or_ones(sample_weight, len(X))
    n_clusters = centroids.shape[0]
    X64 = X.astype(np.float64)

    result = {
        "objective": 0.0,
        "inertia": 0.0,
        "sums": np.zeros((n_clusters, X.shape[1])),
        "weights": np.zeros(n_clusters),
        "mass": np.zeros(n_clusters),
    }
    memberships = np.empty((len(X), n_clusters))
    for i in range(len(X)):
        row = distances[i]
        logits = -row / temperature
        if noise is not None:
            logits = logits + noise[i].astype(np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        memberships[i] = p
        mean_distance = p @ row

        if straight_through:
            winner = int(np.argmax(p))
            onehot = np.zeros(n_clusters)
            onehot[winner] = 1.0
            gradient = weights[i] * (onehot - p * (row - mean_distance) / temperature)
            result["objective"] += weights[i] * row[winner]
        else:
            gradient = weights[i] * p * (1.0 - (row - mean_distance) / temperature)
            result["objective"] += weights[i] * mean_distance

        result["inertia"] += weights[i] * row.min()
        result["sums"] += np.outer(gradient, X64[i])
        result["weights"] += gradient
        result["mass"] += weights[i] * p
    return result, memberships


def relaxed_error_bounds(X, sample_weight, centroids, temperature, noise, straight_through, rounding):
    """Return first-order absolute error bounds for each output of ``relaxed_chunk``.

    A distance d_xc carries at most ``rounding * (|x|^2 + |c|^2)`` error, so a logit
    carries at most ``delta_x``: the largest distance error over T plus the rounding of
    the logit itself. A softmax entry p then moves by at most ``2 delta_x p`` (relative
    to itself), and each output combines those errors with the terms they multiply.
    """
    distances = reference_distances(X, centroids)
    _, p = reference_relaxed(X, sample_weight, centroids, temperature, noise, straight_through)
    weights = weights_or_ones(sample_weight, len(X))[:, None]  # (n, 1)
    X64 = np.abs(X.astype(np.float64))

    distance_error = rounding * expansion_scale(X, centroids)  # (n, k)
    span = distances.max(axis=1) - distances.min(axis=1)
    noise_size = 0.0 if noise is None else np.abs(noise.astype(np.float64)).max(axis=1)
    delta = distance_error.max(axis=1) / temperature + rounding * (span / temperature + noise_size + 1.0)
    delta = delta[:, None]  # (n, 1)

    mean_distance = (p * distances).sum(axis=1, keepdims=True)  # (n, 1)
    mean_error = 2.0 * delta * mean_distance + (p * distance_error).sum(axis=1, keepdims=True)
    objective_error = weights * (
        mean_error + distance_error.max(axis=1, keepdims=True) + rounding * mean_distance
    )
    # |G_xc| <= w p_xc (1 + |d_xc - dbar_x| / T) in both the soft and straight-through forms.
    gradient_size = weights * p * (1.0 + np.abs(distances - mean_distance) / temperature)
    gradient_error = (2.0 * delta + rounding) * gradient_size + weights * p * (
        distance_error + mean_error
    ) / temperature
    nearest = distances.argmin(axis=1)
    return {
        "memberships": 2.0 * delta * p + np.finfo(X.dtype).tiny,
        "objective": objective_error.sum(),
        "inertia": (weights[:, 0] * distance_error[np.arange(len(X)), nearest]).sum(),
        "mass": (weights * 2.0 * delta * p).sum(axis=0),
        "weights": gradient_error.sum(axis=0),
        "sums": gradient_error.T @ X64 + rounding * (gradient_size.T @ X64),
    }


def kernel_inputs(X, centroids):
    return X, row_norms_squared(X), centroids, row_norms_squared(centroids)


# ---------------------------------------------------------------- distances


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_distance_block_matches_reference(dtype, case):
    X, centroids, _ = make_case(case, dtype)
    X, x_norms, centroids, c_norms = kernel_inputs(X, centroids)

    distances = distance_block(X, x_norms, centroids, c_norms)
    expected = reference_distances(X, centroids)
    tolerance = ROUNDING[dtype] * expansion_scale(X, centroids)

    assert distances.shape == (N_SAMPLES, N_CLUSTERS)
    assert distances.dtype == dtype
    assert np.all(np.abs(distances - expected) <= tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_distance_block_clamps_at_zero(dtype):
    X, _, _ = make_case("random", dtype)
    centroids = np.ascontiguousarray(X[:N_CLUSTERS])

    distances = distance_block(*kernel_inputs(X, centroids))

    assert np.all(distances >= 0)


# ---------------------------------------------------------------- assignment


# With 1 or 2 features the scores come from one augmented product (see _AugmentedRows).
@pytest.mark.parametrize("n_features", [1, 2, N_FEATURES])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_assign_chunk_matches_reference(dtype, case, n_features):
    X, centroids, _ = make_case(case, dtype, n_features=n_features)
    labels, nearest = assign_chunk(*kernel_inputs(X, centroids))

    expected = reference_distances(X, centroids)
    expected_labels = expected.argmin(axis=1)
    expected_nearest = expected.min(axis=1)
    tolerance = ROUNDING[dtype] * expansion_scale(X, centroids).max(axis=1)
    # Rows whose two nearest centroids are closer than the rounding error may go either way.
    ordered = np.sort(expected, axis=1)
    clear = ordered[:, 1] - ordered[:, 0] > 2 * tolerance
    chosen = expected[np.arange(N_SAMPLES), labels]

    assert labels.dtype == np.int64
    assert clear.mean() > 0.9
    assert np.array_equal(labels[clear], expected_labels[clear])
    assert np.all(chosen <= expected_nearest + 2 * tolerance)
    assert np.all(np.abs(nearest - expected_nearest) <= tolerance)


@pytest.mark.parametrize("n_features", [2, N_FEATURES])
@pytest.mark.parametrize("duplicate_at", [0, 1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_assign_chunk_tie_lower_index(dtype, duplicate_at, n_features):
    X, _, _ = make_case("random", dtype, n_features=n_features)
    X = np.ascontiguousarray(X[:20])
    centroids = np.full((4, n_features), 1e3, dtype=dtype)
    centroids[duplicate_at] = X.mean(axis=0)
    centroids[duplicate_at + 1] = X.mean(axis=0)

    labels, _ = assign_chunk(*kernel_inputs(X, centroids))
    hard_labels, _, _ = hard_chunk(X, row_norms_squared(X), None, centroids, row_norms_squared(centroids))

    assert np.all(labels == duplicate_at)
    assert np.all(hard_labels == duplicate_at)


def near_tie_case(dtype, n_clusters, seed=0, n_features=16):
    """Return X (3000, d) and centroids (n_clusters, d) with many near ties.

    Every centroid has a copy moved by about 1e-6, far below float32 rounding at these
    norms, and the data are points around the centroids, so many rows have their two
    nearest centroids within rounding of each other. With 16 features, BLAS rounds a
    row's products differently when the row is multiplied alone.
    """
    rng = np.random.default_rng(seed)
    half = rng.normal(scale=3.0, size=(n_clusters // 2, n_features))
    centroids = np.concatenate([half, half + 1e-6 * rng.normal(size=half.shape)]).astype(dtype)
    noise = rng.normal(size=(3000, n_features))
    X = (np.repeat(half, 3000 // len(half) + 1, axis=0)[:3000] + noise).astype(dtype)
    return X, centroids


@pytest.mark.parametrize("n_features", [2, 16])
@pytest.mark.parametrize("n_clusters", [8, 64, 128])
@pytest.mark.parametrize("dtype", DTYPES)
def test_labels_independent_of_other_rows(dtype, n_clusters, n_features):
    X, centroids = near_tie_case(dtype, n_clusters, n_features=n_features)
    labels, nearest = assign_chunk(*kernel_inputs(X, centroids))
    order = np.random.default_rng(1).permutation(len(X))

    shuffled, _ = assign_chunk(*kernel_inputs(np.ascontiguousarray(X[order]), centroids))
    one_by_one = [assign_chunk(*kernel_inputs(X[i : i + 1], centroids))[0][0] for i in range(0, len(X), 7)]
    two_nearest, two_nearest_distance, _ = assign_two_nearest(*kernel_inputs(X[::-1].copy(), centroids))

    assert len(np.unique(labels)) > 1
    np.testing.assert_array_equal(shuffled, labels[order], err_msg="shuffling the rows changed their labels")
    np.testing.assert_array_equal(one_by_one, labels[::7], err_msg="rows assigned alone got other labels")
    np.testing.assert_array_equal(two_nearest, labels[::-1], err_msg="assign_two_nearest disagrees with assign_chunk")
    np.testing.assert_array_equal(two_nearest_distance, nearest[::-1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_near_ties_use_float64_nearest(dtype):
    X, centroids = near_tie_case(dtype, 8, seed=2)
    labels, _ = assign_chunk(*kernel_inputs(X, centroids))
    exact = ((X.astype(np.float64)[:, None, :] - centroids.astype(np.float64)[None]) ** 2).sum(axis=2)
    ordered = np.sort(exact, axis=1)
    # Rows whose two nearest centroids differ by more than float64 rounding have one
    # correct label, whatever the dtype of the data.
    clear = ordered[:, 1] - ordered[:, 0] > 1e-12 * (1.0 + ordered[:, 0])

    assert clear.sum() > 0.9 * len(X)
    np.testing.assert_array_equal(labels[clear], np.argmin(exact, axis=1)[clear])


def test_subnormal_distances_use_float64():
    # Squared norms near 1e-44 are subnormal in float32, where rounding is absolute,
    # so a tolerance relative to the norms alone would be 0 and miss the tie.
    rng = np.random.default_rng(3)
    X = (rng.normal(size=(2000, 1)) * 1e-22).astype(np.float32)
    centroids = np.array([[1.6178134886937831e-22], [1.334511828176806e-22]], dtype=np.float32)

    labels, nearest = assign_chunk(*kernel_inputs(X, centroids))
    exact = (X.astype(np.float64) - centroids.astype(np.float64).T) ** 2  # (n, 2)
    clear = np.abs(exact[:, 0] - exact[:, 1]) > 0.5 * exact.max(axis=1)

    assert clear.sum() > 100
    np.testing.assert_array_equal(labels[clear], np.argmin(exact, axis=1)[clear])
    assert np.all(nearest >= 0)


@pytest.mark.parametrize("n_clusters", [5, 40, 128])
def test_exact_ties_lowest_index_per_block(n_clusters):
    rng = np.random.default_rng(3)
    # More rows than one distance block, so ties occur in several blocks.
    X = rng.normal(size=(2 * block_rows(n_clusters) + 5, 4))
    centroids = rng.normal(size=(n_clusters, 4))
    centroids[3] = centroids[1]

    labels, nearest, second = assign_two_nearest(*kernel_inputs(X, centroids))
    expected = ((X[:, None, :] - centroids[None]) ** 2).sum(axis=2)

    assert not np.any(labels == 3), "the higher copy of a duplicate centroid won a tie"
    np.testing.assert_array_equal(labels, np.argmin(expected, axis=1))
    np.testing.assert_allclose(nearest, expected.min(axis=1), rtol=1e-12, atol=1e-12)
    tied = labels == 1
    assert tied.any()
    np.testing.assert_array_equal(second[tied], nearest[tied], err_msg="a tied row's runner-up is its nearest")
    assert np.all(second[~tied] >= nearest[~tied])


@pytest.mark.parametrize("n_clusters", [4, 32, 40, 96, 97])
@pytest.mark.parametrize("dtype", DTYPES)
def test_two_nearest_ties(dtype, n_clusters):
    # Small integer coordinates make every product and sum exact, so equal centroids
    # give exactly equal scores in any order of summation, and ties are real ties.
    X = np.random.default_rng(4).integers(-8, 9, size=(50, N_FEATURES)).astype(dtype)

    # Every centroid equal: each row ties across all clusters (the label-code sums are
    # at their largest), so the label is 0 and the runner-up equals the nearest.
    same = np.repeat(X[:1], n_clusters, axis=0)
    labels, nearest, second = assign_two_nearest(*kernel_inputs(X, same))

    assert np.all(labels == 0)
    np.testing.assert_array_equal(second, nearest)

    # Two copies of one centroid among other centroids. Rows nearest to the copies take
    # the lower index and have the other copy as runner-up.
    centroids = np.random.default_rng(5).integers(-8, 9, size=(n_clusters, N_FEATURES)).astype(dtype)
    centroids[n_clusters - 1] = centroids[1] = X[6]
    labels, nearest, second = assign_two_nearest(*kernel_inputs(X, centroids))
    expected, _ = assign_chunk(*kernel_inputs(X, centroids))
    tied = labels == 1

    np.testing.assert_array_equal(labels, expected)
    assert not np.any(labels == n_clusters - 1), "the higher copy of a duplicate centroid won a tie"
    assert tied.any()
    np.testing.assert_array_equal(second[tied], nearest[tied])
    assert np.all(second >= nearest)


# ---------------------------------------------------------------- hard statistics


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cluster_sums_matches_reference(dtype, weighted):
    X, _, sample_weight = make_case("random", dtype, weighted=weighted)
    rng = np.random.default_rng(5)
    # Cluster 3 gets no rows, so its sums and weight must stay 0.
    labels = rng.choice([0, 1, 2, 4], size=N_SAMPLES)

    sums, weights = cluster_sums(X, labels, sample_weight, N_CLUSTERS)
    expected_sums, expected_weights = reference_cluster_sums(X, labels, sample_weight, N_CLUSTERS)
    magnitude, _ = reference_cluster_sums(np.abs(X), labels, sample_weight, N_CLUSTERS)

    assert sums.dtype == np.float64
    assert weights.dtype == np.float64
    assert np.all(np.abs(sums - expected_sums) <= ROUNDING[dtype] * magnitude)
    assert np.allclose(weights, expected_weights, rtol=1e-12, atol=0)
    assert np.all(sums[3] == 0)
    assert weights[3] == 0


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_hard_chunk_matches_reference(dtype, case, weighted):
    X, centroids, sample_weight = make_case(case, dtype, weighted=weighted)
    inputs = kernel_inputs(X, centroids)

    labels, nearest, stats = hard_chunk(inputs[0], inputs[1], sample_weight, inputs[2], inputs[3])
    assigned_labels, assigned_nearest = assign_chunk(*inputs)
    expected_sums, expected_weights = reference_cluster_sums(X, labels, sample_weight, N_CLUSTERS)
    magnitude, _ = reference_cluster_sums(np.abs(X), labels, sample_weight, N_CLUSTERS)

    weights = weights_or_ones(sample_weight, N_SAMPLES)
    expected_inertia = weights @ reference_distances(X, centroids).min(axis=1)
    inertia_tolerance = ROUNDING[dtype] * (weights @ expansion_scale(X, centroids).max(axis=1))

    assert np.array_equal(labels, assigned_labels)
    assert np.array_equal(nearest, assigned_nearest)
    assert np.all(np.abs(stats.sums - expected_sums) <= ROUNDING[dtype] * magnitude)
    assert np.allclose(stats.weights, expected_weights, rtol=1e-12, atol=0)
    assert abs(stats.inertia - expected_inertia) <= inertia_tolerance
    assert stats.objective == stats.inertia
    assert stats.mass is None


# ---------------------------------------------------------------- relaxed statistics

RELAXED_VARIANTS = ["soft", "noise", "straight_through"]


def relaxed_problem(case, dtype, weighted, variant, n_features=N_FEATURES):
    """Return (X, weights, centroids, temperature, noise, straight_through) for one variant.

    The temperature is half the mean squared distance to the nearest centroid, the
    engine's default ``tau * s``. The noise is Gumbel noise divided by tau = 0.5.
    """
    X, centroids, sample_weight = make_case(case, dtype, weighted=weighted, n_features=n_features)
    temperature = 0.5 * float(reference_distances(X, centroids).min(axis=1).mean())
    noise = None
    if variant in ("noise", "straight_through"):
        noise = gumbel_noise(np.random.default_rng(3), (N_SAMPLES, N_CLUSTERS), np.dtype(dtype)) / dtype(0.5)
    return X, sample_weight, centroids, temperature, noise, variant == "straight_through"


def assert_relaxed_matches_reference(X, sample_weight, centroids, temperature, noise, straight_through):
    """Check every output of ``relaxed_chunk`` against the float64 reference and its bounds."""
    stats, memberships = relaxed_chunk(
        X, row_norms_squared(X), sample_weight, centroids, row_norms_squared(centroids), temperature,
        noise=noise, straight_through=straight_through, return_responsibilities=True,
    )
    expected, expected_memberships = reference_relaxed(
        X, sample_weight, centroids, temperature, noise, straight_through
    )
    bounds = relaxed_error_bounds(
        X, sample_weight, centroids, temperature, noise, straight_through, ROUNDING[X.dtype.type]
    )

    assert np.all(np.abs(memberships - expected_memberships) <= bounds["memberships"] + CLIPPED_MEMBERSHIP)
    assert abs(stats.objective - expected["objective"]) <= bounds["objective"]
    assert abs(stats.inertia - expected["inertia"]) <= bounds["inertia"]
    assert np.all(np.abs(stats.mass - expected["mass"]) <= bounds["mass"])
    assert np.all(np.abs(stats.weights - expected["weights"]) <= bounds["weights"])
    assert np.all(np.abs(stats.sums - expected["sums"]) <= bounds["sums"])


# The kernel takes separate code paths for 1 or 2 features (one thin product for the
# gradient's sums and weights), 3 (rows scaled in the features-major layout) and more.
@pytest.mark.parametrize("n_features", [1, 2, 3, N_FEATURES])
@pytest.mark.parametrize("variant", RELAXED_VARIANTS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relaxed_chunk_matches_reference(dtype, case, weighted, variant, n_features):
    assert_relaxed_matches_reference(*relaxed_problem(case, dtype, weighted, variant, n_features))


@pytest.mark.parametrize("variant", RELAXED_VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relaxed_chunk_low_temperature_matches_reference(dtype, variant):
    # At 1/200 of the usual temperature, many float64 exponents fall below -700 and the
    # kernel clips them (float32 never clips). The outputs must still match the reference.
    X, sample_weight, centroids, temperature, noise, straight_through = relaxed_problem(
        "random", dtype, True, variant
    )
    temperature /= 200.0
    largest_x, largest_c = _largest_norms(row_norms_squared(X), row_norms_squared(centroids))
    clipped = _exp_floor(X.dtype, largest_x, largest_c, temperature, 0.0)
    assert (clipped is not None) == (dtype == np.float64)

    assert_relaxed_matches_reference(X, sample_weight, centroids, temperature, noise, straight_through)


@pytest.mark.parametrize("straight_through", [False, True], ids=["soft", "straight_through"])
def test_clipped_cluster_has_zero_statistics(straight_through):
    # Centroid 1's logit is -1800, below the float64 clip at -700. Its exponential is
    # exactly 0 then, as exp(-1800) is, so its mass and gradient statistics are 0.
    X = np.zeros((3, 2))
    centroids = np.array([[0.0, 0.0], [30.0, 30.0]])
    x_norms, c_norms = row_norms_squared(X), row_norms_squared(centroids)
    assert _exp_floor(X.dtype, *_largest_norms(x_norms, c_norms), 1.0, 0.0) is not None

    stats, memberships = relaxed_chunk(
        X, x_norms, None, centroids, c_norms, 1.0, straight_through=straight_through, return_responsibilities=True
    )

    assert np.all(memberships[:, 1] == 0.0)
    assert stats.mass[1] == 0.0
    assert stats.weights[1] == 0.0
    assert np.all(stats.sums[1] == 0.0)


def test_straight_through_winner_exact_exponent():
    # At T = 1e8 both float32 exponentials round to 1, but cluster 1 is nearer (d = 0
    # against 1). The winner must be cluster 1, so the objective is its distance, 0.
    X = np.array([[1.0]], dtype=np.float32)
    centroids = np.array([[0.0], [1.0]], dtype=np.float32)

    stats, _ = relaxed_chunk(
        X, row_norms_squared(X), None, centroids, row_norms_squared(centroids), 1e8, straight_through=True
    )

    assert stats.objective == 0.0


def test_hit_labels_many_clusters_no_overflow():
    # With 75675 rows the code sum of an all-True column, (3 k^2 - k) / 2, exceeds 2^32.
    hits = np.ones((75675, 2), dtype=bool)
    hits[1:, 1] = False

    labels, ties = _hit_labels(hits)

    np.testing.assert_array_equal(labels, [0, 0])
    np.testing.assert_array_equal(ties, [0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_relaxed_chunk_noise_rng_matches_array(dtype):
    X, sample_weight, centroids, temperature, _, _ = relaxed_problem("random", dtype, True, "noise")
    inputs = (X, row_norms_squared(X), sample_weight, centroids, row_norms_squared(centroids), temperature)
    # One distance block covers the whole chunk, so the kernel draws the same
    # cluster-major (n_clusters, n_samples) noise as this call.
    assert N_SAMPLES <= block_rows(N_CLUSTERS)
    noise = gumbel_noise(np.random.default_rng(3), (N_CLUSTERS, N_SAMPLES), np.dtype(dtype), 2.0).T

    drawn, _ = relaxed_chunk(*inputs, noise_rng=np.random.default_rng(3), noise_scale=2.0)
    passed, _ = relaxed_chunk(*inputs, noise=noise)

    assert drawn.objective == passed.objective
    assert np.array_equal(drawn.sums, passed.sums)
    assert np.array_equal(drawn.weights, passed.weights)
    assert np.array_equal(drawn.mass, passed.mass)


@pytest.mark.parametrize("n_features", [2, N_FEATURES])
@pytest.mark.parametrize("dtype", DTYPES)
def test_straight_through_tie_lowest_index(dtype, n_features):
    # Clusters 1 and 3 are the same point, so every row nearer to it than to the others
    # has two equal memberships. Its one-hot part must go to cluster 1, as argmax does.
    X, _, _ = make_case("random", dtype, n_features=n_features)
    centroids = X[[0, 5, 9, 5]].copy()

    stats, _ = relaxed_chunk(
        X, row_norms_squared(X), None, centroids, row_norms_squared(centroids), 1.0, straight_through=True
    )
    expected, memberships = reference_relaxed(X, None, centroids, 1.0, None, True)

    tied_rows = np.count_nonzero(memberships.argmax(axis=1) == 1)
    assert tied_rows > 0, "no row has cluster 1 as its nearest centroid; the test needs one"
    # The one-hot parts alone differ by at least one row's |x| if a tie went to cluster 3.
    np.testing.assert_allclose(stats.weights, expected["weights"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(stats.sums, expected["sums"], rtol=0, atol=1e-2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relaxed_chunk_without_memberships(dtype):
    X, sample_weight, centroids, temperature, noise, _ = relaxed_problem("random", dtype, False, "soft")

    _, memberships = relaxed_chunk(
        X, row_norms_squared(X), sample_weight, centroids, row_norms_squared(centroids), temperature
    )

    assert memberships is None


# ---------------------------------------------------------------- softmax and noise


# In float32, -3e38 minus the row maximum 3e38 overflows to -inf, whose exponential is 0.
@pytest.mark.filterwarnings("ignore:overflow encountered in subtract:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_rows_extreme_logits(dtype):
    # 1e300 overflows float32, so float32 uses values near its own maximum.
    magnitude = 1e300 if dtype == np.float64 else 3e38
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=(200, 7))
    logits = (signs * magnitude).astype(dtype)
    logits[0] = -magnitude
    logits[1] = magnitude
    logits[2, 0] = 0.0

    memberships = softmax_rows(logits.copy())
    row_sums = memberships.sum(axis=1, dtype=np.float64)
    positive = signs > 0
    # Rows with at least one +magnitude entry put all their mass on those entries.
    mixed = positive.any(axis=1) & ~positive.all(axis=1)
    mixed[:3] = False

    assert not np.any(np.isnan(memberships))
    assert np.allclose(row_sums, 1.0, rtol=0, atol=10 * np.finfo(dtype).eps)
    assert mixed.sum() > 100
    assert np.all(memberships[mixed][~positive[mixed]] == 0)
    assert np.allclose(memberships[0], 1.0 / 7, rtol=1e-6)
    assert np.allclose(memberships[1], 1.0 / 7, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gumbel_noise_distribution(dtype):
    noise = gumbel_noise(np.random.default_rng(12345), (1_000_000,), np.dtype(dtype))

    assert noise.dtype == dtype
    assert np.all(np.isfinite(noise))
    # Standard Gumbel: mean is the Euler-Mascheroni constant, variance pi^2 / 6. The
    # tolerances are about 10 standard errors at this sample size.
    assert abs(noise.mean(dtype=np.float64) - np.euler_gamma) < 0.015
    assert abs(noise.var(dtype=np.float64) - np.pi**2 / 6) < 0.05


@pytest.mark.parametrize("scale", [0.5, 1e40])
def test_gumbel_noise_scale(scale):
    standard = gumbel_noise(np.random.default_rng(8), (1000,), np.dtype(np.float64))
    scaled = gumbel_noise(np.random.default_rng(8), (1000,), np.dtype(np.float64), scale)

    assert np.all(np.isfinite(scaled))
    # 1e40 is beyond float32, so that scale is applied in float64.
    assert np.allclose(scaled, scale * standard, rtol=1e-7, atol=0)


class ExtremeBits:
    """A stand-in Generator whose random words are all zero bits or all one bits."""

    def __init__(self, fill):
        self.bit_generator = self
        self.fill = fill

    def random_raw(self, size):
        return np.full(size, self.fill, dtype=np.uint64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fill", [0, np.iinfo(np.uint64).max])
def test_gumbel_noise_extreme_draws(dtype, fill):
    noise = gumbel_noise(ExtremeBits(fill), (4,), np.dtype(dtype))

    assert noise.dtype == dtype
    assert np.all(np.isfinite(noise))
    assert noise.min() > -3.0
    assert noise.max() < 17.0


# ---------------------------------------------------------------- chunking


def block_budget(n_clusters):
    """Return the largest allowed distance block: the budget, or one row when k exceeds it."""
    return max(_BLOCK_ENTRIES, n_clusters)




@pytest.mark.parametrize(
    "n_clusters",
    [
        1,
        7,
        100,
        1024,
        1025,
        5000,
        100_000,
    ],
)
def test_block_rows_within_budget(n_clusters):
    rows = block_rows(n_clusters)

    assert rows >= 1
    assert rows * n_clusters <= block_budget(n_clusters)


@pytest.mark.parametrize("n_features", [1, 32, 256, 100_000])
@pytest.mark.parametrize("n_clusters", [1, 16, 256, 5000])
def test_chunk_rows_spans_whole_blocks(n_clusters, n_features):
    rows = chunk_rows(1_000_000, n_clusters, n_features=n_features)

    assert rows >= block_rows(n_clusters)
    assert rows <= max(block_rows(n_clusters), (1 << 21) // n_features)


@pytest.mark.parametrize("n_samples", [1, 255, 256, 257, 10_000])
def test_chunk_rows_at_most_n_samples(n_samples):
    rows = chunk_rows(n_samples, 3)

    assert 1 <= rows <= n_samples


# ---------------------------------------------------------------- chunk addition

CHUNK_SIZES = [1, 7, 64, N_SAMPLES - 1, N_SAMPLES]


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_hard_stats_chunk_sum(dtype, chunk_size):
    X, centroids, sample_weight = make_case("offset", dtype, weighted=True)
    c_norms = row_norms_squared(centroids)
    data = ChunkedData.build(X, sample_weight, N_CLUSTERS, chunk_size)

    chunked = data.reduce(
        lambda chunk: hard_chunk(chunk.X, chunk.x_squared_norms, chunk.sample_weight, centroids, c_norms)[2],
        N_CLUSTERS,
    )
    _, _, whole = hard_chunk(X, row_norms_squared(X), sample_weight, centroids, c_norms)
    labels, _ = assign_chunk(X, row_norms_squared(X), centroids, c_norms)
    magnitude, _ = reference_cluster_sums(np.abs(X), labels, sample_weight, N_CLUSTERS)
    inertia_tolerance = 2 * ROUNDING[dtype] * (sample_weight @ expansion_scale(X, centroids).max(axis=1))

    assert len(list(data.chunks())) == -(-N_SAMPLES // chunk_size)
    assert np.all(np.abs(chunked.sums - whole.sums) <= 2 * ROUNDING[dtype] * magnitude)
    assert np.allclose(chunked.weights, whole.weights, rtol=1e-12, atol=0)
    assert abs(chunked.inertia - whole.inertia) <= inertia_tolerance
    assert abs(chunked.objective - whole.objective) <= inertia_tolerance


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relaxed_stats_chunk_sum(dtype, chunk_size):
    X, sample_weight, centroids, temperature, noise, _ = relaxed_problem("offset", dtype, True, "noise")
    c_norms = row_norms_squared(centroids)
    data = ChunkedData.build(X, sample_weight, N_CLUSTERS, chunk_size)

    def kernel(chunk):
        stats, _ = relaxed_chunk(
            chunk.X, chunk.x_squared_norms, chunk.sample_weight, centroids, c_norms, temperature,
            noise=noise[chunk.rows],
        )
        return stats

    chunked = data.reduce(kernel, N_CLUSTERS)
    whole, _ = relaxed_chunk(X, row_norms_squared(X), sample_weight, centroids, c_norms, temperature, noise=noise)
    bounds = relaxed_error_bounds(X, sample_weight, centroids, temperature, noise, False, ROUNDING[dtype])

    assert abs(chunked.objective - whole.objective) <= 2 * bounds["objective"]
    assert abs(chunked.inertia - whole.inertia) <= 2 * bounds["inertia"]
    assert np.all(np.abs(chunked.mass - whole.mass) <= 2 * bounds["mass"])
    assert np.all(np.abs(chunked.weights - whole.weights) <= 2 * bounds["weights"])
    assert np.all(np.abs(chunked.sums - whole.sums) <= 2 * bounds["sums"])


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relaxed_farthest_rows_match_farthest_points(dtype, chunk_size):
    X, sample_weight, centroids, temperature, _, _ = relaxed_problem("random", dtype, True, "soft")
    X[41] = X[40]  # two rows at the same distance: the lower row must come first
    c_norms = row_norms_squared(centroids)
    data = ChunkedData.build(X, sample_weight, N_CLUSTERS, chunk_size)

    def kernel(chunk):
        stats, _ = relaxed_chunk(
            chunk.X, chunk.x_squared_norms, chunk.sample_weight, centroids, c_norms, temperature,
            first_row=chunk.rows.start,
        )
        return stats

    found = data.reduce(kernel, N_CLUSTERS).farthest
    expected = farthest_points(data, centroids, N_CLUSTERS)
    # The relaxed kernel computes the distances in logit units, so they differ by rounding.
    tolerance = ROUNDING[dtype] * expansion_scale(X, centroids).max()

    assert found.rows.tolist() == expected.rows.tolist()
    assert np.array_equal(found.points, expected.points)
    assert np.all(np.abs(found.distances - expected.distances) <= tolerance)
    assert found.max_squared_norm == expected.max_squared_norm


def test_farthest_rows_merge_order_free():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(30, 2))
    # Rounded, so that distances tie: the 5th and 6th largest are both 3.5.
    nearest = np.round(rng.uniform(0, 4, size=30), 1)
    norms = row_norms_squared(X)
    parts = [FarthestRows.select(start, X[start:start + 10], norms[start:start + 10], nearest[start:start + 10], 5)
             for start in (0, 10, 20)]

    forward = parts[0].merge(parts[1], 5).merge(parts[2], 5)
    backward = parts[2].merge(parts[1], 5).merge(parts[0], 5)
    expected = np.lexsort((np.arange(30), -nearest))[:5]

    assert forward.rows.tolist() == expected.tolist()
    assert backward.rows.tolist() == expected.tolist()
    assert np.array_equal(forward.points, X[expected])
    assert np.array_equal(forward.distances, nearest[expected])
    assert forward.max_squared_norm == norms.max()


def test_chunk_stats_add_mass():
    total = ChunkStats.zeros(2, 3)
    first = ChunkStats(np.ones((2, 3)), np.array([1.0, 2.0]), 1.5, 0.5, np.array([0.25, 0.75]))
    second = ChunkStats(np.full((2, 3), 2.0), np.array([3.0, 4.0]), 2.5, 1.5, np.array([1.0, 2.0]))

    total.add(first)
    total.add(second)

    assert np.array_equal(total.sums, np.full((2, 3), 3.0))
    assert np.array_equal(total.weights, np.array([4.0, 6.0]))
    assert total.objective == 4.0
    assert total.inertia == 2.0
    assert np.array_equal(total.mass, np.array([1.25, 2.75]))
    assert np.array_equal(first.mass, np.array([0.25, 0.75]))
