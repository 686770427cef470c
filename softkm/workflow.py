"""From files to files: the steps behind ``softkm fit`` and ``softkm assign``.

These functions read tables, call the engine and write outputs. They do no maths of
their own and print nothing: the command-line layer renders what they return.

A Parquet folder or glob, a ``--memory-limit``, or a Parquet file too large for the
available memory is streamed batch by batch (``softkm.streaming``). ``--engine dask``
runs the passes on a Dask cluster (``softkm.dask_engine``).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from softkm import engine
from softkm.errors import InputError, OptionError
from softkm.features import FeatureData, extract_features, extract_features_from_arrow, warn_skipped_columns
from softkm.memory import trim_c_heap
from softkm.model import Model
from softkm.tables import (
    OutputClosed,
    arrow_output_table,
    check_output_path,
    output_format,
    open_input,
    output_set,
    read_table,
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


@dataclass(frozen=True)
class ScaleOptions:
    """The engine that runs the passes, and the memory limit that turns on streaming.

    ``engine`` is 'local' or 'dask'. ``scheduler`` is the address of a running
    ``dask.distributed`` scheduler (None starts a local cluster). ``memory_limit`` is a
    size such as '2GB' that turns on streaming and sets the batch size.
    """

    engine: str = "local"
    scheduler: str | None = None
    memory_limit: str | None = None


@dataclass
class FitJob:
    """The results of ``run_fit``, for the summary.

    ``features`` is None for a streamed input. Its matrix ``X`` is empty (0 rows): the fit
    overwrote it with working units, and it is released before the outputs are written.
    ``output_closed`` is True when the reader of a stream output (stdout or a FIFO) closed
    it before every row was written. The output files were complete then.
    """


    result: engine.FitResult
    features: FeatureData | None
    model: Model
    warnings: list[str]
    output_closed: bool = False
    n_dropped: int = 0


@dataclass
class AssignJob:
    """The results of ``run_assign``, for the summary; ``output_closed`` as in ``FitJob``."""

    model: Model
    n_rows: int
    n_dropped: int
    inertia: float
    output_closed: bool = False



def load_features(source: str, options: ReadOptions, keep: list[str] | None = None, check_columns=None):
    """Read ``source`` and return (its ``ArrowInput``, its ``FeatureData``, the ``keep`` columns).

    The ``keep`` columns are a DataFrame, or None when ``keep`` is empty and the table
    was read without a DataFrame.

    The features are read straight into one array (``extract_features_from_arrow``).
    Inputs that path cannot read exactly, and every input error, go through a DataFrame
    and ``extract_features``, which raise the errors. ``check_columns(column_names)``
    may raise InputError for a table that lacks columns. It runs after the check of the
    ``keep`` columns.
    """
    keep = keep or []
    table_input = open_input(
        source, text_columns=keep, delimiter=options.delimiter, decimal=options.decimal, header=options.header
    )
    features = None
    if _has_columns(table_input, keep, check_columns):
        features = extract_features_from_arrow(
            table_input,
            columns=options.columns,
            exclude=options.exclude,
            weights=options.weights,
            missing=options.missing,
            dtype=options.dtype,
        )
    if features is None:
        features, kept = _load_features_from_frame(table_input, source, options, keep, check_columns)
    else:
        # Without --keep no column is kept, and the labels output needs no DataFrame.
        kept = table_input.text_frame(keep) if keep else None
    # Arrow's default pool (mimalloc) keeps the pages of the freed column buffers, which
    # the process would otherwise carry through the fit.
    pa.default_memory_pool().release_unused()
    trim_c_heap()
    warn_skipped_columns(features, keep)
    return table_input, features, kept


def _has_columns(table_input, keep: list[str], check_columns) -> bool:
    """Return whether the input has the ``keep`` columns and passes ``check_columns``."""
    try:
        names = table_input.schema.names
        _check_keep_columns(names, keep, table_input.name)
        if check_columns is not None:
            check_columns(names)
    except (InputError, pa.ArrowException, OSError):
        return False
    return True


def _load_features_from_frame(table_input, source: str, options: ReadOptions, keep: list[str], check_columns):
    """Read the input as a DataFrame and return (its ``FeatureData``, the ``keep`` columns)."""
    frame, kept = table_input.frames(keep)
    _check_keep_columns(frame.columns, keep, source)
    if check_columns is not None:
        check_columns(frame.columns)
    features = extract_features(
        frame,
        columns=options.columns,
        exclude=options.exclude,
        weights=options.weights,
        missing=options.missing,
        dtype=options.dtype,
    )
    return features, kept


def reread_features(table_input, features: FeatureData, options: ReadOptions) -> np.ndarray:
    """Read the feature values of the rows in ``features`` again, in user units.

    ``engine.fit(copy_x=False)`` overwrites ``features.X`` with working units, so the
    memberships, which ``engine.predict_proba`` computes from user units, need the
    input again. The weights column is read too, so that the same rows are dropped.
    """
    reread = ReadOptions(columns=features.feature_names, weights=options.weights, missing=options.missing,
                         dtype=options.dtype)
    again = extract_features_from_arrow(
        table_input, columns=reread.columns, weights=reread.weights, missing=reread.missing, dtype=reread.dtype
    )
    if again is None:
        again, _ = _load_features_from_frame(table_input, table_input.name, reread, [], None)
    return again.X


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
    import pandas as pd

    # A starting centroid cannot be skipped as a data row can, so a row without finite
    # values is an error about this file, not about the data.
    values = frame[feature_names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad_rows):
        raise InputError(
            f"initial centroids file '{path}' has missing, infinite or non-numeric values in {len(bad_rows)} "
            f"row(s), the first in data row {bad_rows[0] + 1}; give every starting centroid finite values "
            f"in {', '.join(feature_names)}"
        )
    centroids = extract_features(frame, columns=feature_names, dtype="float64").X
    if centroids.shape[0] != n_clusters:
        raise InputError(
            f"initial centroids file '{path}' has {centroids.shape[0]} rows but -k is {n_clusters}; "
            "give one row per cluster"
        )
    return centroids


def run_fit(source: str, n_clusters: int, fit_options: dict, read: ReadOptions, outputs: OutputOptions,
            init_path: str | None = None, on_iteration=None, scale: ScaleOptions = ScaleOptions()) -> FitJob:
    """Fit a model to ``source`` and write every requested output atomically."""
    check_outputs(source, outputs)
    _check_keep_names(outputs.keep, n_clusters, outputs.probabilities)

    fit_options = dict(fit_options)
    explicit_tau = fit_options.get("tau") is not None
    if outputs.probabilities and fit_options.get("mode", "hard") == "hard" and not explicit_tau:
        _probability_temperature("hard", None, None, None, explicit_tau=False)
    if not explicit_tau:
        fit_options["tau"] = engine.DEFAULT_TAU
    streamed, memory_limit = _plan_streaming(source, scale)
    if streamed or (scale.engine == "dask" and source != "-" and is_parquet_input(source)):
        return _run_fit_batches(source, n_clusters, fit_options, read, outputs, init_path, on_iteration, scale,
                                memory_limit, explicit_tau)

    table_input, features, kept = load_features(source, read, outputs.keep)
    _check_centroid_names(features.feature_names, outputs)
    if not outputs.probabilities:
        # Only --probabilities reads the input again, and a CSV input keeps its parsed table in memory.
        table_input = None
    if init_path is not None:
        fit_options["init"] = read_init_centroids(init_path, features.feature_names, n_clusters, read)
    with dask_client(scale) as client, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = engine.fit(
            features.X,
            n_clusters,
            sample_weight=features.sample_weight,
            dtype=read.dtype,
            copy_x=False,
            client=client,
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
        raw = reread_features(table_input, features, read)
        probabilities = engine.predict_proba(raw, result.centroids, result.preprocessing, read.dtype, temperature)
        del raw

    _release_matrix(features)
    labels = labels_table(kept, features, result.labels, outputs.keep, probabilities)
    output_closed = _write_outputs(labels, model, source, outputs)
    return FitJob(result, features, model, _unique_messages(caught), output_closed=output_closed,
                  n_dropped=features.n_dropped)


def _release_matrix(features: FeatureData) -> None:
    """Replace ``features.X`` by an empty (0, n_features) array, so that its memory is freed.

    The outputs need only ``row_index`` and ``n_dropped``, so freeing the matrix before
    they are written keeps the buffers of the output writers off the peak memory.
    """
    features.X = np.empty((0, features.X.shape[1]), dtype=features.X.dtype)


def _run_fit_batches(source: str, n_clusters: int, fit_options: dict, read: ReadOptions, outputs: OutputOptions,
                     init_path: str | None, on_iteration, scale: ScaleOptions, memory_limit: int | None,
                     explicit_tau: bool) -> FitJob:
    """Fit Parquet input that is streamed from disk, or read by the Dask cluster, and write the outputs.

    The labels are written batch by batch (partition by partition on Dask) after the
    centroids and the model.
    """
    from softkm import streaming

    # Streamed and Dask sources run plain Lloyd iterations: the bounds need the data here.
    fit_options.pop("algorithm", None)
    data = streaming.ParquetInput.open(
        source, columns=read.columns, exclude=read.exclude, weights=read.weights, missing=read.missing,
        dtype=read.dtype, extra_columns=outputs.keep,
    )
    if init_path is not None:
        fit_options["init"] = read_init_centroids(init_path, data.feature_names, n_clusters, read)
    _check_centroid_names(data.feature_names, outputs)
    batch_rows = streaming.batch_rows_for(memory_limit, len(data.feature_names))

    with dask_client(scale) as client:
        if client is None:
            raw = streaming.ParquetStream(data, batch_rows)
        else:
            from softkm import dask_engine

            raw = dask_engine.DaskParquetStream(client, data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = engine.fit_source(raw, n_clusters, dtype=read.dtype, on_iteration=on_iteration, **fit_options)
        model = Model.from_result(result, data.feature_names, _statistics(result, fit_options))
        temperature = None
        if outputs.probabilities:
            temperature = _probability_temperature(
                result.mode, result.temperature, result.scale, fit_options["tau"], explicit_tau=explicit_tau
            )
        _write_model_files(model, source, outputs)
        predictor = BatchPredictor(result.centroids, result.preprocessing, read.dtype, temperature)
        if client is None:
            streaming.write_labels(data, outputs.output, predictor, batch_rows=batch_rows, keep=outputs.keep,
                                   n_clusters=n_clusters, probabilities=outputs.probabilities, force=outputs.force)
        else:
            raw.write_labels(outputs.output, predictor, keep=outputs.keep, n_clusters=n_clusters,
                             probabilities=outputs.probabilities, force=outputs.force)
    return FitJob(result, None, model, _unique_messages(caught), n_dropped=raw.n_dropped)


@dataclass(frozen=True)
class BatchPredictor:
    """Labels, inertia and memberships of one batch of rows, with the arithmetic of ``engine.predict``.

    Called on X (n_rows, n_features) in user units, it returns (labels (n_rows,), inertia,
    memberships (n_rows, n_clusters) or None). ``temperature`` is absolute, or None for
    no memberships. It holds only small arrays, so it can be shipped to Dask workers.
    """

    centroids: np.ndarray
    preprocessing: object
    dtype: str
    temperature: float | None

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, float, np.ndarray | None]:
        n_clusters = self.centroids.shape[0]
        if X.shape[0] == 0:
            memberships = None if self.temperature is None else np.empty((0, n_clusters))
            return np.empty(0, dtype=np.int64), 0.0, memberships
        labels, inertia = engine.predict(X, self.centroids, self.preprocessing, self.dtype)
        memberships = None
        if self.temperature is not None:
            memberships = engine.predict_proba(X, self.centroids, self.preprocessing, self.dtype, self.temperature)
        return labels, inertia, memberships


def is_parquet_input(source: str) -> bool:
    """Return whether ``source`` is a Parquet file, folder or glob (by the file's first bytes)."""
    from softkm.streaming import is_dataset_path

    if is_dataset_path(source):
        return True
    try:
        with open(source, "rb") as handle:
            return handle.read(4) == b"PAR1"
    except OSError:
        return False


def _plan_streaming(source: str, scale: ScaleOptions) -> tuple[bool, int | None]:
    """Return (whether to stream the input, the memory limit in bytes or None).

    A folder or glob is always streamed. ``--memory-limit`` streams a Parquet file, and
    so does a Parquet file whose in-memory fit is estimated to exceed the available memory.
    """
    from softkm import streaming

    limit = None if scale.memory_limit is None else streaming.parse_memory_size(scale.memory_limit)
    if source == "-":
        if limit is not None:
            raise OptionError("--memory-limit streams Parquet files from disk; pass a file, folder or glob, not stdin")
        return False, None
    if streaming.is_dataset_path(source):
        return True, limit
    if limit is not None:
        if os.path.exists(source) and not is_parquet_input(source):
            raise OptionError(
                f"--memory-limit streams Parquet input only, and '{source}' is not a Parquet file; "
                "convert it to Parquet or leave out --memory-limit"
            )
        return True, limit
    estimate = streaming.estimated_memory_bytes(source)
    available = streaming.available_memory_bytes()
    if estimate is not None and available is not None and estimate > available:
        return True, available // 2
    return False, None


@contextlib.contextmanager
def dask_client(scale: ScaleOptions):
    """Yield a ``dask.distributed.Client`` for ``--engine dask``, else None.

    Without a scheduler address the client starts a local cluster and closes it at the end.
    """
    if scale.engine != "dask":
        if scale.scheduler is not None:
            raise OptionError("--scheduler applies to --engine dask only; add --engine dask or drop --scheduler")
        yield None
        return
    from softkm import dask_engine

    with dask_engine.connect(scale.scheduler) as client:
        yield client


def run_assign(model_path: str, source: str, read: ReadOptions, outputs: OutputOptions, tau: float | None,
               scale: ScaleOptions = ScaleOptions()) -> AssignJob:
    """Apply a saved model to ``source`` and write the labels."""

    model = Model.load(model_path)
    check_outputs(source, outputs)
    _check_keep_names(outputs.keep, model.n_clusters, outputs.probabilities)
    temperature = None
    if outputs.probabilities:
        temperature = _probability_temperature(model.mode, model.temperature, model.scale, tau, explicit_tau=tau is not None)
    predictor = BatchPredictor(model.centroids, model.preprocessing, model.dtype, temperature)
    streamed, memory_limit = _plan_streaming(source, scale)
    if streamed or (scale.engine == "dask" and source != "-" and is_parquet_input(source)):
        n_rows, n_dropped, inertia = _assign_batches(model, source, read, outputs, predictor, scale, memory_limit)
        return AssignJob(model, n_rows, n_dropped, inertia)

    def check_model_columns(column_names) -> None:
        missing = [name for name in model.feature_names if name not in column_names]
        if missing:
            raise InputError(
                f"input '{source}' lacks the model's feature column(s) {', '.join(missing)}; "
                f"the model needs {', '.join(model.feature_names)}"
            )

    options = ReadOptions(delimiter=read.delimiter, decimal=read.decimal, header=read.header,
                          columns=model.feature_names, missing=read.missing, dtype=model.dtype)
    _, features, kept = load_features(source, options, outputs.keep, check_model_columns)
    with dask_client(scale) as client:
        if client is None:
            labels, inertia, probabilities = predictor(features.X)
        else:
            from softkm import dask_engine

            labels, inertia, probabilities = dask_engine.predict_array(client, predictor, features.X)
    _check_finite_inertia(inertia)
    n_assigned = features.X.shape[0]
    _release_matrix(features)
    table = labels_table(kept, features, labels, outputs.keep, probabilities)
    output_closed = _write_outputs(table, None, source, outputs)
    return AssignJob(model, n_assigned, features.n_dropped, inertia, output_closed)


def _assign_batches(model: Model, source: str, read: ReadOptions, outputs: OutputOptions, predictor: "BatchPredictor",
                    scale: ScaleOptions, memory_limit: int | None) -> tuple[int, int, float]:
    """Assign Parquet input batch by batch (or partition by partition on Dask); returns the row counts and inertia."""
    from softkm import streaming

    data = streaming.ParquetInput.open(
        source, columns=model.feature_names, missing=read.missing, dtype=model.dtype, extra_columns=outputs.keep,
    )
    with dask_client(scale) as client:
        if client is None:
            batch_rows = streaming.batch_rows_for(memory_limit, len(data.feature_names))
            return streaming.write_labels(data, outputs.output, predictor, batch_rows=batch_rows, keep=outputs.keep,
                                          n_clusters=model.n_clusters, probabilities=outputs.probabilities,
                                          force=outputs.force)
        from softkm import dask_engine

        return dask_engine.DaskParquetStream(client, data).write_labels(
            outputs.output, predictor, keep=outputs.keep, n_clusters=model.n_clusters,
            probabilities=outputs.probabilities, force=outputs.force,
        )



def labels_table(kept, features: FeatureData, labels: np.ndarray, keep: list[str], probabilities=None):
    """Build the labels output: one row per input row, in input order.

    ``kept`` holds the ``keep`` columns of the input, as text for CSV input. Rows dropped
    for missing values get an empty ``cluster`` (and probabilities), so the output still
    lines up with the input. Without ``keep`` the output is an Arrow table from
    ``arrow_output_table``, which writes the bytes of the same DataFrame without importing pandas.
    """
    if not keep:
        return _labels_arrow_table(features, labels, probabilities)

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


def _labels_arrow_table(features: FeatureData, labels: np.ndarray, probabilities=None) -> pa.Table:
    """Build the labels output of ``labels_table`` without ``keep`` columns, as an Arrow table."""
    n_rows = features.row_index.size + features.n_dropped
    if features.n_dropped:
        cluster = np.ma.masked_all(n_rows, dtype=np.int64)
        cluster[features.row_index] = labels
    else:
        cluster = labels.astype(np.int64)
    columns = [("cluster", cluster)]
    if probabilities is not None:
        for index in range(probabilities.shape[1]):
            column = np.full(n_rows, np.nan)
            column[features.row_index] = probabilities[:, index]
            columns.append((f"p_{index}", column))
    return arrow_output_table(columns)


def _check_centroid_names(feature_names: list[str], outputs: OutputOptions) -> None:
    """Reject a feature named like the centroids output's own ``cluster`` column."""
    if outputs.centroids and "cluster" in feature_names:
        raise InputError(
            "feature column 'cluster' would clash with the 'cluster' column of the --centroids output; "
            "rename the column, or leave it out with --exclude cluster"
        )


def centroids_table(model: Model) -> pa.Table:
    """Build the centroids output: a ``cluster`` column and the features in user units."""
    columns = [("cluster", np.arange(model.n_clusters, dtype=np.int64))]
    columns += [(name, model.centroids[:, position]) for position, name in enumerate(model.feature_names)]
    return arrow_output_table(columns)


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


def _write_model_files(model: Model, source: str, outputs: OutputOptions) -> None:
    """Write the centroids table and the model file, where requested, renamed into place together."""
    input_path = None if source == "-" else source
    with output_set(force=outputs.force, input_path=input_path) as files:
        if outputs.centroids:
            files.add_table(centroids_table(model), outputs.centroids)
        if outputs.model:
            files.add_text(model.to_json(), outputs.model)



def _probability_temperature(mode: str, temperature: float | None, scale: float | None, tau: float | None,
                             explicit_tau: bool) -> float:
    """Return the absolute temperature for probabilities: the model's, or ``tau * s``."""
    if explicit_tau and tau is not None and scale is not None:
        if scale > 0:
            engine.check_temperature("tau", tau, scale)
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


def _check_keep_columns(column_names, keep: list[str], source: str) -> None:
    missing = [name for name in keep if name not in column_names]
    if missing:
        raise InputError(
            f"--keep column(s) {', '.join(missing)} not found in '{source}'; "
            f"available columns: {', '.join(map(str, column_names))}"
        )


def _unique_messages(caught) -> list[str]:
    """Return the distinct warning messages, in the order they were first raised."""
    messages: list[str] = []
    for item in caught:
        text = str(item.message)
        if text not in messages:
            messages.append(text)
    return messages
