"""Read input tables (CSV, gzip-compressed CSV, Parquet) and write output tables atomically.

The format of an input is detected from its first bytes: ``PAR1`` is Parquet and ``1f 8b`` is
gzip. Everything else must be CSV text in UTF-8, or in UTF-16 with a byte order mark. The file extension only chooses the default
delimiter (tab for ``.tsv``) and the wording of errors. CSV is parsed with ``pyarrow.csv``.

Outputs are written to a temporary file in the destination folder, flushed to disk and then
renamed, so that an interrupted write never leaves a partial file or damages an existing one.
The outputs of one command are renamed together, with SIGINT and SIGTERM held back meanwhile
(see ``OutputSet``). Standard output, FIFOs and character devices are written directly.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import os
import re
import signal
import stat
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pa_compute
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from softkm.errors import InputError, InputWarning, OptionError, OutputError

if TYPE_CHECKING:
    import pandas as pd

PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
STDIN_NAME = "<stdin>"

NON_SPACE = re.compile(rb"\S")
LINE_BREAK = re.compile(rb"\r\n|\r|\n")

# Number of leading bytes used to detect binary content, the delimiter and the decimal mark.
SNIFF_BYTES = 64 * 1024

# Delimiters suggested when a file parses into a single column.
OTHER_DELIMITERS = (";", "\t", "|")

# Fields such as 1,5 or 1.234,5 (decimal comma) and 1.5 or 1,234.5 (decimal point).
COMMA_DECIMAL = re.compile(r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+),\d+(?:[eE][+-]?\d+)?")
POINT_DECIMAL = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)\.\d+(?:[eE][+-]?\d+)?")

# Digit group separators allowed with each decimal mark. The no-break space is a literal
# character because the pattern also runs in Arrow's RE2 engine, which lacks \u escapes.
GROUP_SEPARATORS = {".": ",", ",": ". \u00a0"}

# Signals whose handling waits until a set of outputs is renamed into place.
DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Output format for each supported file name ending, longest endings first.
OUTPUT_FORMATS = {
    ".csv.gz": "csv.gz",
    ".tsv.gz": "tsv.gz",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
}


class OutputClosed(Exception):
    """The reader of standard output closed the pipe before all rows were written.

    This is not a SoftkmError: the command-line interface exits quietly on it, as
    ``head`` and other filters expect.
    """


# ---------------------------------------------------------------------------------------------
# Reading


def read_table(
    source: str,
    *,
    delimiter: str | None = None,
    decimal: str | None = None,
    header: bool = True,
) -> pd.DataFrame:
    """Read a CSV, gzip-compressed CSV or Parquet table into a DataFrame.

    See ``read_table_with_text`` for the rules and errors.
    """
    frame, _ = read_table_with_text(source, text_columns=[], delimiter=delimiter, decimal=decimal, header=header)
    return frame


def read_table_with_text(
    source: str,
    *,
    text_columns: list[str],
    delimiter: str | None = None,
    decimal: str | None = None,
    header: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a table, and the ``text_columns`` among its columns as the text of their cells.

    The second frame keeps CSV cells exactly as written, so an id such as ``007`` stays
    ``007`` and integers beyond int64 keep every digit. Empty cells become empty strings.
    It is built by a second parse of the CSV text, limited to these columns. Parquet
    columns are taken as stored. Names that are not columns of the table are left out.

    ``source`` is a file path or ``-`` for standard input. Either is read fully into memory
    before its format is detected. ``delimiter`` and ``decimal`` apply to CSV only. The
    default delimiter is tab for ``.tsv`` and ``.tsv.gz`` names and ``,`` otherwise. It is
    ``;`` instead when ``decimal`` is ',' or when the first line contains ';' and either has
    no comma outside quotes or is a row of decimal-comma numbers. For delimiters other than
    ``,`` the decimal mark is detected from the first 64 KiB. With ``header=False`` the
    columns are named ``x1`` to ``xd``.

    Rows keep the order of the input, but lines that are empty or contain only spaces and
    tabs are skipped. A CSV text column whose values are all numbers with digit grouping,
    such as ``"1,234.5"``, becomes float64, and a column without any value becomes float64 NaN. A named pandas index stored in Parquet
    becomes a column.

    Raises InputError when the source is missing, empty or without data rows, or when its
    content is not a readable table of the format that its extension names. Raises OptionError for an invalid
    ``delimiter`` or ``decimal``.
    """
    name = STDIN_NAME if source == "-" else source
    data = _read_source_bytes(source)
    data = _decompress_if_gzip(data, name)
    data = _utf16_to_utf8(data, name)

    if data.startswith(PARQUET_MAGIC):
        frame = _read_parquet(data, name)
        return frame, frame[[column for column in text_columns if column in frame.columns]]

    _check_text(data, name)
    return _read_csv(data, name, delimiter=delimiter, decimal=decimal, header=header, text_columns=text_columns)


