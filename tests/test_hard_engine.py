"""Hard mode of softkm.engine against scikit-learn, hand-computed cases and edge cases.

The benchmark CSVs live outside the repository (see ``DATA_DIR``). Tests that need
them skip with the missing path as the reason.
"""

import functools
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans, kmeans_plusplus
from threadpoolctl import threadpool_limits

from softkm import engine
from softkm.errors import ConvergenceWarning, DegenerateDataWarning, EmptyClusterWarning, OptionError
from softkm.initialization import kmeans_plusplus as softkm_kmeans_plusplus
from shared_data import BENCHMARK_DATA

DATA_DIR = BENCHMARK_DATA
DTYPES = ["float32", "float64"]
# Relative rounding allowed per working dtype. It scales the data's mean |x|^2 for the
# distance expansion, and is multiplied by 100 for results computed by hand.
ROUNDING = {"float32": 1e-6, "float64": 1e-12}


def benchmark_params():
    """Return one pytest param per benchmark CSV, or one skipped param when there are none."""
    files = sorted(DATA_DIR.glob("*.csv")) if DATA_DIR.is_dir() else []
    if not files:
        reason = f"benchmark CSVs not found in {DATA_DIR}"
        return [pytest.param(None, id="no-data", marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(path, id=path.stem) for path in files]


BENCHMARKS = benchmark_params()


@functools.lru_cache(maxsize=None)
def load_benchmark(path):
    """Return the features (n, d) float64 and k, the number of distinct labels."""
    table = pd.read_csv(path)
    X = table.drop(columns="label").to_numpy(dtype=np.float64)
    return X, int(table["label"].nunique())


def make_blobs(seed, n_per_blob=200, centres=((0, 0, 0), (6, 0, 0), (0, 6, 0), (0, 0, 6)), spread=1.0):
    """Return Gaussian blobs (len(centres) * n_per_blob, 3) around the given centres."""
    rng = np.random.default_rng(seed)
    blobs = [np.asarray(centre, dtype=np.float64) + spread * rng.normal(size=(n_per_blob, 3)) for centre in centres]
    return np.vstack(blobs)


def sorted_rows(array):
    return array[np.lexsort(array.T[::-1])]


# ---------------------------------------------------------------- scikit-learn


@pytest.mark.filterwarnings("ignore::softkm.errors.ConvergenceWarning")
@pytest.mark.parametrize("max_iter", [1, 5, 300])
@pytest.mark.parametrize("path", BENCHMARKS)
def test_fit_matches_sklearn_lloyd(path, max_iter):
    X, n_clusters = load_benchmark(path)
    start, _ = kmeans_plusplus(X, n_clusters, random_state=0)

    expected = KMeans(
        n_clusters, algorithm="lloyd", n_init=1, init=start, max_iter=max_iter, tol=0
    ).fit(X)
    result = engine.fit(X, n_clusters, init=start, max_iter=max_iter, tol=0)
    centroid_tolerance = 1e-9 * np.abs(X).max()

    assert np.array_equal(result.labels, expected.labels_)
    assert result.inertia == pytest.approx(expected.inertia_, rel=1e-9)
    assert result.n_iter == expected.n_iter_
    assert np.allclose(result.centroids, expected.cluster_centers_, rtol=0, atol=centroid_tolerance)


@pytest.mark.parametrize("path", BENCHMARKS)
def test_fit_restarts_match_sklearn(path):
    X, n_clusters = load_benchmark(path)

    expected = KMeans(n_clusters, n_init=10, random_state=0).fit(X)
    result = engine.fit(X, n_clusters, n_init=10, seed=0)

    assert result.inertia <= expected.inertia_ * 1.001
    assert len(result.restart_scores) == 10
    assert result.best_restart == int(np.argmin(result.restart_scores))


# ---------------------------------------------------------------- hand-computed cases

# Two groups of three points: (0,0), (2,0), (1,3) around (1,1), and the same shifted by
# (10,10). Each group's squared distances to its mean are 2 + 2 + 4 = 8.
TOY = np.array([[0, 0], [2, 0], [1, 3], [10, 10], [12, 10], [11, 13]], dtype=np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_toy_two_groups(dtype):
    result = engine.fit(TOY, 2, dtype=dtype, seed=0)
    tolerance = ROUNDING[dtype] * 100

    assert len(set(result.labels[:3])) == 1
    assert len(set(result.labels[3:])) == 1
    assert result.labels[0] != result.labels[3]
    assert np.allclose(sorted_rows(result.centroids), [[1, 1], [11, 11]], rtol=0, atol=tolerance)
    assert result.inertia == pytest.approx(16.0, rel=tolerance)
    assert result.objective == pytest.approx(16.0 / 6, rel=tolerance)
    assert result.converged


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_toy_weighted(dtype):
    # Weights (1, 1, 2) give the first group the mean (4/4, 6/4) = (1, 1.5) and the
    # weighted inertia 3.25 + 3.25 + 2 * 2.25 = 11. Weights (3, 1, 1) give the second
    # group the mean (53/5, 53/5) = (10.6, 10.6) and 3 * 0.72 + 2.32 + 5.92 = 10.4.
    sample_weight = np.array([1, 1, 2, 3, 1, 1], dtype=np.float64)
    result = engine.fit(TOY, 2, sample_weight=sample_weight, dtype=dtype, seed=0)
    tolerance = ROUNDING[dtype] * 100

    assert np.allclose(sorted_rows(result.centroids), [[1, 1.5], [10.6, 10.6]], rtol=0, atol=tolerance)
    assert result.inertia == pytest.approx(21.4, rel=tolerance)
    assert result.objective == pytest.approx(21.4 / 9, rel=tolerance)


def test_fit_weights_as_repeats():
    X = make_blobs(1, n_per_blob=30)
    repeats = np.random.default_rng(2).integers(1, 4, size=len(X))
    start = X[[0, 30, 60, 90]]

    weighted = engine.fit(X, 4, sample_weight=repeats.astype(np.float64), init=start, tol=0)
    repeated = engine.fit(np.repeat(X, repeats, axis=0), 4, init=start, tol=0)

    assert np.allclose(weighted.centroids, repeated.centroids, rtol=0, atol=1e-12)
    assert weighted.inertia == pytest.approx(repeated.inertia, rel=1e-12)
    assert np.array_equal(np.repeat(weighted.labels, repeats), repeated.labels)


# ---------------------------------------------------------------- float32 cancellation

OFFSET_CASES = {
    "float32-input-1e6": (1e6, np.float32),
    "float64-input-1e8": (1e8, np.float64),
    "float64-input-1e12": (1e12, np.float64),
}


@pytest.mark.parametrize("case", list(OFFSET_CASES))
def test_fit_float32_large_offset(case):
    offset, input_dtype = OFFSET_CASES[case]
    # Unit-spread blobs 6 apart, offset so far from the origin that |x|^2 in float32
    # would carry rounding errors far larger than the distances between blobs.
    X = (offset + make_blobs(3)).astype(input_dtype)
    X64 = X.astype(np.float64)

    reference = engine.fit(X, 4, n_init=3, seed=0, dtype="float64")
    result = engine.fit(X, 4, n_init=3, seed=0, dtype="float32")
    direct_inertia = float(((X64 - reference.centroids[reference.labels]) ** 2).sum())

    assert np.array_equal(result.labels, reference.labels)
    assert result.inertia == pytest.approx(direct_inertia, rel=1e-4)
    assert np.allclose(result.centroids, reference.centroids, rtol=0, atol=1e-3)


# ---------------------------------------------------------------- degenerate data


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_relocates_empty_cluster(dtype):
    X = make_blobs(4)
    start = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0], [1e6, 1e6, 1e6]])

    with pytest.warns(EmptyClusterWarning):
        result = engine.fit(X, 4, init=start, dtype=dtype, tol=0)

    assert not np.any(np.isnan(result.centroids))
    assert len(np.unique(result.centroids, axis=0)) == 4
    assert len(np.unique(result.labels)) == 4
    assert result.n_relocated >= 1


