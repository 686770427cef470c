"""Hard mode with Hamerly's bounds against plain Lloyd iterations, and the thread pool.

Hamerly's iterations must reproduce Lloyd's: the same labels, iteration count and
convergence flag, and centroids equal up to rounding, in every dtype, with weights,
with empty clusters and with duplicate points. Results must not depend on the number
of threads.
"""

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from softkm import chunks, engine, parallel
from softkm.chunks import ChunkedData
from softkm.errors import ConvergenceWarning, OptionError
from softkm.chunks import farthest_points
from softkm.hamerly import final_labels as hamerly_final_labels
from softkm.hamerly import (
    Bounds,
    _far_movers,
    _lower_bound_drop,
    _rounding_bound,
    _settling_threshold,
    hamerly,
)
from softkm.kernels import assign_chunk, assign_two_nearest, row_norms_squared
from softkm.lloyd import lloyd
from softkm.preprocessing import Preprocessing
from shared_data import BENCHMARK_DATA

DATA_DIR = BENCHMARK_DATA
DTYPES = ["float32", "float64"]


def working_data(X, dtype, sample_weight=None, chunk_size=None, n_clusters=4):
    """Return X in working units as ChunkedData, and the Preprocessing used."""
    preprocessing = Preprocessing.fit(X, sample_weight)
    working = preprocessing.transform(X, np.dtype(dtype))
    return ChunkedData.build(working, sample_weight, n_clusters, chunk_size), preprocessing


def final_labels(data, centroids):
    working = centroids.astype(data.X.dtype)
    labels, _ = assign_chunk(data.X, data.x_squared_norms, working, row_norms_squared(working))
    return labels


def assert_same_run(data, start, max_iter=50, tol_shift=0.0):
    """Run both loops from ``start`` and check that they agree."""
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        expected = lloyd(data, start.copy(), max_iter, tol_shift)
        result = hamerly(data, start.copy(), max_iter, tol_shift)

    assert result.n_iter == expected.n_iter
    assert result.converged == expected.converged
    # The bounded final step must give the labels of a full assignment.
    np.testing.assert_array_equal(
        hamerly_final_labels(data, result.bounds, result.centroids), final_labels(data, result.centroids),
        err_msg="labels from the bounds differ from a full assignment to the final centroids",
    )
    assert result.n_relocated == expected.n_relocated
    scale = float(np.abs(expected.centroids).max()) + 1.0
    assert np.abs(result.centroids - expected.centroids).max() <= 1e-9 * scale
    np.testing.assert_array_equal(final_labels(data, result.centroids), final_labels(data, expected.centroids))
    inertia = np.array([record.inertia for record in result.history])
    expected_inertia = np.array([record.inertia for record in expected.history])
    rounding = 1e-4 if data.X.dtype == np.float32 else 1e-9
    # Hamerly's inertia comes from the expansion over the per-cluster sums, which
    # cancels down to about eps times the mean |x|^2, so tiny inertias get an atol.
    weights = np.ones(data.n_samples) if data.sample_weight is None else data.sample_weight
    mean_square = float(weights @ data.x_squared_norms.astype(np.float64)) / data.total_weight
    np.testing.assert_allclose(inertia, expected_inertia, rtol=rounding, atol=rounding * mean_square)
    return expected


def blobs(seed, n_samples=3000, n_features=5, n_centres=6, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-8, 8, size=(n_centres, n_features))
    return centres[rng.integers(0, n_centres, n_samples)] + spread * rng.standard_normal((n_samples, n_features))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hamerly_matches_lloyd_on_blobs(dtype, seed):
    X = blobs(seed)
    data, _ = working_data(X, dtype, n_clusters=8)
    start = data.X[np.random.default_rng(seed).choice(len(X), 8, replace=False)].astype(np.float64)

    assert_same_run(data, start)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hamerly_matches_lloyd_unstructured(dtype):
    X = np.random.default_rng(7).standard_normal((4000, 3))
    data, _ = working_data(X, dtype, n_clusters=20, chunk_size=333)
    start = data.X[:20].astype(np.float64)

    assert_same_run(data, start, max_iter=100)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hamerly_matches_lloyd_weighted(dtype):
    X = blobs(3, n_samples=2000)
    sample_weight = np.random.default_rng(3).uniform(0.1, 5.0, len(X))
    data, _ = working_data(X, dtype, sample_weight, n_clusters=6)
    start = data.X[:6].astype(np.float64)

    assert_same_run(data, start)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hamerly_matches_lloyd_with_empty_cluster(dtype):
    # Two starting centroids far outside the data lose every point in the first
    # assignment and are relocated.
    X = blobs(4, n_samples=1500, n_features=2, n_centres=4)
    data, _ = working_data(X, dtype, n_clusters=6)
    start = np.vstack([data.X[:4].astype(np.float64), [[50.0, 50.0], [-50.0, -50.0]]])

    expected = assert_same_run(data, start)

    assert expected.n_relocated >= 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_iter", [1, 2, 3, 50])
