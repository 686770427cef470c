"""Select the feature columns of a table, validate their values and build the feature matrix.

Also defines the Standardizer, which centers each feature on its (weighted) mean and divides
it by its (weighted) standard deviation. Its parameters are stored in the model file.

Row numbers in messages are 1-based data row numbers: row 1 is the first row after the header.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pa_compute

from softkm.errors import InputError, InputWarning, OptionError

if TYPE_CHECKING:
    import pandas as pd

MISSING_POLICIES = ("error", "drop")
FEATURE_DTYPES = ("float32", "float64")

# Rows named in the error for missing or infinite values.
MAX_REPORTED_ROWS = 3

# Largest float32 rounding of a column's values, as a share of the column's standard
# deviation, that passes without a warning.
FLOAT32_ROUNDING_SHARE = 0.01
# Beyond this share float32 cannot tell the column's values apart, so the fit would run
# on a few rounded levels instead of the data: an error, not a warning.
FLOAT32_ROUNDING_LIMIT = 0.5

# Column names listed in errors before the list is cut short.
MAX_LISTED_COLUMNS = 20

# A text column in which at least this share of the non-empty values looks like numbers is
# reported as an error instead of being skipped as a non-feature column.
NUMERIC_TEXT_SHARE = 0.5

# Text that looks like a number: plain, with a decimal comma, with digit grouping, or a
# spelled-out infinity or NaN. Deliberately broader than what the CSV reader converts.
NUMBER_LIKE_TEXT = re.compile(
    r"[+-]?(?:\d{1,3}(?:[,. \u00a0]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?"
    r"|[+-]?(?:inf|infinity|nan)",
    re.IGNORECASE,
)

# pandas.api.types.infer_dtype results of object columns that contain Python numbers.
NUMERIC_OBJECT_KINDS = ("integer", "floating", "mixed-integer-float", "decimal", "empty")


@dataclass
class FeatureData:
    """Feature matrix and per-row data extracted from a table.

    X: (n_samples, n_features) C-contiguous float64 or float32 matrix.
    feature_names: the n_features column names, in the order of the columns of X.
    sample_weight: (n_samples,) float64 weights, or None when no weights column was given.
    row_index: (n_samples,) int64 positions of the kept rows in the input frame.
    n_dropped: number of rows removed because of missing or infinite values.
    skipped_columns: non-numeric columns left out of the default feature selection,
        other than those named in ``exclude`` or ``weights``.
    """

    X: np.ndarray
    feature_names: list[str]
    sample_weight: np.ndarray | None
    row_index: np.ndarray
    n_dropped: int
    skipped_columns: list[str] = field(default_factory=list)


def extract_features(
    frame: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    exclude: list[str] | None = None,
    weights: str | None = None,
    missing: str = "error",
    dtype: str = "float64",
) -> FeatureData:
    """Build the feature matrix and the sample weights from ``frame``.

    Without ``columns``, the features are all numeric columns except boolean ones, the
    ``exclude`` columns and the ``weights`` column. Integer columns become floats. A text
    column counts as numeric-looking when at least half of its non-empty values look like
    numbers. Such a column raises InputError instead of being skipped. With ``columns``,
    exactly those columns are used in the given order, and each must be numeric or boolean.

    Rows with NaN or infinite values in a feature or in the weights raise InputError, or
    are removed when ``missing`` is 'drop'. Weights must be >= 0 and not all 0.

    Raises OptionError for an invalid ``missing`` or ``dtype`` and for contradictory column
    options, and InputError for unknown columns and invalid values.
    """
    _check_options(missing, dtype)
    if len(frame) == 0:
        raise InputError("the table has no data rows; pass a table with at least one row")
    if columns is not None and not columns:
        raise OptionError("--columns names no column; name at least one feature column or omit it")
    labels = _column_labels(frame)
    _check_column_options(labels, columns, exclude, weights)

    skipped_columns: list[str] = []
    if columns is not None:
        feature_names = list(columns)
        for name in feature_names:
            _check_requested_column(frame[labels[name]], name)
    else:
        left_out = set(exclude or []) | ({weights} if weights is not None else set())
        feature_names, skipped_columns = _default_feature_names(frame, labels, left_out)

    X = _feature_matrix(frame, labels, feature_names)
    sample_weight = None
    if weights is not None:
        sample_weight = _weight_vector(frame[labels[weights]], weights)

    keep = _rows_to_keep(X, sample_weight, feature_names, weights, missing)
    X = X[keep]
    if sample_weight is not None:
        sample_weight = sample_weight[keep]
        _check_positive_total(sample_weight, weights)

    return FeatureData(
        X=_cast_features(X, feature_names, keep, dtype),
        feature_names=feature_names,
        sample_weight=sample_weight,
        row_index=np.flatnonzero(keep).astype(np.int64),
        n_dropped=int(keep.size - np.count_nonzero(keep)),
        skipped_columns=skipped_columns,
    )


def warn_skipped_columns(features: FeatureData, copied: list[str] | None = None) -> None:
    """Issue an InputWarning naming the non-numeric columns that are not features.

    Columns in ``copied`` (the ``--keep`` columns) are not named, because the user named them.
    """
    names = [name for name in features.skipped_columns if name not in (copied or [])]
    if not names:
        return
    warnings.warn(
        f"non-numeric column(s) {_describe_columns(names)} left out of the features; "
        f"pass --exclude {','.join(names)} to leave them out without this warning, "
        "or --columns to choose the features",
        InputWarning,
        stacklevel=2,
    )


# ---------------------------------------------------------------------------------------------
# Column selection


def _check_options(missing: str, dtype: str) -> None:
    if missing not in MISSING_POLICIES:
        raise OptionError(f"missing-value policy {missing!r} is invalid; use 'error' or 'drop'")
    if dtype not in FEATURE_DTYPES:
        raise OptionError(f"dtype {dtype!r} is invalid; use 'float32' or 'float64'")


def _column_labels(frame: pd.DataFrame) -> dict[str, object]:
    """Map the string form of each column label to the label itself."""
    labels: dict[str, object] = {}
    for label in frame.columns:
        name = str(label)
        if name in labels:
            raise InputError(f"the table has two columns named '{name}'; rename one of them")
        labels[name] = label
    return labels


def _describe_columns(names) -> str:
    names = list(names)
    listed = ", ".join(f"'{name}'" for name in names[:MAX_LISTED_COLUMNS])
    if len(names) > MAX_LISTED_COLUMNS:
        listed += f", ... ({len(names)} columns in total)"
    return listed or "none"


def _check_column_options(
    labels: dict[str, object], columns: list[str] | None, exclude: list[str] | None, weights: str | None
) -> None:
    available = _describe_columns(labels)
    for option, names in (("--columns", columns or []), ("--exclude", exclude or [])):
        for name in names:
            if name not in labels:
                raise InputError(f"column '{name}' given in {option} not found; available columns: {available}")
    if weights is not None and weights not in labels:
        raise InputError(f"weights column '{weights}' not found; available columns: {available}")

    if columns is None:
        return
    seen = set()
    for name in columns:
        if name in seen:
            raise OptionError(f"column '{name}' is listed twice in --columns; list each column once")
        seen.add(name)
    for name in exclude or []:
        if name in seen:
            raise OptionError(f"column '{name}' is in both --columns and --exclude; name it in only one")
    if weights in seen:
        raise OptionError(f"column '{weights}' is in both --columns and --weights; a weights column cannot be a feature")


def _column_kind(series: pd.Series) -> str:
    """Classify a column as 'numeric', 'boolean', 'text' or 'other' (dates, complex, ...)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_complex_dtype(series):
        return "numeric"
    if pd.api.types.is_string_dtype(series) or series.dtype == object:
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in NUMERIC_OBJECT_KINDS:
            return "numeric"
        if inferred == "boolean":
            return "boolean"
        return "text"
    return "other"