def open_input(
    source: str,
    *,
    text_columns: list[str],
    delimiter: str | None = None,
    decimal: str | None = None,
    header: bool = True,
) -> ArrowInput:
    """Open a table for reading column by column into NumPy arrays, without a DataFrame.

    A Parquet file given by its path is not read here: ``ArrowInput`` reads its columns
    from disk when they are needed. Standard input and gzip-compressed files are read
    into memory, and CSV is parsed into an Arrow table, with the errors that
    ``read_table_with_text`` raises for them. Errors in Parquet content surface later,
    from ``ArrowInput.frames``.
    """
    name = STDIN_NAME if source == "-" else source
    if source != "-" and _starts_with(source, PARQUET_MAGIC):
        return ArrowInput(name, parquet_source=source)

    data = _read_source_bytes(source)
    data = _decompress_if_gzip(data, name)
    data = _utf16_to_utf8(data, name)
    if data.startswith(PARQUET_MAGIC):
        return ArrowInput(name, parquet_source=pa.py_buffer(data))

    _check_text(data, name)
    table, text_table = _read_csv_arrow(
        data, name, delimiter=delimiter, decimal=decimal, header=header, text_columns=text_columns
    )
    return ArrowInput(name, table=table, text_table=text_table)


class ArrowInput:
    """An input table whose columns are read through Arrow, one row group at a time.

    It contains either a Parquet source (a file path, or the bytes of standard input or
    of a gzip-compressed file) or a parsed CSV table with its text columns. A Parquet
    file is opened lazily and raises ``pa.ArrowException`` or ``OSError`` when it
    cannot be read. ``frames`` reads the whole table as ``read_table_with_text`` does,
    with its checks and errors.
    """

    def __init__(
        self,
        name: str,
        *,
        parquet_source: str | pa.Buffer | None = None,
        table: pa.Table | None = None,
        text_table: pa.Table | None = None,
    ) -> None:
        self.name = name
        self._parquet_source = parquet_source
        self._parquet_file: pq.ParquetFile | None = None
        self._table = table
        self._text_table = text_table

    @property
    def is_parquet(self) -> bool:
        return self._parquet_source is not None

    def _parquet(self) -> pq.ParquetFile:
        if self._parquet_file is None:
            source = self._parquet_source
            if isinstance(source, pa.Buffer):
                source = pa.BufferReader(source)
            self._parquet_file = pq.ParquetFile(source)
        return self._parquet_file

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema, with the pandas metadata of a Parquet file written by pandas."""
        return self._parquet().schema_arrow if self.is_parquet else self._table.schema

    @property
    def row_groups(self) -> list[int]:
        """The number of rows in each part read at once: a Parquet row group, or the whole CSV table."""
        if not self.is_parquet:
            return [self._table.num_rows]
        metadata = self._parquet().metadata
        return [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]

    def has_plain_columns(self) -> bool:
        """Return whether the schema's names are exactly the columns of ``frames``.

        They differ when pandas stored an index that ``frames`` turns into a column or
        drops, or column labels that are not strings.
        """
        metadata = self.schema.pandas_metadata
        if metadata is None:
            return True
        for index in metadata.get("index_columns", []):
            if not (isinstance(index, dict) and index.get("kind") == "range" and index.get("name") is None):
                return False
        if any(level.get("pandas_type") != "unicode" for level in metadata.get("column_indexes", [])):
            return False
        return all(column.get("name") == column.get("field_name") for column in metadata.get("columns", []))

    def read_row_group(self, group: int, columns: list[str]) -> pa.Table:
        """Read ``columns`` of one row group, with null-typed columns cast to float64."""
        if self.is_parquet:
            table = self._parquet().read_row_group(group, columns=columns)
        else:
            table = self._table.select(columns)
        return _null_columns_to_float(table)

    def read_columns(self, columns: list[str]) -> pa.Table:
        """Read ``columns`` of every row, with null-typed columns cast to float64."""
        if self.is_parquet:
            table = self._parquet().read(columns=columns)
        else:
            table = self._table.select(columns)
        return _null_columns_to_float(table)

    def text_frame(self, text_columns: list[str]) -> pd.DataFrame:
        """Return the ``text_columns`` that exist, as ``read_table_with_text`` returns them.

        Parquet columns are converted as stored. CSV columns are the text of their cells.
        """
        if not self.is_parquet:
            return self._text_table.to_pandas()
        present = [column for column in dict.fromkeys(text_columns) if column in self.schema.names]
        if not present:
            import pandas as pd

            return pd.DataFrame()
        return self.read_columns(present).to_pandas()

    def frames(self, text_columns: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Read the whole table and its ``text_columns`` as ``read_table_with_text`` does."""
        if not self.is_parquet:
            return self._table.to_pandas(), self._text_table.to_pandas()
        data = self._parquet_source
        frame = _read_parquet(_read_source_bytes(data) if isinstance(data, str) else data, self.name)
        return frame, frame[[column for column in text_columns if column in frame.columns]]


