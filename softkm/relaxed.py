"""Soft and Gumbel-softmax modes: gradient descent on the relaxed k-means objective.

Both modes minimise ``L(C) = sum_x w_x sum_c p_xc d_xc / sum_x w_x`` over the centroids
C, where ``d_xc`` is a squared distance and ``p`` a relaxed one-hot membership:

- soft: ``p = softmax(-d / (tau * s))``, deterministic;
- gumbel: ``p = softmax((log pi + g) / tau)`` with ``log pi = log_softmax(-d / s)`` and
  fresh Gumbel noise ``g`` at every step (the reparameterisation trick: the noise is
  held fixed while the gradient is taken). Since ``log pi`` differs from ``-d / s``
  by a per-row constant, ``p = softmax(-d / (tau * s) + g / tau)``.

``s`` is the within-cluster scale: the weighted mean squared distance of the points
to their nearest initial centroid. ``tau * s`` is the absolute temperature.
The gradient, including the path through the softmax, comes from
``softkm.kernels.relaxed_chunk``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from softkm.chunks import Chunk, DataSource, farthest_points
from softkm.errors import EmptyClusterWarning
from softkm.kernels import ChunkStats, FarthestRows, relaxed_chunk, row_norms_squared
from softkm.lloyd import IterationRecord, RunResult, assignment_pass
from softkm.optim import make_optimizer

# A cluster whose total membership is below this fraction of one point's weight is
# starved: its gradient is too small to ever bring it back, so it is relocated.
_STARVED_FRACTION_OF_A_POINT = 1e-3


@dataclass(frozen=True)
class RelaxedSettings:
    """Options of one relaxed run, already validated.

    ``tau`` is the final dimensionless temperature and ``tau_start`` the first one.
    Soft mode anneals geometrically from ``tau_start`` to ``tau`` over the first half
    of ``max_iter``; gumbel mode follows ``max(tau, tau_start * exp(-anneal_rate * t))``.
    ``learning_rate`` is relative: Adam's step is ``learning_rate * sqrt(s)``, and for
    'gd' and 'scaled-gd' it multiplies the (scaled) gradient.
    """

    mode: str
    tau: float
    tau_start: float
    anneal_rate: float
    optimizer: str
    learning_rate: float
    max_iter: int
    tol: float
    straight_through: bool = False
    batch_size: int | None = None


def tau_schedule(settings: RelaxedSettings, iteration: int) -> float:
    """Return the dimensionless temperature of 0-based ``iteration``."""
    if settings.mode == "gumbel":
        return max(settings.tau, settings.tau_start * math.exp(-settings.anneal_rate * iteration))
    anneal_steps = max(1, settings.max_iter // 2)
    progress = min(1.0, iteration / anneal_steps)
    return settings.tau_start * (settings.tau / settings.tau_start) ** progress


def within_cluster_scale(data: DataSource, centroids: np.ndarray) -> float:
    """Return s, the weighted mean squared distance to the nearest of the centroids.

    When every point sits on a centroid (s = 0), the mean squared distance to the data
    mean takes its place, and 1.0 when that is 0 as well (all points equal), so that the
    temperature stays positive.
    """
    stats = assignment_pass(data, centroids)
    scale = stats.inertia / data.total_weight
    if scale > 0:
        return scale
    spread = assignment_pass(data, stats.sums.sum(axis=0, keepdims=True) / data.total_weight)
    scale = spread.inertia / data.total_weight
    return scale if scale > 0 else 1.0


def gradient_descent(
    data: DataSource,
    centroids: np.ndarray,
    scale: float,
    settings: RelaxedSettings,
    rng: np.random.Generator,
    on_iteration: Callable[[IterationRecord], None] | None = None,
) -> RunResult:
    """Minimise the relaxed objective from centroids (n_clusters, n_features), float64.

    Assumes valid settings and centroids in working units; ``scale`` is s (> 0). The
    objective and centroid shift reported for an iteration are those of the centroids
    it started from. The run has converged when, at the final temperature, the
    relative change of the objective is at most ``tol`` and the largest centroid step
    is at most ``tol * sqrt(s)``.
    """
    centroids = centroids.copy()
    # Adam's step has the units of the centroids, so its rate is scaled by sqrt(s), the
    # typical distance of a point to its centroid. The other optimisers' rates are
    # dimensionless multiples of the gradient.
    rate = settings.learning_rate * math.sqrt(scale) if settings.optimizer == "adam" else settings.learning_rate
    optimizer = make_optimizer(settings.optimizer, centroids.shape, rate)
    history: list[IterationRecord] = []
    previous_objective = math.inf
    n_relocated = 0
    converged = False
    started = time.perf_counter()
    batches = None
    if settings.batch_size is not None and settings.batch_size < data.n_samples:
        batches = data.minibatches(settings.batch_size, rng)
    # Keeping the farthest rows costs a partition of every chunk's distances (about 1 ms
    # per 125000 rows), so a pass keeps them only after a step that found starved
    # clusters. Starvation tends to repeat: on 256 blobs in 256 dimensions it came in
    # 12 of the first 20 steps, mostly in a row.
    keep_farthest = False

    for step in range(settings.max_iter):
        tau = tau_schedule(settings, step)
        batch = data if batches is None else next(batches)
        stats = relaxed_pass(batch, centroids, scale * tau, settings, tau, rng, keep_farthest)
        objective = stats.objective / batch.total_weight
        gradient = 2.0 * (centroids * stats.weights[:, None] - stats.sums) / batch.total_weight

        update = optimizer.step(gradient, stats.mass / batch.total_weight)
        centroids -= update
        starved = _starved_clusters(batch, stats)
        if len(starved):
            n_relocated += _relocate_starved(data, centroids, starved, stats.farthest)
            optimizer.reset(starved)
        # A minibatch's farthest rows would cover the batch only, so relocation after a
        # minibatch step always searches all of the data.
        keep_farthest = len(starved) > 0 and batches is None

        shift = float((update**2).sum())
        record = IterationRecord(
            step + 1, objective, stats.inertia / batch.total_weight, tau, shift, time.perf_counter() - started
        )
        history.append(record)
        if on_iteration is not None:
            on_iteration(record)

        final_temperature = tau == settings.tau
        small_change = abs(previous_objective - objective) <= settings.tol * abs(objective)
        small_step = float(np.abs(update).max(initial=0.0)) <= settings.tol * math.sqrt(scale)
        previous_objective = objective
        if settings.mode == "soft" and settings.batch_size is None and final_temperature and small_change and small_step:
            converged = True
            break

    return RunResult(centroids, len(history), converged, history, n_relocated)


def relaxed_pass(
    data: DataSource,
    centroids: np.ndarray,
    temperature: float,
    settings: RelaxedSettings,
    tau: float,
    rng: np.random.Generator,
    keep_farthest: bool = False,
) -> ChunkStats:
    """Sum the relaxed objective and gradient statistics over all chunks.

    Gumbel noise is drawn per chunk from a generator seeded by one draw of ``rng`` and
    the chunk index, so the noise of a chunk does not depend on how chunks are scheduled.
    The kernel refers to nothing but its chunk, the centroids and plain settings, so
    it can be shipped to the workers of a cluster. With ``keep_farthest`` the returned
    statistics keep the rows farthest from these centroids (``ChunkStats.farthest``),
    for relocation without another pass.
    """
    dtype = data.dtype
    n_clusters = centroids.shape[0]
    straight_through = settings.straight_through
    working = centroids.astype(dtype)
    c_squared_norms = row_norms_squared(working)
    noise_key = int(rng.integers(0, 2**63)) if settings.mode == "gumbel" else None

    def kernel(chunk: Chunk) -> ChunkStats:
        noise_rng = None
        if noise_key is not None:
            # SFC64 rather than NumPy's default PCG64: random_raw ran about 25% faster
            # with NumPy 2.4 on an AMD EPYC, and the bits are a third of the noise's cost.
            noise_rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence([noise_key, chunk.index])))
        stats, _ = relaxed_chunk(
            chunk.X,
            chunk.x_squared_norms,
            chunk.sample_weight,
            working,
            c_squared_norms,
            temperature,
            straight_through=straight_through,
            first_row=chunk.rows.start if keep_farthest else None,
            noise_rng=noise_rng,
            noise_scale=1.0 / tau,
        )
        return stats

    return data.reduce(kernel, n_clusters)


def _starved_clusters(data: DataSource, stats: ChunkStats) -> np.ndarray:
    """Return the indices of clusters whose total membership is below a point's fraction."""
    if stats.mass is None:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(stats.mass < _STARVED_FRACTION_OF_A_POINT * data.min_positive_weight)


def _relocate_starved(
    data: DataSource, centroids: np.ndarray, starved: np.ndarray, candidates: FarthestRows | None = None
) -> int:
    """Move starved centroids onto the points farthest from their nearest centroid, in place.

    ``candidates`` are the farthest rows found by the pass that computed the gradient,
    so the distances are to the centroids before this step, as in hard mode, where
    relocation uses the centroids of the assignment. The candidates hold n_clusters
    rows (or all rows, if fewer), enough for every starved cluster. Without candidates
    a separate pass finds the farthest rows from ``centroids``.
    """
    farthest = candidates if candidates is not None else farthest_points(data, centroids, len(starved))
    distances = farthest.distances[: len(starved)]
    # As in hard mode, a point already on a centroid is no place to move to.
    rounding = 16 * np.finfo(data.dtype).eps * farthest.max_squared_norm
    usable = distances > rounding
    count = int(np.count_nonzero(usable))
    if count == 0:
        return 0
    centroids[starved[:count]] = farthest.points[: len(starved)][usable]
    warnings.warn(
        f"{count} cluster(s) lost nearly all membership and were moved to the farthest points",
        EmptyClusterWarning,
        stacklevel=3,
    )
    return count