def _default_feature_names(
    frame: pd.DataFrame, labels: dict[str, object], left_out: set[str]
) -> tuple[list[str], list[str]]:
    """Return (the numeric columns, the other columns) of ``frame``, without the ``left_out`` ones.

    Boolean columns are never features by default, so they are in the second list.
    """
    names = []
    skipped = []
    for name, label in labels.items():
        if name in left_out:
            continue
        series = frame[label]
        kind = _column_kind(series)
        if kind == "numeric":
            names.append(name)
        elif kind == "text":
            _reject_numeric_text(series, name, fix="drop the column with --exclude")
            skipped.append(name)
        else:
            skipped.append(name)
    if not names:
        raise InputError(
            f"the table has no numeric feature columns (columns found: {_describe_columns(labels)}); "
            "select feature columns with --columns"
        )
    return names, skipped


def _check_requested_column(series: pd.Series, name: str) -> None:
    kind = _column_kind(series)
    if kind in ("numeric", "boolean"):
        return
    if kind == "text":
        _reject_numeric_text(series, name, fix="remove it from --columns")
    raise InputError(
        f"column '{name}' is not numeric (sample value {_sample_value(series)!r}); remove it from --columns"
    )


def _sample_value(series: pd.Series) -> str:
    for value in series.dropna():
        text = str(value)
        if text.strip():
            return text
    return ""


