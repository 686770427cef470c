"""Hard mode: Lloyd iterations over chunked data.

Each iteration assigns every point to its nearest centroid (argmin, ties to the lowest
index) and moves each centroid to the weighted mean of its points, from the per-chunk
sums and weights. The loop stops when the labels no longer change, when the total
squared centroid shift falls to ``tol_shift``, or at ``max_iter``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from softkm.chunks import Chunk, ChunkedData
from softkm.errors import EmptyClusterWarning
from softkm.kernels import ChunkStats, hard_chunk, row_norms_squared


@dataclass
class IterationRecord:
    """What one iteration of any mode measured, for progress bars, tables and plots.

    ``objective`` is the mode's own objective per unit weight (the hard inertia for hard
    mode), ``inertia`` the hard inertia per unit weight of the centroids the iteration
    started from, ``tau`` the dimensionless temperature (None in hard mode), ``shift``
    the total squared centroid movement, and ``seconds`` the time since the run began.
    All distances are in working units.
    """

    iteration: int
    objective: float
    inertia: float
    tau: float | None
    shift: float
    seconds: float


@dataclass
class RunResult:
    """The centroids (n_clusters, n_features) in working units after one run, and its history."""

    centroids: np.ndarray
    n_iter: int
    converged: bool
    history: list[IterationRecord]
    n_relocated: int


def lloyd(
    data: ChunkedData,
    centroids: np.ndarray,
    max_iter: int,
    tol_shift: float,
    on_iteration: Callable[[IterationRecord], None] | None = None,
) -> RunResult:
    """Run Lloyd iterations from centroids (n_clusters, n_features), float64.

    Assumes valid input: centroids in working units, max_iter >= 1, tol_shift >= 0.
    """
    labels = np.empty(data.n_samples, dtype=np.int64)
    previous_labels = np.full(data.n_samples, -1, dtype=np.int64)
    nearest = np.empty(data.n_samples, dtype=data.X.dtype)
    history: list[IterationRecord] = []
    n_relocated = 0
    converged = False
    started = time.perf_counter()

    for iteration in range(1, max_iter + 1):
        stats = assignment_pass(data, centroids, labels, nearest)
        new_centroids = centroids.copy()
        moved = stats.weights > 0
        new_centroids[moved] = stats.sums[moved] / stats.weights[moved, None]
        n_relocated += relocate_empty(data, stats, labels, nearest, new_centroids)

        shift = float(((new_centroids - centroids) ** 2).sum())
        centroids = new_centroids
        record = IterationRecord(
            iteration,
            stats.inertia / data.total_weight,
            stats.inertia / data.total_weight,
            None,
            shift,
            time.perf_counter() - started,
        )
        history.append(record)
        if on_iteration is not None:
            on_iteration(record)

        if np.array_equal(labels, previous_labels) or shift <= tol_shift:
            converged = True
            break
        labels, previous_labels = previous_labels, labels

    return RunResult(centroids, len(history), converged, history, n_relocated)


def assignment_pass(
    data: ChunkedData, centroids: np.ndarray, labels: np.ndarray, nearest: np.ndarray
) -> ChunkStats:
    """Assign every chunk, writing labels and nearest distances (n_samples,) in place.

    Returns the summed Lloyd statistics (per-cluster sums, weights and inertia).
    """
    working = centroids.astype(data.X.dtype)
    c_squared_norms = row_norms_squared(working)

    def kernel(chunk: Chunk) -> ChunkStats:
        chunk_labels, chunk_nearest, stats = hard_chunk(
            chunk.X, chunk.x_squared_norms, chunk.sample_weight, working, c_squared_norms
        )
        labels[chunk.rows] = chunk_labels
        nearest[chunk.rows] = chunk_nearest
        return stats

    return data.reduce(kernel, centroids.shape[0])


def relocate_empty(
    data: ChunkedData,
    stats: ChunkStats,
    labels: np.ndarray,
    nearest: np.ndarray,
    centroids: np.ndarray,
) -> int:
    """Move each cluster without weight onto one of the points farthest from its centroid.

    The point's weight moves with it: it is taken out of its old cluster's sums, whose
    centroid is recomputed, so the objective can only fall. Edits ``centroids`` in place
    and returns the number of relocated clusters.
    """
    empty = np.flatnonzero(stats.weights <= 0)
    if len(empty) == 0:
        return 0
    # Stable sort on the negated distance: among equal distances the lowest row wins.
    farthest = np.argsort(-nearest.astype(np.float64), kind="stable")[: len(empty)]
    # A point already on its centroid would only duplicate that centroid, which loses
    # the tie again next iteration: with fewer distinct points than clusters, the
    # surplus clusters stay empty instead of cycling. Distances below the rounding error
    # of the expansion |x|^2 - 2 x.c + |c|^2 count as zero.
    rounding = 16 * np.finfo(data.X.dtype).eps * float(data.x_squared_norms.max())
    farthest = farthest[nearest[farthest] > rounding]
    empty = empty[: len(farthest)]
    if len(empty) == 0:
        return 0
    for cluster, row in zip(empty, farthest):
        point = data.X[row].astype(np.float64)
        weight = 1.0 if data.sample_weight is None else float(data.sample_weight[row])
        old = labels[row]
        stats.sums[old] -= weight * point
        stats.weights[old] -= weight
        if stats.weights[old] > 0:
            centroids[old] = stats.sums[old] / stats.weights[old]
        centroids[cluster] = point
        labels[row] = cluster
    warnings.warn(
        f"{len(empty)} cluster(s) lost all their points and were moved to the farthest points",
        EmptyClusterWarning,
        stacklevel=3,
    )
    return len(empty)
