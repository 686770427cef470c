"""Soft and gumbel modes through the engine: limits, quality, robustness, determinism."""

import warnings

import numpy as np
import pytest

from softkm import engine
from softkm.metrics import inertia as direct_inertia
from shared_data import BENCHMARK_DATA

SHARED_DATA = BENCHMARK_DATA
SHARED_SETS = sorted(SHARED_DATA.glob("*.csv")) if SHARED_DATA.is_dir() else []
needs_shared = pytest.mark.skipif(not SHARED_SETS, reason=f"benchmark data not found at {SHARED_DATA}")

# Glass (214 points, 6 overlapping classes with outliers) is the one set where gradient
# descent from a k-means++ start settles in a worse local optimum of the relaxed
# objective than Lloyd's: measured +0.8% to +1.8% hard inertia at tau 0.5 over seeds 0-4.
KNOWN_SOFT_MISSES = {"glass.csv"}
KNOWN_GUMBEL_MISSES = {"glass.csv"}


def load_set(path):
    import pandas as pd

    frame = pd.read_csv(path)
    truth = frame.pop("label").to_numpy()
    return frame.to_numpy(np.float64), len(np.unique(truth))


def quiet_fit(X, n_clusters, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return engine.fit(X, n_clusters, **options)


@needs_shared
@pytest.mark.parametrize("path", SHARED_SETS, ids=lambda p: p.stem)
def test_soft_tiny_tau_reproduces_hard(path):
    X, n_clusters = load_set(path)
    hard = quiet_fit(X, n_clusters, seed=3, tol=0)
    soft = quiet_fit(X, n_clusters, seed=3, mode="soft", tau=1e-8, optimizer="scaled-gd", tol=1e-12, max_iter=1000)

    assert np.array_equal(soft.labels, hard.labels)
    assert soft.inertia == pytest.approx(hard.inertia, rel=1e-6)


@needs_shared
@pytest.mark.parametrize("path", SHARED_SETS, ids=lambda p: p.stem)
def test_soft_tiny_tau_adam_reaches_lloyd_fixed_point(path):
    """With Adam the path differs from Lloyd's, but the end point must be a fixed point:
    every centroid is the mean of the points assigned to it."""
    X, n_clusters = load_set(path)
    soft = quiet_fit(X, n_clusters, seed=3, mode="soft", tau=1e-8, tol=1e-10, max_iter=3000)
    means = np.array([X[soft.labels == j].mean(axis=0) for j in range(n_clusters)])
    spread = np.sqrt(soft.inertia / len(X))

    assert np.abs(soft.centroids - means).max() < 1e-4 * spread


@needs_shared
@pytest.mark.parametrize("tau", [0.5, 0.1])
@pytest.mark.parametrize("path", SHARED_SETS, ids=lambda p: p.stem)
def test_soft_inertia_close_to_hard(path, tau):
    if tau == 0.5 and path.name in KNOWN_SOFT_MISSES:
        pytest.xfail("soft mode lands in a worse local optimum on this set at tau 0.5")
    X, n_clusters = load_set(path)
    hard = quiet_fit(X, n_clusters, seed=0)
    soft = quiet_fit(X, n_clusters, seed=0, mode="soft", tau=tau)

    assert soft.inertia <= hard.inertia * 1.01


@needs_shared
@pytest.mark.parametrize("path", SHARED_SETS, ids=lambda p: p.stem)
def test_gumbel_inertia_close_to_hard(path):
    if path.name in KNOWN_GUMBEL_MISSES:
        pytest.xfail("gumbel samples from softmax(-d / s), which is far from one-hot on this set")
    X, n_clusters = load_set(path)
    hard = quiet_fit(X, n_clusters, seed=0)
    gumbel = quiet_fit(X, n_clusters, seed=0, mode="gumbel")

    assert gumbel.inertia <= hard.inertia * 1.05


def blobs(seed=0, n_per_cluster=60, scale=1.0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    X = np.concatenate([c + rng.normal(size=(n_per_cluster, 2)) for c in centres])
    return X * scale


@pytest.mark.parametrize("data_scale", [1e-150, 1.0, 1e150])
@pytest.mark.parametrize("tau", [1e-8, 1e-3, 0.5, 10.0, 1e6])
@pytest.mark.parametrize("mode", ["soft", "gumbel"])
def test_relaxed_outputs_always_finite(mode, tau, data_scale):
    X = blobs(scale=data_scale)
    result = quiet_fit(X, 3, mode=mode, tau=tau, max_iter=40)
    memberships = engine.predict_proba(X, result.centroids, result.preprocessing, "float64", result.temperature)

    assert np.all(np.isfinite(result.centroids))
    assert np.isfinite(result.inertia)
    assert np.isfinite(result.objective)
    assert np.all(np.isfinite(memberships))
    assert np.allclose(memberships.sum(axis=1), 1.0)


@pytest.mark.parametrize("mode", ["soft", "gumbel"])
def test_cluster_losing_all_points_is_relocated(mode):
    X = blobs()
    start = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [1e4, 1e4]])
    with pytest.warns(Warning):
        result = engine.fit(X, 4, mode=mode, init=start, tau=0.01, max_iter=50)

    assert np.all(np.isfinite(result.centroids))
    assert np.abs(result.centroids).max() < 100