def _describe_text_value(series: pd.Series) -> str:
    """Describe the first value of a column that does not look like a number, with its data row.

    When every value looks like a number (numbers stored as text), describe the first value.
    """
    text = series.reset_index(drop=True).dropna().astype(str).str.strip()
    text = text[text != ""]
    if text.empty:
        return "it has no values"
    looks_numeric = text.str.fullmatch(NUMBER_LIKE_TEXT).to_numpy(dtype=bool)
    if looks_numeric.all():
        return f"data row {int(text.index[0]) + 1} contains {text.iloc[0]!r}, a number stored as text"
    first_bad = int(np.argmin(looks_numeric))
    return f"data row {int(text.index[first_bad]) + 1} contains {text.iloc[first_bad]!r}"


def _reject_numeric_text(series: pd.Series, name: str, *, fix: str) -> None:
    """Raise InputError if at least half of the non-empty values of a text column look like numbers.

    The message names the first value that does not look like a number, or a sample value
    when all of them do (numbers stored as text).
    """
    text = series.reset_index(drop=True).dropna().astype(str).str.strip()
    text = text[text != ""]
    if text.empty:
        return
    looks_numeric = text.str.fullmatch(NUMBER_LIKE_TEXT).to_numpy(dtype=bool)
    if looks_numeric.mean() < NUMERIC_TEXT_SHARE:
        return

    if looks_numeric.all():
        raise InputError(
            f"column '{name}' contains numbers stored as text (sample value {text.iloc[0]!r}); "
            f"convert it to a numeric column or {fix}"
        )
    first_bad = int(np.argmin(looks_numeric))
    row = int(text.index[first_bad]) + 1
    raise InputError(
        f"column '{name}' looks numeric but data row {row} contains {text.iloc[first_bad]!r}; "
        f"fix that value or {fix}"
    )


# ---------------------------------------------------------------------------------------------
# Values


def _to_float64(series: pd.Series) -> np.ndarray:
    """Return a column as a (n_samples,) float64 array with NaN for missing values."""
    if series.dtype == object:
        import pandas as pd

        series = pd.to_numeric(series)
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _feature_matrix(frame: pd.DataFrame, labels: dict[str, object], feature_names: list[str]) -> np.ndarray:
    """Return the (n_samples, n_features) float64 matrix of the feature columns."""
    X = np.empty((len(frame), len(feature_names)), dtype=np.float64)
    for position, name in enumerate(feature_names):
        X[:, position] = _to_float64(frame[labels[name]])
    return X


def _weight_vector(series: pd.Series, name: str) -> np.ndarray:
    """Return the (n_samples,) float64 weights, with NaN for missing ones, after checking the sign."""
    if _column_kind(series) not in ("numeric", "boolean"):
        raise InputError(f"weights column '{name}' is not numeric: {_describe_text_value(series)}; "
                         "pass a numeric column to --weights")
    weights = _to_float64(series)
    negative = np.flatnonzero(weights < 0)
    if negative.size:
        row = negative[0]
        raise InputError(
            f"weights column '{name}' has a negative weight {float(weights[row])!r} in data row {row + 1} "
            f"({negative.size} negative in total); weights must be >= 0"
        )
    return weights


def _check_positive_total(sample_weight: np.ndarray, name: str) -> None:
    if not np.any(sample_weight > 0):
        raise InputError(f"all weights in column '{name}' are 0; at least one row needs a positive weight")


