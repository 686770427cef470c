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

import math
from dataclasses import dataclass

import numpy as np

# A distance block is (block_rows, n_clusters); this many entries (2 MiB in float64)
# keep it within a typical L2 cache while amortising the per-block overhead.
_BLOCK_ENTRIES = 1 << 18
_MIN_BLOCK_ROWS = 256
# A chunk, the unit of work handed to a thread, spans one or more distance blocks. The
# per-cluster sums cost a fixed overhead per chunk and cluster, so chunks are made
# larger than a block where the data allows. A chunk contains at most this many entries
# of X, and a data set splits into at least _MIN_CHUNKS chunks for the threads.
_CHUNK_ENTRIES = 1 << 19
_MIN_CHUNKS = 8


def block_rows(n_clusters: int) -> int:
    """Return the number of rows of a distance block with n_clusters columns."""
    rows = _BLOCK_ENTRIES // max(n_clusters, 1)
    if rows < _MIN_BLOCK_ROWS and _MIN_BLOCK_ROWS * n_clusters <= _BLOCK_ENTRIES:
        rows = _MIN_BLOCK_ROWS
    return max(1, rows)


def chunk_rows(n_samples: int, n_clusters: int, chunk_size: int | None = None, n_features: int = 1) -> int:
    """Return the number of rows per chunk.

    The result depends only on the data's shape (never on the number of threads), so
    the order of every floating-point sum, and hence the result, is fixed by the data.
    """
    if chunk_size is not None:
        return max(1, min(chunk_size, max(n_samples, 1)))
    block = block_rows(n_clusters)
    largest = max(block, _CHUNK_ENTRIES // max(n_features, 1))
    rows = min(largest, max(block, -(-n_samples // _MIN_CHUNKS)))
    return max(1, min(rows, max(n_samples, 1)))


def chunk_slices(n_samples: int, rows: int) -> list[slice]:
    """Split range(n_samples) into consecutive slices of at most ``rows`` rows."""
    return [slice(start, min(start + rows, n_samples)) for start in range(0, n_samples, rows)]


# Up to this many features, row norms are summed column by column. einsum's per-row
# overhead made it about 3 times slower on 2 features (NumPy 2.4, x86-64). With one
# or two terms both compute the same rounded products and sum, so the bits agree.
_COLUMNWISE_NORM_MAX_FEATURES = 2


def row_norms_squared(X: np.ndarray) -> np.ndarray:
    """Return ``|x|^2`` for every row of X (n_samples, n_features), in X's dtype."""
    if 1 <= X.shape[1] <= _COLUMNWISE_NORM_MAX_FEATURES:
        norms = X[:, 0] * X[:, 0]
        for column in range(1, X.shape[1]):
            norms += X[:, column] * X[:, column]
        return norms
    return np.einsum("ij,ij->i", X, X)


def squared_residuals(X: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return ``|x - c_label|^2`` (n_rows,) float64, computed directly in float64.

    Unlike the expansion ``|x|^2 - 2 x.c + |c|^2`` this carries no cancellation error.
    The float64 copy is made one block of rows at a time, so the temporary stays small.
    """
    out = np.empty(X.shape[0])
    rows_per_block = max(1, _BLOCK_ENTRIES // max(X.shape[1], 1))
    for rows in chunk_slices(X.shape[0], rows_per_block):
        residual = X[rows].astype(np.float64)  # (m, d)
        residual -= np.take(centroids, labels[rows], axis=0)
        out[rows] = row_norms_squared(residual)
    return out


@dataclass
class FarthestRows:
    """The rows farthest from their nearest centroid, farthest first (ties: lowest row).

    ``rows`` (q,) are row indices in the whole source, ``points`` (q, n_features) float64
    working units and ``distances`` (q,) float64 the squared distance of each to its
    nearest centroid, in the data dtype's precision. ``max_squared_norm`` is the largest
    ``|x|^2`` of all rows seen, not only of the q kept ones.
    """

    rows: np.ndarray
    points: np.ndarray
    distances: np.ndarray
    max_squared_norm: float

    @classmethod
    def select(
        cls, first_row: int, X: np.ndarray, x_squared_norms: np.ndarray, nearest: np.ndarray, count: int
    ) -> "FarthestRows":
        """Keep the ``count`` rows of X (n_rows, n_features) with the largest ``nearest`` (n_rows,).

        The cost is O(n_rows) plus the copy of the kept rows: a partition finds the
        count-th largest distance, and rows tied with it are kept lowest index first.
        """
        distances = nearest.astype(np.float64)
        n_rows = len(distances)
        if count < n_rows:
            threshold = np.partition(distances, n_rows - count)[n_rows - count]
            above = np.flatnonzero(distances > threshold)
            tied = np.flatnonzero(distances == threshold)[: count - len(above)]
            selected = np.concatenate([above, tied])
        else:
            selected = np.arange(n_rows)
        selected = selected[np.lexsort((selected, -distances[selected]))]
        return cls(
            first_row + selected,
            X[selected].astype(np.float64),
            distances[selected],
            float(x_squared_norms.max(initial=0.0)),
        )

    def merge(self, other: "FarthestRows", count: int) -> "FarthestRows":
        """Return the ``count`` farthest rows of both, in the same order as ``select``."""
        rows = np.concatenate([self.rows, other.rows])
        distances = np.concatenate([self.distances, other.distances])
        order = np.lexsort((rows, -distances))[:count]
        return FarthestRows(
            rows[order],
            np.concatenate([self.points, other.points])[order],
            distances[order],
            max(self.max_squared_norm, other.max_squared_norm),
        )


@dataclass
class ChunkStats:
    """Sufficient statistics of one chunk (or of several, once added together).

    ``sums`` (n_clusters, n_features) and ``weights`` (n_clusters,) are float64. For hard
    assignment they are the weighted sums and weights of the points in each cluster. For
    the relaxed modes they are ``G^T X`` and the column sums of ``G``, the gradient
    weights defined in ``relaxed_chunk``. ``objective`` is the chunk's weighted objective
    (not yet divided by the total weight) and ``inertia`` its weighted hard inertia.
    ``mass`` (n_clusters,) is the weighted total membership of each cluster in the
    relaxed modes, None in hard mode. ``farthest``, when a relaxed pass was asked for
    it, contains up to n_clusters rows farthest from the pass's centroids, else None.
    """

    sums: np.ndarray
    weights: np.ndarray
    objective: float = 0.0
    inertia: float = 0.0
    mass: np.ndarray | None = None
    farthest: FarthestRows | None = None

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
        if other.farthest is not None:
            # The merge keeps a fixed order (distance, then row), so the result does
            # not depend on the order in which chunks are added.
            count = self.sums.shape[0]
            self.farthest = other.farthest if self.farthest is None else self.farthest.merge(other.farthest, count)

    def copy(self) -> "ChunkStats":
        """Return a copy whose arrays can be changed without changing these."""
        mass = None if self.mass is None else self.mass.copy()
        return ChunkStats(self.sums.copy(), self.weights.copy(), self.objective, self.inertia, mass, self.farthest)


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


# Up to this many clusters, the scores are laid out as (n_clusters, rows): NumPy's row
# maximum is vectorised along contiguous memory there, while its row argmax over so few
# entries pays a per-row overhead several times larger. Measured on one thread (NumPy
# 2.4, OpenBLAS 0.3.31, x86-64), the transposed layout assigned up to 5 times faster
# from 33 to 96 clusters (a few float64 cases were up to 1.1 times slower), and up to
# 1.2 times slower at 128.
_TRANSPOSED_MAX_CLUSTERS = 96


def assign_chunk(
    X: np.ndarray, x_squared_norms: np.ndarray, centroids: np.ndarray, c_squared_norms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels (n_rows,) int64, squared distance to the nearest centroid (n_rows,)).

    A row's label depends only on the row and the centroids, never on the other rows
    of X: where two centroids tie with the nearest one within the rounding of X's
    dtype (``tie_tolerance``), they are compared by ``|x - c|^2`` in float64, and equal
    distances go to the lowest cluster index. Such a row's nearest distance is that
    float64 one. The distances are computed one block of rows at a time.
    """
    labels, nearest, _ = _assign(X, x_squared_norms, centroids, c_squared_norms, second=False)
    return labels, nearest


def assign_two_nearest(
    X: np.ndarray, x_squared_norms: np.ndarray, centroids: np.ndarray, c_squared_norms: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return labels (n_rows,) int64 and squared distances to the nearest and second
    nearest centroids (n_rows,) each, in X's dtype.

    Labels and nearest distances are exactly those of ``assign_chunk``. With one
    centroid the second distance is inf.
    """
    return _assign(X, x_squared_norms, centroids, c_squared_norms, second=True)


# For d up to this, OpenBLAS 0.3.31 on one thread multiplies (k, d) by a contiguous
# (d, m) copy up to 3 times faster than by the transposed view of the (m, d) block.
# This was measured on x86-64 in float32 and float64. From d = 4 on, the copy costs more.
_COPY_TRANSPOSE_MAX_FEATURES = 3

# Measured on one thread (OpenBLAS 0.3.31, x86-64, float32 and float64): a (k, m) block
# times an (m, n) matrix took about one matrix-vector product's time per column for
# n <= 3, and 2 to 5 times longer from n = 4 on. The (k, n) x (n, m) product of the
# scores behaves alike: with n = 3 (two features and a row of ones) it ran 8 to 26%
# faster than with n = 2 plus a subtraction, and with n = 4 up to 22% slower.
_THIN_PRODUCT_MAX_COLUMNS = 3

# With S = |x|^2 + max |c|^2, the gap between two squared distances computed by the
# expansion |x|^2 - 2 x.c + |c|^2 (x.c a dot product of d terms, |c|^2 a sum of d
# squares) is within 2 (d + 1) eps S of the exact gap in the worst case, by the
# standard bound on the rounding of a dot product, and a gap of |x - c|^2 summed in
# float64 within 2 (d + 3) eps64 S. Two centroids closer than this many times
# (d + 2) eps S in squared distance are a near tie. Beyond it, both computations rank
# the two centroids as exact arithmetic does, even for float64 data.
TIE_MARGIN = 6.0


def tie_tolerance(dtype: np.dtype, n_features: int, x_squared_norms: np.ndarray, c_squared_norms: np.ndarray) -> np.ndarray:
    """Return, per row (n_rows,), the squared-distance gap below which two centroids tie.

    Beyond this gap, the expansion in ``dtype`` ranks the two centroids as exact
    arithmetic does, whatever rows share the matrix product. Below the smallest normal
    number ``tiny``, rounding errors are absolute (up to eps * tiny per operation)
    instead of relative, so ``tiny`` is added to the norms.
    """
    info = np.finfo(dtype)
    floor = float(c_squared_norms.max(initial=0.0)) + float(info.tiny)
    factor = TIE_MARGIN * (n_features + 2) * float(info.eps)
    tolerance = x_squared_norms + np.asarray(floor, dtype=x_squared_norms.dtype)
    tolerance *= factor
    return tolerance


def features_major(X: np.ndarray) -> np.ndarray:
    """Return X (m, d) as a (d, m) array: a contiguous copy for small d, else a view."""
    if X.shape[1] <= _COPY_TRANSPOSE_MAX_FEATURES:
        return np.ascontiguousarray(X.T)
    return X.T


class _AugmentedRows:
    """Scores ``x.c - |c|^2 / 2`` (k, m) of few-feature blocks from one matrix product.

    The block's features-major copy (see ``features_major``) gets a row of ones, and the
    centroids a column of ``-|c|^2 / 2``, so the product includes the subtraction and
    the block needs no pass of its own for it. The ones are written once per buffer.
    """

    def __init__(self, centroids: np.ndarray, half_norms: np.ndarray, max_rows: int) -> None:
        n_features = centroids.shape[1]
        self.centroids = np.empty((centroids.shape[0], n_features + 1), dtype=centroids.dtype)
        self.centroids[:, :n_features] = centroids
        self.centroids[:, n_features] = -half_norms
        self.rows = np.empty((n_features + 1, max_rows), dtype=centroids.dtype)  # (d + 1, m)
        self.rows[n_features] = 1.0

    def scores(self, X: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write the scores of X (m, d) into ``out`` (k, m) and return the (d, m) rows used."""
        n_rows, n_features = X.shape
        rows = self.rows[:, :n_rows]
        rows[:n_features] = X.T
        np.matmul(self.centroids, rows, out=out)
        return rows[:n_features]


def _assign(X, x_squared_norms, centroids, c_squared_norms, second: bool):
    """Return labels, nearest and (if ``second``) second-nearest squared distances.

    The rows whose best scores tie within ``tie_tolerance`` are settled by
    ``_nearest_candidates``.
    """
    # argmin_c |x|^2 - 2 x.c + |c|^2 = argmax_c x.c - |c|^2 / 2. Halving is exact, so
    # the scores are exactly -1/2 times the expansion without |x|^2, and this saves a
    # pass over the block.
    n_clusters, n_features = centroids.shape
    half_norms = 0.5 * c_squared_norms
    n_rows = X.shape[0]
    labels = np.empty(n_rows, dtype=np.int64)
    best = np.empty(n_rows, dtype=X.dtype)
    runner_up = np.full(n_rows, -np.inf, dtype=X.dtype) if second else None
    # Scores are half squared distances, so their tolerance is half that of the distances.
    half_tolerance = tie_tolerance(X.dtype, n_features, x_squared_norms, c_squared_norms)
    half_tolerance *= 0.5
    # The rows with a near tie and their candidate centroids (ties, k), block by block.
    tie_rows, tie_candidates = [], []
    transposed = n_clusters <= _TRANSPOSED_MAX_CLUSTERS
    # One score buffer serves every block (see _BlockWorkspace for why).
    rows_per_block = min(block_rows(n_clusters), max(n_rows, 1))
    buffer = np.empty(rows_per_block * n_clusters, dtype=X.dtype)
    augmented = None
    if transposed and n_features + 1 <= _THIN_PRODUCT_MAX_COLUMNS:
        augmented = _AugmentedRows(centroids, half_norms, rows_per_block)

    for rows in chunk_slices(n_rows, rows_per_block):
        size = (rows.stop - rows.start) * n_clusters
        if transposed:
            scores = buffer[:size].reshape(n_clusters, -1)  # (k, m)
            if augmented is not None:
                augmented.scores(X[rows], out=scores)
            else:
                np.matmul(centroids, features_major(X[rows]), out=scores)
                scores -= half_norms[:, None]
            block_best = scores.max(axis=0)
            # One hit per row, the best score, unless another score is within the
            # tolerance of it.
            hits = scores >= block_best - half_tolerance[rows]  # (k, m)
            block_labels, tied = _hit_labels(hits)
            candidates = hits[:, tied].T if len(tied) else None  # (ties, k)
            labels[rows] = block_labels
            best[rows] = block_best
            if second and n_clusters > 1:
                flat_index = block_labels * scores.shape[1]
                flat_index += np.arange(scores.shape[1])
                scores.reshape(-1)[flat_index] = -np.inf
                runner_up[rows] = scores.max(axis=0)
        else:
            scores = buffer[:size].reshape(-1, n_clusters)  # (m, k)
            np.matmul(X[rows], centroids.T, out=scores)
            scores -= half_norms
            block_labels = np.argmax(scores, axis=1)
            flat_index = np.arange(0, scores.size, n_clusters)
            flat_index += block_labels
            labels[rows] = block_labels
            block_best = scores.reshape(-1)[flat_index]
            best[rows] = block_best
            tied = np.empty(0, dtype=np.intp)
            candidates = None
            if n_clusters > 1:
                threshold = block_best - half_tolerance[rows]
                scores.reshape(-1)[flat_index] = -np.inf
                # NumPy vectorises argmax along short rows but not max, so reading
                # the entry at the argmax gives the maximum faster (about 3 times for
                # 64 float32 columns, NumPy 2.4 on x86-64).
                runner_index = flat_index - block_labels
                runner_index += np.argmax(scores, axis=1)
                block_runner_up = scores.reshape(-1)[runner_index]
                if second:
                    runner_up[rows] = block_runner_up
                tied = np.flatnonzero(block_runner_up >= threshold)
                if len(tied):
                    # (ties, k). The label's own entry is -inf now, so it is set here.
                    candidates = scores[tied] >= threshold[tied, None]
                    candidates[np.arange(len(tied)), block_labels[tied]] = True
        if len(tied):
            tie_rows.append(rows.start + tied)
            tie_candidates.append(candidates)

    nearest = x_squared_norms - 2.0 * best
    np.maximum(nearest, 0.0, out=nearest)
    second_nearest = None
    if second:
        second_nearest = x_squared_norms - 2.0 * runner_up
        np.maximum(second_nearest, 0.0, out=second_nearest)
    if tie_rows:
        # One call for all blocks: the rows with a near tie are few, so the per-call
        # overhead would dominate per block.
        tied_rows = np.concatenate(tie_rows)
        winners, distances = _nearest_candidates(
            np.take(X, tied_rows, axis=0), centroids.astype(np.float64), np.concatenate(tie_candidates)
        )
        labels[tied_rows] = winners
        nearest[tied_rows] = distances
        if second:
            # Another centroid ties with the nearest one, so the runner-up is as near.
            second_nearest[tied_rows] = distances
    return labels, nearest, second_nearest


def _nearest_candidates(X: np.ndarray, centroids: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return, for each row of X (n_tied, d), the nearest of its candidate centroids and
    the squared distance to it, both (n_tied,).

    ``candidates`` (n_tied, k) bool marks each row's centroids to compare, and
    ``centroids`` (k, d) are float64. Each distance is ``|x - c|^2`` in float64 from
    ``squared_residuals``, which sums each row on its own, so it does not depend on
    the other rows, and equal distances go to the lowest cluster index.

    NOTE: each candidate pair costs a float64 residual of d entries, far more per row
    than the matrix product. With many identical centroids every row ties with all of
    them: 20,000 x 256 rows against 256 equal centroids took about 1.7 s, against
    0.06 s for distinct ones.
    """
    pair_rows, pair_clusters = np.nonzero(candidates)
    distances = np.full(candidates.shape, np.inf)
    # The pairs are taken a part at a time, so the gathered rows stay block-sized.
    for part in chunk_slices(len(pair_rows), max(1, _BLOCK_ENTRIES // max(X.shape[1], 1))):
        rows = np.take(X, pair_rows[part], axis=0)  # (pairs, d)
        distances[pair_rows[part], pair_clusters[part]] = squared_residuals(rows, centroids, pair_clusters[part])
    winners = np.argmin(distances, axis=1)
    return winners, distances[np.arange(len(winners)), winners]


def _hit_labels(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return, for each column of ``hits`` (k, m) bool, the lowest row index that is True,
    and the columns with more than one True.

    Columns with no True (all scores NaN) get 0. Returns (m,) int64 and (ties,) intp.
    NumPy's argmax along axis 0 of a (k, m) block was about 10 times slower than this
    (NumPy 2.4, x86-64).
    """
    n_clusters = hits.shape[0]
    # With weights k + c, a column with one True at row c sums to k + c < 2k, and a
    # column with two or more sums to at least k + (k + 1) = 2k + 1. Even with every
    # entry True the sum is (3 k^2 - k) / 2, which must not wrap around.
    largest_code = (3 * n_clusters * n_clusters - n_clusters) // 2
    code_type = np.uint64
    if largest_code < 2**16:
        code_type = np.uint16
    elif largest_code < 2**32:
        code_type = np.uint32
    weights = np.arange(n_clusters, 2 * n_clusters, dtype=code_type)
    codes = np.einsum("k,km->m", weights, hits.view(np.uint8))  # (m,)
    labels = codes.astype(np.int64)
    labels -= n_clusters
    # Ties and all-NaN columns, both rare, are resolved one by one.
    irregular = np.flatnonzero((codes < n_clusters) | (codes >= 2 * n_clusters))
    if len(irregular):
        labels[irregular] = np.argmax(hits[:, irregular], axis=0)
    return labels, np.flatnonzero(codes >= 2 * n_clusters)


# Up to this many features, per-feature weighted bincounts are the fastest way to sum
# the rows of each cluster. With more features, the rows are grouped by label first.
BINCOUNT_MAX_FEATURES = 8
# Each cluster's rows are gathered into a float64 buffer of at most this many entries
# (1 MiB) and summed by one matrix-vector product. NumPy 2.4 reduces the rows of a
# block along axis 0 column by column, about 10 times slower than OpenBLAS 0.3.31 here
# on x86-64. The buffer stays in cache, and is large enough that the calls per block
# cost little.
_SUM_BLOCK_ENTRIES = 1 << 17
# Below this many rows per cluster on average, ``cluster_sums`` reduces all sorted rows
# at once, because each cluster's own product would cost more in calls than in arithmetic.
_SEGMENT_MIN_ROWS = 64


def cluster_sums(
    X: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray | None, n_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return per-cluster weighted sums (n_clusters, n_features) and weights (n_clusters,).

    Both are float64 and cost O(n_rows * n_features), instead of the
    O(n_rows * n_clusters * n_features) of a one-hot matrix product. With few features,
    each column is summed by ``np.bincount`` (which accumulates in float64). Otherwise
    the rows are grouped by label (see ``label_order``). Each cluster's rows are summed
    by ``segment_sums``, or, with fewer than ``_SEGMENT_MIN_ROWS`` rows per cluster on
    average, all sorted rows by one ``np.add.reduceat`` in float64.
    """
    n_features = X.shape[1]
    weights = cluster_weights(labels, sample_weight, n_clusters)
    if len(labels) == 0:
        return np.zeros((n_clusters, n_features)), weights
    if n_features <= BINCOUNT_MAX_FEATURES:
        sums = np.empty((n_clusters, n_features))
        for feature in range(n_features):
            column = X[:, feature] if sample_weight is None else X[:, feature] * sample_weight
            sums[:, feature] = np.bincount(labels, weights=column, minlength=n_clusters)
        return sums, weights
    order, offsets = label_order(labels, n_clusters, sample_weight)
    present = np.flatnonzero(offsets[1:] > offsets[:-1])
    sums = np.zeros((n_clusters, n_features))
    if len(present) == 0:
        return sums, weights
    if len(order) >= _SEGMENT_MIN_ROWS * len(present):
        sums[present] = segment_sums(X, order, offsets, sample_weight, present)
        return sums, weights
    # A few rows per cluster: one reduction over all sorted rows costs fewer calls.
    rows = np.take(X, order, axis=0).astype(np.float64)
    if sample_weight is not None:
        rows *= sample_weight[order, None]
    sums[present] = np.add.reduceat(rows, offsets[present], axis=0)
    return sums, weights


def cluster_weights(labels: np.ndarray, sample_weight: np.ndarray | None, n_clusters: int) -> np.ndarray:
    """Return the total weight of each cluster's rows (n_clusters,), float64."""
    if sample_weight is None:
        return np.bincount(labels, minlength=n_clusters).astype(np.float64)
    return np.bincount(labels, weights=sample_weight, minlength=n_clusters)


def label_order(
    labels: np.ndarray, n_clusters: int, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Group the rows by label, leaving out the rows whose ``sample_weight`` is 0.

    Returns ``order``, the row indices sorted by label and, within a label, by row, and
    ``offsets`` (n_clusters + 1,), so that the rows of cluster j are
    ``order[offsets[j]:offsets[j + 1]]``. The stable sort of 16-bit labels is a radix sort.
    A row of weight 0 adds nothing to a sum, but a matrix-vector product of another
    length may round differently. Such rows are therefore kept out of the products, and
    a point of weight 0 that changes cluster leaves every sum bit for bit unchanged.
    """
    rows = None if sample_weight is None else np.flatnonzero(sample_weight != 0)
    kept_labels = labels if rows is None else labels[rows]
    keys = kept_labels.astype(np.int16) if n_clusters <= np.iinfo(np.int16).max + 1 else kept_labels
    order = np.argsort(keys, kind="stable")
    if rows is not None:
        order = rows[order]
    offsets = np.zeros(n_clusters + 1, dtype=np.intp)
    np.cumsum(np.bincount(kept_labels, minlength=n_clusters), out=offsets[1:])
    return order, offsets


def segment_sums(
    X: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    sample_weight: np.ndarray | None,
    clusters,
) -> np.ndarray:
    """Return the weighted sum of each of ``clusters``' rows of X, (len(clusters), n_features) float64.

    ``order`` and ``offsets`` come from ``label_order``. The rows are gathered in blocks
    of at most ``_SUM_BLOCK_ENTRIES`` into a float64 buffer, so every sum is accumulated in
    float64, and each block is summed by a matrix-vector product. A cluster's sum
    depends only on its own rows, not on which clusters are summed together.
    """
    n_features = X.shape[1]
    sums = np.zeros((len(clusters), n_features))
    largest = int(np.diff(offsets).max(initial=0))
    rows_per_block = min(max(_SUM_BLOCK_ENTRIES // max(n_features, 1), 1), max(largest, 1))
    buffer = np.empty((rows_per_block, n_features))
    ones = np.ones(rows_per_block)
    for position, cluster in enumerate(clusters):
        for start in range(offsets[cluster], offsets[cluster + 1], rows_per_block):
            # The indices come from label_order, so "clip" only skips a bounds check.
            rows = order[start : min(start + rows_per_block, offsets[cluster + 1])]
            block = buffer[: len(rows)]
            if X.dtype == np.float64:
                np.take(X, rows, axis=0, out=block, mode="clip")
            else:
                block[...] = np.take(X, rows, axis=0, mode="clip")
            factors = ones[: len(rows)] if sample_weight is None else sample_weight[rows]
            sums[position] += factors @ block
    return sums


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
    inertia = weighted_total(nearest, sample_weight)
    return labels, nearest, ChunkStats(sums, weights, inertia, inertia)


def weighted_total(values: np.ndarray, sample_weight: np.ndarray | None) -> float:
    """Return the (weighted) sum of ``values`` (n_rows,), accumulated in float64."""
    if sample_weight is None:
        return float(values.sum(dtype=np.float64))
    return float(np.dot(values.astype(np.float64, copy=False), sample_weight))


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
    first_row: int | None = None,
    noise_rng: np.random.Generator | None = None,
    noise_scale: float = 1.0,
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
    product per block and no loop over points or clusters.

    With ``straight_through`` the forward pass uses the one-hot ``h`` of the row
    argmax of ``p``, so the objective is ``sum_x w_x d_x,argmax``, and the backward
    pass uses the gradient of ``p``: ``G_xj = w_x (h_xj - p_xj (d_xj - dbar_x) / T)``,
    the derivative of ``sum_c (h_c - stop(p_c) + p_c) d_c``.

    In place of ``noise``, ``noise_rng`` draws ``g = noise_scale * Gumbel`` one distance
    block at a time (see ``gumbel_noise``), so no noise array of the whole chunk is
    held. The draws follow the blocks in row order, each block cluster-major, so they
    depend only on the generator's state and the chunk's shape.

    The statistics' ``inertia`` is the weighted hard inertia of the current centroids.
    With ``first_row`` (the index of X's first row in the whole source) the statistics
    also keep the n_clusters rows farthest from their nearest centroid, so that a
    caller can relocate starved clusters without another pass over the data.
    The second return value is ``p`` (n_rows, n_clusters) when requested, else None.
    The work runs one distance block of rows at a time (see ``_relaxed_block``).
    """
    n_clusters, n_features = centroids.shape
    total = ChunkStats(np.zeros((n_clusters, n_features)), np.zeros(n_clusters), mass=np.zeros(n_clusters))
    memberships = np.empty((X.shape[0], n_clusters), dtype=X.dtype) if return_responsibilities else None
    nearest = np.empty(X.shape[0], dtype=X.dtype) if first_row is not None else None
    half_norms = 0.5 * c_squared_norms
    largest_x, largest_c = _largest_norms(x_squared_norms, c_squared_norms)
    prescaled = _scores_fit_prescaled(largest_x, largest_c, temperature)
    if noise_rng is not None:
        noise_span = _GUMBEL_SPAN * abs(noise_scale)
    else:
        noise_span = 0.0 if noise is None or noise.size == 0 else float(np.ptp(noise))
    exp_floor = _exp_floor(X.dtype, largest_x, largest_c, temperature, noise_span)
    if prescaled:
        centroids = centroids * (2.0 / temperature)
        half_norms = half_norms * (2.0 / temperature)
    rows_per_block = block_rows(n_clusters)
    workspace = _BlockWorkspace(n_clusters, n_features, min(rows_per_block, X.shape[0]), X.dtype)
    if n_features + 1 <= _THIN_PRODUCT_MAX_COLUMNS:
        workspace.augmented = _AugmentedRows(centroids, half_norms, min(rows_per_block, X.shape[0]))
    for rows in chunk_slices(X.shape[0], rows_per_block):
        if noise_rng is not None:
            # Left in float32: the addition to the logits converts it on the fly.
            block_noise = gumbel_noise(noise_rng, (n_clusters, rows.stop - rows.start), np.float32, noise_scale)
        else:
            block_noise = None if noise is None else noise[rows].T
        _relaxed_block(
            X[rows],
            x_squared_norms[rows],
            None if sample_weight is None else sample_weight[rows],
            centroids,
            half_norms,
            temperature,
            prescaled,
            exp_floor,
            block_noise,
            straight_through,
            None if memberships is None else memberships[rows],
            None if nearest is None else nearest[rows],
            workspace,
            total,
        )
    if nearest is not None:
        total.farthest = FarthestRows.select(first_row, X, x_squared_norms, nearest, n_clusters)
    return total, memberships


# Logits below this give exp() == 0 in float32 and float64 alike. Clipping to it keeps
# them finite, so that a membership of exactly 0 times its logit is 0, not NaN.
_LOGIT_FLOOR = -1e4
# Scores scaled by 2 / T stay below this in magnitude, far from the float32 maximum
# (3.4e38), when the kernel scales the centroids before the matrix product.
_PRESCALED_SCORE_LIMIT = 1e30


# NumPy 2.4's float64 exp() ran 7 to 40 times slower for arguments below about -708,
# whose results are subnormal or 0, than for others (x86-64 with AVX-512). The kernel
# clips the arguments to this floor and subtracts exp(floor) from the exponentials, so a
# clipped entry is exactly 0, as it is without the clip once exp() underflows. Every
# other entry moves by at most exp(-700), about 1e-304, against a row sum of at least 1.
_EXP_FLOOR = -700.0
_EXP_AT_FLOOR = math.exp(_EXP_FLOOR)
# Gumbel noise from gumbel_noise lies within [-2.81, 16.64], times its scale.
_GUMBEL_SPAN = 19.5


def _largest_norms(x_squared_norms: np.ndarray, c_squared_norms: np.ndarray) -> tuple[float, float]:
    """Return the largest ``|x|`` of a chunk and the largest ``|c|`` of the centroids."""
    return math.sqrt(float(x_squared_norms.max(initial=0.0))), math.sqrt(float(c_squared_norms.max(initial=0.0)))


def _exp_floor(
    dtype: np.dtype, largest_x: float, largest_c: float, temperature: float, noise_span: float
) -> float | None:
    """Return ``_EXP_FLOOR`` if a float64 chunk's exponent can fall below it, else None.

    An exponent is a logit ``-(d_xc - d_min) / T >= -(|x| + |c|)^2 / T`` minus at most
    the noise's span, so the largest norms of the chunk and the centroids (see
    ``_largest_norms``) bound it. The float32 exp() has no slow range, and float32
    chunks are never clipped.
    """
    if dtype != np.float64:
        return None
    deepest = (largest_x + largest_c) ** 2 / temperature + noise_span
    return None if deepest < -_EXP_FLOOR else _EXP_FLOOR


class _BlockWorkspace:
    """Buffers for the (k, m) blocks and scaled rows of one chunk, reused block by block.

    Fresh arrays of a few MiB per block can cost more than the arithmetic on them,
    because glibc may unmap or trim such blocks when they are freed, and the next block
    then faults its pages in again. On one 125000 x 2 float64 chunk with 16 clusters
    (glibc 2.36), allocating per block made this kernel about 2.5 times slower.
    """

    def __init__(self, n_clusters: int, n_features: int, max_rows: int, dtype: np.dtype) -> None:
        self.scores = np.empty(n_clusters * max_rows, dtype=dtype)
        self.exponentials = np.empty(n_clusters * max_rows, dtype=dtype)
        # (m, d) scaled rows, or with few features (d + 1, m): X^T scaled, and the scale.
        self.scaled_rows = np.empty(max_rows * (n_features + 1), dtype=dtype)
        # Set by the caller for blocks whose scores come from one augmented product.
        self.augmented: _AugmentedRows | None = None

    def blocks(self, n_clusters: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Return two C-contiguous (k, m) views for a block of n_rows rows."""
        entries = n_clusters * n_rows
        return (
            self.scores[:entries].reshape(n_clusters, n_rows),
            self.exponentials[:entries].reshape(n_clusters, n_rows),
        )

    def rows(self, shape: tuple[int, int], start: int = 0) -> np.ndarray:
        """Return a C-contiguous view of the given shape into the scaled-rows buffer."""
        return self.scaled_rows[start : start + shape[0] * shape[1]].reshape(shape)


def _scores_fit_prescaled(largest_x: float, largest_c: float, temperature: float) -> bool:
    """Return whether the scores ``2/T (x.c - |c|^2/2)`` and the scaled centroids are finite.

    By Cauchy-Schwarz every such score, every scaled centroid entry and every scaled
    ``|c|^2/2`` is at most ``2/T (|x| |c| + |c| + |c|^2/2)`` in magnitude, with the
    largest norms of the chunk and the centroids (see ``_largest_norms``). Below the
    limit, no logit can overflow to -inf, so no logit needs the clip to ``_LOGIT_FLOOR``.
    """
    bound = 2.0 / temperature * (largest_x * largest_c + largest_c + 0.5 * largest_c * largest_c)
    return math.isfinite(bound) and bound < _PRESCALED_SCORE_LIMIT


def _relaxed_block(
    X: np.ndarray,
    x_squared_norms: np.ndarray,
    sample_weight: np.ndarray | None,
    centroids: np.ndarray,
    half_norms: np.ndarray,
    temperature: float,
    prescaled: bool,
    exp_floor: float | None,
    noise: np.ndarray | None,  # (k, m)
    straight_through: bool,
    memberships_out: np.ndarray | None,
    nearest_out: np.ndarray | None,
    workspace: _BlockWorkspace,
    total: ChunkStats,
) -> None:
    """Add one block's relaxed statistics to ``total``, and write its memberships and
    squared distances to the nearest centroid if asked.

    The block is laid out as (n_clusters, m): every per-row reduction (maximum, sum) then
    runs along contiguous memory, which NumPy vectorises, instead of over rows of only
    k entries. ``p`` is never normalised as a whole: with ``E = exp(logits)`` and
    ``r = 1 / sum_c E``, ``p = r E``, so the row factor ``r w`` is applied to the (m, d)
    rows of X and to the weight vector instead of to the (k, m) block.

    With ``prescaled`` the centroids and half norms come multiplied by 2 / T (see
    ``_scores_fit_prescaled``), so the scores are already in logit units and the block
    needs neither a scaling pass nor the clip. With an ``exp_floor`` (see ``_exp_floor``)
    the arguments of the exponential are clipped to it.
    """
    n_clusters, n_features = centroids.shape
    scores, exponentials = workspace.blocks(n_clusters, X.shape[0])
    # (k, m), x.c - |c|^2 / 2 = (|x|^2 - d) / 2 once shifted
    if workspace.augmented is not None:
        rows_major = workspace.augmented.scores(X, out=scores)  # (d, m)
    else:
        rows_major = features_major(X)
        np.matmul(centroids, rows_major, out=scores)
        scores -= half_norms[:, None]
    best = scores.max(axis=0)  # (m,)
    if prescaled:
        nearest = x_squared_norms - temperature * best  # (m,) squared distance to the nearest centroid
    else:
        nearest = x_squared_norms - 2.0 * best
    np.maximum(nearest, 0.0, out=nearest)
    if nearest_out is not None:
        nearest_out[...] = nearest

    # logits = -(d - d_min) / T = 2 (score - best) / T: at most 0, with a 0 in every
    # row. Dividing by T / 2 instead of multiplying keeps 0 at 0 when 2 / T overflows.
    logits = scores
    logits -= best
    if not prescaled:
        factor = 2.0 / temperature
        if math.isfinite(factor):
            logits *= factor
        else:
            logits /= temperature / 2.0
        if logits.min() < _LOGIT_FLOOR:
            np.maximum(logits, _LOGIT_FLOOR, out=logits)

    # The exponents (k, m) have a maximum of exactly 0 in every column, so the
    # exponentials have a maximum of exp(0) = 1.
    if noise is None:
        exponents = logits
    else:
        np.add(logits, noise, out=exponentials)
        exponentials -= exponentials.max(axis=0)
        exponents = exponentials
    if straight_through:
        # The winner is the first zero exponent: the column's argmax of p. Comparing the
        # exponentials instead would tie every entry that exp() rounds to 1.
        winners, _ = _hit_labels(exponents == 0.0)
        winner_logits = logits[winners, np.arange(len(winners))]
    if exp_floor is None:
        np.exp(exponents, out=exponentials)
    else:
        np.maximum(exponents, exp_floor, out=exponentials)
        np.exp(exponentials, out=exponentials)
        exponentials -= _EXP_AT_FLOOR
    inverse_sums = 1.0 / exponentials.sum(axis=0)  # (m,), each sum is >= 1
    row_factor = inverse_sums if sample_weight is None else inverse_sums * sample_weight.astype(X.dtype)
    # G / (r w) = E (1 + logits - mean), or E (logits - mean) straight through (where
    # the one-hot part is added after the product), with mean = sum_c p_c logits_c =
    # -(dbar - d_min) / T.
    offset = 0.0 if straight_through else 1.0
    mean_logits = np.einsum("ij,ij->j", exponentials, logits)  # (m,)
    mean_logits *= inverse_sums
    logits += offset - mean_logits
    logits *= exponentials  # (k, m), G / (r w)
    gradient_weights = logits
    sums, weights = _gradient_products(gradient_weights, X, rows_major, row_factor, workspace)
    mass = (exponentials @ row_factor).astype(np.float64)  # (k,)

    if straight_through:
        row_objective = nearest - temperature * winner_logits
        one_hot_sums, one_hot_weights = cluster_sums(X, winners, sample_weight, n_clusters)
        sums += one_hot_sums
        weights += one_hot_weights
    else:
        row_objective = nearest - temperature * mean_logits

    total.objective += weighted_total(row_objective, sample_weight)
    total.inertia += weighted_total(nearest, sample_weight)
    total.sums += sums
    total.weights += weights
    total.mass += mass
    if memberships_out is not None:
        exponentials *= inverse_sums
        memberships_out[...] = exponentials.T


def _gradient_products(
    gradient_weights: np.ndarray,  # (k, m)
    X: np.ndarray,  # (m, d)
    rows_major: np.ndarray,  # (d, m), from features_major(X)
    row_factor: np.ndarray,  # (m,)
    workspace: _BlockWorkspace,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``G' (X * r)`` (k, d) and ``G' r`` (k,) in float64, for G' (k, m) and r (m,).

    With few features the rows are scaled in the (d, m) layout, where the product runs
    along contiguous memory, and both results come from one thin product.
    """
    n_features, n_rows = rows_major.shape
    if n_features + 1 <= _THIN_PRODUCT_MAX_COLUMNS:
        factors = workspace.rows((n_features + 1, n_rows))  # (d + 1, m): X^T scaled, then r
        np.multiply(rows_major, row_factor, out=factors[:n_features])
        factors[n_features] = row_factor
        products = (gradient_weights @ factors.T).astype(np.float64)  # (k, d + 1)
        return products[:, :n_features], products[:, n_features]
    if n_features <= _COPY_TRANSPOSE_MAX_FEATURES:
        scaled = workspace.rows((n_features, n_rows))
        np.multiply(rows_major, row_factor, out=scaled)
        scaled = scaled.T  # (m, d)
    else:
        scaled = workspace.rows(X.shape)
        np.multiply(X, row_factor[:, None], out=scaled)
    sums = (gradient_weights @ scaled).astype(np.float64)  # (k, d)
    weights = (gradient_weights @ row_factor).astype(np.float64)  # (k,)
    return sums, weights


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


def gumbel_noise(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype, scale: float = 1.0) -> np.ndarray:
    """Draw standard Gumbel noise ``-log(-log u)`` (shape), times ``scale``, in the given dtype.

    ``u = (2 j + 1) 2^-24`` for a uniform 23-bit integer j, built from 32 random bits
    by placing j in the mantissa of a float32 in [1, 2) and subtracting ``1 - 2^-24``,
    which is exact. So u lies in [2^-24, 1 - 2^-24], both logarithms are finite, and
    the noise lies in about [-2.8, 16.6]: the upper tail beyond that has probability
    below 1e-7. The noise is computed in float32, because the random bits, not the
    arithmetic, are the cost; float64 callers get it converted. The scale is applied
    with the final negation, which saves a pass over the noise. That happens in float32
    unless a float64 caller's scale is outside [1e-30, 1e30], where the scaled noise
    could overflow or lose precision in float32.
    """
    size = int(np.prod(shape))
    words = rng.bit_generator.random_raw((size + 1) // 2).view(np.uint32)[:size]  # (size,)
    words >>= 9
    words |= np.uint32(0x3F800000)  # the exponent of 1.0: a float32 in [1, 2)
    noise = words.view(np.float32)
    noise -= np.float32(1.0 - 2.0**-24)
    np.log(noise, out=noise)
    np.negative(noise, out=noise)
    np.log(noise, out=noise)
    if np.dtype(dtype) == np.float32 or 1e-30 <= abs(scale) <= 1e30:
        noise *= np.float32(-scale)
        return noise.reshape(shape).astype(dtype, copy=False)
    scaled = noise.reshape(shape).astype(dtype)
    scaled *= -scale
    return scaled
