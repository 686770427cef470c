"""The fitting engine: validation, preprocessing, restarts and the final assignment.

``fit`` is the library's entry point for data in memory, and ``fit_source`` for data
that is streamed from disk or spread over a cluster (a ``RawSource``). Both validate
their arguments once, map the data to working units (``softkm.preprocessing``), run
``n_init`` restarts of the chosen mode on a ``softkm.chunks.DataSource``, keep the
best, and end with an assignment step so that the labels always belong to the
returned centroids. ``predict`` repeats that last step for new
data with the same arithmetic, so that predicting the training data reproduces the
labels of the fit bit for bit.

The engine never prints: it reports progress through an ``on_iteration`` callback
and degenerate situations through warnings from ``softkm.errors``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from softkm.chunks import Chunk, ChunkedData, DataSource, draw_sample
from softkm.errors import (
    ConvergenceWarning,
    DegenerateDataWarning,
    EmptyClusterWarning,
    ModelError,
    OptionError,
    SoftkmWarning,
)
from softkm.initialization import kmeans_plusplus, random_points
from softkm.kernels import (
    ChunkStats,
    assign_chunk,
    chunk_slices,
    responsibilities_chunk,
    row_norms_squared,
    squared_residuals,
    weighted_total,
)
from softkm.hamerly import Bounds, final_labels, hamerly
from softkm.lloyd import IterationRecord, RunResult, lloyd
from softkm.memory import trim_c_heap
from softkm.optim import OPTIMIZERS
from softkm.parallel import parallel_map, single_threaded_blas
from softkm.preprocessing import DataMoments, Preprocessing, weighted_moments
from softkm.relaxed import (
    RelaxedSettings,
    gradient_descent,
    relaxed_pass,
    within_cluster_scale,
)

MODES = ("hard", "soft", "gumbel")
ALGORITHMS = ("hamerly", "lloyd")
INITS = ("k-means++", "random")
DTYPES = ("float64", "float32")

DEFAULT_TAU = 0.5
DEFAULT_GUMBEL_TAU_START = 1.0
DEFAULT_ANNEAL_RATE = 0.02
DEFAULT_LEARNING_RATE = {"adam": 0.05, "gd": 0.5, "scaled-gd": 1.0}

# k-means++ and random starts run on a seeded uniform sample of this many rows. In a
# sample of 1e5 rows a cluster with 1% of the weight has about 1000 points, and
# k-means++ on it costs O(1e5 * n_clusters * n_features * (2 + ln k)) whatever n_samples is.
DEFAULT_INIT_SAMPLE = 100_000


class RawSource(Protocol):
    """Input data in the user's units that can be read in several passes.

    ``moments`` reads the data once for the preprocessing, and ``working`` returns the
    same rows mapped to working units as a ``DataSource``.
    """

    n_samples: int
    n_features: int

    def moments(self, dtype: str) -> DataMoments: ...

    def working(self, preprocessing: Preprocessing, dtype: str, n_clusters: int,
                chunk_size: int | None) -> DataSource: ...


@dataclass
class FitResult:
    """The outcome of ``fit``: the best restart, in the user's units.

    ``centroids`` is (n_clusters, n_features) float64 and ``labels`` (n_samples,) int64,
    or None from ``fit_source``.
    ``inertia`` is the weighted sum of squared distances to the nearest centroid and
    ``objective`` the mode's own objective per unit weight (the relaxed objective for
    soft and gumbel, inertia / total weight for hard), both in squared user units
    (z-scored units with ``standardize``). ``scale`` is the within-cluster scale s, the
    weighted mean squared distance to the nearest initial centroid, in every mode, and
    ``temperature`` the absolute temperature ``tau * s`` (None in hard mode).
    ``history`` lists the iterations of the best restart, in working units, and
    ``restart_scores`` the value each restart was ranked by (the soft objective in soft
    mode, else the inertia), per unit weight, in squared user units.
    """

    centroids: np.ndarray
    labels: np.ndarray | None
    inertia: float
    objective: float
    n_iter: int
    converged: bool
    mode: str
    n_clusters: int
    n_samples: int
    n_features: int
    dtype: str
    preprocessing: Preprocessing
    parameters: dict
    scale: float
    temperature: float | None
    runtime: float
    history: list[IterationRecord] = field(default_factory=list)
    best_restart: int = 0
    restart_scores: list[float] = field(default_factory=list)
    n_relocated: int = 0


def fit(
    X: np.ndarray,
    n_clusters: int,
    *,
    mode: str = "hard",
    sample_weight: np.ndarray | None = None,
    init: str | np.ndarray = "k-means++",
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    tau: float = DEFAULT_TAU,
    tau_start: float | None = None,
    anneal_rate: float = DEFAULT_ANNEAL_RATE,
    optimizer: str = "adam",
    learning_rate: float | None = None,
    straight_through: bool = False,
    batch_size: int | None = None,
    standardize: bool = False,
    dtype: str = "float64",
    chunk_size: int | None = None,
    init_sample: int = DEFAULT_INIT_SAMPLE,
    copy_x: bool = True,
    client=None,
    algorithm: str = "hamerly",
    on_iteration: Callable[[int, IterationRecord], None] | None = None,
) -> FitResult:
    """Cluster X (n_samples, n_features) into n_clusters with the chosen assignment mode.

    ``init`` is 'k-means++', 'random', or centroids in user units, either
    (n_clusters, n_features) for every restart or (n_init, n_clusters, n_features).
    In hard mode ``tol`` bounds the total squared centroid shift relative to the mean
    feature variance, as in scikit-learn. In soft mode it bounds both the relative
    change of the objective and the largest step relative to sqrt(s). k-means++ and
    random starts are drawn from a seeded uniform sample of ``init_sample`` rows (all
    rows when there are fewer).

    With a ``dask.distributed.Client`` as ``client`` the working-unit data is scattered
    to the cluster's workers and every pass runs there (``softkm.dask_engine``).

    ``algorithm`` picks how hard mode runs its Lloyd iterations on in-memory data:
    'hamerly' (the default) skips the points that triangle-inequality bounds prove
    cannot change cluster, at the cost of two bounds per point, and 'lloyd' recomputes
    every distance. Both give the same labels for the same centroids, and centroids
    equal up to rounding, since Hamerly's loop updates its sums (``softkm.hamerly``).
    The Dask engine always runs 'lloyd'.

    ``copy_x=False`` lets the engine overwrite X with its working-unit copy when X
    already has ``dtype``. That saves a copy of the data, but X no longer holds the
    caller's values afterwards. ``on_iteration(restart, record)`` is called after every
    iteration, with the record's objective, inertia and shift in the fit's squared units
    (the user's, or z-scores with ``standardize``), unlike ``history``, which stays in
    working units. While the fit runs, BLAS is held to one thread in the whole process (the
    thread pool supplies the parallelism), in ``on_iteration`` too.

    Raises ``OptionError`` for invalid options and shapes.
    """
    with single_threaded_blas():
        started = time.perf_counter()
        X = _check_data(X, dtype)
        sample_weight = _check_sample_weight(sample_weight, X.shape[0])
        settings = _check_options(
            X.shape[0], n_clusters, mode, init, n_init, max_iter, tol, tau, tau_start, anneal_rate,
            optimizer, learning_rate, straight_through, batch_size, chunk_size, init_sample,
        )
        init_centroids = _check_init(init, n_clusters, X.shape[1], n_init)
        init_centroids = _distinct_starts(init, init_centroids, mode, batch_size)
        if algorithm not in ALGORITHMS:
            raise OptionError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")

        preprocessing = Preprocessing.fit(X, sample_weight, standardize)
        working = preprocessing.transform(X, np.dtype(dtype), out=None if copy_x else X)
        data = ChunkedData.build(working, sample_weight, n_clusters, chunk_size)
        # tol 0 (run to max_iter or to unchanged labels) needs no variance, which saves a pass.
        tol_shift = tol * float(np.mean(weighted_moments(working, None)[1] ** 2)) if tol > 0 else 0.0
        in_memory = data
        if client is not None:
            from softkm import dask_engine

            data = dask_engine.DaskSource.scatter(client, data)
            algorithm = "lloyd"

        best_restart, run, scale, restart_scores = _run_restarts(
            data, preprocessing, n_clusters, mode, settings, init, init_centroids, n_init, seed, tol_shift,
            init_sample, on_iteration, algorithm,
        )
        result = _finish(data, preprocessing, run, scale, settings, mode, n_clusters, dtype, best_restart,
                         restart_scores, started, with_labels=True)
        _warn_if_clusters_empty(in_memory, result.labels, n_clusters)
        return result


def fit_source(
    source: RawSource,
    n_clusters: int,
    *,
    mode: str = "hard",
    init: str | np.ndarray = "k-means++",
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    tau: float = DEFAULT_TAU,
    tau_start: float | None = None,
    anneal_rate: float = DEFAULT_ANNEAL_RATE,
    optimizer: str = "adam",
    learning_rate: float | None = None,
    straight_through: bool = False,
    batch_size: int | None = None,
    standardize: bool = False,
    dtype: str = "float64",
    chunk_size: int | None = None,
    init_sample: int = DEFAULT_INIT_SAMPLE,
    on_iteration: Callable[[int, IterationRecord], None] | None = None,
) -> FitResult:
    """Cluster the rows of ``source`` without holding them in memory on this process.

    The options mean what they mean for ``fit``; the data's sample weights, if any,
    come with the source. The result has no labels (``labels`` is None), because they
    would take n_samples entries: write them with a pass of the source's own. The
    preprocessing comes from one pass over the data, the fit from one or two passes per
    iteration, and the initial centroids from a sample of ``init_sample`` rows.

    Raises ``OptionError`` for invalid options, and what the source raises for invalid data.
    """
    with single_threaded_blas():
        started = time.perf_counter()
        if dtype not in DTYPES:
            raise OptionError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        settings = _check_options(
            source.n_samples, n_clusters, mode, init, n_init, max_iter, tol, tau, tau_start, anneal_rate,
            optimizer, learning_rate, straight_through, batch_size, chunk_size, init_sample,
        )
        init_centroids = _check_init(init, n_clusters, source.n_features, n_init)
        init_centroids = _distinct_starts(init, init_centroids, mode, batch_size)

        moments = source.moments(dtype)
        if n_clusters > moments.n_samples:
            raise OptionError(
                f"n_clusters={n_clusters} is larger than the number of usable rows ({moments.n_samples}); lower -k"
            )
        preprocessing = Preprocessing.from_moments(moments.mean, moments.std, standardize)
        data = source.working(preprocessing, dtype, n_clusters, chunk_size)
        if not data.total_weight <= _MAX_TOTAL_WEIGHT:
            raise OptionError(_weight_overflow_message())
        tol_shift = tol * float(np.mean((moments.unweighted_std / preprocessing.scale) ** 2))

        best_restart, run, scale, restart_scores = _run_restarts(
            data, preprocessing, n_clusters, mode, settings, init, init_centroids, n_init, seed, tol_shift,
            init_sample, on_iteration,
        )
        return _finish(data, preprocessing, run, scale, settings, mode, n_clusters, dtype, best_restart,
                       restart_scores, started, with_labels=False)


def _run_restarts(
    data: DataSource,
    preprocessing: Preprocessing,
    n_clusters: int,
    mode: str,
    settings: RelaxedSettings,
    init: str | np.ndarray,
    init_centroids: np.ndarray | None,
    n_init: int,
    seed: int,
    tol_shift: float,
    init_sample: int,
    on_iteration: Callable[[int, IterationRecord], None] | None,
    algorithm: str = "lloyd",
) -> tuple[int, RunResult, float, list[float]]:
    """Run every restart and return (best restart, its run, its scale s, every restart's score)."""
    if init_centroids is not None:
        n_init = init_centroids.shape[0]
    best: tuple[float, int, RunResult, float | None] | None = None
    restart_scores: list[float] = []
    for restart, restart_seed in enumerate(np.random.SeedSequence(seed).spawn(n_init)):
        init_seed, noise_seed = restart_seed.spawn(2)
        if init_centroids is not None:
            start = _checked_working_centroids(
                preprocessing, init_centroids[restart], data.dtype,
                "initial centroids lie so far from the data that squared distances overflow; "
                "give starting centroids within the range of the data",
            )
        else:
            start = initial_centroids(data, n_clusters, init, np.random.default_rng(init_seed), init_sample)
            # The sample and its index draw are freed now; keep their peak out of the fit.
            trim_c_heap()

        callback = None
        if on_iteration is not None:
            unit = preprocessing.squared_unit

            def callback(record: IterationRecord, r: int = restart) -> None:
                on_iteration(r, dataclasses.replace(
                    record, objective=record.objective * unit, inertia=record.inertia * unit, shift=record.shift * unit
                ))
        if mode == "hard":
            # Hamerly's bounds need the data in this process's memory.
            hard_loop = hamerly if algorithm == "hamerly" and isinstance(data, ChunkedData) else lloyd
            run = hard_loop(data, start, settings.max_iter, tol_shift, callback)
            # The first iteration measured the inertia of the starting centroids, which
            # is the within-cluster scale, so hard mode needs no extra pass for it.
            first_inertia = run.history[0].inertia
            scale = first_inertia if first_inertia > 0 else within_cluster_scale(data, start)
        else:
            scale = within_cluster_scale(data, start)
            _check_temperatures(settings, scale, preprocessing.squared_unit, data.dtype)
            run = gradient_descent(data, start, scale, settings, np.random.default_rng(noise_seed), callback)

        # With one restart there is nothing to rank, and the final assignment in
        # _finish measures the same score, so the extra pass is skipped.
        score = _restart_score(mode, data, run, scale, settings) if n_init > 1 else 0.0
        restart_scores.append(score * preprocessing.squared_unit)
        if best is None or score < best[0]:
            best = (score, restart, run, scale)

    _, best_restart, run, scale = best
    if not run.converged and mode != "gumbel" and settings.batch_size is None:
        warnings.warn(
            f"{mode} mode reached max_iter={settings.max_iter} before converging; "
            "raise --max-iter or --tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    return best_restart, run, scale, restart_scores


def initial_centroids(
    data: DataSource, n_clusters: int, init: str, rng: np.random.Generator, init_sample: int = DEFAULT_INIT_SAMPLE
) -> np.ndarray:
    """Choose initial centroids (n_clusters, n_features) in working units by ``init``.

    Both methods run on a uniform sample of ``init_sample`` rows drawn with ``rng``, or
    on all rows when there are no more than that.
    """
    sample = draw_sample(data, init_sample, rng)
    if init == "random":
        return random_points(sample.X, n_clusters, rng, sample.sample_weight)
    return kmeans_plusplus(sample.X, n_clusters, rng, sample.sample_weight, sample.x_squared_norms)


def predict(
    X: np.ndarray, centroids: np.ndarray, preprocessing: Preprocessing, dtype: str, chunk_size: int | None = None
) -> tuple[np.ndarray, float]:
    """Assign X (n_samples, n_features) in user units to centroids in user units.

    Returns labels (n_samples,) int64 and the inertia in squared user units, computed
    with the same working-unit arithmetic as the end of ``fit``.
    """
    with single_threaded_blas():
        X = _check_data(X, dtype)
        working = preprocessing.transform(X, np.dtype(dtype))
        data = ChunkedData.build(working, None, centroids.shape[0], chunk_size)
        working_centroids = _checked_working_centroids(preprocessing, centroids, data.dtype, _FAR_MODEL_MESSAGE)
        labels, inertia = _final_assignment(data, working_centroids)
        return labels, inertia * preprocessing.squared_unit


_SMALLEST = float(np.finfo(np.float64).smallest_subnormal)
_LARGEST = float(np.finfo(np.float64).max)


def _is_positive_finite(value: float) -> bool:
    """Return whether value is a float64 above 0 and below infinity."""
    return _SMALLEST <= value <= _LARGEST


def _working_temperature_range(dtype) -> tuple[float, float]:
    """Return the temperatures the kernels handle in ``dtype``: float64 takes any positive
    finite value, float32 the normal range, where ``2 / T`` stays finite in float32.
    """
    if np.dtype(dtype) == np.float64:
        return _SMALLEST, _LARGEST
    info = np.finfo(np.float32)
    return float(info.tiny), float(info.max) / 2.0


def _check_temperatures(settings: RelaxedSettings, scale: float, unit: float, dtype) -> None:
    """Raise OptionError unless ``tau * s`` and ``tau_start * s`` lie in the working
    dtype's range of temperatures in working units (``scale`` is s there), and are
    positive and finite in user units (times ``unit``).

    Outside it the kernels would divide by 0 or overflow to NaN, and an infinite
    temperature could not be stored in the model file.
    """
    check_temperature("tau", settings.tau, scale, unit, dtype)
    check_temperature("tau_start", settings.tau_start, scale, unit, dtype)


def check_temperature(name: str, tau: float, scale: float, unit: float = 1.0, dtype="float64") -> None:
    """Raise OptionError unless the temperature ``tau * s`` lies in the range of ``dtype``
    (see ``_working_temperature_range``) in working units, where ``scale`` is s, and is
    positive and finite in user units (times ``unit``). ``name`` is the option's name.
    """
    smallest, largest = _working_temperature_range(dtype)
    if smallest <= tau * scale <= largest and _is_positive_finite(tau * scale * unit):
        return
    low = max(smallest / scale, _SMALLEST / (scale * unit))
    high = min(largest / scale, _LARGEST / (scale * unit))
    raise OptionError(
        f"{name}={tau:g} times the data's within-cluster scale s={scale * unit:.6g} gives a temperature "
        f"of {tau * scale * unit:.6g}, outside the range that {np.dtype(dtype).name} arithmetic handles; "
        f"choose {name} between {low:.3g} and {high:.3g}"
    )


def predict_proba(
    X: np.ndarray,
    centroids: np.ndarray,
    preprocessing: Preprocessing,
    dtype: str,
    temperature: float,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Return soft memberships ``softmax(-d / temperature)`` (n_samples, n_clusters).

    ``temperature`` is absolute and in squared user units; rows sum to 1.
    """
    with single_threaded_blas():
        X = _check_data(X, dtype)
        if not (math.isfinite(temperature) and temperature > 0):
            raise OptionError(f"temperature must be finite and > 0, got {temperature}")
        unit = preprocessing.squared_unit
        smallest, largest = _working_temperature_range(dtype)
        if not smallest <= temperature / unit <= largest:
            low, high = smallest * unit, largest * unit
            raise OptionError(
                f"the temperature tau * s = {temperature:.6g} is outside the range that {np.dtype(dtype).name} "
                f"arithmetic handles for this model ({low:.3g} to {high:.3g}); choose a tau that brings tau * s into it"
            )
        working = preprocessing.transform(X, np.dtype(dtype))
        data = ChunkedData.build(working, None, centroids.shape[0], chunk_size)
        working_centroids = _checked_working_centroids(preprocessing, centroids, data.dtype, _FAR_MODEL_MESSAGE)
        return memberships(data, working_centroids, temperature / preprocessing.squared_unit)


def memberships(data: ChunkedData, centroids: np.ndarray, temperature: float) -> np.ndarray:
    """Return ``softmax(-d / temperature)`` (n_samples, n_clusters), float64, in working units."""
    working = centroids.astype(data.X.dtype)
    c_squared_norms = row_norms_squared(working)
    out = np.empty((data.n_samples, centroids.shape[0]))

    def kernel(chunk: Chunk) -> None:
        out[chunk.rows] = responsibilities_chunk(chunk.X, chunk.x_squared_norms, working, c_squared_norms, temperature)

    for _ in data.map(kernel):
        pass
    return out


def _finish(
    data: DataSource,
    preprocessing: Preprocessing,
    run: RunResult,
    scale: float | None,
    settings: RelaxedSettings,
    mode: str,
    n_clusters: int,
    dtype: str,
    best_restart: int,
    restart_scores: list[float],
    started: float,
    with_labels: bool,
) -> FitResult:
    """Assemble the result of the best restart, with labels from a final assignment step.

    The centroids go to user units and back before the assignment, exactly as
    ``predict`` will see them after a round trip through a model file. Without
    ``with_labels`` the step computes the inertia alone and ``labels`` is None.
    """
    centroids = preprocessing.inverse_centroids(run.centroids)
    labels, inertia = _final_assignment(data, preprocessing.transform_centroids(centroids), with_labels, run.bounds)
    unit = preprocessing.squared_unit
    if mode == "hard":
        objective = inertia / data.total_weight
        temperature = None
    else:
        objective = _relaxed_objective(data, run.centroids, scale, settings)
        temperature = settings.tau * scale * unit
    if len(restart_scores) == 1:
        restart_scores = [objective * unit if mode == "soft" else inertia / data.total_weight * unit]
    return FitResult(
        centroids=centroids,
        labels=labels,
        inertia=inertia * unit,
        objective=objective * unit,
        n_iter=run.n_iter,
        converged=run.converged,
        mode=mode,
        n_clusters=n_clusters,
        n_samples=data.n_samples,
        n_features=data.n_features,
        dtype=dtype,
        preprocessing=preprocessing,
        parameters=_parameters(settings, mode),
        scale=scale * unit,
        temperature=temperature,
        runtime=time.perf_counter() - started,
        history=run.history,
        best_restart=best_restart,
        restart_scores=restart_scores,
        n_relocated=run.n_relocated,
    )


def _final_assignment(
    data: DataSource, centroids: np.ndarray, with_labels: bool = True, bounds: Bounds | None = None
) -> tuple[np.ndarray | None, float]:
    """Return labels (n_samples,) or None, and the weighted inertia, recomputed directly.

    The inertia is summed as ``|x - c|^2`` in float64 rather than taken from the
    distance expansion, so it carries no cancellation error in float32. ``bounds`` from
    Hamerly's loop give the same labels while assigning again only the points that the
    bounds leave in doubt (see ``softkm.hamerly.final_labels``).
    """
    working = centroids.astype(data.dtype)
    c_squared_norms = row_norms_squared(working)

    def residual_inertia(chunk: Chunk, chunk_labels: np.ndarray) -> float:
        return weighted_total(squared_residuals(chunk.X, working, chunk_labels), chunk.sample_weight)

    if bounds is not None and isinstance(data, ChunkedData):
        # The labelled assignment is the fit's last use of the bounds.
        labels = final_labels(data, bounds, centroids, last=with_labels)
        inertia = 0.0
        for value in data.map(lambda chunk: residual_inertia(chunk, labels[chunk.rows])):
            inertia += value
        return (labels.astype(np.int64) if with_labels else None), inertia

    def assign(chunk: Chunk) -> tuple[np.ndarray, float]:
        chunk_labels, _ = assign_chunk(chunk.X, chunk.x_squared_norms, working, c_squared_norms)
        return chunk_labels, residual_inertia(chunk, chunk_labels)

    if not with_labels:
        n_clusters, n_features = centroids.shape

        def inertia_only(chunk: Chunk) -> ChunkStats:
            _, inertia = assign(chunk)
            return ChunkStats(np.zeros((n_clusters, n_features)), np.zeros(n_clusters), inertia, inertia)

        return None, data.reduce(inertia_only, n_clusters).inertia

    labels = np.empty(data.n_samples, dtype=np.int64)
    inertia = 0.0
    position = 0
    for chunk_labels, chunk_inertia in data.map(assign):
        labels[position : position + len(chunk_labels)] = chunk_labels
        position += len(chunk_labels)
        inertia += chunk_inertia
    return labels, inertia


def _relaxed_objective(data: DataSource, centroids: np.ndarray, scale: float, settings: RelaxedSettings) -> float:
    """Return the soft objective per unit weight at the final temperature, without noise."""
    soft = RelaxedSettings("soft", settings.tau, settings.tau, 0.0, "adam", 0.0, 1, 0.0)
    stats = relaxed_pass(data, centroids, scale * settings.tau, soft, settings.tau, np.random.default_rng(0))
    return stats.objective / data.total_weight


def _restart_score(
    mode: str, data: DataSource, run: RunResult, scale: float | None, settings: RelaxedSettings
) -> float:
    """Return the value restarts are ranked by: the soft objective for soft mode, else inertia."""
    if mode == "soft":
        return _relaxed_objective(data, run.centroids, scale, settings)
    _, inertia = _final_assignment(data, run.centroids, with_labels=False, bounds=run.bounds)
    return inertia / data.total_weight


def _parameters(settings: RelaxedSettings, mode: str) -> dict:
    """Return the mode's parameters as stored in a model file."""
    if mode == "hard":
        return {"max_iter": settings.max_iter, "tol": settings.tol}
    parameters = {
        "tau": settings.tau,
        "tau_start": settings.tau_start,
        "optimizer": settings.optimizer,
        "learning_rate": settings.learning_rate,
        "max_iter": settings.max_iter,
        "tol": settings.tol,
        "batch_size": settings.batch_size,
    }
    if mode == "gumbel":
        parameters["anneal_rate"] = settings.anneal_rate
        parameters["straight_through"] = settings.straight_through
    return parameters


def _warn_if_clusters_empty(data: ChunkedData, labels: np.ndarray, n_clusters: int) -> None:
    """Warn when the final labels leave a cluster empty: because X has fewer distinct rows
    than n_clusters, or else naming the empty clusters.

    Fewer distinct rows than clusters always leaves a cluster without points (tied
    centroids send their points to the lowest index), so the rows are only counted,
    which costs a sort, when the final labels leave a cluster empty.
    """
    counts = np.bincount(labels, minlength=n_clusters)
    if counts.min() > 0:
        return
    distinct = np.unique(data.X, axis=0).shape[0]
    if distinct < n_clusters:
        warnings.warn(
            f"the data has {distinct} distinct point{'' if distinct == 1 else 's'}, fewer than n_clusters={n_clusters}; "
            "some clusters will coincide or stay empty",
            DegenerateDataWarning,
            stacklevel=3,
        )
        return
    # With enough distinct points, an empty cluster means centroids that coincide or lie
    # far from every point, as soft mode leaves two equal starting centroids.
    empty = np.flatnonzero(counts == 0)
    warnings.warn(
        f"{len(empty)} of the {n_clusters} clusters have no points in the final assignment "
        f"(cluster {', '.join(str(int(index)) for index in empty[:5])}{', ...' if len(empty) > 5 else ''}); "
        "try another seed, more restarts (--n-init) or another start",
        EmptyClusterWarning,
        stacklevel=3,
    )


def _check_data(X: np.ndarray, dtype: str) -> np.ndarray:
    if dtype not in DTYPES:
        raise OptionError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    X = np.asarray(X)
    if X.ndim != 2:
        raise OptionError(f"X must be 2-dimensional (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise OptionError(f"X must have at least one row and one column, got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    if not _all_finite(X):
        raise OptionError("X contains NaN or infinite values; remove or impute them first")
    return np.ascontiguousarray(X)


# Entries per block of the finiteness check, which bounds its boolean temporary.
_FINITE_CHECK_ENTRIES = 1 << 18


def _all_finite(X: np.ndarray) -> bool:
    """Return whether every entry of X (n_samples, n_features) is finite, block by block on the pool."""
    rows = max(1, _FINITE_CHECK_ENTRIES // X.shape[1])
    return all(parallel_map(lambda block: bool(np.isfinite(X[block]).all()), chunk_slices(X.shape[0], rows)))


def _check_sample_weight(sample_weight: np.ndarray | None, n_samples: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n_samples,):
        raise OptionError(f"sample_weight must have shape ({n_samples},), got {weights.shape}")
    invalid = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if len(invalid):
        row = int(invalid[0])
        raise OptionError(
            f"sample_weight must be finite and non-negative, got {weights[row]!r} at row {row} "
            f"({len(invalid)} invalid row(s)); fix or drop those weights"
        )
    with np.errstate(over="ignore"):  # an overflowing sum is reported below
        total = weights.sum()
    if total <= 0:
        raise OptionError("sample_weight is zero for every row; give at least one row a positive weight")
    if not total <= _MAX_TOTAL_WEIGHT:
        raise OptionError(_weight_overflow_message(f" (largest weight {weights.max():.6g})"))
    return weights


# Weighted sums of squared distances must stay finite in float64. The working data
# have a spread near 1, so a total weight up to this leaves a margin of 1e8.
_MAX_TOTAL_WEIGHT = 1e300


def _weight_overflow_message(detail: str = "") -> str:
    return (
        f"the sample weights sum to more than {_MAX_TOTAL_WEIGHT:g}, too close to the float64 range for "
        f"weighted sums{detail}; divide every weight by the same factor, e.g. the largest weight"
    )


def _check_options(
    n_samples, n_clusters, mode, init, n_init, max_iter, tol, tau, tau_start, anneal_rate,
    optimizer, learning_rate, straight_through, batch_size, chunk_size, init_sample,
) -> RelaxedSettings:
    """Validate the options once and return them as ``RelaxedSettings``."""
    if mode not in MODES:
        raise OptionError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise OptionError(f"n_clusters must be a positive integer, got {n_clusters!r}")
    if n_clusters > n_samples:
        raise OptionError(f"n_clusters={n_clusters} is larger than the number of rows ({n_samples}); lower -k")
    if isinstance(init, str) and init not in INITS:
        raise OptionError(f"init must be one of {', '.join(INITS)} or an array of centroids, got {init!r}")
    _check_positive_int("n_init", n_init)
    _check_positive_int("max_iter", max_iter)
    _check_finite("tol", tol, minimum=0.0, inclusive=True)
    _check_finite("tau", tau)
    if tau_start is not None:
        _check_finite("tau_start", tau_start)
        if tau_start < tau:
            raise OptionError(f"tau_start={tau_start} is below tau={tau}; annealing goes from a higher to a lower tau")
    _check_finite("anneal_rate", anneal_rate, minimum=0.0, inclusive=True)
    if optimizer not in OPTIMIZERS:
        raise OptionError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATE[optimizer]
    _check_finite("learning_rate", learning_rate)
    if batch_size is not None:
        _check_positive_int("batch_size", batch_size)
        if batch_size >= n_samples:
            batch_size = None
    if chunk_size is not None:
        _check_positive_int("chunk_size", chunk_size)
    _check_positive_int("init_sample", init_sample)
    if init_sample < n_clusters:
        raise OptionError(f"init_sample={init_sample} is smaller than n_clusters={n_clusters}; raise --init-sample")
    if straight_through and mode != "gumbel":
        raise OptionError("straight_through applies to gumbel mode only; add --mode gumbel or drop it")
    if tau_start is None:
        tau_start = max(DEFAULT_GUMBEL_TAU_START, tau) if mode == "gumbel" else tau
    return RelaxedSettings(
        mode, float(tau), float(tau_start), float(anneal_rate), optimizer, float(learning_rate),
        int(max_iter), float(tol), bool(straight_through), batch_size,
    )


def _check_init(init, n_clusters: int, n_features: int, n_init: int) -> np.ndarray | None:
    """Return explicit initial centroids as (n_restarts, n_clusters, n_features), or None."""
    if isinstance(init, str):
        return None
    centroids = np.asarray(init, dtype=np.float64)
    if centroids.ndim == 2:
        centroids = np.broadcast_to(centroids, (n_init,) + centroids.shape)
    if centroids.ndim != 3 or centroids.shape[1:] != (n_clusters, n_features):
        raise OptionError(
            f"initial centroids must have shape ({n_clusters}, {n_features}) or "
            f"(n_init, {n_clusters}, {n_features}), got {np.shape(init)}"
        )
    if not np.all(np.isfinite(centroids)):
        raise OptionError("initial centroids contain NaN or infinite values")
    return centroids


def _distinct_starts(init, init_centroids: np.ndarray | None, mode: str, batch_size: int | None) -> np.ndarray | None:
    """Keep one restart when a single set of explicit centroids would start identical runs.

    Hard mode and full-batch soft mode are deterministic, so n_init copies of the same
    (n_clusters, n_features) start give n_init equal runs: one is run, with a warning,
    as scikit-learn does. Gumbel mode and mini-batches draw other noise per restart.
    """
    if init_centroids is None or np.ndim(init) != 2 or len(init_centroids) == 1:
        return init_centroids
    if mode == "gumbel" or (mode == "soft" and batch_size is not None):
        return init_centroids
    warnings.warn(
        f"one set of initial centroids makes the {len(init_centroids)} restarts of {mode} mode identical, "
        "so one is run; pass different starts (an n_init x k x d array) for real restarts",
        SoftkmWarning,
        stacklevel=3,
    )
    return init_centroids[:1]


_FAR_MODEL_MESSAGE = (
    "the model's centroids lie so far from the data that squared distances overflow; "
    "check that the model belongs to this data, or refit"
)


def _checked_working_centroids(preprocessing: Preprocessing, centroids: np.ndarray, dtype, message: str) -> np.ndarray:
    """Map centroids to working units (float64) and check that their squared norms are finite.

    A centroid whose squared norm overflows in the working dtype would turn every score
    into inf or NaN, so it is rejected with ``message``: an ``OptionError`` for initial
    centroids, a ``ModelError`` for a model's.
    """
    working = preprocessing.transform_centroids(centroids)
    cast = working.astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.all(np.isfinite(cast)) and np.all(np.isfinite(row_norms_squared(cast)))
    if not finite:
        error = ModelError if message is _FAR_MODEL_MESSAGE else OptionError
        raise error(message)
    return working


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise OptionError(f"{name} must be a positive integer, got {value!r}")


def _check_finite(name: str, value, minimum: float = 0.0, inclusive: bool = False) -> None:
    valid = isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)
    if valid:
        valid = value >= minimum if inclusive else value > minimum
    if not valid:
        rule = f">= {minimum}" if inclusive else f"> {minimum}"
        raise OptionError(f"{name} must be finite and {rule}, got {value!r}")