def _rows_to_keep(
    X: np.ndarray, sample_weight: np.ndarray | None, feature_names: list[str], weights: str | None, missing: str
) -> np.ndarray:
    """Return a (n_samples,) boolean mask of the rows without NaN or infinite values.

    Raises InputError if there are such rows and ``missing`` is 'error', or if no row is left.
    """
    values = X
    names = list(feature_names)
    if sample_weight is not None:
        values = np.column_stack([X, sample_weight])
        names.append(weights)
    invalid = ~np.isfinite(values)
    keep = ~invalid.any(axis=1)
    if keep.all():
        return keep

    invalid_count = int(keep.size - np.count_nonzero(keep))
    if missing == "error":
        raise InputError(
            f"{_describe_invalid_rows(values, invalid, names, invalid_count)}; "
            "fix these values or pass --missing drop to skip such rows"
        )
    if not keep.any():
        raise InputError(
            f"all {keep.size} rows have missing or infinite values, so none is left after --missing drop; "
            "check the feature columns with --columns"
        )
    return keep


def _describe_invalid_rows(values: np.ndarray, invalid: np.ndarray, names: list[str], count: int) -> str:
    """Describe the first rows with missing or infinite values, such as "rows 2 ('a' missing)"."""
    descriptions = []
    for row in np.flatnonzero(invalid.any(axis=1))[:MAX_REPORTED_ROWS]:
        cells = [f"'{names[column]}' {_describe_value(values[row, column])}" for column in np.flatnonzero(invalid[row])]
        descriptions.append(f"{row + 1} ({', '.join(cells)})")

    if len(descriptions) == 1:
        listed = descriptions[0]
    else:
        listed = ", ".join(descriptions[:-1]) + " and " + descriptions[-1]
    if count == 1:
        return f"1 row has missing or infinite values: data row {listed}"
    first = "first " if count > MAX_REPORTED_ROWS else ""
    return f"{count} rows have missing or infinite values: {first}data rows {listed}"


def _describe_value(value: float) -> str:
    if np.isnan(value):
        return "missing"
    return "inf" if value > 0 else "-inf"


def _cast_features(X: np.ndarray, feature_names: list[str], keep: np.ndarray, dtype: str) -> np.ndarray:
    """Return X as a C-contiguous array of ``dtype``, raising InputError on float32 overflow or underflow."""
    if dtype == "float64":
        return np.ascontiguousarray(X)

    limits = np.finfo(np.float32)
    with np.errstate(over="ignore"):
        cast = np.ascontiguousarray(X, dtype=np.float32)
    _reject_cast(np.isinf(cast), X, feature_names, keep, f"exceeds the float32 maximum {float(limits.max):.7g}")
    # A non-zero value below the smallest normal float32 loses its digits (or becomes 0),
    # so the clusters would be computed on different data than the input.
    _reject_cast(
        (X != 0) & (np.abs(cast) < limits.tiny), X, feature_names, keep,
        f"is below the smallest float32 magnitude {float(limits.tiny):.7g}",
    )
    _warn_float32_rounding(X, cast, feature_names)
    return cast


def _warn_float32_rounding(X: np.ndarray, cast: np.ndarray, feature_names: list[str]) -> None:
    """Warn when rounding a column to float32 moves values by a visible part of its spread.

    Values far from 0 relative to their spread keep few significant digits in float32:
    near 1e7 the spacing of float32 numbers is 1. The fit then runs on rounded data.
    """
    for column, name in enumerate(feature_names):
        _warn_column_rounding(name, X[:, column], cast[:, column])


def _warn_column_rounding(name: str, values: np.ndarray, cast: np.ndarray) -> None:
    """Warn when the float32 ``cast`` (n_samples,) of float64 ``values`` moves them by a visible part of their spread.

    Raises InputError when the rounding reaches half the spread.
    """
    spread = float(np.std(values))
    if spread == 0:
        return
    rounding = float(np.max(np.abs(cast.astype(np.float64) - values)))
    if rounding > FLOAT32_ROUNDING_LIMIT * spread:
        raise InputError(
            f"column '{name}' cannot be held in float32: rounding moves values by up to {rounding:.3g}, "
            f"{rounding / spread:.0%} of its standard deviation {spread:.3g}; pass --dtype float64, "
            "or subtract a constant from the column"
        )
    if rounding > FLOAT32_ROUNDING_SHARE * spread:
        warnings.warn(
            f"column '{name}' loses precision in float32: rounding moves values by up to {rounding:.3g}, "
            f"{rounding / spread:.0%} of its standard deviation {spread:.3g}; pass --dtype float64, "
            "or subtract a constant from the column",
            InputWarning,
            stacklevel=3,
        )


