"""Out-of-core input: Parquet files and folders read batch by batch through pyarrow.

``ParquetInput`` reads the feature columns (and weights) of one Parquet file, a folder
of Parquet files or a glob, batch by batch, checks them and casts them to the fit's
dtype. ``ParquetStream``, the ``RawSource`` of ``softkm.engine.fit_source``, computes the
preprocessing in one pass over it. ``ParquetSource`` is the ``DataSource`` that maps
every batch to working units as it is read, so a fit keeps one batch in memory at a
time whatever the number of rows. ``write_labels`` assigns the
rows of an input batch by batch and writes the labels in input order.

Input order is the files in sorted path order, and the rows of each file in order.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pa_compute
import pyarrow.parquet as pq

from softkm.chunks import Chunk, ChunkedData
from softkm.errors import InputError, OptionError, OutputError
from softkm.features import (
    _check_column_options,
    _check_options,
    _check_requested_column,
    _describe_columns,
    _describe_text_value,
    _reject_numeric_text,
    warn_skipped_columns,
)
from softkm.kernels import ChunkStats
from softkm.preprocessing import DataMoments, MomentSums, Preprocessing
from softkm.tables import OutputClosed, atomic_output, check_output_path, is_stream, output_format

# Rows per batch when no --memory-limit is given: 65536 rows of 32 float64 features
# take 16 MiB per copy.
DEFAULT_BATCH_ROWS = 65_536
_MIN_BATCH_ROWS = 1024
_MAX_BATCH_ROWS = 1 << 20

# About four copies of a batch exist at once: the Arrow batch, its float64 features,
# the dtype cast and the working-unit copy. The limit keeps room for the same again in
# the Parquet reader's buffers, the initialisation sample and the interpreter.
_COPIES_PER_BATCH = 8

# Rows of a text column that decide whether it contains numbers stored as text.
TEXT_SAMPLE_ROWS = 65_536

# File and folder names that folder discovery leaves out, as pyarrow.dataset does by default.
_IGNORED_PREFIXES = (".", "_")

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([KMGT]i?B?|B)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def parse_memory_size(text: str) -> int:
    """Return the number of bytes in a size such as '512MB', '2GiB', '1.5G' or '1000000'.

    K, M, G and T are powers of 1000, and Ki, Mi, Gi and Ti powers of 1024.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise OptionError(f"--memory-limit {text!r} is not a size; write it like 512MB, 2GiB or 1500000000")
    unit = (match.group(2) or "").upper().rstrip("B")
    if unit.endswith("I"):
        factor = 1024 ** ("KMGT".index(unit[0]) + 1)
    else:
        factor = _SIZE_UNITS[unit]
    size = int(float(match.group(1)) * factor)
    if size <= 0:
        raise OptionError(f"--memory-limit {text!r} must be positive")
    return size


def batch_rows_for(memory_limit: int | None, n_features: int) -> int:
    """Return the rows per batch that keep the batches of a streaming pass within ``memory_limit`` bytes.

    NOTE: the limit bounds the batches only. The interpreter and its libraries (about
    150 MB), a Parquet row group being decoded and the initialisation sample come on top.
    """
    if memory_limit is None:
        return DEFAULT_BATCH_ROWS
    row_bytes = 8 * n_features + 16
    rows = memory_limit // (_COPIES_PER_BATCH * row_bytes)
    return int(min(max(rows, _MIN_BATCH_ROWS), _MAX_BATCH_ROWS))


def is_dataset_path(source: str) -> bool:
    """Return whether ``source`` names a folder or a glob rather than a single file."""
    return os.path.isdir(source) or any(character in source for character in "*?[")


def resolve_parquet_files(source: str) -> list[str]:
    """Return the files of a file, a folder (searched recursively) or a glob, sorted by path.

    In a folder, files and subfolders whose names start with '.' or '_' (such as
    ``_SUCCESS``) are left out, as pyarrow's dataset discovery does. The files are not
    opened here; ``ParquetInput.open`` checks that each is a Parquet file.
    """
    if os.path.isdir(source):
        files = _folder_files(source)
        if not files:
            raise InputError(f"input folder '{source}' contains no Parquet files")
        return files
    if any(character in source for character in "*?["):
        files = sorted(path for path in glob.glob(source, recursive=True) if os.path.isfile(path))
        if not files:
            raise InputError(f"input pattern '{source}' matches no files; check the path and the quoting")
        return files
    if not os.path.exists(source):
        raise InputError(f"input file '{source}' not found; check the path")
    return [source]