def _starts_with(path: str, prefix: bytes) -> bool:
    """Return whether the file at ``path`` starts with ``prefix``, and False when it cannot be read."""
    try:
        with open(path, "rb") as file:
            return file.read(len(prefix)) == prefix
    except OSError:
        return False


def _read_source_bytes(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        with open(source, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise InputError(f"input file '{source}' not found; check the path") from None
    except IsADirectoryError:
        raise InputError(f"input '{source}' is a folder; pass a CSV or Parquet file") from None
    except OSError as error:
        raise InputError(f"cannot read input '{source}': {error.strerror}; check its permissions") from None


def _decompress_if_gzip(data: bytes, name: str) -> bytes:
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise InputError(
            f"input '{name}' starts like a gzip file but cannot be decompressed ({error}); "
            "check that the file is complete"
        ) from None


def _utf16_to_utf8(data: bytes, name: str) -> bytes:
    """Re-encode text that starts with a UTF-16 byte order mark as UTF-8, and return other data unchanged.

    Spreadsheet programs export "Unicode text" as UTF-16 with a byte order mark.
    """
    if not data.startswith(UTF16_BOMS):
        return data
    try:
        return data.decode("utf-16").encode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"input '{name}' starts like UTF-16 text but has invalid bytes at offset {error.start}; "
            "save it with UTF-8 encoding"
        ) from None


def _expected_format(name: str) -> str | None:
    """Return 'Parquet' or 'CSV' for names with these extensions, or None for other names."""
    lowered = name.lower()
    if lowered.endswith((".parquet", ".pq")):
        return "Parquet"
    if lowered.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")):
        return "CSV"
    return None


def _check_text(data: bytes, name: str) -> None:
    """Raise InputError unless ``data`` is non-empty UTF-8 text.

    Only the first SNIFF_BYTES are checked for binary content. Invalid UTF-8 further on is
    reported by the CSV parser.
    """
    if _text_start(data) is None:
        raise InputError(f"input '{name}' is empty; pass a CSV or Parquet file with a header row and data rows")

    sample = data[:SNIFF_BYTES]
    if _looks_binary(sample):
        first_bytes = sample[:8].hex(" ")
        expected = _expected_format(name)
        if expected is not None:
            raise InputError(
                f"input '{name}' has a {expected} extension but is not a {expected} file "
                f"(binary content, first bytes {first_bytes}); pass a CSV, gzip-compressed CSV or Parquet file"
            )
        raise InputError(
            f"input '{name}' is neither CSV text nor Parquet nor gzip (binary content, first bytes {first_bytes}); "
            "pass a CSV, gzip-compressed CSV or Parquet file"
        )

    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError as error:
        raise InputError(
            f"input '{name}' is not UTF-8 text (byte 0x{sample[error.start]:02x} at offset {error.start}); "
            "save it with UTF-8 encoding"
        ) from None


def _looks_binary(sample: bytes) -> bool:
    """Return whether ``sample`` contains a NUL byte or more than 1% of other control bytes."""
    if b"\x00" in sample:
        return True
    control_count = sum(sample.count(bytes([code])) for code in range(32) if code not in (9, 10, 13))
    return control_count > 0.01 * len(sample)


def _read_parquet(data: bytes | pa.Buffer, name: str) -> pd.DataFrame:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(
            f"input '{name}' is not a valid Parquet file ({reason}); check that it was written completely"
        ) from None

    _check_unique_names(table.column_names, name)
    if table.num_rows == 0:
        raise InputError(f"input '{name}' has columns but no data rows")

    frame = _null_columns_to_float(table).to_pandas()
    return _index_to_columns(frame)


def _index_to_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Move a named index (restored from pandas metadata) into columns and drop an unnamed one."""
    if all(level is None for level in frame.index.names):
        return frame.reset_index(drop=True)
    return frame.reset_index()


def _null_columns_to_float(table: pa.Table) -> pa.Table:
    """Cast columns without any value (Arrow type null) to float64, so they read as all-NaN."""
    for position, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(position, field.name, table.column(position).cast(pa.float64()))
    return table


def _check_unique_names(names: list[str], name: str) -> None:
    seen = set()
    for column in names:
        if column in seen:
            raise InputError(f"input '{name}' has two columns named '{column}'; rename one of them")
        seen.add(column)


# ---------------------------------------------------------------------------------------------
# CSV


def _read_csv(
    data: bytes, name: str, *, delimiter: str | None, decimal: str | None, header: bool, text_columns: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    table, text_table = _read_csv_arrow(
        data, name, delimiter=delimiter, decimal=decimal, header=header, text_columns=text_columns
    )
    return table.to_pandas(), text_table.to_pandas()


def _read_csv_arrow(
    data: bytes, name: str, *, delimiter: str | None, decimal: str | None, header: bool, text_columns: list[str]
) -> tuple[pa.Table, pa.Table]:
    """Parse CSV text into (the table, its ``text_columns`` as text), as ``read_table_with_text`` describes."""
    start = _text_start(data)
    # The sample extends to the end of the first line, however long the header is.
    first_break = LINE_BREAK.search(data, start)
    sample_end = max(start + SNIFF_BYTES, first_break.end() if first_break else len(data))
    sample_text = codecs.getincrementaldecoder("utf-8")().decode(data[start:sample_end], final=False)
    sample_lines = re.split(r"\r\n|\r|\n", sample_text)
    first_line = sample_lines[0]

    if decimal is not None and decimal not in (".", ","):
        raise OptionError(f"decimal mark {decimal!r} is invalid; use '.' or ','")
    delimiter = _choose_delimiter(delimiter, decimal, name, first_line)
    if decimal is None:
        data_lines = sample_lines[1:] if header else sample_lines
        decimal = _detect_decimal(data_lines, delimiter)

    first_row = next(csv.reader(io.StringIO(sample_text, newline=""), delimiter=delimiter))
    # Checked before parsing, because data rows split by another delimiter would otherwise
    # fail with a less helpful field count error.
    if len(first_row) == 1:
        _check_single_column(first_line, delimiter, name)
    if header:
        if not _has_text_after_first_line(data, start):
            raise InputError(f"input '{name}' has a header but no data rows")
        column_names = [cell.strip() for cell in first_row]
        _check_unique_names(column_names, name)
        _warn_if_numeric_header(column_names, name, decimal)
    else:
        column_names = [f"x{position}" for position in range(1, len(first_row) + 1)]

    # Slicing an Arrow buffer does not copy the data.
    text = pa.py_buffer(data)[start:]
    table = _parse_csv(text, name, column_names, delimiter, decimal, skip_rows=1 if header else 0)
    if table.num_rows == 0:
        raise InputError(f"input '{name}' has a header but no data rows")
    _check_utf8_columns(table, name)

    table = _convert_number_text(_null_columns_to_float(table), decimal)

    present = [column for column in dict.fromkeys(text_columns) if column in column_names]
    text_table = pa.table({})
    if present:
        text_table = _parse_csv(
            text, name, column_names, delimiter, decimal, skip_rows=1 if header else 0, text_columns=present
        )
    return table, text_table


def _text_start(data: bytes) -> int | None:
    """Return the offset of the first character that is not whitespace or a UTF-8 BOM, or None."""
    first = NON_SPACE.search(data, len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0)
    return None if first is None else first.start()


def _has_text_after_first_line(data: bytes, start: int) -> bool:
    line_break = LINE_BREAK.search(data, start)
    return line_break is not None and NON_SPACE.search(data, line_break.end()) is not None


def _choose_delimiter(delimiter: str | None, decimal: str | None, name: str, first_line: str) -> str:
    if delimiter is not None:
        return _normalize_delimiter(delimiter)
    if name.lower().endswith((".tsv", ".tsv.gz")):
        return "\t"
    if decimal == "," or _looks_semicolon_separated(first_line):
        return ";"
    return ","


def _normalize_delimiter(delimiter: str) -> str:
    """Map the spellings 'tab' and '\\t' to a tab character and validate other delimiters."""
    if delimiter in ("tab", "\\t"):
        return "\t"
    if len(delimiter) != 1 or delimiter in ('"', "\n", "\r"):
        raise OptionError(f"delimiter {delimiter!r} is invalid; use a single character such as ',', ';', '|' or tab")
    return delimiter


def _looks_semicolon_separated(first_line: str) -> bool:
    """Return whether a first line with ';' is a header or row separated by semicolons.

    A header qualifies when splitting it by ',' gives one field. A headerless row with
    decimal commas, such as ``1,5;2,25``, qualifies when every ';'-separated field is a number.
    """
    if ";" not in first_line:
        return False
    if len(next(csv.reader([first_line], delimiter=","))) == 1:
        return True
    fields = next(csv.reader([first_line], delimiter=";"))
    return all(_number_pattern(",").fullmatch(field.strip()) for field in fields)


def _detect_decimal(lines: list[str], delimiter: str) -> str:
    """Return ',' when the sampled fields use decimal commas, else '.'.

    Comma-separated files always use '.'. Otherwise each field such as ``1,5`` or
    ``1.234,5`` counts for ',' and each field such as ``1.5`` or ``1,234.5`` counts for '.'.
    """
    if delimiter == ",":
        return "."
    comma_votes = 0
    point_votes = 0
    for row in csv.reader(lines, delimiter=delimiter):
        for field in row:
            field = field.strip()
            if COMMA_DECIMAL.fullmatch(field):
                comma_votes += 1
            elif POINT_DECIMAL.fullmatch(field):
                point_votes += 1
    return "," if comma_votes > point_votes else "."


def _number_pattern(decimal: str) -> re.Pattern[str]:
    """Return a pattern for a number with ``decimal`` as decimal mark and optional digit grouping.

    The group separator is ',' when the decimal mark is '.', and '.' or a space otherwise.
    """
    point = re.escape(decimal)
    group = "[" + GROUP_SEPARATORS[decimal] + "]"
    grouped = rf"\d{{1,3}}(?:{group}\d{{3}})+(?:{point}\d*)?"
    plain = rf"(?:\d+(?:{point}\d*)?|{point}\d+)(?:[eE][+-]?\d+)?"
    return re.compile(rf"[+-]?(?:{grouped}|{plain})")


def _warn_if_numeric_header(column_names: list[str], name: str, decimal: str) -> None:
    pattern = _number_pattern(decimal)
    if column_names and all(pattern.fullmatch(cell) for cell in column_names):
        warnings.warn(
            f"every column name in input '{name}' is a number (first '{column_names[0]}'), "
            "so the first line is probably data; pass --no-header if the file has no header row",
            InputWarning,
            stacklevel=4,
        )


def _parse_csv(
    data: pa.Buffer,
    name: str,
    column_names: list[str],
    delimiter: str,
    decimal: str,
    *,
    skip_rows: int,
    text_columns: list[str] | None = None,
) -> pa.Table:
    """Parse CSV text with Arrow, or only the ``text_columns`` as strings when given."""
    invalid_rows = []

    def record_invalid_row(row) -> str:
        # A line of spaces or tabs, often left at the end of an edited file, is a blank line.
        if not row.text.strip():
            return "skip"
        invalid_rows.append(row)
        return "error"

    read_options = pa_csv.ReadOptions(column_names=column_names, skip_rows=skip_rows)
    parse_options = pa_csv.ParseOptions(
        delimiter=delimiter, newlines_in_values=True, invalid_row_handler=record_invalid_row
    )
    convert_options = pa_csv.ConvertOptions(decimal_point=decimal)
    if text_columns:
        convert_options = pa_csv.ConvertOptions(
            include_columns=text_columns,
            column_types={column: pa.string() for column in text_columns},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
    try:
        return pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
    except pa.ArrowInvalid as error:
        if invalid_rows:
            row = invalid_rows[0]
            raise InputError(
                f"input '{name}' has {row.expected_columns} columns but a row has {row.actual_columns} "
                f"fields ({row.text[:80]!r}); check the delimiter and the quoting"
            ) from None
        reason = str(error).splitlines()[0]
        raise InputError(f"input '{name}' cannot be parsed as CSV ({reason}); check the delimiter and the quoting") from None


def _check_utf8_columns(table: pa.Table, name: str) -> None:
    """Raise InputError for a column that Arrow read as binary because it has invalid UTF-8."""
    for field in table.schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            raise InputError(
                f"input '{name}' is not UTF-8 text (column '{field.name}' has invalid bytes); "
                "save it with UTF-8 encoding"
            )


def _check_single_column(first_line: str, delimiter: str, name: str) -> None:
    for other in OTHER_DELIMITERS:
        if other != delimiter and other in first_line:
            raise InputError(
                f"input '{name}' has only one column with delimiter {_delimiter_label(delimiter)} "
                f"but its first line contains {_delimiter_label(other)}; "
                f"pass --delimiter {_delimiter_option(other)}"
            )


def _delimiter_label(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


def _delimiter_option(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else f"'{delimiter}'"


def _convert_number_text(table: pa.Table, decimal: str) -> pa.Table:
    """Convert text columns whose every value is a number, such as ``"1,234.5"``, to float64.

    Arrow infers such columns as text because of the digit group separators. Empty
    strings count as missing values. A column with any other text stays unchanged.
    """
    pattern = "^" + _number_pattern(decimal).pattern + "$"
    for position, field in enumerate(table.schema):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        text = pa_compute.utf8_trim_whitespace(table.column(position))
        text = pa_compute.if_else(pa_compute.equal(text, ""), pa.scalar(None, text.type), text)
        if text.null_count == len(text):
            continue
        if not pa_compute.all(pa_compute.match_substring_regex(text, pattern)).as_py():
            continue
        table = table.set_column(position, field.name, _parse_grouped_numbers(text, decimal))
    return table


def _parse_grouped_numbers(text: pa.ChunkedArray, decimal: str) -> pa.ChunkedArray:
    # Every value matched the number pattern, so these characters can only be group separators.
    for separator in GROUP_SEPARATORS[decimal]:
        text = pa_compute.replace_substring(text, separator, "")
    if decimal == ",":
        text = pa_compute.replace_substring(text, ",", ".")
    return pa_compute.cast(text, pa.float64())


# ---------------------------------------------------------------------------------------------
# Writing


def output_format(destination: str) -> str:
    """Return the table format of ``destination``: 'csv', 'tsv', 'csv.gz', 'tsv.gz' or 'parquet'.

    ``-`` (standard output) is CSV, and so is a FIFO or character device whose name has
    none of the known endings, such as ``/dev/stdout``. Raises OptionError for any other
    file name ending.
    """
    if destination == "-":
        return "csv"
    lowered = destination.lower()
    for ending, table_format in OUTPUT_FORMATS.items():
        if lowered.endswith(ending):
            return table_format
    if is_stream(destination):
        return "csv"
    supported = ", ".join(sorted(OUTPUT_FORMATS))
    raise OptionError(
        f"output '{destination}' has an unsupported extension; use one of {supported}, or '-' for CSV on stdout"
    )


def is_stream(destination: str) -> bool:
    """Return whether ``destination`` is ``-``, an existing FIFO or a character device.

    These outputs are written directly, as a stream: renaming a file over them would
    replace the pipe or device node with a regular file.
    """
    if destination == "-":
        return True
    try:
        mode = os.stat(destination).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def check_output_path(destination: str, *, force: bool, input_path: str | None = None) -> None:
    """Raise OutputError if ``destination`` cannot or must not be written.

    The destination must not be the input file, its folder must exist, and an existing
    file is replaced only with ``force``. ``-`` (standard output), FIFOs and character
    devices such as ``/dev/null`` always pass, because writing to them replaces nothing.
    Block devices, sockets and folders are rejected.
    """
    if destination == "-":
        return

    if input_path is not None and input_path != "-" and _same_file(destination, input_path):
        raise OutputError(f"output '{destination}' is the input file; choose another output path")
    if is_stream(destination):
        return

    target = os.path.realpath(destination)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise OutputError(
            f"output folder '{os.path.dirname(destination) or '.'}' does not exist; "
            "create it or choose another output path"
        )
    if os.path.isdir(target):
        raise OutputError(f"output '{destination}' is a folder; give a file path")
    if os.path.exists(target) and not os.path.isfile(target):
        raise OutputError(
            f"output '{destination}' is neither a regular file nor a FIFO nor a character device; "
            "give a file path"
        )
    if os.path.lexists(destination) and not force:
        raise OutputError(f"output '{destination}' exists; pass --force to replace it")


def _same_file(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.realpath(first) == os.path.realpath(second)


class OutputSet:
    """The output files of one command, written first and renamed into place together.

    Each file is written in full to a temporary file in its destination's folder and
    flushed to disk. ``commit`` then renames every temporary file over its destination
    with SIGINT and SIGTERM held back, so that an interruption cannot leave some outputs
    new and others old. Streams (stdout, FIFOs, character devices) cannot be renamed;
    they are written after the renames, in the order they were added.

    NOTE: the renames are separate system calls. A crash of the machine or SIGKILL between
    two of them still leaves a mix of new and old files, and so does a rename that the
    file system rejects after earlier ones succeeded.
    """

    def __init__(self, *, force: bool, input_path: str | None = None) -> None:
        self.force = force
        self.input_path = input_path
        self._pending: list[tuple[str, str]] = []
        self._streams: list[tuple[str, Callable[[BinaryIO], None]]] = []

    def temporary_path(self, destination: str) -> str:
        """Check ``destination`` and return an empty temporary file for it, renamed on ``commit``.

        Raises OutputError for a stream destination, which must not be replaced by a file.
        """
        check_output_path(destination, force=self.force, input_path=self.input_path)
        if is_stream(destination):
            raise OutputError(f"output '{destination}' is stdout, a FIFO or a device; give a regular file path")
        target = os.path.realpath(destination)
        folder = os.path.dirname(target)
        try:
            descriptor, temporary_path = tempfile.mkstemp(dir=folder, prefix=".softkm-", suffix=".tmp")
        except OSError as error:
            raise OutputError(
                f"cannot create a file in output folder '{folder}': {error.strerror}; choose a writable folder"
            ) from None
        os.close(descriptor)
        self._pending.append((temporary_path, destination))
        return temporary_path

    def add_table(self, frame: pd.DataFrame | pa.Table, destination: str) -> None:
        """Write ``frame`` to a temporary file for ``destination``, or queue it for a stream.

        ``frame`` is a DataFrame or an Arrow table from ``arrow_output_table``.
        """
        table_format = output_format(destination)
        if is_stream(destination):
            check_output_path(destination, force=self.force, input_path=self.input_path)
            self._streams.append((destination, lambda file: _write_to(frame, file, table_format)))
            return
        temporary_path = self.temporary_path(destination)
        try:
            _write_file(frame, temporary_path, table_format)
        except OSError as error:
            raise OutputError(f"cannot write output '{destination}': {error.strerror or error}") from None

    def add_text(self, text: str, destination: str) -> None:
        """Write ``text`` as UTF-8 to a temporary file for ``destination``, or queue it for a stream."""
        if is_stream(destination):
            check_output_path(destination, force=self.force, input_path=self.input_path)
            self._streams.append((destination, lambda file: file.write(text.encode("utf-8"))))
            return
        temporary_path = self.temporary_path(destination)
        try:
            with open(temporary_path, "w", encoding="utf-8") as file:
                file.write(text)
        except OSError as error:
            raise OutputError(f"cannot write output '{destination}': {error.strerror or error}") from None

    def commit(self) -> None:
        """Flush the temporary files, rename them into place together, then write the streams.

        Raises OutputError when a file cannot be flushed or renamed, and OutputClosed when
        the reader of a stream closed it.
        """
        for temporary_path, destination in self._pending:
            _flush_output(temporary_path, destination)
        for _, destination in self._pending:
            # NOTE: another process can still create the destination between this check and the rename.
            if os.path.lexists(destination) and not self.force:
                raise OutputError(f"output '{destination}' exists; pass --force to replace it")

        with signals_deferred():
            while self._pending:
                temporary_path, destination = self._pending[0]
                try:
                    os.replace(temporary_path, os.path.realpath(destination))
                except OSError as error:
                    raise OutputError(f"cannot write output '{destination}': {error.strerror}") from None
                self._pending.pop(0)
                _fsync_folder(os.path.dirname(os.path.realpath(destination)))

        streams, self._streams = self._streams, []
        for destination, write in streams:
            _write_stream(destination, write)

    def discard(self) -> None:
        """Remove the temporary files that were not renamed; the destinations stay as they were."""
        with signals_deferred():
            for temporary_path, _ in self._pending:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(temporary_path)
            self._pending = []
            self._streams = []


@contextlib.contextmanager
def output_set(*, force: bool, input_path: str | None = None) -> Iterator[OutputSet]:
    """Yield an ``OutputSet`` that is committed when the block ends normally.

    On any exception, KeyboardInterrupt included, its temporary files are removed and
    every destination is left as it was.
    """
    outputs = OutputSet(force=force, input_path=input_path)
    try:
        yield outputs
        outputs.commit()
    except BaseException:
        outputs.discard()
        raise


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM inside the block and handle them once it ends.

    A blocked signal mask would not do: a signal sent to the process may be delivered to
    any thread, such as a BLAS worker, and Python then runs the handler in the main
    thread at once. So the Python handlers are swapped for one that records the signal,
    and each recorded signal is raised again after the old handlers are back. Outside
    the main thread, where handlers cannot be changed, the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    received: list[int] = []
    previous: dict[int, object] = {}
    try:
        for signal_number in DEFERRED_SIGNALS:
            handler = signal.getsignal(signal_number)
            # None means a handler installed outside Python, which cannot be restored.
            if handler is not None:
                previous[signal_number] = handler
                signal.signal(signal_number, lambda number, frame: received.append(number))
        yield
    finally:
        for signal_number, handler in previous.items():
            signal.signal(signal_number, handler)
        for signal_number in dict.fromkeys(received):
            signal.raise_signal(signal_number)


@contextlib.contextmanager
def atomic_output(destination: str, *, force: bool, input_path: str | None = None) -> Iterator[str]:
    """Yield a temporary path in the destination folder and rename it to ``destination`` on success.

    The caller writes the whole file to the yielded path. On a normal exit the file is
    flushed to disk and replaces ``destination``. On any exception, KeyboardInterrupt
    included, the temporary file is removed and ``destination`` is left as it was.
    Raises OutputError from the checks of ``check_output_path`` and when the file system
    rejects the write.
    """
    with output_set(force=force, input_path=input_path) as outputs:
        yield outputs.temporary_path(destination)


def _flush_output(temporary_path: str, destination: str) -> None:
    """Flush a written temporary file to disk and give it the permissions of an output file."""
    try:
        with open(temporary_path, "rb+") as file:
            os.fsync(file.fileno())
        os.chmod(temporary_path, _output_mode(os.path.realpath(destination)))
    except OSError as error:
        raise OutputError(f"cannot write output '{destination}': {error.strerror}") from None


def _output_mode(destination: str) -> int:
    """Return the permission bits of the replaced file, or 0o666 minus the umask for a new file.

    ``mkstemp`` creates files readable by the owner only, which an output file should not keep.
    """
    try:
        return os.stat(destination).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder: str) -> None:
    """Flush the rename to disk where the platform allows opening a folder."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def arrow_output_table(columns: list[tuple[str, np.ndarray]]) -> pa.Table:
    """Build the Arrow table that ``pa.Table.from_pandas`` makes of a DataFrame of these columns.

    Each column is int64, float32 or float64 NumPy data. A masked int64 array
    (``np.ma.MaskedArray``) is a pandas ``Int64`` column with nulls at its masked
    positions. A float NaN becomes a null, as in ``from_pandas``. The schema carries the
    pandas metadata of a DataFrame with a default index written with ``preserve_index=False``,
    so ``pq.write_table`` gives the same bytes for both, and pandas reads the column types back.
    The table is built from the NumPy buffers, because converting NumPy data with
    ``pa.array`` imports pandas (pyarrow 26.0).
    """
    arrays = []
    described = []
    for name, values in columns:
        valid = None
        numpy_type = values.dtype.name
        if values.dtype.name not in ("int64", "float32", "float64"):
            raise TypeError(f"output column '{name}' has dtype {values.dtype}; expected int64, float32 or float64")
        if isinstance(values, np.ma.MaskedArray):
            if values.dtype.name != "int64":
                raise TypeError(f"output column '{name}' is a masked {values.dtype} array; only int64 may be masked")
            valid = ~np.ma.getmaskarray(values)
            values = values.data
            numpy_type = "Int64"
        elif values.dtype.kind == "f" and np.isnan(values).any():
            valid = ~np.isnan(values)
        arrays.append(_arrow_array(np.ascontiguousarray(values), valid))
        described.append({
            "name": name, "field_name": name, "pandas_type": values.dtype.name, "numpy_type": numpy_type,
            "metadata": None,
        })

    # The keys and their order are those that pyarrow 26.0 writes (pandas_compat.construct_metadata).
    pandas_metadata = {
        "index_columns": [],
        "column_indexes": [],
        "columns": described,
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": metadata.version("pandas"),
    }
    schema = pa.schema(
        [pa.field(name, array.type) for (name, _), array in zip(columns, arrays)],
        metadata={b"pandas": json.dumps(pandas_metadata).encode("utf-8")},
    )
    return pa.Table.from_arrays(arrays, schema=schema)


def _arrow_array(values: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """Wrap contiguous NumPy ``values`` (n,) in an Arrow array, with nulls where ``valid`` is False."""
    arrow_type = pa.from_numpy_dtype(values.dtype)
    if valid is None or valid.all():
        return pa.Array.from_buffers(arrow_type, values.size, [None, pa.py_buffer(values)])
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        arrow_type, values.size, [bitmap, pa.py_buffer(values)], null_count=int(values.size - np.count_nonzero(valid))
    )


def write_table(
    frame: pd.DataFrame | pa.Table, destination: str, *, force: bool = False, input_path: str | None = None
) -> None:
    """Write ``frame`` without its index to ``destination``, or as CSV to stdout for ``-``.

    ``frame`` is a DataFrame or an Arrow table from ``arrow_output_table``, which gives
    the bytes of the equivalent DataFrame.

    The format follows the extension (see ``output_format``). Floats are written so that
    reading them back gives the same float64 values, and the same frame always gives the
    same bytes. Files are written through an ``OutputSet``, and FIFOs and character
    devices are written directly.

    Raises OptionError for an unsupported extension, OutputError when the file must not or
    cannot be written, and OutputClosed when the reader of stdout or a FIFO closed it.
    """
    with output_set(force=force, input_path=input_path) as outputs:
        outputs.add_table(frame, destination)


def _write_file(frame: pd.DataFrame | pa.Table, path: str, table_format: str) -> None:
    with open(path, "wb") as file:
        _write_to(frame, file, table_format)


def _write_to(frame: pd.DataFrame | pa.Table, binary_file, table_format: str) -> None:
    """Write ``frame`` in ``table_format`` to an open binary file, which need not be seekable."""
    if table_format == "parquet":
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, binary_file)
        return

    if isinstance(frame, pa.Table):
        # CSV goes through pandas, whose text (and compressed bytes) the outputs keep.
        frame = _table_to_frame(frame)
    separator = "\t" if table_format.startswith("tsv") else ","
    if table_format.endswith(".gz"):
        # An empty file name and a zero modification time keep the gzip header deterministic.
        with gzip.GzipFile(filename="", mode="wb", fileobj=binary_file, mtime=0) as compressed:
            _write_csv(frame, compressed, separator)
    else:
        _write_csv(frame, binary_file, separator)