def _reject_cast(invalid: np.ndarray, X: np.ndarray, feature_names: list[str], keep: np.ndarray, rule: str) -> None:
    """Raise InputError naming the first value marked in ``invalid`` (n_samples, n_features)."""
    positions = np.argwhere(invalid)
    if not positions.size:
        return
    row, column = positions[0]
    data_row = int(np.flatnonzero(keep)[row]) + 1
    raise InputError(
        f"value {float(X[row, column])!r} in column '{feature_names[column]}' (data row {data_row}) "
        f"{rule}; pass --dtype float64"
    )


# ---------------------------------------------------------------------------------------------
# Reading straight from Arrow

# Max bytes of float64 values decoded at once. A row group with more is read in sets of
# columns, and one column at a time when a single column exceeds it.
ARROW_STEP_BYTES = 1024 * 1024

# Rows moved at once when rows with missing values are removed from the feature matrix.
COMPACT_ROWS = 65_536


class _NotExact(Exception):
    """The input needs the DataFrame path of ``extract_features`` to be read or reported exactly."""


def extract_features_from_arrow(
    table_input,
    *,
    columns: list[str] | None = None,
    exclude: list[str] | None = None,
    weights: str | None = None,
    missing: str = "error",
    dtype: str = "float64",
) -> FeatureData | None:
    """Build the ``FeatureData`` of a ``softkm.tables.ArrowInput`` without a DataFrame.

    The result is what ``extract_features`` returns for the frame of ``table_input.frames``,
    array for array. The values go into one preallocated C-contiguous
    (n_samples, n_features) array of ``dtype``. They are read one row group at a time, and
    only as many columns at once as fit ARROW_STEP_BYTES in float64 (at least one).

    Returns None instead of raising when the input has an invalid value or option, a
    column type other than integer, floating point, boolean, text or null, a stored
    pandas index, or Parquet content that cannot be read. The caller then reads the frame
    with ``frames`` and calls ``extract_features``, which raises the error that the user
    should see.
    """
    try:
        return _extract_from_arrow(table_input, columns, exclude, weights, missing, dtype)
    except (_NotExact, InputError, OptionError, pa.ArrowException, OSError):
        return None


def _extract_from_arrow(table_input, columns, exclude, weights, missing: str, dtype: str) -> FeatureData:
    _check_options(missing, dtype)
    if columns is not None and not columns:
        raise _NotExact()
    schema = table_input.schema
    names = list(schema.names)
    if len(set(names)) != len(names) or not table_input.has_plain_columns():
        raise _NotExact()
    row_groups = table_input.row_groups
    if sum(row_groups) == 0:
        raise _NotExact()

    labels = {name: name for name in names}
    _check_column_options(labels, columns, exclude, weights)
    kinds = {field.name: _arrow_kind(field.type) for field in schema}
    feature_names, skipped_columns = _arrow_feature_names(table_input, names, kinds, columns, exclude, weights)
    if weights is not None and kinds[weights] not in ("numeric", "boolean"):
        raise _NotExact()

    X, sample_weight, keep = _read_arrow_matrix(table_input, row_groups, feature_names, weights, missing, dtype)
    if sample_weight is not None and not np.any(sample_weight > 0):
        raise _NotExact()
    if X.dtype == np.float32:
        _warn_arrow_rounding(table_input, row_groups, feature_names, schema, keep, X)

    return FeatureData(
        X=X,
        feature_names=feature_names,
        sample_weight=sample_weight,
        row_index=np.flatnonzero(keep).astype(np.int64),
        n_dropped=int(keep.size - X.shape[0]),
        skipped_columns=skipped_columns,
    )