def _folder_files(folder: str) -> list[str]:
    files = []
    for root, subfolders, names in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(_IGNORED_PREFIXES)]
        files += [os.path.join(root, name) for name in names if not name.startswith(_IGNORED_PREFIXES)]
    return sorted(files)


@dataclass
class RawBatch:
    """One batch of input rows in user units.

    ``X`` (n_valid, n_features) and ``sample_weight`` (n_valid,) or None contain the
    rows kept for clustering, already cast to the fit's dtype. ``valid`` (n_rows,)
    marks those rows among all rows of the batch, or is None when all are kept.
    ``table`` contains the extra columns that were requested (such as ``--keep``).
    """

    X: np.ndarray
    sample_weight: np.ndarray | None
    valid: np.ndarray | None
    table: pa.Table
    n_rows: int


@dataclass
class ParquetInput:
    """The feature columns of Parquet files, read and checked batch by batch.

    ``column_types`` maps every column that is read to the type it has in every file
    after numeric promotion. ``skipped_columns`` are the non-numeric columns that the
    default feature selection left out.
    """

    source: str
    files: list[str]
    feature_names: list[str]
    weights: str | None
    missing: str
    dtype: str
    column_types: dict[str, pa.DataType]
    row_groups: list[tuple[int, int, int]]
    skipped_columns: list[str]

    @classmethod
    def open(
        cls,
        source: str,
        *,
        columns: list[str] | None = None,
        exclude: list[str] | None = None,
        weights: str | None = None,
        missing: str = "error",
        dtype: str = "float64",
        extra_columns: list[str] | None = None,
    ) -> "ParquetInput":
        """Find the files and the feature columns, from the files' metadata and a sample of text columns.

        The features are chosen as ``softkm.features.extract_features`` chooses them, with
        its messages: without ``columns`` every numeric column except ``exclude`` and
        ``weights``, with ``columns`` exactly those, each numeric or boolean. A text column
        that looks numeric raises InputError, and the other non-numeric columns that are
        not in ``extra_columns`` (the ``--keep`` columns) are named in an InputWarning.
        Every file must have the columns that are read, each with one type up to numeric
        promotion (int64 and double, for example). Otherwise InputError names the column
        and the files.
        """
        _check_options(missing, dtype)
        if columns is not None and not columns:
            raise OptionError("--columns names no column; name at least one feature column or omit it")
        extra_columns = list(extra_columns or [])
        files = resolve_parquet_files(source)
        schemas, row_groups = _read_layouts(source, files)
        if sum(rows for _, _, rows in row_groups) == 0:
            raise InputError(f"input '{source}' has no data rows")

        names = list(dict.fromkeys(name for schema in schemas for name in schema.names))
        _check_column_options({name: name for name in names}, columns, exclude, weights)
        unknown = [name for name in extra_columns if name not in names]
        if unknown:
            raise InputError(
                f"--keep column(s) {', '.join(unknown)} not found in '{source}'; available columns: {', '.join(names)}"
            )

        if columns is None:
            left_out = set(exclude or []) | ({weights} if weights is not None else set())
            candidates = [name for name in names if name not in left_out]
        else:
            candidates = list(columns)
        read = list(dict.fromkeys(candidates + ([weights] if weights is not None else []) + extra_columns))
        column_types = _column_types(source, files, schemas, read, excludable=set() if columns else set(candidates))

        sample = _ColumnSample(files, row_groups)
        skipped_columns: list[str] = []
        if columns is None:
            feature_names, skipped_columns = _default_feature_names(source, names, candidates, column_types, sample)
        else:
            feature_names = list(columns)
            for name in feature_names:
                _check_requested_type(source, name, column_types[name], sample)
        if weights is not None and not _is_feature_type(column_types[weights], allow_bool=True):
            raise InputError(
                f"weights column '{weights}' is not numeric: {_describe_text_value(sample.series(weights))}; "
                "pass a numeric column to --weights"
            )
        # warn_skipped_columns reads only the skipped_columns field of the FeatureData it is given.
        warn_skipped_columns(SimpleNamespace(skipped_columns=skipped_columns), extra_columns)
        return cls(source, files, feature_names, weights, missing, dtype, column_types, row_groups, skipped_columns)

    @property
    def n_rows(self) -> int:
        """The number of input rows, dropped rows included, from the files' metadata."""
        return sum(rows for _, _, rows in self.row_groups)

    def row_group_offsets(self) -> list[int]:
        """Return the 0-based input row of the first row of every row group."""
        return [int(offset) for offset in np.cumsum([0] + [rows for _, _, rows in self.row_groups])[:-1]]

    def batches(
        self, batch_rows: int, extra_columns: list[str] | None = None, groups: list[int] | None = None
    ) -> Iterator[RawBatch]:
        """Yield the checked input, ``batch_rows`` rows at a time.

        ``groups`` are positions in ``row_groups`` to read, in that order (default: all,
        in input order). Raises InputError for invalid values, naming the input row.
        """
        extra_columns = list(extra_columns or [])
        columns = list(dict.fromkeys(self.feature_names + ([self.weights] if self.weights else []) + extra_columns))
        offsets = self.row_group_offsets()
        for position in range(len(self.row_groups)) if groups is None else groups:
            file_index, group, _ = self.row_groups[position]
            path = self.files[file_index]
            first_row = offsets[position]
            for batch in _iter_row_group(path, group, columns, batch_rows):
                yield self.check_batch(pa.Table.from_batches([batch]), first_row, extra_columns)
                first_row += batch.num_rows

    def check_batch(self, table: pa.Table, first_row: int, extra_columns: list[str]) -> RawBatch:
        """Return the features of a batch whose first row is input row ``first_row`` (0-based).

        Raises InputError on values the fit cannot use.
        """
        n_rows = table.num_rows
        X = np.empty((n_rows, len(self.feature_names)), dtype=np.float64)
        for position, name in enumerate(self.feature_names):
            X[:, position] = _column_to_float64(table.column(name))
        sample_weight = None
        if self.weights is not None:
            sample_weight = _column_to_float64(table.column(self.weights))
            negative = np.flatnonzero(sample_weight < 0)
            if negative.size:
                row = int(negative[0])
                raise InputError(
                    f"weights column '{self.weights}' has a negative weight {float(sample_weight[row])!r} in data row "
                    f"{first_row + row + 1} of '{self.source}'; weights must be >= 0"
                )

        valid = np.isfinite(X).all(axis=1)
        if sample_weight is not None:
            valid &= np.isfinite(sample_weight)
        if valid.all():
            valid = None
        elif self.missing == "error":
            row = int(np.flatnonzero(~valid)[0])
            raise InputError(
                f"data row {first_row + row + 1} of '{self.source}' has a missing or infinite value "
                f"({self._describe_row(X[row], sample_weight, row)}); fix it or pass --missing drop to skip such rows"
            )
        else:
            X = X[valid]
            sample_weight = None if sample_weight is None else sample_weight[valid]

        X = self._cast(X, valid, first_row)
        return RawBatch(X, sample_weight, valid, self._extra_table(table, extra_columns), n_rows)

    def _extra_table(self, table: pa.Table, extra_columns: list[str]) -> pa.Table:
        """Select ``extra_columns`` with the types they have in every file, so that all batches share one schema."""
        table = table.select(extra_columns)
        schema = pa.schema([(name, self.column_types[name]) for name in extra_columns])
        if table.schema.equals(schema):
            return table
        try:
            return table.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise InputError(
                f"cannot convert the --keep columns of '{self.source}' to the types {schema.types} that they "
                f"have across its files ({error}); convert each to one type in every file"
            ) from None

    def _describe_row(self, values: np.ndarray, sample_weight: np.ndarray | None, row: int) -> str:
        names = list(self.feature_names)
        cells = list(values)
        if sample_weight is not None:
            names.append(self.weights)
            cells.append(sample_weight[row])
        invalid = [f"'{name}' {_describe_value(value)}" for name, value in zip(names, cells) if not np.isfinite(value)]
        return ", ".join(invalid)

    def _cast(self, X: np.ndarray, valid: np.ndarray | None, first_row: int) -> np.ndarray:
        """Cast X to the fit's dtype, raising InputError on float32 overflow or underflow."""
        if self.dtype == "float64":
            return X
        limits = np.finfo(np.float32)
        with np.errstate(over="ignore"):
            cast = X.astype(np.float32)
        # A non-zero value below the smallest normal float32 loses its digits, so the
        # clusters would be computed on other data than the input.
        for invalid, rule in (
            (np.isinf(cast), f"exceeds the float32 maximum {float(limits.max):.7g}"),
            ((X != 0) & (np.abs(cast) < limits.tiny), f"is below the smallest float32 magnitude {float(limits.tiny):.7g}"),
        ):
            positions = np.argwhere(invalid)
            if positions.size:
                row, column = positions[0]
                input_row = row if valid is None else int(np.flatnonzero(valid)[row])
                raise InputError(
                    f"value {float(X[row, column])!r} in column '{self.feature_names[column]}' (data row "
                    f"{first_row + input_row + 1} of '{self.source}') {rule}; pass --dtype float64"
                )
        return cast


