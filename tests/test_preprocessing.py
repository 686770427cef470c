"""Tests for softkm.preprocessing: the map between user units and working units."""

import json

import numpy as np
import pytest

from softkm.errors import ModelError
from softkm.preprocessing import Preprocessing, column_extremes


def standardize(X, weights=None):
    return Preprocessing.fit(X, weights, standardize=True)


def test_standardize_matches_numpy():
    X = np.random.default_rng(3).normal(5.0, 2.0, size=(100, 3))
    prep = standardize(X)
    np.testing.assert_allclose(prep.offset, X.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(prep.scale, X.std(axis=0), rtol=1e-14)


def test_standardize_weights_equal_repeated_rows():
    X = np.array([[1.0, 10.0], [2.0, 30.0], [4.0, 20.0]])
    weighted = standardize(X, np.array([1.0, 3.0, 2.0]))
    repeated = standardize(np.repeat(X, [1, 3, 2], axis=0))
    np.testing.assert_allclose(weighted.offset, repeated.offset, rtol=1e-14)
    np.testing.assert_allclose(weighted.scale, repeated.scale, rtol=1e-14)


def test_standardize_zero_weight_rows_are_ignored():
    prep = standardize(np.array([[1.0], [3.0], [1000.0]]), np.array([1.0, 1.0, 0.0]))
    assert prep.offset.tolist() == [2.0]
    assert prep.scale.tolist() == [1.0]


def test_standardize_constant_column_gets_scale_one():
    X = np.array([[1.0, 7.0], [2.0, 7.0], [3.0, 7.0]])
    prep = standardize(X)
    assert prep.scale[1] == 1.0
    assert prep.transform(X, np.float64)[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_standardize_rounding_noise_counts_as_constant():
    prep = standardize(np.array([[0.1], [0.1 + 2**-56], [0.1]]))
    assert prep.scale.tolist() == [1.0]


def test_standardize_small_spread_around_zero_is_scaled():
    prep = standardize(np.array([[-1e-9], [1e-9]]))
    np.testing.assert_allclose(prep.scale, [1e-9], rtol=1e-12)


def test_standardize_huge_values_do_not_overflow():
    prep = standardize(np.array([[1e200], [-1e200]]))
    np.testing.assert_allclose(prep.scale, [1e200], rtol=1e-12)


def test_standardize_gives_zero_mean_unit_std():
    X = np.random.default_rng(4).normal([0.0, 100.0], [1.0, 1000.0], size=(500, 2))
    Z = standardize(X).transform(X, np.float64)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_gives_requested_dtype(dtype):
    X = np.arange(12, dtype=dtype).reshape(4, 3)
    Z = standardize(X).transform(X, np.dtype(dtype))
    assert Z.dtype == dtype
    assert Z.flags.c_contiguous


def test_transform_in_place_equals_copy():
    X = np.random.default_rng(9).normal(3.0, 7.0, size=(300, 4))
    prep = Preprocessing.fit(X)
    copy = prep.transform(X, np.float64)
    in_place = prep.transform(X, np.float64, out=X)
    assert in_place is X
    assert copy.tobytes() == X.tobytes()


def test_inverse_centroids_round_trip():
    X = np.random.default_rng(6).normal(3.0, 7.0, size=(50, 4))
    prep = standardize(X)
    restored = prep.inverse_centroids(prep.transform_centroids(X[:5]))
    assert restored.dtype == np.float64
    np.testing.assert_allclose(restored, X[:5], rtol=1e-13)


@pytest.mark.parametrize("magnitude", [1e-150, 1.0, 1e150])
def test_unit_scale_is_power_of_two(magnitude):
    X = np.random.default_rng(7).normal(size=(100, 3)) * magnitude
    prep = Preprocessing.fit(X)
    exponent = np.log2(prep.scale[0])
    assert exponent == np.round(exponent)
    assert np.all(prep.scale == prep.scale[0])
    assert 0.25 < np.abs(prep.transform(X, np.float64)).std() < 4


def test_unit_scale_keeps_distance_ratios_exact():
    X = np.random.default_rng(8).normal(size=(10, 2)) * 1e150
    working = Preprocessing.fit(X).transform(X, np.float64)
    raw = ((X[0] - X[1]) / 2.0**500) ** 2
    scaled = (working[0] - working[1]) ** 2
    assert raw.sum() / scaled.sum() == pytest.approx((Preprocessing.fit(X).scale[0] / 2.0**500) ** 2, rel=1e-12)


def test_dict_round_trip_is_exact():
    X = np.random.default_rng(8).normal(size=(20, 3)) * [1.0, 1e-7, 1e9]
    prep = standardize(X)
    restored = Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())), 3)
    assert restored.offset.tolist() == prep.offset.tolist()
    assert restored.scale.tolist() == prep.scale.tolist()
    assert restored.standardize


@pytest.mark.parametrize(
    "data",
    [
        {"offset": [1.0], "standardize": True},
        {"offset": [1.0, 2.0], "scale": [1.0], "standardize": True},
        {"offset": ["a"], "scale": [1.0], "standardize": True},
        {"offset": [1.0], "scale": [0.0], "standardize": True},
        {"offset": [float("nan")], "scale": [1.0], "standardize": True},
    ],
)
def test_from_invalid_dict_raises(data):
    with pytest.raises(ModelError, match="preprocessing"):
        Preprocessing.from_dict(data, 1)


@pytest.mark.parametrize("shape", [(0, 3), (1, 3), (7, 2), (129, 2), (1000, 32), (8193, 32), (100, 300), (5, 1)])
def test_column_extremes_match_numpy(shape):
    block = np.random.default_rng(0).normal(size=shape)

    low, high = column_extremes(block)

    expected_low = block.min(axis=0) if shape[0] else np.full(shape[1], np.inf)
    expected_high = block.max(axis=0) if shape[0] else np.full(shape[1], -np.inf)
    np.testing.assert_array_equal(low, expected_low, err_msg=f"minimum of a {shape} block")
    np.testing.assert_array_equal(high, expected_high, err_msg=f"maximum of a {shape} block")