def _arrow_kind(arrow_type: pa.DataType) -> str | None:
    """Classify an Arrow type as ``_column_kind`` classifies its pandas column, or None if unsupported.

    Null-typed columns count as numeric because they are read as float64 NaN.
    """
    if pa.types.is_integer(arrow_type) or arrow_type in (pa.float32(), pa.float64()) or pa.types.is_null(arrow_type):
        return "numeric"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    return None


def _arrow_feature_names(table_input, names, kinds, columns, exclude, weights) -> tuple[list[str], list[str]]:
    """Choose the features as ``extract_features`` does, returning (feature names, skipped columns)."""
    if columns is not None:
        for name in columns:
            if kinds[name] == "text":
                # Raises InputError for a text column; a column of Python numbers needs the frame.
                _check_requested_column(_arrow_series(table_input, name), name)
            if kinds[name] not in ("numeric", "boolean"):
                raise _NotExact()
        return list(columns), []

    left_out = set(exclude or []) | ({weights} if weights is not None else set())
    feature_names = []
    skipped = []
    for name in names:
        if name in left_out:
            continue
        kind = kinds[name]
        if kind == "text":
            series = _arrow_series(table_input, name)
            kind = _column_kind(series)
            if kind == "text":
                _reject_numeric_text(series, name, fix="drop the column with --exclude")
            elif kind == "numeric":
                raise _NotExact()
        if kind is None:
            raise _NotExact()
        if kind == "numeric":
            feature_names.append(name)
        else:
            skipped.append(name)
    if not feature_names:
        raise _NotExact()
    return feature_names, skipped


def _arrow_series(table_input, name: str) -> pd.Series:
    """Return one column as the pandas Series that the whole frame would hold."""
    return table_input.read_columns([name]).to_pandas()[name]


def _arrow_values(column: pa.ChunkedArray) -> np.ndarray:
    """Return a numeric or boolean column as float32 or float64 with NaN for nulls.

    Float columns keep their type. Other types are cast to float64 as ``to_pandas`` and
    NumPy cast them, so integers beyond 2^53 are rounded to the nearest float64.
    """
    if column.type in (pa.float32(), pa.float64()):
        return _float_values(column)
    if pa.types.is_boolean(column.type) and column.null_count:
        # pandas reads such a column as objects, which extract_features converts itself.
        raise _NotExact()
    return _float_values(pa_compute.cast(column, pa.float64(), safe=False))


def _float_values(column: pa.ChunkedArray) -> np.ndarray:
    """Return a float32 or float64 column as a NumPy array with NaN for nulls, as ``to_numpy`` does.

    The values are read from the Arrow buffers, without a copy for a single chunk without
    nulls. ``to_numpy`` would import pandas, because pyarrow (26.0) loads it on the first
    conversion to NumPy, and pandas adds about 45 MB to a process that has no other use for it.
    """
    dtype = np.dtype(np.float32) if column.type == pa.float32() else np.dtype(np.float64)
    parts = [_chunk_values(chunk, dtype) for chunk in column.chunks]
    if not parts:
        return np.empty(0, dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _chunk_values(chunk: pa.Array, dtype: np.dtype) -> np.ndarray:
    """Return one float32 or float64 Arrow array as NumPy, with NaN where its validity bitmap marks nulls."""
    if len(chunk) == 0:
        return np.empty(0, dtype=dtype)
    validity, data = chunk.buffers()
    values = np.frombuffer(data, dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize)
    if not chunk.null_count:
        return values
    # Arrow bitmaps are least significant bit first, and a sliced array starts at bit ``offset``.
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), count=chunk.offset + len(chunk), bitorder="little")
    values = values.copy()
    values[bits[chunk.offset:] == 0] = np.nan
    return values