class ParquetStream:
    """A ``RawSource`` over a ``ParquetInput``: the preprocessing pass and the working source."""

    def __init__(self, data: ParquetInput, batch_rows: int) -> None:
        self.input = data
        self.batch_rows = batch_rows
        self.n_samples = data.n_rows
        self.n_features = len(data.feature_names)
        self._moments: DataMoments | None = None
        self.min_positive_weight = 1.0
        self.total_weight = 0.0
        self.n_dropped = 0

    def moments(self, dtype: str) -> DataMoments:
        """Read the input once and return the moments of its features.

        Also counts the rows kept (``n_samples``) and dropped, the total weight and the
        smallest positive weight. Raises InputError when no row or no weight is left.
        """
        if dtype != self.input.dtype:
            raise OptionError(f"dtype {dtype!r} differs from the input's dtype {self.input.dtype!r}")
        weighted = unweighted = None
        n_samples = 0
        smallest = np.inf
        for batch in self.input.batches(self.batch_rows):
            n_samples += batch.X.shape[0]
            self.n_dropped += batch.n_rows - batch.X.shape[0]
            part = MomentSums.of_block(batch.X, batch.sample_weight)
            weighted = part if weighted is None else weighted.merge(part)
            if batch.sample_weight is not None:
                plain = MomentSums.of_block(batch.X, None)
                unweighted = plain if unweighted is None else unweighted.merge(plain)
                positive = batch.sample_weight[batch.sample_weight > 0]
                smallest = min(smallest, float(positive.min(initial=np.inf)))
        if n_samples == 0:
            raise InputError(
                f"all {self.input.n_rows} rows of '{self.input.source}' have missing or infinite values, "
                "so none is left after --missing drop; check the feature columns with --columns"
            )
        if weighted.weight <= 0:
            raise InputError(
                f"all weights in column '{self.input.weights}' are 0; at least one row needs a positive weight"
            )
        self.n_samples = n_samples
        self.total_weight = weighted.weight
        self.min_positive_weight = smallest if np.isfinite(smallest) else 1.0
        unweighted_std = weighted.std if unweighted is None else unweighted.std
        self._moments = DataMoments(weighted.mean, weighted.std, unweighted_std, n_samples)
        return self._moments

    def working(
        self, preprocessing: Preprocessing, dtype: str, n_clusters: int, chunk_size: int | None
    ) -> "ParquetSource":
        if self._moments is None:
            raise RuntimeError("ParquetStream.moments must run before ParquetStream.working")
        return ParquetSource(self, preprocessing, np.dtype(dtype), n_clusters, chunk_size)


