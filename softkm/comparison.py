"""Side-by-side fits of the assignment modes: the maths behind ``softkm compare``.

``compare`` fits the same data once per mode, and once per tau for the relaxed modes.
Each fit is measured by its inertia, objective, iterations, runtime, cluster sizes and
agreement with hard mode, and, given true labels, by ARI, NMI and the centroid index.

Every fit gets the same seed. The engine draws the k-means++ start of each restart from
the seed and the data alone, never from the mode, so every row of a comparison starts
from the same centroids and the rows differ by their mode alone. The tests check this.

This module prints nothing: ``softkm.report`` renders a ``Comparison`` and
``softkm.plotting`` draws it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from softkm import __version__, engine, metrics
from softkm.errors import InputError, InputWarning, OptionError
from softkm.features import FeatureData, extract_features, warn_skipped_columns
from softkm.tables import read_table

# The columns of every row, in output order. ``runtime`` is the median of the repeats.
BASE_COLUMNS = (
    "mode",
    "tau",
    "inertia",
    "objective",
    "iterations",
    "converged",
    "runtime",
    "runtime_min",
    "runtime_max",
    "size_smallest",
    "size_largest",
    "empty_clusters",
    "ari_vs_hard",
    "mean_entropy",
)

# The columns added when true labels are given.
TRUTH_COLUMNS = ("ari", "nmi", "centroid_index")

# Column names listed in the error for an unknown truth column.
MAX_LISTED_COLUMNS = 20


@dataclass(frozen=True)
class CompareSettings:
    """The fitting options shared by every row of a comparison.

    ``modes`` are fitted in the given order, soft and gumbel once per value of ``taus``.
    Each fit runs ``repeat`` times to time it. The fits are deterministic, so the
    repeats differ in runtime only.
    """

    modes: tuple[str, ...] = engine.MODES
    taus: tuple[float, ...] = (engine.DEFAULT_TAU,)
    seed: int = 0
    n_init: int = 1
    repeat: int = 1
    max_iter: int = 300
    tol: float = 1e-4
    standardize: bool = False
    dtype: str = "float64"


@dataclass
class CompareRow:
    """One fit of a comparison: its mode, its tau (None for hard), the result and its measures.

    ``runtimes`` contains the engine's runtime in seconds of each repeat. ``measures`` maps the
    columns from ``size_smallest`` on to their values, None where a measure does not apply.
    """

    mode: str
    tau: float | None
    result: engine.FitResult
    runtimes: list[float]
    measures: dict

    @property
    def name(self) -> str:
        """A short name for legends and titles, such as 'hard' or 'soft, tau 0.5'."""
        return self.mode if self.tau is None else f"{self.mode}, tau {self.tau:g}"

    def record(self, columns: tuple[str, ...]) -> dict:
        """Return the row as a dict over ``columns``, in that order."""
        result = self.result
        values = {
            "mode": self.mode,
            "tau": self.tau,
            "inertia": float(result.inertia),
            "objective": float(result.objective),
            "iterations": int(result.n_iter),
            "converged": bool(result.converged),
            "runtime": float(np.median(self.runtimes)),
            "runtime_min": float(min(self.runtimes)),
            "runtime_max": float(max(self.runtimes)),
            **self.measures,
        }
        return {column: values[column] for column in columns}


@dataclass
class Comparison:
    """The rows of a comparison, the data they were fitted on, and the run's parameters.

    ``X`` is (n_samples, n_features) in the user's units and ``truth`` (n_samples,) contains
    the true labels, or None. ``parameters`` lists the options and the data's shape.
    """

    rows: list[CompareRow]
    X: np.ndarray
    feature_names: list[str]
    truth: np.ndarray | None
    parameters: dict

    @property
    def columns(self) -> tuple[str, ...]:
        return BASE_COLUMNS + (TRUTH_COLUMNS if self.truth is not None else ())

    def records(self) -> list[dict]:
        """Return one dict per row, over ``columns``."""
        return [row.record(self.columns) for row in self.rows]


@dataclass
class ScatterView:
    """The data and every row's centroids projected to two dimensions, for a scatter plot.

    ``points`` (n_points, 2) are the rows ``point_index`` of the data, all of them or a
    seeded sample. ``centroids`` contains one (n_clusters, 2) array per comparison row.
    ``explained`` is the share of variance of each principal component, or None when
    the axes are the two features themselves.
    """

    points: np.ndarray
    point_index: np.ndarray
    centroids: list[np.ndarray]
    axis_names: tuple[str, str]
    explained: tuple[float, float] | None


def parse_modes(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list of modes, such as 'hard,soft', dropping repeats."""
    modes = [name.strip() for name in text.split(",") if name.strip()]
    if not modes:
        raise OptionError(f"--modes names no mode; use a comma-separated list of {', '.join(engine.MODES)}")
    for mode in modes:
        if mode not in engine.MODES:
            raise OptionError(
                f"unknown mode '{mode}' in --modes; use a comma-separated list of {', '.join(engine.MODES)}"
            )
    return tuple(dict.fromkeys(modes))


