"""The data-source seam: one-pass moments, farthest points and samples as reductions."""

from __future__ import annotations

import numpy as np
import pytest

from softkm.chunks import ChunkedData, draw_sample, farthest_points, sample_rows
from softkm.kernels import row_norms_squared
from softkm.preprocessing import MomentSums, weighted_moments


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("offset", [0.0, 1e6, 1e100])
def test_moment_sums_match_weighted_moments(weighted, offset):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1000, 4)) * [1.0, 1e-3, 1e3, 0.0] + offset
    weights = rng.uniform(0, 2, size=1000) if weighted else None

    merged = MomentSums.of_block(X[:0], None)
    for start in range(0, 1000, 137):
        block_weights = None if weights is None else weights[start : start + 137]
        merged = merged.merge(MomentSums.of_block(X[start : start + 137], block_weights))
    mean, std = weighted_moments(X, weights)

    assert merged.weight == pytest.approx(1000.0 if weights is None else weights.sum(), rel=1e-12)
    assert np.allclose(merged.mean, mean, rtol=1e-12, atol=1e-12 * max(offset, 1.0))
    # Both means carry a rounding error of a few ulp of the offset, which shifts every
    # deviation, and hence the standard deviation, by as much.
    rounding = 64 * np.finfo(np.float64).eps * offset
    assert np.allclose(merged.std, std, rtol=1e-9, atol=rounding)


def test_moment_sums_merge_huge_values():
    first = MomentSums.of_block(np.array([[1e300], [-1e300]]), None)
    second = MomentSums.of_block(np.array([[3e300]]), None)

    merged = first.merge(second)

    assert np.all(np.isfinite(merged.std))
    assert merged.std[0] == pytest.approx(np.std([1.0, -1.0, 3.0]) * 1e300, rel=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 5, 64, 200])
def test_farthest_points_match_sort(chunk_size):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 3))
    X[17] = X[18]  # two rows at the same distance: the lower row must come first
    weights = rng.uniform(0.5, 1.5, size=200)
    centroids = rng.normal(size=(4, 3))
    data = ChunkedData.build(X, weights, 4, chunk_size)

    found = farthest_points(data, centroids, 6)

    distances = ((X[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    nearest = distances.min(axis=1)
    expected = np.argsort(-nearest, kind="stable")[:6]
    assert found.rows.tolist() == expected.tolist()
    assert np.array_equal(found.points, X[expected])
    assert np.array_equal(found.weights, weights[expected])
    assert np.array_equal(found.labels, distances[expected].argmin(axis=1))
    assert found.max_squared_norm == row_norms_squared(X).max()


def test_draw_sample_all_rows_uses_no_randomness():
    data = ChunkedData.build(np.arange(20.0).reshape(10, 2), None, 2)
    rng = np.random.default_rng(0)

    sample = draw_sample(data, 10, rng)

    assert sample is data
    assert rng.integers(0, 2**32) == np.random.default_rng(0).integers(0, 2**32)


def test_draw_sample_rows_in_order():
    data = ChunkedData.build(np.arange(200.0).reshape(100, 2), None, 2)

    sample = draw_sample(data, 10, np.random.default_rng(1))

    assert sample.n_samples == 10
    assert np.all(np.diff(sample.X[:, 0]) > 0)


@pytest.mark.parametrize("n_samples, size", [(1000, 100), (200_000, 150_000), (300_001, 7)])
def test_sample_rows_distinct_sorted(n_samples, size):
    rows = sample_rows(n_samples, size, np.random.default_rng(2))

    assert len(rows) == size
    assert np.all(np.diff(rows) > 0), "rows are not sorted and distinct"
    assert rows.min() >= 0
    assert rows.max() < n_samples
    np.testing.assert_array_equal(rows, sample_rows(n_samples, size, np.random.default_rng(2)))


def test_sample_rows_uniform():
    # The rows span two blocks of the sampler, and every row should be drawn with
    # probability 0.1. Over 2000 draws each count has mean 200 and a standard deviation
    # of about 13.4, so even the extreme counts of 70,000 rows stay within 6 of those.
    n_samples = 70_000
    counts = np.zeros(n_samples)
    rng = np.random.default_rng(3)
    for _ in range(2000):
        counts[sample_rows(n_samples, 7000, rng)] += 1

    assert counts.sum() == 2000 * 7000
    assert np.abs(counts - 200).max() < 6 * 13.4
    # The first block (65,536 rows) and the rest carry their share of the draws.
    assert counts[:65_536].mean() == pytest.approx(200, rel=0.01)
    assert counts[65_536:].mean() == pytest.approx(200, rel=0.01)
