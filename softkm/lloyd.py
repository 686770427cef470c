"""Hard mode: Lloyd iterations over chunked data.

Each iteration assigns every point to its nearest centroid (argmin, ties to the lowest
index) and moves each centroid to the weighted mean of its points, from the per-chunk
sums and weights. The loop stops when the total squared centroid shift falls to
``tol_shift``, or at ``max_iter``. Unchanged labels give bit-identical sums, because the
source adds its chunks in a fixed order, so they give a shift of exactly 0 and the loop
needs no label array of n_samples entries.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from softkm.chunks import Chunk, ChunkedData, DataSource, farthest_points
from softkm.errors import EmptyClusterWarning
from softkm.kernels import ChunkStats, assign_chunk, hard_chunk, row_norms_squared, weighted_total

if TYPE_CHECKING:
    from softkm.hamerly import Bounds


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
    """The centroids (n_clusters, n_features) in working units after one run, and its history.

    ``bounds`` is the state of Hamerly's loop (``softkm.hamerly.Bounds``) when it ran,
    which lets the final assignment skip the chunks whose points it proves settled.
    """

    centroids: np.ndarray
    n_iter: int
    converged: bool
    history: list[IterationRecord]
    n_relocated: int
    bounds: Bounds | None = None


def lloyd(
    data: DataSource,
    centroids: np.ndarray,
    max_iter: int,
    tol_shift: float,
    on_iteration: Callable[[IterationRecord], None] | None = None,
) -> RunResult:
    """Run Lloyd iterations from centroids (n_clusters, n_features), float64.

    Assumes valid input: centroids in working units, max_iter >= 1, tol_shift >= 0.
    """
    history: list[IterationRecord] = []
    n_relocated = 0
    converged = False
    started = time.perf_counter()

    for iteration in range(1, max_iter + 1):
        stats = assignment_pass(data, centroids)
        new_centroids, relocated = move_centroids(data, stats, centroids)
        n_relocated += relocated

        shift = float(((new_centroids - centroids) ** 2).sum())
        centroids = new_centroids
        report_iteration(history, on_iteration, iteration, stats.inertia / data.total_weight, shift, started)

        if shift <= tol_shift:
            converged = True
            break

    return RunResult(centroids, len(history), converged, history, n_relocated)


def report_iteration(
    history: list[IterationRecord],
    on_iteration: Callable[[IterationRecord], None] | None,
    iteration: int,
    inertia: float,
    shift: float,
    started: float,
) -> None:
    """Append a hard-mode iteration to ``history`` and pass it to ``on_iteration``.

    ``inertia`` is per unit weight and is also the hard objective, and ``started`` is
    the ``time.perf_counter()`` reading at the start of the run.
    """
    record = IterationRecord(iteration, inertia, inertia, None, shift, time.perf_counter() - started)
    history.append(record)
    if on_iteration is not None:
        on_iteration(record)


def assignment_pass(data: DataSource, centroids: np.ndarray) -> ChunkStats:
    """Assign every row to its nearest centroid and return the summed Lloyd statistics.

    The statistics are the per-cluster weighted sums and weights and the inertia of
    ``centroids`` (n_clusters, n_features), float64 in working units.
    """
    working = centroids.astype(data.dtype)
    c_squared_norms = row_norms_squared(working)
    n_clusters = centroids.shape[0]
    if isinstance(data, ChunkedData):
        # In memory, the sums are those of ``ChunkedData.cluster_statistics``, which
        # Hamerly's loop also uses, so both loops move the centroids identically. The
        # labels are kept one range of chunks at a time.
        total = ChunkStats.zeros(n_clusters, data.n_features)
        for rows in data.label_ranges():
            labels = np.empty(rows.stop - rows.start, dtype=np.int32)

            def assign(chunk: Chunk) -> float:
                local = slice(chunk.rows.start - rows.start, chunk.rows.stop - rows.start)
                labels[local], nearest = assign_chunk(chunk.X, chunk.x_squared_norms, working, c_squared_norms)
                return weighted_total(nearest, chunk.sample_weight)

            inertia = sum(data.map(assign, within=rows))
            stats = data.range_statistics(rows, labels, n_clusters)
            stats.inertia = stats.objective = inertia
            total.add(stats)
        return total

    def kernel(chunk: Chunk) -> ChunkStats:
        _, _, stats = hard_chunk(chunk.X, chunk.x_squared_norms, chunk.sample_weight, working, c_squared_norms)
        return stats

    return data.reduce(kernel, n_clusters)


def move_centroids(
    data: DataSource, stats: ChunkStats, centroids: np.ndarray, labels: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Return the Lloyd step from ``centroids`` (k, d) and the number of relocated clusters.

    Each cluster with weight moves to the weighted mean of its points. Each cluster
    without weight is relocated by ``relocate_empty``, which also edits ``stats``.
    The relocated clusters are the first ones (in index order) of those without weight.
    ``labels`` (n_samples,), every row's nearest centroid when the caller has them,
    saves ``relocate_empty`` a pass over the data.
    """
    new_centroids = centroids.copy()
    moved = stats.weights > 0
    new_centroids[moved] = stats.sums[moved] / stats.weights[moved, None]
    relocated = relocate_empty(data, stats, centroids, new_centroids, labels)
    return new_centroids, relocated


def relocate_empty(
    data: DataSource,
    stats: ChunkStats,
    assigned_centroids: np.ndarray,
    centroids: np.ndarray,
    labels: np.ndarray | None = None,
) -> int:
    """Move each cluster without weight onto one of the points farthest from its centroid.

    ``stats`` are those of the assignment to ``assigned_centroids``, and ``centroids``
    the new centroids computed from them. The point's weight moves with it: it is taken
    out of its old cluster's sums, whose centroid is recomputed, so the objective can
    only fall. Edits ``centroids`` in place and returns the number of relocated clusters.
    Finding the farthest points costs one more pass over the data, run only when a
    cluster is empty; with ``labels`` (see ``farthest_points``) that pass computes no
    distances to other centroids.
    """
    empty = np.flatnonzero(stats.weights <= 0)
    if len(empty) == 0:
        return 0
    farthest = farthest_points(data, assigned_centroids, len(empty), labels)
    # A point already on its centroid would only duplicate that centroid, which loses
    # the tie again next iteration: with fewer distinct points than clusters, the
    # surplus clusters stay empty instead of cycling. Distances below the rounding error
    # of the distance expansion in the data's dtype count as zero.
    rounding = 16 * np.finfo(data.dtype).eps * farthest.max_squared_norm
    usable = np.flatnonzero(farthest.distances > rounding)
    empty = empty[: len(usable)]
    if len(empty) == 0:
        return 0
    for cluster, position in zip(empty, usable):
        point = farthest.points[position]
        weight = float(farthest.weights[position])
        old = farthest.labels[position]
        stats.sums[old] -= weight * point
        stats.weights[old] -= weight
        if stats.weights[old] > 0:
            centroids[old] = stats.sums[old] / stats.weights[old]
        centroids[cluster] = point
    warnings.warn(
        f"{len(empty)} cluster(s) lost all their points and were moved to the farthest points",
        EmptyClusterWarning,
        stacklevel=4,
    )
    return len(empty)