def parse_taus(text: str) -> tuple[float, ...]:
    """Parse a comma-separated list of positive finite taus, such as '0.5,1', dropping repeats."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise OptionError("--tau names no value; give one or more comma-separated numbers such as 0.5,1")
    taus = []
    for item in items:
        try:
            tau = float(item)
        except ValueError:
            raise OptionError(f"tau '{item}' is not a number; give comma-separated numbers such as 0.5,1") from None
        if not (math.isfinite(tau) and tau > 0):
            raise OptionError(f"tau {item} is invalid; every tau must be finite and > 0")
        taus.append(tau)
    return tuple(dict.fromkeys(taus))


def run_compare(source: str, n_clusters: int, settings: CompareSettings, read, truth_column: str | None = None,
                client=None):
    """Read ``source`` and return the ``Comparison`` of the modes on it.

    ``read`` is a ``softkm.workflow.ReadOptions``. The truth column, when given, is left
    out of the features and its values become the true labels of the kept rows. With a
    ``dask.distributed.Client`` the fits run on its cluster.
    """
    frame = read_table(source, delimiter=read.delimiter, decimal=read.decimal, header=read.header)
    exclude = list(read.exclude or [])
    if truth_column is not None:
        _check_truth_column(frame, truth_column, read)
        if truth_column not in exclude and read.columns is None:
            exclude.append(truth_column)
    features = extract_features(
        frame, columns=read.columns, exclude=exclude or None, weights=read.weights, missing=read.missing,
        dtype=settings.dtype,
    )
    warn_skipped_columns(features)
    truth = None
    if truth_column is not None:
        truth = _truth_labels(frame, truth_column, features)

    comparison = compare(features.X, n_clusters, settings, features.sample_weight, truth, features.feature_names,
                         client=client)
    comparison.parameters = {
        "input": source,
        **comparison.parameters,
        "truth": truth_column,
        "weights": read.weights,
        "n_dropped": features.n_dropped,
    }
    return comparison


def compare(
    X: np.ndarray,
    n_clusters: int,
    settings: CompareSettings = CompareSettings(),
    sample_weight: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    feature_names: list[str] | None = None,
    client=None,
) -> Comparison:
    """Fit X (n_samples, n_features) in every mode of ``settings`` and measure each fit.

    ``truth`` (n_samples,) contains true labels (integers or strings) with at least two
    distinct values, or None. X is not modified. Raises ``OptionError`` for invalid
    settings, and whatever ``engine.fit`` raises for invalid data or options.
    """
    _check_settings(settings)
    X = np.asarray(X)
    if truth is not None:
        truth = _check_truth(truth, X.shape[0] if X.ndim else 0)
    if feature_names is None:
        feature_names = [f"x{index + 1}" for index in range(X.shape[1] if X.ndim == 2 else 0)]

    rows = []
    for mode in settings.modes:
        for tau in ((None,) if mode == "hard" else settings.taus):
            result, runtimes = _fit_repeatedly(X, n_clusters, mode, tau, settings, sample_weight, client)
            rows.append(CompareRow(mode, tau, result, runtimes, {}))

    reference = next((row.result.labels for row in rows if row.mode == "hard"), None)
    true_centroids = None
    if truth is not None:
        _, true_centroids = metrics.true_centroids_from_labels(X, truth, sample_weight)
    for row in rows:
        row.measures = _measures(row, X, sample_weight, settings.dtype, reference, truth, true_centroids)

    result = rows[0].result
    parameters = {
        "n_clusters": n_clusters,
        "modes": list(settings.modes),
        "taus": list(settings.taus),
        "seed": settings.seed,
        "n_init": settings.n_init,
        "repeat": settings.repeat,
        "max_iter": settings.max_iter,
        "tol": settings.tol,
        "standardize": settings.standardize,
        "dtype": settings.dtype,
        "n_samples": result.n_samples,
        "n_features": result.n_features,
        "features": list(feature_names),
        "softkm_version": __version__,
    }
    return Comparison(rows, X, list(feature_names), truth, parameters)


def convergence_curves(row: CompareRow) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the iterations, objective and hard inertia of a row's best restart.

    The objective and the inertia are per unit weight and in the squared units of the
    fit: the user's units, or z-scores with ``standardize``. The engine records them in
    its working units, which differ from those by ``squared_unit``.
    """
    history = row.result.history
    unit = row.result.preprocessing.squared_unit
    iterations = np.array([record.iteration for record in history], dtype=np.int64)
    objective = np.array([record.objective for record in history], dtype=np.float64) * unit
    inertia = np.array([record.inertia for record in history], dtype=np.float64) * unit
    return iterations, objective, inertia