def test_hamerly_matches_lloyd_with_many_relocations(dtype, max_iter):
    # 20 starting rows, each given twice: ties go to the lower index, so 20 clusters
    # are empty after the first assignment and jump to the farthest points. The short
    # runs end right after that, so the final step starts from bounds that the
    # relocated centroids invalidated.
    X = blobs(8, n_samples=4000, n_features=16, n_centres=5, spread=0.3)
    data, _ = working_data(X, dtype, n_clusters=40, chunk_size=700)
    rows = np.random.default_rng(8).choice(len(X), 20, replace=False)
    start = data.X[np.concatenate([rows, rows])].astype(np.float64)

    expected = assert_same_run(data, start, max_iter=max_iter)

    assert expected.n_relocated >= 20


@pytest.mark.parametrize("dtype", DTYPES)
def test_farthest_points_with_known_labels(dtype):
    X = blobs(9, n_samples=2500, n_features=4)
    data, _ = working_data(X, dtype, n_clusters=6, chunk_size=300)
    centroids = data.X[:6].astype(np.float64)
    labels = final_labels(data, centroids)

    found = farthest_points(data, centroids, 7)
    from_labels = farthest_points(data, centroids, 7, labels)

    np.testing.assert_array_equal(from_labels.rows, found.rows)
    np.testing.assert_array_equal(from_labels.labels, found.labels)
    np.testing.assert_array_equal(from_labels.distances, found.distances)
    # The distances are |x - c|^2 in float64, and the first is the largest of all rows.
    working = centroids.astype(data.X.dtype).astype(np.float64)
    every = ((data.X.astype(np.float64) - working[labels]) ** 2).sum(axis=1)
    np.testing.assert_allclose(found.distances, every[found.rows], rtol=1e-12)
    assert found.distances[0] == every.max()


def test_hamerly_matches_lloyd_duplicates():
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]), 50, axis=0)
    data, _ = working_data(X, "float64", n_clusters=6)
    start = data.X[[0, 1, 2, 3, 50, 100]].astype(np.float64)

    assert_same_run(data, start)


def test_hamerly_single_cluster():
    X = blobs(5, n_samples=500)
    data, _ = working_data(X, "float64", n_clusters=1)

    assert_same_run(data, data.X[:1].astype(np.float64))


def test_hamerly_stops_on_shift_tolerance():
    X = blobs(6)
    data, _ = working_data(X, "float64", n_clusters=6)
    start = data.X[:6].astype(np.float64)

    assert_same_run(data, start, tol_shift=1e-3)


@pytest.mark.parametrize("path", sorted(DATA_DIR.glob("*.csv")) if DATA_DIR.is_dir() else [
    pytest.param(None, marks=pytest.mark.skip(reason=f"benchmark CSVs not found in {DATA_DIR}"))
])
def test_hamerly_matches_lloyd_benchmarks(path):
    table = pd.read_csv(path)
    X = table.drop(columns="label").to_numpy(dtype=np.float64)
    k = int(table["label"].nunique())
    data, _ = working_data(X, "float64", n_clusters=k)
    start = data.X[np.random.default_rng(0).choice(len(X), k, replace=False)].astype(np.float64)

    assert_same_run(data, start, max_iter=300)