def _table_to_frame(table: pa.Table) -> pd.DataFrame:
    """Convert an ``arrow_output_table`` to a DataFrame, with nullable integers that print a null as an empty cell."""
    import pandas as pd

    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _write_csv(frame: pd.DataFrame, binary_file, separator: str) -> None:
    # pandas writes floats with repr(), which reads back to the same float64.
    frame.to_csv(binary_file, sep=separator, index=False, lineterminator="\n", encoding="utf-8")


def _write_stream(destination: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on stdout (``-``), a FIFO or a character device, without a temporary file.

    Raises OutputClosed when the reader closed the pipe, and OutputError for other failures.
    """
    if destination == "-":
        try:
            sys.stdout.flush()
            write(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            _redirect_stdout_to_devnull()
            raise OutputClosed() from None
        return
    try:
        with open(destination, "wb") as file:
            write(file)
    except BrokenPipeError:
        raise OutputClosed() from None
    except OSError as error:
        raise OutputError(f"cannot write output '{destination}': {error.strerror or error}") from None


def _redirect_stdout_to_devnull() -> None:
    """Point the stdout descriptor at /dev/null so the flush at interpreter exit cannot fail again.

    This is the recipe of the section "Note on SIGPIPE" in the documentation of Python's
    ``signal`` module.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