def scatter_view(comparison: Comparison, max_points: int = 20_000, seed: int = 0) -> ScatterView:
    """Project the data and every row's centroids to two dimensions.

    Two-feature data is shown as it is. Wider data is projected on its first two
    principal components, from a NumPy SVD of the centred points (z-scored first when
    the fit standardised them). At most ``max_points`` rows are kept, drawn with
    ``seed``, so that the SVD and the plot stay small for any n_samples.
    """
    X = comparison.X
    n_samples, n_features = X.shape
    point_index = np.arange(n_samples)
    if n_samples > max_points:
        point_index = np.sort(np.random.default_rng(seed).choice(n_samples, max_points, replace=False))
    points = X[point_index].astype(np.float64)
    centroids = [row.result.centroids for row in comparison.rows]
    names = comparison.feature_names

    if n_features == 1:
        return ScatterView(
            np.column_stack([points[:, 0], np.zeros(len(points))]), point_index,
            [np.column_stack([c[:, 0], np.zeros(len(c))]) for c in centroids], (names[0], ""), None,
        )
    if n_features == 2:
        return ScatterView(points, point_index, centroids, (names[0], names[1]), None)

    preprocessing = comparison.rows[0].result.preprocessing
    scale = preprocessing.scale if preprocessing.standardize else np.ones(n_features)
    offset = points.mean(axis=0)
    centred = (points - offset) / scale
    _, singular_values, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:2]
    # Singular vectors have an arbitrary sign. Making each one's largest loading positive
    # gives the same picture on every run and platform.
    largest = np.argmax(np.abs(components), axis=1)
    components *= np.sign(components[np.arange(2), largest])[:, np.newaxis]

    variance = singular_values**2
    explained = (float(variance[0] / variance.sum()), float(variance[1] / variance.sum()))
    projected = [((c - offset) / scale) @ components.T for c in centroids]
    return ScatterView(centred @ components.T, point_index, projected, ("PC1", "PC2"), explained)


def _fit_repeatedly(X, n_clusters, mode, tau, settings, sample_weight, client) -> tuple[engine.FitResult, list[float]]:
    """Fit ``repeat`` times and return the first result and the runtime of every repeat."""
    options = dict(
        mode=mode, n_init=settings.n_init, max_iter=settings.max_iter, tol=settings.tol, seed=settings.seed,
        standardize=settings.standardize, dtype=settings.dtype, sample_weight=sample_weight, client=client,
    )
    if tau is not None:
        options["tau"] = tau
    first = None
    runtimes = []
    for repeat in range(settings.repeat):
        # The repeats are identical fits, so their warnings are raised once, by the first.
        with warnings.catch_warnings():
            if repeat > 0:
                warnings.simplefilter("ignore")
            result = engine.fit(X, n_clusters, **options)
        runtimes.append(result.runtime)
        if first is None:
            first = result
    return first, runtimes