THREE_POINTS = np.repeat(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]]), 100, axis=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_three_distinct_points(dtype):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = engine.fit(THREE_POINTS, 5, dtype=dtype, seed=0)
    categories = {warning.category for warning in caught}
    # Every copy of a point must share its label, and the three points reach inertia 0.
    labels_per_point = [set(result.labels[i * 100:(i + 1) * 100]) for i in range(3)]

    assert DegenerateDataWarning in categories
    assert not np.any(np.isnan(result.centroids))
    assert np.all((result.labels >= 0) & (result.labels < 5))
    assert all(len(labels) == 1 for labels in labels_per_point)
    assert result.inertia <= ROUNDING[dtype] * 100


def test_fit_three_distinct_points_converges():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = engine.fit(THREE_POINTS, 5, seed=0, max_iter=50)

    assert result.converged


def test_fit_many_duplicate_rows():
    rng = np.random.default_rng(5)
    X = np.vstack([np.repeat([[3.0, 3.0]], 1000, axis=0), 3.0 + 5.0 * rng.normal(size=(10, 2))])

    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateDataWarning)
        result = engine.fit(X, 5, seed=0)

    assert not np.any(np.isnan(result.centroids))
    assert len(np.unique(result.centroids, axis=0)) == 5
    assert len(np.unique(result.labels)) == 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_plusplus_duplicate_rows(seed):
    rng = np.random.default_rng(5)
    X = np.vstack([np.repeat([[3.0, 3.0]], 1000, axis=0), 3.0 + 5.0 * rng.normal(size=(10, 2))])

    centroids = softkm_kmeans_plusplus(X, 5, np.random.default_rng(seed))
    chosen_rows = [np.flatnonzero((X == centroid).all(axis=1)) for centroid in centroids]

    assert len(np.unique(centroids, axis=0)) == 5
    assert all(len(rows) > 0 for rows in chosen_rows)


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_same_seed_same_bytes(dtype):
    X = make_blobs(6, spread=2.5)

    first = engine.fit(X, 6, seed=11, n_init=3, dtype=dtype)
    second = engine.fit(X, 6, seed=11, n_init=3, dtype=dtype)

    assert first.labels.tobytes() == second.labels.tobytes()
    assert first.centroids.tobytes() == second.centroids.tobytes()