@pytest.mark.parametrize("mode", ["soft", "gumbel"])
def test_scaled_gd_keeps_unused_centroid(mode):
    # Every point sits on one of three centroids, so a fourth one far away cannot be
    # relocated. Its memberships are 0 in float64 (the clipped exponentials included),
    # so scaled-gd, which divides by the membership mass, must leave it in place.
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    X = points[np.random.default_rng(0).integers(0, 3, 300)]
    start = np.vstack([points, [[30.0, 30.0]]])
    result = quiet_fit(X, 4, mode=mode, init=start, optimizer="scaled-gd", max_iter=50)

    np.testing.assert_array_equal(result.centroids[3], [30.0, 30.0])
    assert all(np.isfinite(record.shift) and record.shift < 1.0 for record in result.history)


def test_coinciding_soft_starts_warn_of_empty_cluster():
    from softkm.errors import EmptyClusterWarning

    # Equal starting centroids get equal gradients in soft mode and never separate.
    start = np.array([[0.0, 0.0], [0.0, 0.0], [6.0, 0.0]])
    with pytest.warns(EmptyClusterWarning, match=r"1 of the 3 clusters have no points in the final assignment \(cluster 1\)"):
        result = engine.fit(blobs(), 3, mode="soft", init=start)

    assert np.bincount(result.labels, minlength=3)[1] == 0


def test_large_tau_pulls_centroids_to_mean():
    X = blobs()
    result = quiet_fit(X, 3, mode="soft", tau=1e6, max_iter=500)

    assert np.abs(result.centroids - X.mean(axis=0)).max() < 0.05


@pytest.mark.parametrize("mode", ["soft", "gumbel"])
def test_relaxed_same_seed_same_bytes(mode):
    X = blobs(seed=4)
    first = quiet_fit(X, 3, mode=mode, seed=11, max_iter=30)
    second = quiet_fit(X, 3, mode=mode, seed=11, max_iter=30)

    assert first.centroids.tobytes() == second.centroids.tobytes()
    assert first.labels.tobytes() == second.labels.tobytes()


def test_gumbel_noise_differs_across_seeds():
    X = blobs(seed=4)
    first = quiet_fit(X, 3, mode="gumbel", seed=1, max_iter=30)
    second = quiet_fit(X, 3, mode="gumbel", seed=2, max_iter=30)

    assert first.centroids.tobytes() != second.centroids.tobytes()


@pytest.mark.parametrize("options", [
    {"mode": "soft", "batch_size": 40},
    {"mode": "gumbel", "batch_size": 40},
    {"mode": "gumbel", "straight_through": True},
    {"mode": "soft", "tau_start": 4.0},
    {"mode": "soft", "optimizer": "gd"},
    {"mode": "soft", "optimizer": "scaled-gd"},
    {"mode": "soft", "sample_weight": np.linspace(0.0, 2.0, 180)},
], ids=["soft-batch", "gumbel-batch", "straight-through", "anneal", "gd", "scaled-gd", "weights"])
def test_relaxed_variants_find_blobs(options):
    X = blobs(seed=5)
    result = quiet_fit(X, 3, seed=0, max_iter=300, **options)
    truth = np.repeat(np.arange(3), 60)

    pairs = {(int(t), int(p)) for t, p in zip(truth, result.labels)}
    assert len(pairs) == 3, f"labels do not match the three blobs: {sorted(pairs)}"


def test_reported_inertia_matches_recomputed():
    X = blobs(seed=6)
    result = quiet_fit(X, 3, mode="soft")

    assert result.inertia == pytest.approx(direct_inertia(X, result.centroids, result.labels), rel=1e-10)


def test_history_tracks_temperature_annealing():
    X = blobs(seed=7)
    result = quiet_fit(X, 3, mode="gumbel", tau=0.2, tau_start=2.0, anneal_rate=0.1, max_iter=60)
    taus = [record.tau for record in result.history]

    assert taus[0] == pytest.approx(2.0)
    assert taus[-1] == pytest.approx(0.2)
    assert all(a >= b for a, b in zip(taus, taus[1:]))


def test_soft_temperature_is_tau_times_scale():
    X = blobs(seed=8)
    result = quiet_fit(X, 3, mode="soft", tau=0.7)

    assert result.temperature == pytest.approx(0.7 * result.scale, rel=1e-12)


def test_tau_underflow_rejected():
    from softkm.errors import OptionError

    # With points about 1e-150 apart, s is about 1e-300 and 1e-30 * s underflows to 0.
    with pytest.raises(OptionError, match=r"tau=1e-30 times .* gives a temperature of 0, outside the range that float64"):
        engine.fit(blobs() * 1e-150, 3, mode="soft", tau=1e-30)


@pytest.mark.parametrize("tau", [1e-40, 1e40])
def test_float32_tau_range_rejected(tau):
    from softkm.errors import OptionError

    # In float32, 2 / (tau * s) or tau * s itself would overflow to inf and end in NaN.
    with pytest.raises(OptionError, match=r"outside the range that float32 arithmetic handles; choose tau between"):
        engine.fit(blobs(), 3, mode="soft", tau=tau, dtype="float32")


@pytest.mark.parametrize("options, word", [
    ({"tau": 0.0}, "tau"),
    ({"tau": float("nan")}, "tau"),
    ({"tau": float("inf")}, "tau"),
    # Finite, but tau * s overflows to inf.
    ({"tau": 1e308}, r"tau=1e\+308 times .* gives a temperature of inf"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"tau": 0.5, "tau_start": 0.1}, "tau_start"),
    ({"straight_through": True}, "straight_through"),
    ({"optimizer": "sgd"}, "optimizer"),
])
def test_relaxed_invalid_options_rejected(options, word):
    from softkm.errors import OptionError

    with pytest.raises(OptionError, match=word):
        engine.fit(blobs(), 3, mode="soft", **options)