def _measures(row, X, sample_weight, dtype, reference, truth, true_centroids) -> dict:
    """Return the measures of one row, from ``size_smallest`` on, in column order."""
    result = row.result
    sizes = metrics.size_summary(result.labels, result.n_clusters)
    measures = {
        "size_smallest": sizes["smallest"],
        "size_largest": sizes["largest"],
        "empty_clusters": sizes["empty"],
        "ari_vs_hard": None if reference is None else metrics.adjusted_rand_index(reference, result.labels),
        "mean_entropy": None,
    }
    if result.temperature is not None:
        memberships = engine.predict_proba(X, result.centroids, result.preprocessing, dtype, result.temperature)
        measures["mean_entropy"] = metrics.mean_entropy(memberships, sample_weight)
    if truth is not None:
        measures["ari"] = metrics.adjusted_rand_index(truth, result.labels)
        measures["nmi"] = metrics.normalized_mutual_info(truth, result.labels)
        measures["centroid_index"] = metrics.centroid_index(true_centroids, result.centroids)
    return measures


def _check_settings(settings: CompareSettings) -> None:
    if not settings.modes:
        raise OptionError(f"no mode to compare; name one or more of {', '.join(engine.MODES)}")
    for mode in settings.modes:
        if mode not in engine.MODES:
            raise OptionError(f"unknown mode {mode!r}; use one or more of {', '.join(engine.MODES)}")
    if not settings.taus:
        raise OptionError("no tau to compare; give at least one tau > 0")
    for tau in settings.taus:
        if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
            raise OptionError(f"tau {tau!r} is invalid; every tau must be finite and > 0")
    repeat = settings.repeat
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise OptionError(f"repeat must be a positive integer, got {repeat!r}")


_MANY_CLASSES_MIN_ROWS = 50


def _check_truth(truth, n_samples: int) -> np.ndarray:
    """Return the true labels as a 1-D array, checking their length and their number of classes."""
    truth = np.asarray(truth)
    if truth.shape != (n_samples,):
        raise OptionError(f"truth must have shape ({n_samples},), one label per row of X, got {truth.shape}")
    try:
        classes = np.unique(truth)
    except TypeError:
        raise OptionError("truth must contain labels of one sortable type, such as all integers or all strings") from None
    if len(classes) < 2:
        value = classes[0].item() if len(classes) else None
        raise InputError(
            f"the truth labels have the single value {value!r}; a truth column needs at least two classes"
        )
    # Small tables can have as many classes as that for real, so they are not warned about.
    if n_samples >= _MANY_CLASSES_MIN_ROWS and len(classes) > n_samples // 2:
        warnings.warn(
            f"the truth labels have {len(classes)} classes for {n_samples} rows, so they look like an id or "
            "a measurement rather than class labels; check the truth column (--truth)",
            InputWarning,
            stacklevel=3,
        )
    return truth


def _check_truth_column(frame, truth_column: str, read) -> None:
    """Reject a truth column that is missing from the table or also requested as a feature or weight."""
    names = [str(label) for label in frame.columns]
    if truth_column not in names:
        listed = ", ".join(f"'{name}'" for name in names[:MAX_LISTED_COLUMNS])
        if len(names) > MAX_LISTED_COLUMNS:
            listed += f", ... ({len(names)} columns in total)"
        raise InputError(f"truth column '{truth_column}' not found; available columns: {listed}")
    if read.columns is not None and truth_column in read.columns:
        raise OptionError(
            f"truth column '{truth_column}' is also in --columns; a truth column cannot be a feature, remove it there"
        )
    if read.weights == truth_column:
        raise OptionError(f"truth column '{truth_column}' is also the --weights column; choose another column")


def _truth_labels(frame, truth_column: str, features: FeatureData) -> np.ndarray:
    """Return the truth column's values for the kept rows, checking for missing values and classes."""
    label = next(label for label in frame.columns if str(label) == truth_column)
    series = frame[label].iloc[features.row_index].reset_index(drop=True)
    missing = np.flatnonzero(series.isna().to_numpy())
    if missing.size:
        row = int(features.row_index[missing[0]]) + 1
        raise InputError(
            f"truth column '{truth_column}' has {missing.size} missing value(s), the first in data row {row}; "
            "fill them in or remove those rows"
        )
    values = series.to_numpy()
    classes = np.unique(values.astype(str) if values.dtype == object else values)
    if len(classes) < 2:
        raise InputError(
            f"truth column '{truth_column}' has the single value {classes[0].item()!r}; "
            "a truth column needs at least two classes"
        )
    if values.dtype == object:
        values = values.astype(str)
    return values