class ParquetSource:
    """A ``DataSource`` that reads, checks and maps every batch to working units on each pass.

    Chunks are numbered and their rows counted across batches in input order, so a
    pass gives the same chunks every time. Only rows kept for clustering are counted.
    """

    def __init__(
        self, stream: ParquetStream, preprocessing: Preprocessing, dtype: np.dtype, n_clusters: int,
        chunk_size: int | None,
    ) -> None:
        self.stream = stream
        self.preprocessing = preprocessing
        self.dtype = dtype
        self.n_clusters = n_clusters
        self.chunk_size = chunk_size
        self.n_samples = stream.n_samples
        self.n_features = stream.n_features
        self.total_weight = stream.total_weight
        self.min_positive_weight = stream.min_positive_weight

    def _working(self, batch: RawBatch) -> ChunkedData:
        working = self.preprocessing.transform(batch.X, self.dtype)
        return ChunkedData.build(working, batch.sample_weight, self.n_clusters, self.chunk_size)

    def _batches(self, groups: list[int] | None = None) -> Iterator[ChunkedData]:
        for batch in self.stream.input.batches(self.stream.batch_rows, groups=groups):
            yield self._working(batch)

    def chunks(self) -> Iterator[Chunk]:
        """Yield the chunks of every batch in input order, numbered and placed across batches."""
        index = 0
        offset = 0
        for data in self._batches():
            for chunk in data.chunks():
                rows = slice(offset + chunk.rows.start, offset + chunk.rows.stop)
                yield Chunk(index, rows, chunk.X, chunk.x_squared_norms, chunk.sample_weight)
                index += 1
            offset += data.n_samples

    def reduce(self, kernel, n_clusters: int) -> ChunkStats:
        """Run ``kernel`` on every chunk and return the sum of its statistics, added in input order."""
        total = ChunkStats.zeros(n_clusters, self.n_features)
        for chunk in self.chunks():
            total.add(kernel(chunk))
        return total

    def map(self, function) -> Iterator:
        """Yield ``function(chunk)`` for every chunk, in input order."""
        for chunk in self.chunks():
            yield function(chunk)

    def take(self, rows: np.ndarray) -> ChunkedData:
        """Return the rows at sorted indices ``rows`` (among the kept rows), read in one pass."""
        X_parts, weight_parts = [], []
        offset = 0
        for data in self._batches():
            start, stop = np.searchsorted(rows, [offset, offset + data.n_samples])
            local = rows[start:stop] - offset
            if len(local):
                X_parts.append(data.X[local])
                if data.sample_weight is not None:
                    weight_parts.append(data.sample_weight[local])
            offset += data.n_samples
        X = np.concatenate(X_parts) if X_parts else np.empty((0, self.n_features), dtype=self.dtype)
        weights = np.concatenate(weight_parts) if weight_parts else None
        return ChunkedData.build(X, weights, self.n_clusters, self.chunk_size)

    def minibatches(self, batch_size: int, rng: np.random.Generator) -> Iterator[ChunkedData]:
        """Yield mini-batches of ``batch_size`` rows drawn from the stream, without replacement per epoch.

        Each epoch reads every row group once, in an order drawn from ``rng``, and
        shuffles the rows of each batch read. A mini-batch takes the next ``batch_size``
        rows of that stream, so one step reads about ``batch_size`` rows from disk.
        NOTE: a mini-batch comes from the one or few row groups being read, so data
        stored sorted by cluster gives mini-batches from few clusters. Store such data
        shuffled, or use full-batch steps.
        """
        pending_X: list[np.ndarray] = []
        pending_weights: list[np.ndarray] = []
        pending = 0
        while True:
            order = rng.permutation(len(self.stream.input.row_groups)).tolist()
            for data in self._batches(order):
                shuffled = rng.permutation(data.n_samples)
                pending_X.append(data.X[shuffled])
                if data.sample_weight is not None:
                    pending_weights.append(data.sample_weight[shuffled])
                pending += data.n_samples
                while pending >= batch_size:
                    X = np.concatenate(pending_X)
                    weights = np.concatenate(pending_weights) if pending_weights else None
                    yield ChunkedData.build(
                        X[:batch_size], None if weights is None else weights[:batch_size], self.n_clusters,
                        self.chunk_size,
                    )
                    pending_X = [X[batch_size:]]
                    pending_weights = [] if weights is None else [weights[batch_size:]]
                    pending -= batch_size


