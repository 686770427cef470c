"""From files to files: the steps behind ``softkm fit`` and ``softkm assign``.

These functions read tables, call the engine and write outputs. They do no maths of
their own and print nothing: the command-line layer renders what they return.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from softkm import engine
from softkm.errors import InputError, OptionError
from softkm.features import FeatureData, extract_features, warn_skipped_columns
from softkm.model import Model
from softkm.tables import (
    OutputClosed,
    check_output_path,
    output_format,
    output_set,
    read_table,
    read_table_with_text,
)


@dataclass(frozen=True)
class ReadOptions:
    """How to read the input table and choose its feature columns."""

    delimiter: str | None = None
    decimal: str | None = None
    header: bool = True
    columns: list[str] | None = None
    exclude: list[str] | None = None
    weights: str | None = None
    missing: str = "error"
    dtype: str = "float64"


@dataclass(frozen=True)
class OutputOptions:
    """Output paths for labels, centroids and model, and the contents of the labels table."""

    output: str = "-"
    centroids: str | None = None
    model: str | None = None
    keep: list[str] = field(default_factory=list)
    probabilities: bool = False
    force: bool = False


@dataclass
class FitJob:
    """The results of ``run_fit``, for the summary.

    ``output_closed`` is True when the reader of a stream output (stdout or a FIFO)
    closed it before every row was written. The output files were complete then.
    """

    result: engine.FitResult
    features: FeatureData
    model: Model
    warnings: list[str]
    output_closed: bool = False


@dataclass
class AssignJob:
    """The results of ``run_assign``, for the summary; ``output_closed`` as in ``FitJob``."""

    model: Model
    features: FeatureData
    inertia: float
    output_closed: bool = False


def load_features(source: str, options: ReadOptions, keep: list[str] | None = None):
    """Read ``source`` and return (the table, its ``FeatureData``, the ``keep`` columns as text)."""
    frame, kept = read_table_with_text(
        source, text_columns=keep or [], delimiter=options.delimiter, decimal=options.decimal, header=options.header
    )
    _check_keep_columns(frame, keep or [], source)
    features = extract_features(
        frame,
        columns=options.columns,
        exclude=options.exclude,
        weights=options.weights,
        missing=options.missing,
        dtype=options.dtype,
    )
    warn_skipped_columns(features, keep)
    return frame, features, kept


def check_outputs(source: str, outputs: OutputOptions) -> None:
    """Reject unusable output paths before any work is done."""
    # atomic_output would otherwise create a file literally named '-'.
    if outputs.model == "-":
        raise OptionError("--model cannot be '-' (stdout); give a file path such as model.json")
    if outputs.output == "-" and outputs.centroids == "-":
        raise OptionError(
            "the labels and --centroids cannot both go to stdout ('-'); give one of them a file path"
        )
    paths = [p for p in (outputs.output, outputs.centroids, outputs.model) if p not in (None, "-")]
    # realpath also catches one file spelled two ways, such as 'a.csv' and './a.csv'.
    if len({os.path.realpath(path) for path in paths}) != len(paths):
        raise OptionError(f"two outputs share one path ({', '.join(paths)}); give each output its own file")
    input_path = None if source == "-" else source
    for path in paths:
        check_output_path(path, force=outputs.force, input_path=input_path)
    for path in (outputs.output, outputs.centroids):
        if path not in (None, "-"):
            output_format(path)


def read_init_centroids(path: str, feature_names: list[str], n_clusters: int, options: ReadOptions) -> np.ndarray:
    """Read starting centroids (n_clusters, n_features) from a table with the feature columns."""
    if not os.path.exists(path):
        raise InputError(f"initial centroids file '{path}' not found; --init takes k-means++, random or a file")
    frame = read_table(path, delimiter=options.delimiter, decimal=options.decimal, header=options.header)
    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise InputError(
            f"initial centroids file '{path}' lacks feature column(s) {', '.join(missing)}; "
            f"it needs the columns {', '.join(feature_names)}"
        )
    centroids = extract_features(frame, columns=feature_names, dtype="float64").X
    if centroids.shape[0] != n_clusters:
        raise InputError(
            f"initial centroids file '{path}' has {centroids.shape[0]} rows but -k is {n_clusters}; "
            "give one row per cluster"
        )
    return centroids


def run_fit(source: str, n_clusters: int, fit_options: dict, read: ReadOptions, outputs: OutputOptions,
            init_path: str | None = None, on_iteration=None) -> FitJob:
    """Fit a model to ``source`` and write every requested output atomically."""
    check_outputs(source, outputs)
    _check_keep_names(outputs.keep, n_clusters, outputs.probabilities)
    frame, features, kept = load_features(source, read, outputs.keep)
    fit_options = dict(fit_options)
    explicit_tau = fit_options.get("tau") is not None
    if outputs.probabilities and fit_options.get("mode", "hard") == "hard" and not explicit_tau:
        _probability_temperature("hard", None, None, None, explicit_tau=False)
    if not explicit_tau:
        fit_options["tau"] = engine.DEFAULT_TAU
    if init_path is not None:
        fit_options["init"] = read_init_centroids(init_path, features.feature_names, n_clusters, read)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = engine.fit(
            features.X,
            n_clusters,
            sample_weight=features.sample_weight,
            dtype=read.dtype,
            copy_x=False,
            on_iteration=on_iteration,
            **fit_options,
        )
    _check_finite_inertia(result.inertia)
    model = Model.from_result(result, features.feature_names, _statistics(result, fit_options))
    probabilities = None
    if outputs.probabilities:
        temperature = _probability_temperature(
            result.mode, result.temperature, result.scale, fit_options["tau"], explicit_tau=explicit_tau
        )
        # The engine overwrote features.X with working units, so the input is read again from the frame.
        raw = extract_features(frame, columns=features.feature_names, missing=read.missing, dtype=read.dtype).X
        probabilities = engine.predict_proba(raw, result.centroids, result.preprocessing, read.dtype, temperature)

    labels = labels_table(kept, features, result.labels, outputs.keep, probabilities)
    output_closed = _write_outputs(labels, model, source, outputs)
    return FitJob(result, features, model, _unique_messages(caught), output_closed)


def run_assign(model_path: str, source: str, read: ReadOptions, outputs: OutputOptions,
               tau: float | None) -> AssignJob:
    """Apply a saved model to ``source`` and write the labels."""
    model = Model.load(model_path)
    check_outputs(source, outputs)
    _check_keep_names(outputs.keep, model.n_clusters, outputs.probabilities)
    temperature = None
    if outputs.probabilities:
        temperature = _probability_temperature(model.mode, model.temperature, model.scale, tau, explicit_tau=tau is not None)
    frame, kept = read_table_with_text(
        source, text_columns=outputs.keep, delimiter=read.delimiter, decimal=read.decimal, header=read.header
    )
    _check_keep_columns(frame, outputs.keep, source)
    missing = [name for name in model.feature_names if name not in frame.columns]
    if missing:
        raise InputError(
            f"input '{source}' lacks the model's feature column(s) {', '.join(missing)}; "
            f"the model needs {', '.join(model.feature_names)}"
        )
    features = extract_features(frame, columns=model.feature_names, missing=read.missing, dtype=model.dtype)
    labels, inertia = engine.predict(features.X, model.centroids, model.preprocessing, model.dtype)
    _check_finite_inertia(inertia)
    probabilities = None
    if temperature is not None:
        probabilities = engine.predict_proba(features.X, model.centroids, model.preprocessing, model.dtype, temperature)
    table = labels_table(kept, features, labels, outputs.keep, probabilities)
    output_closed = _write_outputs(table, None, source, outputs)
    return AssignJob(model, features, inertia, output_closed)


def labels_table(kept, features: FeatureData, labels: np.ndarray, keep: list[str], probabilities=None):
    """Build the labels output: one row per input row, in input order.

    ``kept`` holds the ``keep`` columns of the input, as text for CSV input. Rows dropped
    for missing values get an empty ``cluster`` (and probabilities), so the output still
    lines up with the input.
    """
    import pandas as pd

    n_rows = features.row_index.size + features.n_dropped
    table = pd.DataFrame({name: kept[name].reset_index(drop=True) for name in keep}, index=pd.RangeIndex(n_rows))
    if features.n_dropped:
        cluster = pd.array([pd.NA] * n_rows, dtype="Int64")
        cluster[features.row_index] = labels
    else:
        cluster = labels.astype(np.int64)
    table["cluster"] = cluster
    if probabilities is not None:
        for index in range(probabilities.shape[1]):
            column = np.full(n_rows, np.nan)
            column[features.row_index] = probabilities[:, index]
            table[f"p_{index}"] = column
    return table


def centroids_table(model: Model):
    """Build the centroids output: a ``cluster`` column and the features in user units."""
    import pandas as pd

    table = pd.DataFrame(model.centroids, columns=model.feature_names)
    table.insert(0, "cluster", np.arange(model.n_clusters, dtype=np.int64))
    return table


def _write_outputs(labels, model: Model | None, source: str, outputs: OutputOptions) -> bool:
    """Write every output as one ``OutputSet`` and return whether a stream reader closed early.

    The files are renamed into place together, and streams such as stdout are written
    after them, so a failed file write leaves stdout empty.
    """
    input_path = None if source == "-" else source
    try:
        with output_set(force=outputs.force, input_path=input_path) as files:
            if model is not None and outputs.centroids:
                files.add_table(centroids_table(model), outputs.centroids)
            if model is not None and outputs.model:
                files.add_text(model.to_json(), outputs.model)
            files.add_table(labels, outputs.output)
    except OutputClosed:
        return True
    return False


def _check_finite_inertia(inertia: float) -> None:
    """Raise InputError when the inertia in squared user units overflowed float64."""
    if not np.isfinite(inertia):
        raise InputError(
            f"the inertia is {inertia} because the squared distances exceed the float64 range; "
            "divide the features by a constant factor or pass --standardize"
        )


def _probability_temperature(mode: str, temperature: float | None, scale: float | None, tau: float | None,
                             explicit_tau: bool) -> float:
    """Return the absolute temperature for probabilities: the model's, or ``tau * s``."""
    if explicit_tau and tau is not None and scale is not None:
        return tau * scale
    if mode == "hard" or temperature is None:
        raise OptionError(
            "a hard model has no temperature for probabilities; pass --tau (relative to the "
            "within-cluster scale), or fit with --mode soft"
        )
    return temperature


