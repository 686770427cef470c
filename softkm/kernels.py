"""Chunked distance, assignment and sufficient-statistics kernels.

Every kernel here works on one chunk of rows at a time and returns statistics that
add up across chunks: per-cluster weighted sums ``(n_clusters, n_features)``,
per-cluster weights ``(n_clusters,)`` and objective terms. The same kernel can
therefore run over an in-memory array, a stream of row groups, or the partitions
of a distributed engine, with a reduction at the end.

Squared distances use the expansion ``|x|^2 - 2 x.c + |c|^2`` with one matrix
product per chunk, clamped at zero. The expansion loses precision when the points
are far from the origin relative to their spread. The callers therefore centre the
data first (see ``softkm.preprocessing``), which bounds the cancellation by the
spread of the data instead of its offset. All sums across chunks are kept in
float64 whatever the data dtype.

The private functions assume valid, C-contiguous input of one floating dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A chunk's distance block is (chunk_rows, n_clusters); this many float64 entries
# (2 MiB) keeps it within a typical L2 cache while amortising the per-chunk overhead.
_BLOCK_ENTRIES = 1 << 18
_MIN_CHUNK_ROWS = 256


def chunk_rows(n_samples: int, n_clusters: int, chunk_size: int | None = None) -> int:
    """Return the number of rows per chunk for a distance block of n_clusters columns."""
    if chunk_size is not None:
        return max(1, min(chunk_size, max(n_samples, 1)))
    rows = _BLOCK_ENTRIES // max(n_clusters, 1)
    if rows < _MIN_CHUNK_ROWS and _MIN_CHUNK_ROWS * n_clusters <= _BLOCK_ENTRIES:
        rows = _MIN_CHUNK_ROWS
    return max(1, min(rows, max(n_samples, 1)))


def chunk_slices(n_samples: int, rows: int) -> list[slice]:
    """Split range(n_samples) into consecutive slices of at most ``rows`` rows."""
    return [slice(start, min(start + rows, n_samples)) for start in range(0, n_samples, rows)]


def row_norms_squared(X: np.ndarray) -> np.ndarray:
    """Return ``|x|^2`` for every row of X (n_samples, n_features), in X's dtype."""
    return np.einsum("ij,ij->i", X, X)


@dataclass
class ChunkStats:
    """Sufficient statistics of one chunk (or of several, once added together).

    ``sums`` (n_clusters, n_features) and ``weights`` (n_clusters,) are float64. For hard
    assignment they are the weighted sums and weights of the points in each cluster. For
    the relaxed modes they are ``G^T X`` and the column sums of ``G``, the gradient
    weights defined in ``relaxed_chunk``. ``objective`` is the chunk's weighted objective
    (not yet divided by the total weight) and ``inertia`` its weighted hard inertia.
    ``mass`` (n_clusters,) is the weighted total membership of each cluster in the
    relaxed modes, None in hard mode.
    """

    sums: np.ndarray
    weights: np.ndarray
    objective: float = 0.0
    inertia: float = 0.0
    mass: np.ndarray | None = None

    @classmethod
    def zeros(cls, n_clusters: int, n_features: int) -> "ChunkStats":
        return cls(np.zeros((n_clusters, n_features)), np.zeros(n_clusters))

    def add(self, other: "ChunkStats") -> None:
        """Add another chunk's statistics to these, in place."""
        self.sums += other.sums
        self.weights += other.weights
        self.objective += other.objective
        self.inertia += other.inertia
        if other.mass is not None:
            self.mass = other.mass.copy() if self.mass is None else self.mass + other.mass


def distance_block(
    X: np.ndarray, x_squared_norms: np.ndarray, centroids: np.ndarray, c_squared_norms: np.ndarray
) -> np.ndarray:
    """Return squared Euclidean distances (n_rows, n_clusters), clamped at zero.

    X (n_rows, n_features) and centroids (n_clusters, n_features) share one dtype.
    """
    distances = X @ centroids.T  # (m, k)
    distances *= -2.0
    distances += c_squared_norms
    distances += x_squared_norms[:, None]
    np.maximum(distances, 0.0, out=distances)
    return distances