@pytest.mark.parametrize("mode", ["hard", "soft", "gumbel"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_same_bytes_across_threads(mode, dtype):
    X = blobs(8, n_samples=5000, n_features=4)
    results = []
    try:
        for n_threads in (1, 2, 3):
            parallel.set_num_threads(n_threads)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = engine.fit(X, 5, mode=mode, dtype=dtype, seed=3, max_iter=30, chunk_size=700)
            results.append(result)
    finally:
        parallel.set_num_threads(None)

    for result in results[1:]:
        assert result.centroids.tobytes() == results[0].centroids.tobytes()
        assert result.labels.tobytes() == results[0].labels.tobytes()
        assert result.inertia == results[0].inertia


def test_fit_algorithms_agree():
    X = blobs(9, n_samples=4000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = engine.fit(X, 6, seed=1, algorithm="hamerly")
        plain = engine.fit(X, 6, seed=1, algorithm="lloyd")

    np.testing.assert_array_equal(fast.labels, plain.labels)
    np.testing.assert_allclose(fast.centroids, plain.centroids, rtol=1e-12, atol=1e-12)
    assert fast.n_iter == plain.n_iter


def test_fit_rejects_unknown_algorithm():
    with pytest.raises(OptionError, match="algorithm must be one of hamerly, lloyd, got 'elkan'"):
        engine.fit(blobs(0, n_samples=50), 2, algorithm="elkan")


def test_parallel_map_keeps_order():
    try:
        parallel.set_num_threads(3)
        results = list(parallel.parallel_map(lambda value: value * value, range(50)))
    finally:
        parallel.set_num_threads(None)

    assert results == [value * value for value in range(50)]


def test_parallel_map_restores_blas_threads():
    from threadpoolctl import threadpool_info

    before = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    inside = []

    def record(_):
        inside.append([info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"])

    list(parallel.parallel_map(record, range(3)))
    after = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    assert all(all(count == 1 for count in counts) for counts in inside)
    assert after == before


@pytest.mark.parametrize("value, expected", [("3", 3), ("abc", None), ("0", None), ("-2", None)])
def test_num_threads_environment(value, expected, monkeypatch):
    from softkm.errors import SoftkmWarning

    monkeypatch.setenv("SOFTKM_NUM_THREADS", value)
    monkeypatch.setattr(parallel, "_warned_values", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = parallel.default_num_threads()
        second = parallel.default_num_threads()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert first == second == (expected if expected is not None else cores)
    warned = [w for w in caught if issubclass(w.category, SoftkmWarning)]
    # An invalid value is reported once, not on every pass.
    assert len(warned) == (0 if expected is not None else 1)
    if warned:
        assert f"SOFTKM_NUM_THREADS={value!r} is not a positive integer" in str(warned[0].message)


def test_set_num_threads_rejects_zero():
    with pytest.raises(ValueError, match="n_threads must be at least 1, got 0"):
        parallel.set_num_threads(0)


def test_cli_algorithms_write_same_labels(tmp_path):
    from typer.testing import CliRunner

    from softkm.cli import app

    source = tmp_path / "blobs.csv"
    pd.DataFrame(blobs(10, n_samples=3000), columns=[f"x{j}" for j in range(5)]).to_csv(source, index=False)
    outputs = {}
    for algorithm in ("hamerly", "lloyd"):
        labels = tmp_path / f"labels_{algorithm}.csv"
        result = CliRunner().invoke(
            app, ["fit", str(source), "-k", "6", "--algorithm", algorithm, "--quiet", "--output", str(labels)]
        )
        assert result.exit_code == 0, result.output
        outputs[algorithm] = labels.read_bytes()

    assert outputs["hamerly"] == outputs["lloyd"]


def test_parallel_map_nested_runs_inline():
    def outer(value):
        return sum(parallel.parallel_map(lambda inner: inner * value, range(4)))

    try:
        parallel.set_num_threads(2)
        results = list(parallel.parallel_map(outer, range(6)))
    finally:
        parallel.set_num_threads(None)

    assert results == [6 * value for value in range(6)]


def test_far_movers_picks_outliers():
    movement = np.full(32, 1.0)
    movement[[3, 20]] = [9.0, 7.0]

    np.testing.assert_array_equal(_far_movers(movement), [3, 20])
    assert len(_far_movers(np.full(32, 1.0))) == 0, "even movement has no far movers"
    assert len(_far_movers(np.zeros(32))) == 0
    # k / 16 caps the count: with 16 clusters only one can be measured.
    two_far = np.ones(16)
    two_far[[0, 1]] = 10.0
    assert len(_far_movers(two_far)) == 0


def test_far_movers_all_when_few_move():
    movement = np.zeros(64)
    movement[[5, 40, 41]] = [0.03, 0.05, 0.04]

    # Three of 64 clusters move, within the k / 16 = 4 that can be measured. All of
    # them are, so the other clusters' lower bounds need not drop at all.
    np.testing.assert_array_equal(_far_movers(movement), [5, 40, 41])
    movement[:5] = 0.04
    assert len(_far_movers(movement)) == 0, "eight movers of similar size are more than k / 16"


def test_lower_bound_drop_spares_largest_mover():
    drop = _lower_bound_drop(np.array([0.5, 3.0, 1.0]), np.dtype(np.float32))

    np.testing.assert_array_equal(drop, np.array([3.0, 1.0, 3.0], dtype=np.float32))


# Tiny cases with duplicate points and duplicate starting centroids, where a relocation
# is followed by ties within rounding. Each stops after a few iterations.
TIE_CASES = {
    "relocation_then_converged": (
        [[0.3], [0.1], [0.8], [0.8]], [[0.8], [0.3], [0.8], [0.8]], "float64", None,
    ),
    "duplicate_start_chunks_of_3": (
        [[0.0, 0.3], [0.1, 0.8], [0.1, 0.8], [0.7, 0.2], [0.0, 0.3], [0.1, 0.8]],
        [[0.0, 0.3], [0.0, 0.3], [0.1, 0.8], [0.0, 0.3]], "float64", 3,
    ),
    "three_equal_starts_float32": (
        [[1.0, 0.9, 0.8], [0.2, 0.1, 0.8], [0.2, 0.1, 0.8], [0.4, 0.5, 0.4], [0.4, 0.5, 0.4], [0.2, 0.1, 0.8],
         [0.2, 0.1, 0.8], [1.0, 0.9, 0.8], [0.4, 0.5, 0.4], [1.0, 0.9, 0.8], [0.4, 0.5, 0.4]],
        [[0.2, 0.1, 0.8]] * 3, "float32", 3,
    ),
}


@pytest.mark.parametrize("max_iter", [1, 2, 3])
@pytest.mark.parametrize("case", sorted(TIE_CASES))
def test_fit_algorithms_agree_on_ties(case, max_iter):
    X, init, dtype, chunk_size = TIE_CASES[case]
    X, init = np.array(X), np.array(init)
    options = dict(init=init, max_iter=max_iter, tol=0, dtype=dtype, chunk_size=chunk_size)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bounded = engine.fit(X, len(init), algorithm="hamerly", **options)
        plain = engine.fit(X, len(init), algorithm="lloyd", **options)
    predicted, _ = engine.predict(X, bounded.centroids, bounded.preprocessing, dtype, chunk_size=chunk_size)

    np.testing.assert_array_equal(bounded.labels, plain.labels)
    np.testing.assert_array_equal(predicted, bounded.labels, err_msg="predict disagrees with the fit's labels")
    assert (bounded.n_iter, bounded.converged) == (plain.n_iter, plain.converged)
    assert bounded.n_relocated == plain.n_relocated


def test_settling_threshold_leaves_room_for_rounding():
    lower = np.array([2.0, 1.0, 0.0, -0.5, 0.1], dtype=np.float32)
    bound = 0.04

    threshold = _settling_threshold(lower, bound)

    # A point below the threshold has lower^2 - upper^2 > bound, so rounding of the
    # squared distances cannot change its label.
    margin = lower[:2].astype(np.float64) ** 2 - threshold[:2].astype(np.float64) ** 2
    assert np.all(margin > bound), f"squared margins {margin} do not exceed the bound {bound}"
    assert np.all(threshold[:2] < lower[:2])
    # Without a positive lower bound, or with one below sqrt(bound), nothing is certain.
    assert np.all(threshold[2:4] == -np.inf), f"thresholds for lower <= 0 are {threshold[2:4]}"
    assert threshold[4] < 0, f"lower bound 0.1 < sqrt(0.04) must settle nothing, threshold {threshold[4]}"
    # With a bound of 0 (all-zero data), a lower bound of 0 still settles nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zero_bound = _settling_threshold(np.array([0.0, 1.0], dtype=np.float32), 0.0)
    np.testing.assert_array_equal(zero_bound, np.array([-np.inf, 1.0], dtype=np.float32))


def test_rounding_bound_grows_with_features_and_norms():
    centroids = np.ones((3, 4))
    small = _rounding_bound(np.dtype(np.float32), 1.0, centroids)

    assert _rounding_bound(np.dtype(np.float32), 100.0, centroids) > small
    assert _rounding_bound(np.dtype(np.float32), 1.0, np.ones((3, 40))) > small
    assert _rounding_bound(np.dtype(np.float64), 1.0, centroids) < small * 1e-8


def test_engine_warnings_point_at_the_caller():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))

    with pytest.warns(ConvergenceWarning) as record:
        engine.fit(X, 3, max_iter=1, seed=0)

    assert record[0].filename == __file__, f"the warning points at {record[0].filename}, not at the caller"


@pytest.mark.parametrize("n_features", [3, 40])
def test_zero_weight_move_keeps_sums(n_features):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, n_features))
    weights = rng.uniform(0.5, 2.0, size=300)
    weights[[4, 150]] = 0.0
    labels = rng.integers(0, 5, size=300).astype(np.int32)
    data = ChunkedData.build(X, weights, 5, 64)
    before = data.cluster_statistics(labels, 5)

    labels[[4, 150]] = (labels[[4, 150]] + 1) % 5
    after = data.cluster_statistics(labels, 5)

    # Lloyd stops when the shift is exactly 0, so moving a point of weight 0 must not
    # change a single bit of the sums, as it does not in Hamerly's updated sums.
    np.testing.assert_array_equal(after.sums, before.sums)
    np.testing.assert_array_equal(after.weights, before.weights)


def test_emptied_cluster_fractional_weights():
    X = np.array([9.9999999999999991e-05, 9.9699999999999998e-05, 9.9699999999999998e-05, 9.9699999999999998e-05,
                  1.0020000000000000e-04, 1.0009999999999999e-04, 1.0029999999999998e-04, 9.9899999999999989e-05,
                  9.9899999999999989e-05, 9.9799999999999986e-05, 9.9899999999999989e-05, 1.0009999999999999e-04,
                  9.9799999999999986e-05, 1.0020000000000000e-04])[:, None]
    weights = np.array([4.79937750002188, 0.7678408697061362, 1.3237496592847149, 4.915414670160047,
                        4.709555822807628, 1.1856439461136938, 1.5345473677333832, 3.0775208052516367,
                        2.6176072014193807, 3.247140236819923, 2.736396220082402, 4.569937739283372,
                        0.4333926544105171, 4.51982000006763])
    start = np.array([1.0020000000000000e-04, 1.0020000000000000e-04, 9.9799999999999986e-05, 9.9899999999999989e-05,
                      9.9699999999999998e-05, 9.9999999999999991e-05, 1.0009999999999999e-04,
                      1.0029999999999998e-04])[:, None]
    data = ChunkedData.build(X, weights, len(start), 13)

    # Updated weights can leave a residue of about 1e-16 on a cluster that lost its
    # last point, which must still count as empty.
    for max_iter in (2, 5):
        assert_same_run(data, start, max_iter=max_iter)


@pytest.mark.parametrize("seed", range(4))
def test_fit_matches_predict_late_movers(seed):
    # Many clusters for few points, started far from the data, so empty clusters are
    # relocated and a few centroids keep moving late, and the final step measures them.
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(363, 32)) + 1000.0
    weights = rng.uniform(0.1, 5.0, size=363) * (rng.random(363) > 0.4)
    start = rng.uniform(998.5, 1001.5, size=(148, 32))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = engine.fit(X, 148, init=start, n_init=1, max_iter=72, tol=0.0, dtype="float64", chunk_size=64,
                         sample_weight=weights)
    labels, _ = engine.predict(X, fit.centroids, fit.preprocessing, "float64", 64)

    wrong = np.flatnonzero(fit.labels != labels)
    assert len(wrong) == 0, f"fit and predict label rows {wrong[:10]} differently"


def test_final_step_reassigns_near_ties():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(2000, 3)).astype(np.float32)
    data = ChunkedData.build(X, None, 600, 2000)  # one chunk of several distance blocks
    centroids = X[rng.choice(2000, 600, replace=False)].astype(np.float64)
    # A copy of centroid 0 moved by far less than float32 rounding, so float64 and the
    # float32 product may rank the two copies differently for the same point.
    centroids[1] = centroids[0] + 1e-6 * rng.normal(size=3)
    working = centroids.astype(np.float32)
    labels, nearest, second = assign_two_nearest(data.X, data.x_squared_norms, working, row_norms_squared(working))
    # Exact bounds, but the points tied between the copies 0 and 1 get the other
    # copy's label. Their bounds leave them in doubt, so the final step must fix them.
    tied = np.flatnonzero(np.isin(labels, [0, 1]))
    assert len(tied) > 0
    labels[tied] = 1 - labels[tied]
    bounds = Bounds(labels.astype(np.int32), np.sqrt(nearest), np.sqrt(second), centroids, np.empty(0, dtype=np.intp),
                    float(data.x_squared_norms.max()))

    found = hamerly_final_labels(data, bounds, centroids, last=True)

    np.testing.assert_array_equal(found, final_labels(data, centroids),
                                  err_msg="the bounded final step differs from assign_chunk")


