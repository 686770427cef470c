"""Analytic gradients of the relaxed objectives against central finite differences.

The reference objective here is written independently of softkm's kernels: plain
NumPy on the full (n, k) distance matrix, with the noise held fixed.
"""

import numpy as np
import pytest

from softkm.kernels import gumbel_noise, relaxed_chunk, row_norms_squared


def make_problem(seed, n_samples=40, n_features=3, n_clusters=4, weighted=True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    centroids = rng.normal(size=(n_clusters, n_features))
    sample_weight = rng.uniform(0.2, 3.0, size=n_samples) if weighted else None
    return X, centroids, sample_weight


def reference_objective(X, centroids, sample_weight, temperature, noise=None, frozen=None):
    """Return sum_x w_x sum_c p_xc d_xc / sum_x w_x with p = softmax(-d / T + g).

    With ``frozen = (onehot, p0)`` it returns the straight-through surrogate
    sum_x w_x sum_c (onehot - p0 + p) d, whose value equals the one-hot objective at
    the point where p0 was taken and whose gradient is that of p.
    """
    distances = ((X[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    logits = -distances / temperature
    if noise is not None:
        logits = logits + noise
    logits -= logits.max(axis=1, keepdims=True)
    memberships = np.exp(logits)
    memberships /= memberships.sum(axis=1, keepdims=True)
    if frozen is not None:
        onehot, first = frozen
        memberships = onehot - first + memberships
    weights = np.ones(len(X)) if sample_weight is None else sample_weight
    return float(weights @ (memberships * distances).sum(axis=1) / weights.sum())


def analytic_gradient(X, centroids, sample_weight, temperature, noise=None, straight_through=False):
    stats, memberships = relaxed_chunk(
        X, row_norms_squared(X), sample_weight, centroids, row_norms_squared(centroids), temperature,
        noise=noise, straight_through=straight_through, return_responsibilities=True,
    )
    total_weight = len(X) if sample_weight is None else sample_weight.sum()
    gradient = 2.0 * (centroids * stats.weights[:, None] - stats.sums) / total_weight
    return gradient, stats.objective / total_weight, memberships


def numeric_gradient(objective, centroids, step):
    gradient = np.zeros_like(centroids)
    for index in np.ndindex(centroids.shape):
        forward = centroids.copy()
        backward = centroids.copy()
        forward[index] += step
        backward[index] -= step
        gradient[index] = (objective(forward) - objective(backward)) / (2 * step)
    return gradient


def relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("tau", [0.02, 0.1, 0.5, 2.0, 10.0])
def test_soft_gradient_matches_finite_differences(tau, weighted):
    X, centroids, sample_weight = make_problem(1, weighted=weighted)
    gradient, objective, _ = analytic_gradient(X, centroids, sample_weight, tau)

    numeric = numeric_gradient(lambda c: reference_objective(X, c, sample_weight, tau), centroids, 1e-6 * tau**0.5)

    assert objective == pytest.approx(reference_objective(X, centroids, sample_weight, tau), rel=1e-12)
    assert relative_error(gradient, numeric) < 1e-6


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_gumbel_gradient_matches_finite_differences(tau, weighted):
    X, centroids, sample_weight = make_problem(2, weighted=weighted)
    scale = 1.3
    noise = gumbel_noise(np.random.default_rng(3), (len(X), len(centroids)), np.float64) / tau
    temperature = scale * tau
    gradient, objective, _ = analytic_gradient(X, centroids, sample_weight, temperature, noise=noise)

    def objective_at(c):
        return reference_objective(X, c, sample_weight, temperature, noise=noise)

    numeric = numeric_gradient(objective_at, centroids, 1e-6 * temperature**0.5)

    assert objective == pytest.approx(objective_at(centroids), rel=1e-12)
    assert relative_error(gradient, numeric) < 1e-6


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_straight_through_gradient_is_soft_gradient(tau):
    X, centroids, sample_weight = make_problem(4)
    noise = gumbel_noise(np.random.default_rng(5), (len(X), len(centroids)), np.float64) / tau
    gradient, objective, memberships = analytic_gradient(
        X, centroids, sample_weight, tau, noise=noise, straight_through=True
    )
    onehot = np.eye(len(centroids))[memberships.argmax(axis=1)]
    frozen = (onehot, memberships.copy())

    def surrogate(c):
        return reference_objective(X, c, sample_weight, tau, noise=noise, frozen=frozen)

    numeric = numeric_gradient(surrogate, centroids, 1e-6 * tau**0.5)
    distances = ((X[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    one_hot_objective = float(sample_weight @ (onehot * distances).sum(axis=1) / sample_weight.sum())

    assert objective == pytest.approx(one_hot_objective, rel=1e-12)
    assert relative_error(gradient, numeric) < 1e-6


def test_hard_assignment_has_zero_derivative():
    """The one-hot labels are a step function of the centroids: away from a boundary a
    small move of a centroid changes no label, so the finite difference is exactly 0."""
    X, centroids, _ = make_problem(6, weighted=False)

    def one_hot_labels(c):
        distances = ((X[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
        return np.eye(len(c))[distances.argmin(axis=1)]

    step = 1e-7
    for index in np.ndindex(centroids.shape):
        forward = centroids.copy()
        backward = centroids.copy()
        forward[index] += step
        backward[index] -= step
        derivative = (one_hot_labels(forward) - one_hot_labels(backward)) / (2 * step)
        assert np.all(derivative == 0), f"labels moved for a step of {step} in centroid entry {index}"

    soft_gradient, _, _ = analytic_gradient(X, centroids, None, 0.5)
    assert np.abs(soft_gradient).max() > 1e-3