@pytest.mark.filterwarnings("ignore::softkm.errors.ConvergenceWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_blas_threads_same_bytes(dtype):
    # Products this large can be split across threads by a threaded BLAS. The test can
    # only catch thread-dependent rounding when the BLAS in use actually splits them.
    X = np.random.default_rng(7).normal(size=(12000, 16))

    with threadpool_limits(limits=1):
        single = engine.fit(X, 16, seed=3, max_iter=10, dtype=dtype)
    with threadpool_limits(limits=2):
        double = engine.fit(X, 16, seed=3, max_iter=10, dtype=dtype)

    assert single.labels.tobytes() == double.labels.tobytes()
    assert single.centroids.tobytes() == double.centroids.tobytes()


# ---------------------------------------------------------------- predict


@pytest.mark.parametrize("n_init, max_iter", [(1, 300), (3, 300), (1, 2), (3, 3)])
@pytest.mark.parametrize("standardize", [False, True], ids=["raw", "standardized"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_reproduces_fit_labels(dtype, standardize, n_init, max_iter):
    # Overlapping blobs with unequal feature scales, so many points lie near a boundary.
    # The short runs stop with the centroids still moving, so the fit's last labels
    # come from the bounded final step over a real move.
    X = make_blobs(8, spread=2.5) * np.array([1.0, 30.0, 0.01]) + np.array([5e3, -2e4, 7.0])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = engine.fit(X, 5, seed=0, dtype=dtype, standardize=standardize, n_init=n_init, max_iter=max_iter)
    labels, inertia = engine.predict(X, result.centroids, result.preprocessing, dtype)

    assert np.array_equal(labels, result.labels)
    assert inertia == pytest.approx(result.inertia, rel=1e-12)


# ---------------------------------------------------------------- validation



def invalid_fit_arguments(case):
    """Return (X, keyword arguments) for ``engine.fit`` that break one rule."""
    X = np.random.default_rng(9).normal(size=(100, 2))
    if case == "zero_clusters":
        return X, {"n_clusters": 0}
    if case == "too_many_clusters":
        return X, {"n_clusters": 101}
    if case == "init_shape":
        return X, {"n_clusters": 3, "init": np.zeros((2, 3))}
    if case == "nan_in_x":
        X[7, 1] = np.nan
        return X, {"n_clusters": 3}
    weights = np.ones(100)
    if case == "negative_weight":
        weights[7] = -0.5
    elif case == "weight_sum_overflow":
        weights[:2] = 1e308
    else:
        weights[:] = 0.0
    return X, {"n_clusters": 3, "sample_weight": weights}


@pytest.mark.parametrize(
    "case, message",
    [
        ("zero_clusters", r"n_clusters .*got 0"),
        ("too_many_clusters", r"n_clusters=101 .*\(100\)"),
        ("init_shape", r"\(3, 2\).*got \(2, 3\)"),
        ("nan_in_x", r"NaN"),
        ("negative_weight", r"-0\.5"),
        ("zero_weights", r"sample_weight is zero for every row"),
        ("weight_sum_overflow", r"weights sum to more than 1e\+300, too close to the float64 range for weighted sums \(largest weight 1e\+308\)"),
    ],
)
def test_fit_rejects_invalid_input(case, message):
    X, arguments = invalid_fit_arguments(case)

    with pytest.raises(OptionError, match=message):
        engine.fit(X, **arguments)


@pytest.mark.parametrize("mode, restarts", [("hard", 1), ("soft", 1), ("gumbel", 3)])
def test_explicit_start_runs_once(mode, restarts):
    from softkm.errors import SoftkmWarning

    X = np.random.default_rng(4).normal(size=(200, 2))
    start = X[:3].copy()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = engine.fit(X, 3, mode=mode, init=start, n_init=3, max_iter=20)

    # Gumbel restarts draw other noise, so they stay distinct runs.
    assert len(result.restart_scores) == restarts
    warned = [w for w in caught if issubclass(w.category, SoftkmWarning) and "restarts" in str(w.message)]
    assert len(warned) == (restarts == 1)


def test_progress_records_in_user_units():
    # Data far from unit scale, so that working and user units differ.
    X = np.random.default_rng(3).normal(size=(300, 2)) * 1e3
    X[:150] += 1e4
    records = []

    result = engine.fit(X, 2, seed=0, max_iter=100, on_iteration=lambda restart, record: records.append(record))

    assert result.converged
    assert records[-1].objective == pytest.approx(result.inertia / len(X), rel=1e-9)
    assert records[-1].inertia == pytest.approx(result.inertia / len(X), rel=1e-9)


# ---------------------------------------------------------------- convergence

HISTORY_CASES = ["blobs", "random_init", "empty_cluster"]


def history_problem(case):
    """Return (X, keyword arguments) for one monotonic-objective case."""
    X = make_blobs(10, spread=2.0)
    if case == "blobs":
        return X, {"n_clusters": 7, "seed": 1}
    if case == "random_init":
        return X, {"n_clusters": 7, "seed": 2, "init": "random"}
    start = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0], [50, 50, 50]])
    return X, {"n_clusters": 4, "init": start}


def assert_history_never_increases(result, X, dtype):
    working = result.preprocessing.transform(X, np.float64)
    slack = ROUNDING[dtype] * float((working**2).sum(axis=1).mean())
    inertias = np.array([record.inertia for record in result.history])

    assert len(inertias) >= 2
    assert np.all(np.diff(inertias) <= slack)


@pytest.mark.filterwarnings("ignore::softkm.errors.EmptyClusterWarning")
@pytest.mark.parametrize("case", HISTORY_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_history_never_increases(dtype, case):
    X, arguments = history_problem(case)

    result = engine.fit(X, dtype=dtype, tol=0, **arguments)

    assert_history_never_increases(result, X, dtype)


@pytest.mark.parametrize("path", BENCHMARKS)
def test_fit_history_benchmarks(path):
    X, n_clusters = load_benchmark(path)

    result = engine.fit(X, n_clusters, seed=0, tol=0)

    assert_history_never_increases(result, X, "float64")