def _statistics(result: engine.FitResult, fit_options: dict) -> dict:
    """Return the fit statistics stored in the model file."""
    return {
        "n_samples": result.n_samples,
        "n_features": result.n_features,
        "inertia": result.inertia,
        "objective": result.objective,
        "n_iter": result.n_iter,
        "converged": result.converged,
        "n_init": fit_options.get("n_init", 1),
        "best_restart": result.best_restart,
        "seed": fit_options.get("seed", 0),
        "init": fit_options["init"] if isinstance(fit_options.get("init"), str) else "file",
        "runtime_seconds": round(result.runtime, 6),
    }


def _check_keep_names(keep: list[str], n_clusters: int, probabilities: bool) -> None:
    """Reject --keep columns that the labels output would overwrite with its own columns."""
    added = ["cluster"] + ([f"p_{index}" for index in range(n_clusters)] if probabilities else [])
    clashes = [name for name in keep if name in added]
    if clashes:
        raise OptionError(
            f"--keep column(s) {', '.join(clashes)} would be overwritten by the output column(s) of the "
            "same name (cluster, and p_0 .. p_{k-1} with --probabilities); rename them in the input "
            "or leave them out of --keep"
        )


def _check_keep_columns(frame, keep: list[str], source: str) -> None:
    missing = [name for name in keep if name not in frame.columns]
    if missing:
        raise InputError(
            f"--keep column(s) {', '.join(missing)} not found in '{source}'; "
            f"available columns: {', '.join(map(str, frame.columns))}"
        )


def _unique_messages(caught) -> list[str]:
    """Return the distinct warning messages, in the order they were first raised."""
    messages: list[str] = []
    for item in caught:
        text = str(item.message)
        if text not in messages:
            messages.append(text)
    return messages