@pytest.mark.parametrize("dtype", DTYPES)
def test_labels_independent_of_chunking(dtype):
    # Each blob has two centroids closer than float32 rounding, so many points tie
    # within rounding.
    rng = np.random.default_rng(5)
    blobs = rng.normal(scale=3.0, size=(6, 16))
    X = np.repeat(blobs, 400, axis=0) + rng.normal(size=(2400, 16))
    centroids = np.concatenate([blobs, blobs + 1e-6 * rng.normal(size=blobs.shape)])
    preprocessing = Preprocessing.fit(X)

    labels, _ = engine.predict(X, centroids, preprocessing, dtype)
    chunked, _ = engine.predict(X, centroids, preprocessing, dtype, chunk_size=97)
    alone = [engine.predict(X[i : i + 1], centroids, preprocessing, dtype)[0][0] for i in range(0, 2400, 41)]
    start = preprocessing.transform_centroids(centroids)
    data, _ = working_data(X, dtype, chunk_size=97, n_clusters=12)
    bounded = hamerly(data, start, 1, 0.0).bounds

    np.testing.assert_array_equal(chunked, labels, err_msg="predict with other chunks relabels rows")
    np.testing.assert_array_equal(alone, labels[::41], err_msg="rows predicted alone get other labels")
    np.testing.assert_array_equal(bounded.labels, labels, err_msg="Hamerly's first pass labels rows otherwise")


