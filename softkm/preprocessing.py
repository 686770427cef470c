"""The affine map between the user's units and the engine's working units.

The engine never computes on the raw features. Every row is first mapped to
``(x - offset) / scale`` in float64 and then cast to the working dtype:

- ``offset`` is the (weighted) mean of each feature. Centring removes the offset that
  makes the expansion ``|x|^2 - 2 x.c + |c|^2`` cancel catastrophically in float32.
- ``scale`` is either each feature's standard deviation (``standardize=True``, a
  z-score) or one power of two shared by all features, close to the data's overall
  standard deviation. A power of two changes no digit of any value and scales every
  squared distance by the same exact factor, so the clusters are those of the raw
  data; it only keeps values near 1 so that data around 1e150 or 1e-150 cannot
  overflow or underflow when squared.

``fit`` and ``assign`` apply the same elementwise map, so the same input row always
becomes the same working row, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from softkm.errors import InputError, ModelError
from softkm.kernels import chunk_slices
from softkm.parallel import parallel_map

# The float64 copy of a block holds at most this many entries (2 MiB).
_TRANSFORM_ENTRIES = 1 << 18


# Columns with values beyond this magnitude are scaled down before they are summed.
_HUGE_MAGNITUDE = 2.0**500
# A block's column extremes are taken over rows of at least this many entries (see
# ``column_extremes``).
_EXTREMES_ROW_ENTRIES = 256


def _transform_rows(n_features: int) -> int:
    """Return the rows per block for a float64 temporary of at most _TRANSFORM_ENTRIES."""
    return max(1, _TRANSFORM_ENTRIES // max(n_features, 1))

# Powers of two whose square is a normal float64 number: 2**-1022 to below 2**1024.
SQUARED_UNIT_RANGE = (2.0**-511, 2.0**511)


@dataclass(frozen=True)
class Preprocessing:
    """Per-feature ``offset`` and ``scale`` (both (n_features,) float64)."""

    offset: np.ndarray
    scale: np.ndarray
    standardize: bool

    @classmethod
    def fit(
        cls, X: np.ndarray, sample_weight: np.ndarray | None = None, standardize: bool = False
    ) -> "Preprocessing":
        """Compute the map from X (n_samples, n_features), chunk by chunk in float64."""
        mean, std = weighted_moments(X, sample_weight)
        return cls.from_moments(mean, std, standardize)

    @classmethod
    def from_moments(cls, mean: np.ndarray, std: np.ndarray, standardize: bool) -> "Preprocessing":
        """Build the map from each feature's weighted mean and standard deviation (n_features,)."""
        if standardize:
            # A column whose spread is at rounding level of its mean is constant: scale 1
            # leaves it at 0 after centring instead of blowing rounding noise up to 1.
            constant = std <= 1e-12 * np.maximum(np.abs(mean), np.finfo(np.float64).tiny)
            scale = np.where(constant | (std == 0), 1.0, std)
        else:
            overall = root_mean_square(std)
            unit = 2.0 ** np.round(np.log2(overall)) if overall > 0 and np.isfinite(overall) else 1.0
            if overall <= 1e-12 * float(np.max(np.abs(mean))):
                # Constant data whose spread is rounding noise of the mean: the noise need
                # not be resolved, so the unit is only kept inside the safe range.
                unit = float(np.clip(unit, *SQUARED_UNIT_RANGE))
            _check_squared_unit(unit, overall)
            scale = np.full(mean.shape[0], unit)
        return cls(mean, scale, standardize)

    @property
    def squared_unit(self) -> float:
        """The factor from working-unit squared distances to the user's units.

        It is exact (a power of two) without standardisation. With standardisation the
        fit's own space is the z-scored one, so squared distances are reported there (1).
        """
        return 1.0 if self.standardize else float(self.scale[0]) ** 2

    def transform(self, X: np.ndarray, dtype: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
        """Map X (n_samples, n_features) to working units in ``dtype``.

        ``out`` may be X itself when X already has ``dtype``: the map is elementwise, so
        transforming in place saves a copy of the data.
        """
        if out is None:
            out = np.empty(X.shape, dtype=dtype)

        def transform_rows(rows: slice) -> None:
            block = X[rows].astype(np.float64)
            block -= self.offset
            block /= self.scale
            out[rows] = block

        for _ in parallel_map(transform_rows, chunk_slices(X.shape[0], _transform_rows(X.shape[1]))):
            pass
        return out

    def transform_centroids(self, centroids: np.ndarray) -> np.ndarray:
        """Map centroids (n_clusters, n_features) from user units to working units (float64)."""
        return (np.asarray(centroids, dtype=np.float64) - self.offset) / self.scale

    def inverse_centroids(self, centroids: np.ndarray) -> np.ndarray:
        """Map centroids (n_clusters, n_features) from working units back to user units."""
        return np.asarray(centroids, dtype=np.float64) * self.scale + self.offset

    def to_dict(self) -> dict:
        return {
            "standardize": self.standardize,
            "offset": [float(v) for v in self.offset],
            "scale": [float(v) for v in self.scale],
        }

    @classmethod
    def from_dict(cls, data: dict, n_features: int) -> "Preprocessing":
        """Read the map from a model file, checking its shape and values."""
        try:
            offset = np.asarray(data["offset"], dtype=np.float64)
            scale = np.asarray(data["scale"], dtype=np.float64)
            standardize = bool(data["standardize"])
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"model preprocessing is invalid ({error}); refit the model") from None
        if offset.shape != (n_features,) or scale.shape != (n_features,):
            raise ModelError(
                f"model preprocessing has {offset.size} offsets and {scale.size} scales for "
                f"{n_features} features; refit the model"
            )
        if not (np.all(np.isfinite(offset)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ModelError("model preprocessing contains non-finite or non-positive values; refit the model")
        return cls(offset, scale, standardize)


def _check_squared_unit(unit: float, spread: float) -> None:
    """Raise InputError when squared distances in user units leave the normal float64 range.

    Inertia and temperatures are reported in squared user units, which are ``unit**2``
    times the working units. Beyond 2**±511 that factor overflows to inf or loses its
    digits in subnormal numbers, so the reported numbers would be wrong.
    """
    if SQUARED_UNIT_RANGE[0] <= unit <= SQUARED_UNIT_RANGE[1]:
        return
    direction = "overflow" if unit > 1 else "underflow"
    fix = "divide" if unit > 1 else "multiply"
    raise InputError(
        f"the features have a standard deviation of about {spread:.1e}, so squared distances would "
        f"{direction} in float64; {fix} the features by a constant factor or pass --standardize"
    )


def weighted_moments(X: np.ndarray, sample_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Return the weighted mean and standard deviation of each column of X.

    Both are (n_features,) float64. The deviations are divided by a power of two near
    each column's largest deviation before squaring, so values up to the float64 limit
    neither overflow nor underflow, and squaring deviations from a first-pass mean
    avoids the cancellation of ``E[x^2] - E[x]^2``.
    """
    n_samples, n_features = X.shape
    total_weight = float(n_samples if sample_weight is None else sample_weight.sum())
    if n_samples == 0 or total_weight <= 0:
        return np.zeros(n_features), np.zeros(n_features)

    slices = chunk_slices(n_samples, _transform_rows(n_features))

    def weighted_sum(rows: slice, block: np.ndarray) -> np.ndarray:
        row_weights = np.ones(block.shape[0]) if sample_weight is None else sample_weight[rows]
        return row_weights @ block

    # The first pass takes each column's extremes and sum together. Column reductions
    # along axis 0 pay a per-row overhead in NumPy when there are few columns, so the
    # sums are matrix-vector products and the extremes are folded (column_extremes).
    def first_pass(rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        block = X[rows].astype(np.float64)
        low, high = column_extremes(block)
        return low, high, weighted_sum(rows, block)

    smallest = np.full(n_features, np.inf)
    largest_value = np.full(n_features, -np.inf)
    mean = np.zeros(n_features)
    for low, high, total in parallel_map(first_pass, slices):
        smallest = np.minimum(smallest, low)
        largest_value = np.maximum(largest_value, high)
        mean += total

    # Sums of values near the float64 limit overflow, so a column with such values is
    # divided by a power of two (exact) before it is summed, and the moments are scaled
    # back at the end. Such columns are summed again.
    magnitude = np.maximum(np.abs(smallest), np.abs(largest_value)).astype(np.float64)
    huge = magnitude > _HUGE_MAGNITUDE
    column_scale = np.where(huge, 2.0 ** np.floor(np.log2(np.where(huge, magnitude, 1.0))), 1.0)
    scaled = bool(huge.any())

    def scaled_block(rows: slice) -> np.ndarray:
        block = X[rows].astype(np.float64)
        if scaled:
            block /= column_scale
        return block

    if scaled:
        mean = np.zeros(n_features)
        for total in parallel_map(lambda rows: weighted_sum(rows, scaled_block(rows)), slices):
            mean += total
    mean /= total_weight

    # The largest |x - mean| of a column is at its minimum or its maximum, and the
    # subtraction is the same float64 operation as for each element.
    largest = np.maximum(largest_value / column_scale - mean, mean - smallest / column_scale)
    unit = np.where(largest > 0, 2.0 ** np.round(np.log2(np.where(largest > 0, largest, 1.0))), 1.0)

    def second_pass(rows: slice) -> np.ndarray:
        block = scaled_block(rows)
        block -= mean
        block /= unit
        block *= block
        return weighted_sum(rows, block)

    variance = np.zeros(n_features)
    for total in parallel_map(second_pass, slices):
        variance += total
    variance /= total_weight
    return mean * column_scale, unit * np.sqrt(variance) * column_scale


def column_extremes(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the minimum and maximum of each column of a C-contiguous block (m, d).

    NumPy reduces along axis 0 one row at a time, at a cost per row that dominates
    when rows are short: about 1 ns per entry at 32 columns, against 0.2 ns at 256
    (NumPy 2.4, x86-64). So ``f`` consecutive rows are viewed as one row of ``f d``
    entries, reduced, and the ``f`` partial results folded into d columns. Extremes
    are exact, so the result does not depend on the folding.
    """
    n_rows, n_features = block.shape
    fold = max(1, _EXTREMES_ROW_ENTRIES // max(n_features, 1))
    whole = n_rows - n_rows % fold
    low = np.full(n_features, np.inf)
    high = np.full(n_features, -np.inf)
    if whole:
        wide = block[:whole].reshape(whole // fold, fold * n_features)
        low = wide.min(axis=0).reshape(fold, n_features).min(axis=0)
        high = wide.max(axis=0).reshape(fold, n_features).max(axis=0)
    if whole < n_rows:
        low = np.minimum(low, block[whole:].min(axis=0))
        high = np.maximum(high, block[whole:].max(axis=0))
    return low, high


def root_mean_square(values: np.ndarray) -> float:
    """Return ``sqrt(mean(values^2))`` without overflow for values up to the float64 limit."""
    largest = float(np.max(np.abs(values))) if values.size else 0.0
    if largest == 0 or not np.isfinite(largest):
        return largest
    return largest * float(np.sqrt(np.mean((values / largest) ** 2)))


@dataclass(frozen=True)
class DataMoments:
    """Per-feature moments (n_features,) float64 of a whole data set, from one pass.

    ``mean`` and ``std`` are weighted by the sample weights, ``unweighted_std`` is not.
    ``n_samples`` is the number of rows they describe.
    """

    mean: np.ndarray
    std: np.ndarray
    unweighted_std: np.ndarray
    n_samples: int


@dataclass
class MomentSums:
    """Weight, mean and scaled sum of squared deviations of some rows, mergeable in any grouping.

    The sum of squared deviations is ``unit^2 * scaled_squares`` per feature, with
    ``unit`` a power of two near the largest deviation, so that values up to the
    float64 limit neither overflow nor underflow when squared. Two parts merge through
    the difference of their means, ``M2 = M2_a + M2_b + delta^2 w_a w_b / (w_a + w_b)``,
    which avoids the cancellation of ``E[x^2] - E[x]^2``.
    """

    weight: float
    mean: np.ndarray
    unit: np.ndarray
    scaled_squares: np.ndarray

    @classmethod
    def of_block(cls, X: np.ndarray, sample_weight: np.ndarray | None) -> "MomentSums":
        """Return the moments of the rows of X (n_rows, n_features), computed in float64."""
        n_features = X.shape[1]
        weight = float(X.shape[0] if sample_weight is None else sample_weight.sum())
        if weight <= 0:
            return cls(0.0, np.zeros(n_features), np.ones(n_features), np.zeros(n_features))
        block = X.astype(np.float64)
        mean = (block.sum(axis=0) if sample_weight is None else sample_weight @ block) / weight
        block -= mean
        unit = _power_of_two_near(np.abs(block).max(axis=0))
        block /= unit
        block *= block
        scaled = block.sum(axis=0) if sample_weight is None else sample_weight @ block
        return cls(weight, mean, unit, scaled)

    def merge(self, other: "MomentSums") -> "MomentSums":
        """Return the moments of both parts' rows together."""
        if other.weight <= 0:
            return self
        if self.weight <= 0:
            return other
        weight = self.weight + other.weight
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.weight / weight)
        unit = np.maximum(np.maximum(self.unit, other.unit), _power_of_two_near(np.abs(delta)))
        between = (delta / unit) ** 2 * (self.weight * other.weight / weight)
        scaled = (
            self.scaled_squares * (self.unit / unit) ** 2 + other.scaled_squares * (other.unit / unit) ** 2 + between
        )
        return MomentSums(weight, mean, unit, scaled)

    @property
    def std(self) -> np.ndarray:
        """The weighted standard deviation of each feature (n_features,)."""
        if self.weight <= 0:
            return np.zeros_like(self.mean)
        return self.unit * np.sqrt(self.scaled_squares / self.weight)


def _power_of_two_near(values: np.ndarray) -> np.ndarray:
    """Return 2^round(log2 v) for each positive value, and 1 where the value is 0."""
    positive = values > 0
    return np.where(positive, 2.0 ** np.round(np.log2(np.where(positive, values, 1.0))), 1.0)