def write_labels(
    data: ParquetInput,
    destination: str,
    predict_batch,
    *,
    batch_rows: int,
    keep: list[str],
    n_clusters: int,
    probabilities: bool,
    force: bool,
) -> tuple[int, int, float]:
    """Assign the input batch by batch and write the labels table in input order.

    ``predict_batch(X)`` returns (labels, inertia, probabilities or None) for the kept
    rows of one batch. Rows dropped for missing values get an empty ``cluster`` (and
    NaN probabilities). The file is written through ``atomic_output``, or as CSV to
    stdout for ``-``. Returns (rows assigned, rows dropped, total inertia).
    """
    n_assigned = n_dropped = 0
    inertia = 0.0
    with LabelsWriter(destination, force=force, input_path=data.source) as writer:
        for batch in data.batches(batch_rows, extra_columns=keep):
            labels, batch_inertia, memberships = predict_batch(batch.X)
            writer.write(labels_batch_table(batch, labels, memberships, n_clusters, probabilities))
            n_assigned += len(labels)
            n_dropped += batch.n_rows - len(labels)
            inertia += batch_inertia
    return n_assigned, n_dropped, inertia


def labels_batch_table(batch: RawBatch, labels: np.ndarray, memberships, n_clusters: int, probabilities: bool) -> pa.Table:
    """Build one batch of the labels output: the kept columns, ``cluster`` and ``p_0 .. p_{k-1}``."""
    table = batch.table
    mask = None if batch.valid is None else ~batch.valid
    cluster = np.zeros(batch.n_rows, dtype=np.int64)
    if mask is None:
        cluster[:] = labels
    else:
        cluster[batch.valid] = labels
    table = table.append_column("cluster", pa.array(cluster, type=pa.int64(), mask=mask))
    if probabilities:
        for index in range(n_clusters):
            column = np.full(batch.n_rows, np.nan)
            if batch.valid is None:
                column[:] = memberships[:, index]
            else:
                column[batch.valid] = memberships[:, index]
            table = table.append_column(f"p_{index}", pa.array(column, type=pa.float64()))
    return table