def _column_sets(n_rows: int, names: list[str]) -> list[list[str]]:
    """Split ``names`` into lists whose float64 values for ``n_rows`` rows fit ARROW_STEP_BYTES."""
    per_set = max(1, ARROW_STEP_BYTES // max(1, 8 * n_rows))
    return [names[start:start + per_set] for start in range(0, len(names), per_set)]


def _read_arrow_matrix(
    table_input, row_groups: list[int], feature_names: list[str], weights: str | None, missing: str, dtype: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Read the features into one (n_kept, n_features) array; returns (X, sample_weight, keep).

    Each row group is written at the end of the rows kept so far, and rows with missing or
    infinite values are then moved out, so X ends as its first n_kept rows. ``keep``
    (n_rows,) marks the kept input rows. Raises _NotExact where ``extract_features`` would
    raise: invalid rows under ``missing='error'``, no row left, negative weights and
    float32 overflow or underflow in a kept row.
    """
    n_rows = sum(row_groups)
    X = np.empty((n_rows, len(feature_names)), dtype=np.dtype(dtype))
    sample_weight = None if weights is None else np.empty(n_rows, dtype=np.float64)
    keep = np.empty(n_rows, dtype=bool)
    positions = {name: position for position, name in enumerate(feature_names)}
    n_kept = 0
    first_row = 0
    for group, group_rows in enumerate(row_groups):
        block = X[n_kept:n_kept + group_rows]
        weight_block = None if sample_weight is None else sample_weight[n_kept:n_kept + group_rows]
        valid = np.ones(group_rows, dtype=bool)
        cast_problem = np.zeros(group_rows, dtype=bool) if block.dtype == np.float32 else None
        needed = feature_names + ([weights] if weights is not None else [])
        for names in _column_sets(group_rows, needed):
            table = table_input.read_row_group(group, names)
            for name in names:
                values = _arrow_values(table.column(name))
                valid &= np.isfinite(values)
                if name == weights:
                    if np.any(values < 0):
                        raise _NotExact()
                    weight_block[:] = values
                else:
                    _store_column(block, positions[name], values, cast_problem)
            del table

        if cast_problem is not None and np.any(cast_problem & valid):
            raise _NotExact()
        keep[first_row:first_row + group_rows] = valid
        first_row += group_rows
        if valid.all():
            n_kept += group_rows
            continue
        if missing == "error":
            raise _NotExact()
        _compact_rows(block, valid)
        if weight_block is not None:
            _compact_rows(weight_block, valid)
        n_kept += int(np.count_nonzero(valid))

    if n_kept == 0:
        raise _NotExact()
    return X[:n_kept], None if sample_weight is None else sample_weight[:n_kept], keep


def _store_column(block: np.ndarray, position: int, values: np.ndarray, cast_problem: np.ndarray | None) -> None:
    """Write ``values`` into column ``position`` of ``block``, marking float32 overflow and underflow.

    The marks go into ``cast_problem`` (n_rows,) for float32 blocks: a finite value that
    becomes infinite, or a non-zero value below the smallest normal float32.
    """
    with np.errstate(over="ignore"):
        block[:, position] = values
    if cast_problem is None:
        return
    cast = block[:, position]
    magnitude = np.abs(cast)
    if values.dtype == np.float64:
        cast_problem |= np.isinf(magnitude) & np.isfinite(values)
    cast_problem |= (magnitude < np.finfo(np.float32).tiny) & (values != 0)


def _compact_rows(block: np.ndarray, valid: np.ndarray) -> None:
    """Move the rows of ``block`` marked in ``valid`` to its start, in order, COMPACT_ROWS at a time.

    Rows are only moved towards the start, and each part is copied before it is written,
    so no row is overwritten before it is moved.
    """
    written = 0
    for start in range(0, valid.size, COMPACT_ROWS):
        rows = block[start:start + COMPACT_ROWS][valid[start:start + COMPACT_ROWS]]
        block[written:written + rows.shape[0]] = rows
        written += rows.shape[0]


def _warn_arrow_rounding(table_input, row_groups, feature_names, schema, keep: np.ndarray, X: np.ndarray) -> None:
    """Issue the float32 rounding warnings of ``extract_features`` for the columns that are not float32.

    Each such column is read again as float64 for its kept rows, one column at a time.
    Float32 and boolean columns are exact in float32 and need no check.
    """
    for position, name in enumerate(feature_names):
        arrow_type = schema.field(name).type
        if arrow_type == pa.float32() or pa.types.is_boolean(arrow_type):
            continue
        parts = []
        first_row = 0
        for group, group_rows in enumerate(row_groups):
            values = _arrow_values(table_input.read_row_group(group, [name]).column(name))
            parts.append(values[keep[first_row:first_row + group_rows]])
            first_row += group_rows
        values = np.concatenate(parts) if len(parts) > 1 else parts[0]
        _warn_column_rounding(name, values, X[:, position])