def assign_chunk(
    X: np.ndarray, x_squared_norms: np.ndarray, centroids: np.ndarray, c_squared_norms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels (n_rows,) int64, squared distance to the nearest centroid (n_rows,)).

    Ties go to the lowest cluster index, as ``np.argmin`` returns the first minimum.
    """
    scores = X @ centroids.T  # (m, k)
    scores *= -2.0
    scores += c_squared_norms
    labels = np.argmin(scores, axis=1)
    nearest = np.take_along_axis(scores, labels[:, None], axis=1)[:, 0]
    nearest += x_squared_norms
    np.maximum(nearest, 0.0, out=nearest)
    return labels, nearest


def cluster_sums(
    X: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray | None, n_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return per-cluster weighted sums (n_clusters, n_features) and weights (n_clusters,).

    Both are float64. The rows are sorted by label once and each cluster's block is
    reduced with ``np.add.reduceat``, which costs O(n_rows * n_features) instead of the
    O(n_rows * n_clusters * n_features) of a one-hot matrix product.
    """
    n_features = X.shape[1]
    sums = np.zeros((n_clusters, n_features))
    if sample_weight is None:
        weights = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    else:
        weights = np.bincount(labels, weights=sample_weight, minlength=n_clusters)
    if len(labels) == 0:
        return sums, weights

    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    rows = X[order]
    if sample_weight is not None:
        rows = rows * sample_weight[order, None].astype(X.dtype)
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sums[sorted_labels[starts]] = np.add.reduceat(rows, starts, axis=0, dtype=np.float64)
    return sums, weights


def hard_chunk(
    X: np.ndarray,
    x_squared_norms: np.ndarray,
    sample_weight: np.ndarray | None,
    centroids: np.ndarray,
    c_squared_norms: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, ChunkStats]:
    """Assign one chunk to its nearest centroids and return its Lloyd statistics.

    Returns labels (n_rows,), squared distance to the nearest centroid (n_rows,) and a
    ``ChunkStats`` whose ``sums`` and ``weights`` give the new centroids after reduction.
    """
    labels, nearest = assign_chunk(X, x_squared_norms, centroids, c_squared_norms)
    sums, weights = cluster_sums(X, labels, sample_weight, centroids.shape[0])
    if sample_weight is None:
        inertia = float(nearest.sum(dtype=np.float64))
    else:
        inertia = float(np.dot(nearest.astype(np.float64), sample_weight))
    return labels, nearest, ChunkStats(sums, weights, inertia, inertia)