def test_tiny_weight_cluster_kept():
    # Cluster 0 keeps one point of weight 1e-20 after its two other points leave. Its
    # updated weight (1e-20 + 1 + 1) - 1 - 1 rounds to 0, but the cluster is not empty.
    X = np.array([0.0, -5.0, 5.0, -12.0, -6.5, 12.0, 6.5] + [100.0] * 100 + [101.0] * 100)[:, None]
    weights = np.ones(len(X))
    weights[0] = 1e-20
    start = np.array([[0.0], [-12.0], [12.0], [100.0]])
    data = ChunkedData.build(X, weights, 4)

    expected = assert_same_run(data, start, max_iter=10)

    assert expected.n_relocated == 0, "the check needs Lloyd to keep cluster 0"


@pytest.mark.parametrize("n_features", [3, 12])
def test_cluster_statistics_over_several_ranges(monkeypatch, n_features):
    monkeypatch.setattr(chunks, "_SUM_RANGE_ROWS", 40)
    X = blobs(4, n_samples=700, n_features=n_features)
    weights = np.random.default_rng(4).uniform(0.5, 2.0, size=700)
    data, _ = working_data(X, "float64", weights, chunk_size=13, n_clusters=6)
    labels = np.random.default_rng(5).integers(0, 6, size=700).astype(np.int32)
    assert len(data.label_ranges()) > 5, "the data must span several ranges of chunks"

    stats = data.cluster_statistics(labels, 6)
    expected = np.zeros((6, n_features))
    np.add.at(expected, labels, data.X * weights[:, None])

    np.testing.assert_allclose(stats.sums, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.weights, np.bincount(labels, weights=weights, minlength=6), rtol=1e-12)
    start = data.X[np.random.default_rng(6).choice(700, 6, replace=False)].astype(np.float64)
    assert_same_run(data, start)