class LabelsWriter:
    """Write a table batch by batch to a CSV or Parquet file, atomically, or to a stream.

    A file appears under its name only when the ``with`` block ends without an error.
    Until then it is a temporary file in the same folder. Streams (``-`` for stdout,
    FIFOs and character devices such as /dev/null) are written directly, as
    ``softkm.tables.OutputSet`` writes them, because renaming a file over them would
    replace the pipe or device node.
    """

    def __init__(self, destination: str, *, force: bool, input_path: str | None) -> None:
        self.destination = destination
        self.format = output_format(destination)
        self.force = force
        self.input_path = input_path
        self._stack = contextlib.ExitStack()
        self._parquet: pq.ParquetWriter | None = None
        self._file = None
        self._schema: pa.Schema | None = None

    def __enter__(self) -> "LabelsWriter":
        if self.destination == "-":
            sys.stdout.flush()
            self._open_format(sys.stdout.buffer)
            return self
        try:
            if is_stream(self.destination):
                check_output_path(self.destination, force=self.force, input_path=self.input_path)
                file = self._stack.enter_context(self._open_stream())
            else:
                path = self._stack.enter_context(
                    atomic_output(self.destination, force=self.force, input_path=self.input_path)
                )
                file = self._stack.enter_context(open(path, "wb"))
            self._open_format(file)
        except BaseException:
            self._stack.close()
            raise
        return self

    def _open_stream(self):
        try:
            return open(self.destination, "wb")
        except OSError as error:
            raise OutputError(f"cannot write output '{self.destination}': {error.strerror or error}") from None

    def _open_format(self, file) -> None:
        if self.format.endswith(".gz"):
            # An empty file name and a zero modification time keep the gzip header deterministic.
            file = self._stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=file, mtime=0))
        self._file = file

    def write(self, table: pa.Table) -> None:
        """Append one batch; every batch must have the columns of the first."""
        first = self._schema is None
        if first:
            self._schema = table.schema
        else:
            table = table.cast(self._schema)
        with self._write_errors():
            if self.format == "parquet":
                if self._parquet is None:
                    self._parquet = self._stack.enter_context(pq.ParquetWriter(self._file, self._schema))
                self._parquet.write_table(table)
            else:
                self._write_csv(table, header=first)

    @contextlib.contextmanager
    def _write_errors(self) -> Iterator[None]:
        """Turn a closed pipe into OutputClosed and other write failures into OutputError."""
        try:
            yield
        except BrokenPipeError:
            if self.destination == "-":
                from softkm.tables import _redirect_stdout_to_devnull

                _redirect_stdout_to_devnull()
            raise OutputClosed() from None
        except OSError as error:
            raise OutputError(f"cannot write output '{self.destination}': {error.strerror or error}") from None

    def _write_csv(self, table: pa.Table, header: bool) -> None:
        import pandas as pd

        separator = "\t" if self.format.startswith("tsv") else ","
        # Nullable integers print an empty cell for a dropped row's cluster, not 'nan'.
        frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        # pandas writes floats with repr(), which reads back to the same float64.
        frame.to_csv(self._file, sep=separator, index=False, header=header, lineterminator="\n", encoding="utf-8")

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is not None:
            self._stack.__exit__(error_type, error, traceback)
            return
        # Closing the Parquet writer, the gzip stream and the file writes their last bytes.
        with self._write_errors():
            self._stack.close()
            if self.destination == "-":
                sys.stdout.buffer.flush()