def log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Return ``log softmax`` of every row of logits (n_rows, n_clusters), in place.

    Subtracting the row maximum first keeps every exponent <= 0, so no row can overflow
    and the largest entry of each row contributes exp(0) = 1 to its normaliser.
    """
    logits -= logits.max(axis=1, keepdims=True)
    normaliser = np.log(np.exp(logits).sum(axis=1, keepdims=True))
    logits -= normaliser
    return logits


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Return ``softmax`` of every row of logits (n_rows, n_clusters), in place.

    Every row sums to 1 and contains no NaN, whatever the magnitude of the logits,
    because the maximum is subtracted before the exponential (its term is exactly 1).
    """
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def relaxed_chunk(
    X: np.ndarray,
    x_squared_norms: np.ndarray,
    sample_weight: np.ndarray | None,
    centroids: np.ndarray,
    c_squared_norms: np.ndarray,
    temperature: float,
    noise: np.ndarray | None = None,
    straight_through: bool = False,
    return_responsibilities: bool = False,
) -> tuple[ChunkStats, np.ndarray | None]:
    """Return the relaxed objective of one chunk and the statistics of its gradient.

    With ``d_xc`` the squared distances, ``T`` the absolute temperature and ``g`` an
    optional noise (n_rows, n_clusters) already divided by the temperature's
    dimensionless factor, the memberships are ``p_xc = softmax_c(-d_xc / T + g_xc)``
    (soft mode has ``g = 0``; Gumbel-softmax has ``g = Gumbel / tau``). The objective is
    ``L = sum_x w_x sum_c p_xc d_xc``. Because ``p`` depends on the centroids through
    ``d``, the chain rule gives ``dL/dd_xj = w_x p_xj (1 - (d_xj - dbar_x) / T)`` with
    ``dbar_x = sum_c p_xc d_xc``, and ``dd_xj/dc_j = 2 (c_j - x)``. Writing
    ``G_xj = dL/dd_xj``, the gradient is therefore::

        dL/dc_j = 2 (c_j * sum_x G_xj - sum_x G_xj x) = 2 (c_j * weights_j - sums_j)

    and the returned ``ChunkStats`` contains ``sums = G^T X`` (n_clusters, n_features)
    and ``weights = G^T 1`` (n_clusters,), so the gradient needs one more matrix
    product per chunk and no loop over points or clusters.

    With ``straight_through`` the forward pass uses the one-hot ``h`` of the row
    argmax of ``p``, so the objective is ``sum_x w_x d_x,argmax``, and the backward
    pass uses the gradient of ``p``: ``G_xj = w_x (h_xj - p_xj (d_xj - dbar_x) / T)``,
    the derivative of ``sum_c (h_c - stop(p_c) + p_c) d_c``.

    The statistics' ``inertia`` is the weighted hard inertia of the current centroids.
    The second return value is ``p`` (n_rows, n_clusters) when requested, else None.
    """
    shifted = distance_block(X, x_squared_norms, centroids, c_squared_norms)  # (m, k)
    nearest = shifted.min(axis=1)  # (m,)
    # Distances relative to the nearest centroid keep the logits <= 0 and avoid the
    # cancellation of subtracting two large distances later on.
    shifted -= nearest[:, None]

    memberships = membership_logits(shifted, temperature)  # (m, k)
    if noise is not None:
        memberships += noise
    softmax_rows(memberships)
    mean_shifted = np.einsum("ij,ij->i", memberships, shifted)  # (m,) dbar_x - nearest_x

    if straight_through:
        winners = np.argmax(memberships, axis=1)
        row_objective = nearest + np.take_along_axis(shifted, winners[:, None], axis=1)[:, 0]
    else:
        row_objective = nearest + mean_shifted

    # G = p * (1 - (d - dbar) / T), built in place in the distance buffer. The ratio is
    # clipped to the finite range so that a membership of exactly 0 times an overflowed
    # ratio gives 0, not NaN.
    gradient_weights = shifted
    gradient_weights -= mean_shifted[:, None]
    gradient_weights /= temperature
    limit = np.finfo(gradient_weights.dtype).max
    np.clip(gradient_weights, -limit, limit, out=gradient_weights)
    if straight_through:
        gradient_weights *= memberships
        gradient_weights *= -1.0
        gradient_weights[np.arange(len(winners)), winners] += 1.0
    else:
        np.subtract(1.0, gradient_weights, out=gradient_weights)
        gradient_weights *= memberships

    if sample_weight is not None:
        gradient_weights *= sample_weight[:, None].astype(gradient_weights.dtype)
        objective = float(np.dot(row_objective.astype(np.float64), sample_weight))
        inertia = float(np.dot(nearest.astype(np.float64), sample_weight))
        mass = sample_weight @ memberships.astype(np.float64)
    else:
        objective = float(row_objective.sum(dtype=np.float64))
        inertia = float(nearest.sum(dtype=np.float64))
        mass = memberships.sum(axis=0, dtype=np.float64)

    sums = (gradient_weights.T @ X).astype(np.float64)  # (k, d)
    weights = gradient_weights.sum(axis=0, dtype=np.float64)  # (k,)
    stats = ChunkStats(sums, weights, objective, inertia, mass)
    return stats, (memberships if return_responsibilities else None)


def membership_logits(shifted: np.ndarray, temperature: float) -> np.ndarray:
    """Return ``-shifted / T`` as a new array, for distances shifted so each row's minimum is 0.

    Dividing (instead of multiplying by 1/T) keeps ``0 / T`` at 0 even when 1/T would
    overflow, so every row keeps one logit equal to 0 and its softmax is defined.
    """
    logits = np.divide(shifted, temperature)
    logits *= -1.0
    return logits


def responsibilities_chunk(
    X: np.ndarray,
    x_squared_norms: np.ndarray,
    centroids: np.ndarray,
    c_squared_norms: np.ndarray,
    temperature: float,
) -> np.ndarray:
    """Return soft memberships ``softmax(-d / T)`` (n_rows, n_clusters) of one chunk."""
    shifted = distance_block(X, x_squared_norms, centroids, c_squared_norms)
    shifted -= shifted.min(axis=1, keepdims=True)
    return softmax_rows(membership_logits(shifted, temperature))


def uniform_open(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Draw float64 uniforms strictly inside (0, 1).

    Each value is ``(i + 0.5) * 2^-52`` for a random 52-bit integer ``i``, so the smallest
    is 2^-53 and the largest 1 - 2^-53: both ``log(u)`` and ``log(-log(u))`` are finite.
    """
    integers = rng.integers(0, 1 << 52, size=shape, dtype=np.int64)
    return (integers.astype(np.float64) + 0.5) * (2.0**-52)


def gumbel_noise(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Draw standard Gumbel noise ``-log(-log u)`` (shape) in the given dtype.

    The values lie in about [-3.6, 36.7] and are computed in float64, so the cast to
    float32 can neither overflow nor produce log(0).
    """
    u = uniform_open(rng, shape)
    return (-np.log(-np.log(u))).astype(dtype, copy=False)
