"""Hard mode with Hamerly's bounds: Lloyd iterations that skip settled points.

Every point keeps an upper bound ``upper`` on its distance to its own centroid and a
lower bound ``lower`` on its distance to every other centroid (plain, not squared,
distances). When the centroids move by ``delta_j``, the triangle inequality keeps the
bounds valid after ``upper += delta_own`` and ``lower -= max_{j != own} delta_j``. A
point whose upper bound is below ``max(lower, s_own)``, with ``s_j`` half the distance
from centroid j to its nearest other centroid, cannot change cluster and is skipped.
The others get their upper bound tightened to the distance computed directly, and
only those still in doubt have all their distances recomputed. The per-cluster sums are updated
with the points that changed cluster instead of being recomputed.

A relocated centroid (see ``softkm.lloyd.relocate_empty``) jumps too far for the
triangle inequality to say anything useful, so the lower bounds take the distances to
the relocated centroids instead, computed like every other distance, at a cost of one
distance per point and relocated cluster. The few centroids that move much farther
than the rest are measured the same way when a sample of rows shows that this settles
enough points. The final assignment of a fit is one more bounded step, from the last
assigned centroids to the final ones (``final_labels``).

The labels are those of ``softkm.lloyd.lloyd``: a point is only skipped when its bounds
leave a margin larger than the rounding error of the distance expansion, and a point
in doubt is assigned by the same kernel, whose labels depend on nothing but the row
and the centroids (``softkm.kernels.assign_chunk``). The centroids agree with Lloyd's
to rounding (the sums are kept in float64 and updated instead of recomputed, except
after a relocation, where both loops sum afresh), and the loop stops on the same
conditions. The bounds cost a label and two distances per point, in the data's dtype,
so this runs only on in-memory data.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from softkm.chunks import Chunk, ChunkedData
from softkm.kernels import (
    ChunkStats,
    assign_chunk,
    assign_two_nearest,
    block_rows,
    chunk_slices,
    cluster_sums,
    features_major,
    row_norms_squared,
    weighted_total,
)
from softkm.lloyd import IterationRecord, RunResult, move_centroids, report_iteration
from softkm.parallel import get_num_threads, parallel_map

# A computed squared distance, from the expansion or from a dot product of
# n_features terms, is within a few times (n_features + 2) * eps * (|x|^2 + |c|^2) of
# the exact one, by the standard worst-case bound on a dot product's rounding (see
# ``_rounding_bound``). A point is only skipped when its bounds clear this many times
# that estimate.
_MARGIN_FACTOR = 16.0
# Above this fraction of points in doubt, a chunk is assigned whole.
_FULL_PASS_FRACTION = 0.5
# The bounded step splits the data into at least n_samples / this many groups of
# chunks, which keeps a group's temporaries near this many rows (an estimated 20 MB). Groups
# of uneven chunks, or a single larger chunk, can hold more. On 1,000,000 x 2 float32
# rows, 4 groups of 2^18 rows made a steady iteration about 15% faster than 8 of 2^17.
_MAX_GROUP_ROWS = 1 << 19
# When more than this fraction of a chunk's points change cluster, the statistics are
# summed afresh instead of updated, because each change costs two gathered rows and a
# fresh sum one row per point.
_MOVED_STATISTICS_FRACTION = 0.1


@dataclass
class Bounds:
    """The state of Hamerly's loop at its end.

    ``labels`` (n_samples,) int32 are the nearest of ``centroids`` (n_clusters,
    n_features, float64, working units), with ``upper`` and ``lower`` (n_samples,) their
    bounds (None once released by ``final_labels``). ``relocated`` lists the clusters that the last step relocated, whose
    movement the bounds cannot follow. ``max_squared_norm`` is the largest ``|x|^2``.
    """

    labels: np.ndarray
    upper: np.ndarray | None
    lower: np.ndarray | None
    centroids: np.ndarray
    relocated: np.ndarray
    max_squared_norm: float


def hamerly(
    data: ChunkedData,
    centroids: np.ndarray,
    max_iter: int,
    tol_shift: float,
    on_iteration: Callable[[IterationRecord], None] | None = None,
) -> RunResult:
    """Run Lloyd iterations with Hamerly's bounds from centroids (n_clusters, n_features).

    Assumes what ``softkm.lloyd.lloyd`` assumes and returns the same result (centroids
    up to rounding, see the module's docstring), with the final ``Bounds`` attached. The
    bounds are kept in the data's dtype: the margin (see ``_rounding_bound``) is many
    times the rounding of the bound updates, even in float32.
    """
    n_clusters = centroids.shape[0]
    history: list[IterationRecord] = []
    n_relocated = 0
    converged = False
    started = time.perf_counter()

    labels, upper, lower, stats = _full_pass(data, centroids)
    squares = _cluster_squares(data, labels, n_clusters)
    members = _cluster_members(data, labels, n_clusters)
    inertia = stats.inertia
    max_squared_norm = float(data.x_squared_norms.max(initial=0.0))
    for iteration in range(1, max_iter + 1):
        # Updated weights of a cluster that lost its last point can keep a rounding
        # residue. Lloyd's fresh sums give exactly 0 there.
        deserted = members == 0
        stats.weights[deserted] = 0.0
        stats.sums[deserted] = 0.0
        if np.any((members > 0) & (stats.weights <= 0)):
            # A cluster left with points of tiny weight can see its updated weight
            # round to 0. Only fresh sums tell it from an empty one, as in Lloyd.
            stats, squares, members = _fresh_statistics(data, labels, n_clusters)
        empty = np.flatnonzero(stats.weights <= 0)
        assigned_stats = (stats.sums.copy(), stats.weights.copy()) if len(empty) else None
        new_centroids, relocated = move_centroids(data, stats, centroids, labels)
        n_relocated += relocated
        if relocated:
            # relocate_empty took each relocated point out of its cluster's sums, but the
            # point keeps its label until the next assignment, which moves it in the sums.
            stats.sums, stats.weights = assigned_stats
        jumped = empty[:relocated]

        shift = float(((new_centroids - centroids) ** 2).sum())
        report_iteration(history, on_iteration, iteration, inertia / data.total_weight, shift, started)
        # Unchanged labels leave the statistics untouched, so the shift is exactly 0
        # then, as in plain Lloyd iterations.
        if shift <= tol_shift:
            converged = True
        if converged or iteration == max_iter:
            break

        bounds = Bounds(labels, upper, lower, centroids, jumped, max_squared_norm)
        # After a relocation the statistics are summed afresh below.
        _update(data, bounds, new_centroids, stats, squares, members, statistics=not relocated)
        if relocated:
            # Lloyd sums the new assignment afresh, which rounds differently from
            # relocate_empty's own update of the sums. Doing the same here keeps the
            # centroids, and so the stopping test, identical to Lloyd's.
            stats, squares, members = _fresh_statistics(data, labels, n_clusters)
        inertia = _inertia(stats, squares, new_centroids)
        centroids = new_centroids

    bounds = Bounds(labels, upper, lower, centroids, jumped, max_squared_norm)
    return RunResult(new_centroids, len(history), converged, history, n_relocated, bounds)


def final_labels(data: ChunkedData, bounds: Bounds, centroids: np.ndarray, last: bool = False) -> np.ndarray:
    """Return the nearest of ``centroids`` (n_clusters, n_features) for every row.

    The labels are those of ``softkm.kernels.assign_chunk``, found by one bounded step
    from the centroids that ``bounds`` refers to: only the points in doubt are
    assigned again. ``bounds`` is updated in place to refer to ``centroids``, and the
    result is its own int32 label array. With ``last`` the bounds themselves are
    released (set to None), which keeps them out of the memory peak of what follows.
    """
    labels = bounds.labels
    # With ``last`` the bounds are released, so the step need not keep them exact.
    for moved_rows, new_labels, _ in _reassign(data, bounds, centroids, False, keep_bounds=not last):
        labels[moved_rows] = new_labels
    bounds.centroids = centroids
    bounds.relocated = np.empty(0, dtype=np.intp)
    if last:
        bounds.upper = None
        bounds.lower = None
    return labels


def _full_pass(data: ChunkedData, centroids: np.ndarray):
    """Assign every point exactly.

    Returns labels, the upper and lower bounds (n_samples,) each, and the Lloyd
    statistics with the inertia.
    """
    n_clusters = centroids.shape[0]
    working = centroids.astype(data.X.dtype)
    c_squared_norms = row_norms_squared(working)
    # int32 halves the per-point cost of the labels; n_clusters is far below 2^31.
    labels = np.empty(data.n_samples, dtype=np.int32)
    upper = np.empty(data.n_samples, dtype=data.X.dtype)
    lower = np.empty(data.n_samples, dtype=data.X.dtype)

    def kernel(chunk: Chunk) -> float:
        chunk_labels, chunk_nearest, second = assign_two_nearest(
            chunk.X, chunk.x_squared_norms, working, c_squared_norms
        )
        labels[chunk.rows] = chunk_labels
        upper[chunk.rows] = np.sqrt(chunk_nearest)
        lower[chunk.rows] = np.sqrt(second)
        return weighted_total(chunk_nearest, chunk.sample_weight)

    inertia = sum(data.map(kernel))
    stats = data.cluster_statistics(labels, n_clusters)
    stats.inertia = stats.objective = inertia
    return labels, upper, lower, stats


def _fresh_statistics(
    data: ChunkedData, labels: np.ndarray, n_clusters: int
) -> tuple[ChunkStats, np.ndarray, np.ndarray]:
    """Return the statistics of ``labels`` summed afresh as Lloyd's pass sums them, with
    the squares of ``_cluster_squares`` and the members of ``_cluster_members``.
    """
    stats = data.cluster_statistics(labels, n_clusters)
    return stats, _cluster_squares(data, labels, n_clusters), _cluster_members(data, labels, n_clusters)


def _cluster_squares(data: ChunkedData, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Return the weighted sum of ``|x|^2`` over each cluster's points (n_clusters,).

    Summed chunk by chunk, so the float64 copy of the norms stays chunk-sized.
    """
    squares = np.zeros(n_clusters)
    for chunk in data.chunks():
        norms = chunk.x_squared_norms.astype(np.float64)
        if chunk.sample_weight is not None:
            norms *= chunk.sample_weight
        squares += np.bincount(labels[chunk.rows], weights=norms, minlength=n_clusters)
    return squares


def _cluster_members(data: ChunkedData, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Return the number of points with a nonzero weight in each cluster (n_clusters,) int64."""
    if data.sample_weight is None:
        return np.bincount(labels, minlength=n_clusters)
    return np.bincount(labels[data.sample_weight != 0], minlength=n_clusters)


def _inertia(stats: ChunkStats, squares: np.ndarray, centroids: np.ndarray) -> float:
    """Return the weighted inertia of the current labels against ``centroids``.

    ``sum_x w |x - c|^2 = sum_j (Q_j - 2 c_j . S_j + W_j |c_j|^2)`` from the per-cluster
    sums S, weights W and squares Q, at O(k d) cost instead of a pass over the data.
    """
    per_cluster = squares - 2.0 * np.einsum("ij,ij->i", centroids, stats.sums)
    per_cluster += stats.weights * np.einsum("ij,ij->i", centroids, centroids)
    return float(max(per_cluster.sum(), 0.0))


def _rounding_bound(dtype: np.dtype, max_squared_norm: float, centroids: np.ndarray) -> float:
    """Return E, a bound on the rounding of the squared distances, in squared units.

    A dot product of d terms rounds by at most about d * eps times ``|x| |c|``, and
    the expansion adds ``|x|^2`` and ``|c|^2`` with their own rounding. So every
    computed squared distance, and every difference of the scores that the
    assignment compares, is within a few times ``(d + 2) eps (|x|^2 + |c|^2)`` of the
    exact value. E is ``_MARGIN_FACTOR`` times that, with the largest norms. Below the
    smallest normal number ``tiny`` the rounding is absolute, so ``tiny`` is added to
    the norms. ``max_squared_norm`` is the largest ``|x|^2`` of the data.
    """
    n_features = centroids.shape[1]
    largest = _largest_squared_norms(max_squared_norm, centroids) + float(np.finfo(dtype).tiny)
    return _MARGIN_FACTOR * (n_features + 2) * float(np.finfo(dtype).eps) * largest


def _largest_squared_norms(max_squared_norm: float, centroids: np.ndarray) -> float:
    """Return the largest ``|x|^2`` (given) plus the largest ``|c|^2`` of the centroids."""
    return max_squared_norm + float((centroids**2).sum(axis=1).max(initial=0.0))


def _settling_threshold(lower: np.ndarray, rounding_bound: float) -> np.ndarray:
    """Return, for lower bounds (n,) on the distance to every other centroid, the upper
    bound below which a point certainly keeps its label.

    The label is certain when ``lower^2 - upper^2 > E`` (``rounding_bound``), which holds when
    ``upper < lower - E / lower``, since ``sqrt(l^2 - E) >= l - E / l`` for
    ``l^2 >= E``. A lower bound at or below 0 gives -inf: nothing is certain.
    """
    threshold = np.maximum(lower, 0.0)
    if rounding_bound > 0:
        # A positive bound that underflows in float32 would make 0 / 0 = NaN, which no
        # upper bound exceeds, so it is kept at least the smallest normal number.
        dtype_info = np.finfo(lower.dtype)
        rounding_bound_in_dtype = max(lower.dtype.type(rounding_bound), dtype_info.tiny)
        with np.errstate(divide="ignore"):
            threshold -= np.divide(rounding_bound_in_dtype, threshold)  # E / 0 = inf
    else:
        threshold[threshold <= 0] = -np.inf
    return threshold


def _update(
    data: ChunkedData, bounds: Bounds, centroids: np.ndarray, stats: ChunkStats, squares: np.ndarray,
    members: np.ndarray, statistics: bool = True,
) -> int:
    """Move ``bounds`` to ``centroids``, reassign the points left in doubt, and update the
    labels, bounds and statistics (with the squares and members of ``_cluster_squares``
    and ``_cluster_members``) in place. Returns the number of points that changed cluster.

    With ``statistics`` False the statistics are left alone, for a caller that sums
    afresh anyway.
    """
    n_changed = 0
    resum = False
    for moved_rows, new_labels, moved in _reassign(data, bounds, centroids, statistics):
        bounds.labels[moved_rows] = new_labels
        n_changed += len(moved_rows)
        if not statistics:
            continue
        if moved is None:
            resum = True
        elif not resum:
            sums, weights, norms, count = moved
            stats.sums += sums
            stats.weights += weights
            squares += norms
            members += count
    if resum:
        fresh, fresh_squares, fresh_members = _fresh_statistics(data, bounds.labels, len(squares))
        stats.sums[...] = fresh.sums
        stats.weights[...] = fresh.weights
        squares[...] = fresh_squares
        members[...] = fresh_members
    return n_changed


def _reassign(
    data: ChunkedData, bounds: Bounds, centroids: np.ndarray, with_statistics: bool, keep_bounds: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray, tuple | None]]:
    """Move the bounds from ``bounds.centroids`` to ``centroids`` and reassign the points in doubt.

    ``bounds.labels`` hold the nearest of ``bounds.centroids``, and ``bounds.upper`` and
    ``bounds.lower`` are updated in place. The bounds follow most centroids by their
    movement. The clusters in ``bounds.relocated``, whose move the bounds cannot
    follow, and the few that moved much farther than the rest (``_far_movers``) are
    measured instead: every point's computed distance to them enters its lower bound.
    Yields, chunk by chunk in row order, the rows whose nearest centroid changed, their
    new labels and, ``with_statistics``, the change of the per-cluster sums (k, d),
    weights (k,), squares (k,) and members (k,) that their move makes, or None when more than
    ``_MOVED_STATISTICS_FRACTION`` of the chunk moved and the caller must sum afresh.
    The labels are left to the caller. The chunks are handled in groups of consecutive
    chunks (see below). A group's points in doubt are assigned by one product of their
    rows, and a group mostly in doubt is assigned whole. Without
    ``keep_bounds`` the caller no longer needs the bounds, so a whole group's runner-up
    is not computed and the bounds are left invalid.
    """
    labels, upper, lower, relocated = bounds.labels, bounds.upper, bounds.lower, bounds.relocated
    old_centroids = bounds.centroids
    n_clusters = centroids.shape[0]
    dtype = upper.dtype
    delta = np.sqrt(((centroids - old_centroids) ** 2).sum(axis=1))  # (k,)
    followed = delta.copy()
    followed[relocated] = 0.0
    rounding_bound = _rounding_bound(data.X.dtype, bounds.max_squared_norm, centroids)
    if n_clusters > 1:
        between = np.sqrt(np.maximum(_squared_centroid_distances(centroids), 0.0))
        np.fill_diagonal(between, np.inf)
        half_gap = 0.5 * between.min(axis=1)
        # With u <= s (half the distance to the nearest other centroid), every other
        # centroid is at least 2s - u away, and (2s - u)^2 - u^2 = 4 s (s - u) > E
        # when u < s - E / (4 s).
        with np.errstate(divide="ignore", invalid="ignore"):
            half_gap = np.where(half_gap > 0, half_gap - rounding_bound / (4.0 * half_gap), -np.inf).astype(dtype)
    else:
        half_gap = np.full(1, np.inf, dtype=dtype)
    # Every distance is at most sqrt(2 S), with S the largest |x|^2 + |c|^2, so adding
    # this slack to each movement covers the rounding of the table and of the bound
    # updates, and the bounds stay bounds in the data's dtype.
    slack = 2.0 * float(np.finfo(dtype).eps) * math.sqrt(2.0 * _largest_squared_norms(bounds.max_squared_norm, centroids))
    delta = (delta + slack).astype(dtype)
    # Per-cluster tables, gathered by each point's label: how far the lower bound drops.
    drop = _lower_bound_drop(followed + slack, dtype)
    far = _far_movers(followed)
    if len(far):
        rest = followed.copy()
        rest[far] = 0.0
        drop_without_far = _lower_bound_drop(rest + slack, dtype)
        if _measuring_pays(data, bounds, centroids, far, delta, half_gap, rounding_bound, drop, drop_without_far):
            followed, drop = rest, drop_without_far
        else:
            far = far[:0]
    measured = np.union1d(relocated, far).astype(np.intp)
    working = centroids.astype(data.X.dtype)
    c_squared_norms = row_norms_squared(working)
    measured_centroids = working[measured]
    measured_norms = c_squared_norms[measured]
    # Each cluster's column among the measured ones, or -1.
    measured_column = np.full(n_clusters, -1, dtype=np.intp)
    measured_column[measured] = np.arange(len(measured))

    def moves(chunk: Chunk, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the rows of ``chunk`` (a group's span, local indices) whose nearest
        centroid changed, and their new labels.
        """
        chunk_upper = upper[chunk.rows]
        chunk_lower = lower[chunk.rows]
        # np.take would convert the int32 labels to intp for each table it reads.
        own_index = own.astype(np.intp)
        # The triangle inequality moves the bounds by the centroids' movements.
        chunk_upper += np.take(delta, own_index)
        chunk_lower -= np.take(drop, own_index)

        def in_doubt() -> tuple[np.ndarray, np.ndarray]:
            """Return the settling thresholds and the rows above them (local indices).

            A point is settled when its upper bound is below the threshold of its lower
            bound or of its half gap, which leave room for the rounding.
            """
            threshold = _settling_threshold(chunk_lower, rounding_bound)
            np.maximum(threshold, np.take(half_gap, own_index), out=threshold)
            return threshold, np.flatnonzero(chunk_upper > threshold)

        threshold, doubt = in_doubt()
        if len(measured):
            # The measured distances can only lower the lower bounds, so the points in
            # doubt so far stay in doubt. When they already send the whole chunk to a
            # full assignment, measuring would be wasted. Otherwise the points outside
            # the doubt set keep their bounds, which must account for these centroids.
            if len(doubt) <= _FULL_PASS_FRACTION * len(own):
                nearest_measured = _nearest_other_distance(
                    chunk.X, chunk.x_squared_norms, measured_centroids, measured_norms,
                    np.take(measured_column, own_index),
                )
                np.minimum(chunk_lower, nearest_measured, out=chunk_lower)
                threshold, doubt = in_doubt()
        if len(doubt) == 0:
            return doubt, own[doubt]
        if len(doubt) > _FULL_PASS_FRACTION * len(own):
            # Most points are in doubt, as in the first iterations: gathering them costs
            # more than assigning the whole group, which gives the same labels. Without
            # bounds to keep, the runner-up is not needed.
            if keep_bounds:
                found, nearest, second = assign_two_nearest(chunk.X, chunk.x_squared_norms, working, c_squared_norms)
                chunk_upper[:] = np.sqrt(nearest)
                chunk_lower[:] = np.sqrt(second)
            else:
                found, _ = assign_chunk(chunk.X, chunk.x_squared_norms, working, c_squared_norms)
            changed = np.flatnonzero(found != own)
            return changed, found[changed]
        # np.take gathers rows many times faster than fancy indexing when they are short.
        X = np.take(chunk.X, doubt, axis=0)
        doubt_labels = own[doubt]
        # The distance to the own centroid, computed directly, tightens the upper bound.
        # Its squared rounding error, about n_features * eps times its square, is
        # within the rounding bound.
        residual = X - np.take(working, doubt_labels, axis=0)
        exact = np.sqrt(row_norms_squared(residual))
        chunk_upper[doubt] = exact
        rows = np.flatnonzero(exact > threshold[doubt])
        if len(rows) == 0:
            return rows, own[rows]
        found, nearest, second = assign_two_nearest(
            np.take(X, rows, axis=0), chunk.x_squared_norms[doubt[rows]], working, c_squared_norms
        )
        recomputed = doubt[rows]
        chunk_upper[recomputed] = np.sqrt(nearest)
        chunk_lower[recomputed] = np.sqrt(second)
        changed = found != doubt_labels[rows]
        return recomputed[changed], found[changed]

    def kernel(group: list[Chunk]) -> list[tuple[np.ndarray, np.ndarray, tuple | None]]:
        """Return each chunk's moved rows (global), their new labels and statistics."""
        rows = slice(group[0].rows.start, group[-1].rows.stop)
        weights = None if data.sample_weight is None else data.sample_weight[rows]
        span = Chunk(group[0].index, rows, data.X[rows], data.x_squared_norms[rows], weights)
        own = labels[rows]
        changed, new_labels = moves(span, own)
        # The changed rows are sorted, so each chunk's share is one slice.
        cuts = np.searchsorted(changed, [chunk.rows.stop - rows.start for chunk in group])
        results = []
        for chunk, start, stop in zip(group, np.concatenate(([0], cuts[:-1])), cuts):
            local = changed[start:stop] - (chunk.rows.start - rows.start)
            chunk_labels = new_labels[start:stop]
            statistics = None
            # When many points move, summing every cluster afresh costs less than the
            # changes, and the chunk yields None for the statistics instead.
            if with_statistics and 0 < len(local) <= _MOVED_STATISTICS_FRACTION * chunk.X.shape[0]:
                statistics = _moved_statistics(chunk, local, own[changed[start:stop]], chunk_labels, n_clusters)
            results.append((chunk.rows.start + local, chunk_labels, statistics))
        return results

    # The chunks are handled in a few groups of consecutive chunks, two per thread: on
    # small chunks, NumPy's per-call overhead, which holds the interpreter lock, left
    # two threads slower than one. Labels do not depend on the grouping, and the
    # statistics are still taken chunk by chunk, so neither do the results.
    chunks = list(data.chunks())
    n_groups = min(len(chunks), max(2 * get_num_threads(), -(-data.n_samples // _MAX_GROUP_ROWS)))
    groups = [chunks[part.start : part.stop] for part in _even_slices(len(chunks), n_groups)]
    for results in parallel_map(kernel, groups):
        for moved_rows, new_labels, statistics in results:
            if len(moved_rows):
                yield moved_rows, new_labels, statistics


def _even_slices(n_items: int, n_parts: int) -> list[slice]:
    """Split range(n_items) into n_parts consecutive slices whose sizes differ by at most 1."""
    bounds = [n_items * part // n_parts for part in range(n_parts + 1)]
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]


def _lower_bound_drop(movement: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Return how far each cluster's points' lower bounds drop (k,), in ``dtype``.

    Every other centroid moved by at most the largest of ``movement`` (k,) among the
    other clusters: the largest one, or the runner-up for the largest mover's own points.
    """
    n_clusters = len(movement)
    if n_clusters < 2:
        return np.zeros(n_clusters, dtype=dtype)
    order = np.argsort(movement)
    drop = np.full(n_clusters, movement[order[-1]], dtype=dtype)
    drop[order[-1]] = movement[order[-2]]
    return drop


def _far_movers(movement: np.ndarray) -> np.ndarray:
    """Return the clusters whose movement (k,) may be worth measuring instead of following.

    Hamerly's lower bounds all drop by the largest movement, so one centroid that moves
    far puts every point in doubt. When at most k/16 clusters move at all, as near
    convergence, all of them are returned, and the lower bounds need not drop. Otherwise
    the smallest r up to k/16 whose largest movers, once left out, at least halve the
    drop are returned. The result is sorted, and empty when no such set exists.
    """
    n_clusters = len(movement)
    order = np.argsort(-movement, kind="stable")
    largest = movement[order[0]] if n_clusters else 0.0
    if largest <= 0.0:
        return np.empty(0, dtype=np.intp)
    limit = n_clusters // 16
    moving = np.flatnonzero(movement > 0.0)
    if len(moving) <= limit:
        return moving
    for count in range(1, limit + 1):
        if movement[order[count]] <= 0.5 * largest:
            return np.sort(order[:count])
    return np.empty(0, dtype=np.intp)


# Rows in the sample that estimates how many points a smaller drop would settle.
_SAMPLE_ROWS = 1024


def _measuring_pays(data, bounds, centroids, far, delta, half_gap, rounding_bound, drop, drop_without_far) -> bool:
    """Return whether measuring the clusters ``far`` is expected to cost less than it saves.

    Measuring them costs about len(far) / k of a full distance pass, and each point it
    settles saves about one full row of distances. The settled fraction is measured on
    about ``_SAMPLE_ROWS`` evenly spaced rows.
    """
    n_samples = len(bounds.labels)
    rows = np.arange(0, n_samples, max(1, n_samples // _SAMPLE_ROWS))
    own = bounds.labels[rows]
    upper = bounds.upper[rows] + np.take(delta, own)
    gap = np.take(half_gap, own)
    lower = bounds.lower[rows]
    doubt_following = upper > np.maximum(gap, _settling_threshold(lower - np.take(drop, own), rounding_bound))

    working = centroids[far].astype(data.X.dtype)
    column = np.full(len(centroids), -1, dtype=np.intp)
    column[far] = np.arange(len(far))
    to_far = _nearest_other_distance(
        np.take(data.X, rows, axis=0), data.x_squared_norms[rows], working, row_norms_squared(working), column[own]
    )
    lower_measuring = np.minimum(lower - np.take(drop_without_far, own), to_far)
    doubt_measuring = upper > np.maximum(gap, _settling_threshold(lower_measuring, rounding_bound))
    settled = float(doubt_following.mean()) - float(doubt_measuring.mean())
    return settled * len(delta) > len(far)


def _nearest_other_distance(
    X: np.ndarray,
    x_squared_norms: np.ndarray,
    centroids: np.ndarray,
    c_squared_norms: np.ndarray,
    own_column: np.ndarray,
) -> np.ndarray:
    """Return each row's distance (not squared) to the nearest of ``centroids``, (n_rows,).

    X (n_rows, n_features) and centroids (r, n_features) share one dtype. A row's own
    cluster, at column ``own_column`` (n_rows,) of the centroids or -1, is left out. The
    squared distances come from the expansion, one block of rows at a time, laid out
    (r, rows) so that the minimum over the few centroids runs along contiguous rows.
    """
    out = np.empty(X.shape[0], dtype=X.dtype)
    half_norms = 0.5 * c_squared_norms
    for rows in chunk_slices(X.shape[0], block_rows(centroids.shape[0])):
        # x.c - |c|^2 / 2 = (|x|^2 - d^2) / 2: the largest score is the nearest centroid.
        scores = centroids @ features_major(X[rows])  # (r, m)
        scores -= half_norms[:, None]
        columns = own_column[rows]
        owned = np.flatnonzero(columns >= 0)
        scores.reshape(-1)[columns[owned] * scores.shape[1] + owned] = -np.inf
        nearest = x_squared_norms[rows] - 2.0 * scores.max(axis=0)
        np.maximum(nearest, 0.0, out=nearest)
        out[rows] = np.sqrt(nearest)
    return out


def _moved_statistics(chunk: Chunk, rows: np.ndarray, old_labels: np.ndarray, new_labels: np.ndarray,
                      n_clusters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the change of the per-cluster sums (k, d), weights (k,), squares (k,) and
    members (k,) when the chunk's ``rows`` (local indices) move from ``old_labels`` to
    ``new_labels``.
    """
    # Each moved row enters its new cluster with its weight and leaves its old one with
    # the opposite weight, so one weighted sum gives the change.
    moved = np.take(chunk.X, rows, axis=0)
    X = np.concatenate([moved, moved])
    weights = np.ones(len(rows)) if chunk.sample_weight is None else chunk.sample_weight[rows]
    weights = np.concatenate([weights, -weights])
    labels = np.concatenate([new_labels, old_labels])
    norms = np.concatenate([chunk.x_squared_norms[rows], chunk.x_squared_norms[rows]]) * weights
    sums, weight_changes = cluster_sums(X, labels, weights, n_clusters)
    squares = np.bincount(labels, weights=norms, minlength=n_clusters)
    counted = weights != 0
    members = np.bincount(labels[counted], weights=np.sign(weights[counted]), minlength=n_clusters)
    return sums, weight_changes, squares, members.astype(np.int64)


def _squared_centroid_distances(centroids: np.ndarray) -> np.ndarray:
    """Return the squared distances between all pairs of centroids (k, k), float64."""
    norms = (centroids**2).sum(axis=1)
    return norms[:, None] - 2.0 * centroids @ centroids.T + norms[None, :]