def estimated_memory_bytes(source: str, n_features_hint: int | None = None) -> int | None:
    """Estimate the bytes an in-memory fit of a Parquet file takes, or None for other inputs.

    The estimate counts three float64 copies of every column (a table, a feature matrix
    and its working-unit copy). That is an upper bound: the in-memory path reads a
    Parquet file straight into one array of the fit's dtype and transforms it in place.
    """
    try:
        with open(source, "rb") as handle:
            if handle.read(4) != b"PAR1":
                return None
        metadata = pq.read_metadata(source)
    except (OSError, pa.ArrowException):
        return None
    return 3 * 8 * metadata.num_rows * metadata.num_columns


def available_memory_bytes() -> int | None:
    """Return the memory available to new allocations (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _read_layouts(source: str, files: list[str]) -> tuple[list[pa.Schema], list[tuple[int, int, int]]]:
    """Return the Arrow schema of every file and the (file index, row group, rows) of every row group."""
    schemas = []
    row_groups = []
    for file_index, path in enumerate(files):
        if len(files) > 1 and not _starts_with_parquet_magic(path):
            raise InputError(_not_parquet_message(source, path))
        metadata = _read_metadata(path)
        schema = metadata.schema.to_arrow_schema()
        duplicates = [name for position, name in enumerate(schema.names) if name in schema.names[:position]]
        if duplicates:
            raise InputError(f"input '{path}' has two columns named '{duplicates[0]}'; rename one of them")
        schemas.append(schema)
        for group in range(metadata.num_row_groups):
            row_groups.append((file_index, group, metadata.row_group(group).num_rows))
    return schemas, row_groups


def _starts_with_parquet_magic(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PAR1"
    except OSError as error:
        raise InputError(f"cannot read input '{path}': {error.strerror}; check its permissions") from None


def _not_parquet_message(source: str, path: str) -> str:
    if os.path.isdir(source):
        pattern = os.path.join(source, "*.parquet")
        return (
            f"input folder '{source}' contains '{path}', which is not a Parquet file; "
            f"remove it from the folder or pass a glob such as '{pattern}'"
        )
    pattern = os.path.join(os.path.dirname(source), "*.parquet")
    return (
        f"input pattern '{source}' matches '{path}', which is not a Parquet file; "
        f"narrow the pattern to Parquet files, such as '{pattern}'"
    )


def _column_types(
    source: str, files: list[str], schemas: list[pa.Schema], names: list[str], excludable: set[str]
) -> dict[str, pa.DataType]:
    """Return the type that each of ``names`` has in every file, after promotion.

    Types are unified as ``pyarrow.unify_schemas(promote_options="permissive")`` does:
    integer and floating-point types promote to one numeric type, string to large_string,
    and a null-typed column takes the other files' type. Raises InputError when a file
    lacks one of ``names`` or stores it with a type that does not unify. The message
    suggests --exclude for the ``excludable`` columns.
    """
    types = {}
    for name in names:
        unified = first_type = first_path = None
        for path, schema in zip(files, schemas):
            if name not in schema.names:
                other = next(other for other, other_schema in zip(files, schemas) if name in other_schema.names)
                hint = ", or leave it out with --exclude" if name in excludable else ""
                raise InputError(
                    f"column '{name}' not found in '{path}', but '{other}' has it; "
                    f"give every file of '{source}' the same columns{hint}"
                )
            field_type = schema.field(name).type
            if unified is None:
                unified = field_type
            else:
                try:
                    unified = pa.unify_schemas(
                        [pa.schema([(name, unified)]), pa.schema([(name, field_type)])], promote_options="permissive"
                    ).field(name).type
                except (pa.ArrowTypeError, pa.ArrowInvalid):
                    raise InputError(
                        f"column '{name}' has type {first_type} in '{first_path}' but {field_type} in '{path}'; "
                        "convert it to one type in every file"
                    ) from None
            if first_type is None and not pa.types.is_null(field_type):
                first_type, first_path = field_type, path
        types[name] = unified
    return types


class _ColumnSample:
    """The first TEXT_SAMPLE_ROWS values of a column, read from the first file with rows.

    NOTE: the in-memory path looks at every value of a text column, and a stream looks
    at this sample only. A column whose numbers stored as text start after the sample,
    or in a later file, is skipped with a warning instead of raising InputError.
    """

    def __init__(self, files: list[str], row_groups: list[tuple[int, int, int]]) -> None:
        self.path = files[next(file_index for file_index, _, rows in row_groups if rows > 0)]

    def series(self, name: str):
        """Read the sample of column ``name`` into a pandas Series of the dtype that the in-memory path gives it."""
        try:
            batches = pq.ParquetFile(self.path).iter_batches(batch_size=TEXT_SAMPLE_ROWS, columns=[name])
            table = pa.Table.from_batches([next(batches)])
        except (OSError, pa.ArrowException) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(
                f"cannot read column '{name}' of '{self.path}' ({reason}); check that the file was written completely"
            ) from None
        return table.column(name).to_pandas()


def _default_feature_names(
    source: str, names: list[str], candidates: list[str], column_types: dict[str, pa.DataType], sample: _ColumnSample
) -> tuple[list[str], list[str]]:
    """Return (the numeric columns, the other columns) among ``candidates``, as ``extract_features`` chooses them.

    Boolean columns are never features by default. A text column whose sample looks
    numeric raises InputError.
    """
    feature_names = []
    skipped = []
    for name in candidates:
        arrow_type = column_types[name]
        if _is_feature_type(arrow_type, allow_bool=False):
            feature_names.append(name)
            continue
        if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
            _reject_numeric_text(sample.series(name), name, fix="drop the column with --exclude")
        skipped.append(name)
    if not feature_names:
        raise InputError(
            f"input '{source}' has no numeric feature columns (columns found: {_describe_columns(names)}); "
            "select feature columns with --columns"
        )
    return feature_names, skipped


def _check_requested_type(source: str, name: str, arrow_type: pa.DataType, sample: _ColumnSample) -> None:
    """Raise InputError unless a column named in --columns is numeric or boolean, as ``extract_features`` does."""
    if _is_feature_type(arrow_type, allow_bool=True):
        return
    _check_requested_column(sample.series(name), name)
    # _check_requested_column passes any column that pandas reads as numbers, but a
    # stream casts the Arrow values to float64 itself and supports only the types above.
    raise InputError(f"column '{name}' of '{source}' has type {arrow_type}, not a number; remove it from --columns")


def _is_feature_type(arrow_type: pa.DataType, allow_bool: bool) -> bool:
    """Return whether a column of ``arrow_type`` can be a feature; null-typed columns are read as NaN."""
    return _is_number_type(arrow_type, allow_bool) or pa.types.is_null(arrow_type)


def _read_metadata(path: str) -> pq.FileMetaData:
    try:
        return pq.read_metadata(path)
    except (OSError, pa.ArrowException) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"input '{path}' is not a valid Parquet file ({reason}); check that it was written completely") from None


def _iter_row_group(path: str, group: int, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    try:
        parquet_file = pq.ParquetFile(path)
        yield from parquet_file.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns)
    except (OSError, pa.ArrowException) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(
            f"cannot read columns {', '.join(columns)} of '{path}' ({reason}); every file of the input "
            "needs the same columns"
        ) from None


def _is_number_type(arrow_type: pa.DataType, allow_bool: bool) -> bool:
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return True
    return allow_bool and pa.types.is_boolean(arrow_type)


def _column_to_float64(column: pa.ChunkedArray) -> np.ndarray:
    """Return a numeric column as float64 with NaN for nulls; integers beyond 2^53 are rounded."""
    values = pa_compute.cast(column, pa.float64(), safe=False)
    return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _describe_value(value: float) -> str:
    if np.isnan(value):
        return "missing"
    return "inf" if value > 0 else "-inf"
