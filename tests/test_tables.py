"""Tests for softkm.tables: format detection, CSV dialects, Parquet and atomic output."""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from softkm import tables
from softkm.errors import InputError, InputWarning, OptionError, OutputError, SoftkmError
from softkm.tables import OutputClosed, atomic_output, check_output_path, output_format, read_table, write_table

SPECIAL_FLOATS = [0.1, 1 / 3, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -123456789.123456789]


def write_file(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    return buffer.getvalue()


class FakeStdin:
    def __init__(self, data: bytes):
        self.buffer = io.BytesIO(data)


def temporary_files(folder) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(".softkm-")]


# ---------------------------------------------------------------------------------------------
# CSV dialects


def test_read_csv_types_and_order(tmp_path):
    path = write_file(tmp_path, "data.csv", b"a,b,name\n3,0.5,x\n1,1.5,y\n2,2.5,z\n")
    frame = read_table(path)
    assert list(frame.columns) == ["a", "b", "name"]
    assert frame["a"].tolist() == [3, 1, 2]
    assert frame["b"].tolist() == [0.5, 1.5, 2.5]
    assert frame["name"].tolist() == ["x", "y", "z"]


def test_read_csv_strips_byte_order_mark(tmp_path):
    path = write_file(tmp_path, "bom.csv", b"\xef\xbb\xbfa,b\n1,2\n")
    frame = read_table(path)
    assert list(frame.columns) == ["a", "b"]


def test_read_csv_windows_line_endings(tmp_path):
    path = write_file(tmp_path, "crlf.csv", b"a,b\r\n1,2\r\n3,4\r\n")
    frame = read_table(path)
    assert frame["b"].tolist() == [2, 4]


def test_read_csv_old_mac_line_endings(tmp_path):
    path = write_file(tmp_path, "cr.csv", b"a,b\r1,2\r3,4\r")
    frame = read_table(path)
    assert frame["a"].tolist() == [1, 3]


def test_read_csv_trailing_empty_lines(tmp_path):
    path = write_file(tmp_path, "trailing.csv", b"a,b\n1,2\n3,4\n\n\r\n\n")
    frame = read_table(path)
    assert len(frame) == 2


def test_read_csv_leading_empty_lines(tmp_path):
    path = write_file(tmp_path, "leading.csv", b"\n\na,b\n1,2\n")
    frame = read_table(path)
    assert list(frame.columns) == ["a", "b"]
    assert frame["a"].tolist() == [1]


def test_read_csv_strips_spaces_in_column_names(tmp_path):
    path = write_file(tmp_path, "spaces.csv", b"a, b\n1,2\n")
    frame = read_table(path)
    assert list(frame.columns) == ["a", "b"]


def test_read_csv_keeps_row_order_of_large_file(tmp_path):
    values = np.random.default_rng(1).permutation(200_000)
    text = "value\n" + "\n".join(map(str, values)) + "\n"
    path = write_file(tmp_path, "large.csv", text.encode())
    frame = read_table(path)
    assert np.array_equal(frame["value"].to_numpy(), values)


def test_read_csv_semicolon_decimal_comma_detected(tmp_path):
    path = write_file(tmp_path, "euro.csv", b"a;b;name\n1,5;2;x\n-3,25;4,0;y\n")
    frame = read_table(path)
    assert list(frame.columns) == ["a", "b", "name"]
    assert frame["a"].tolist() == [1.5, -3.25]
    assert frame["b"].tolist() == [2.0, 4.0]


def test_read_csv_semicolon_decimal_point_detected(tmp_path):
    path = write_file(tmp_path, "semicolon.csv", b"a;b\n1.5;2\n3.25;4\n")
    frame = read_table(path)
    assert frame["a"].tolist() == [1.5, 3.25]


def test_read_csv_semicolon_decimal_comma_explicit(tmp_path):
    path = write_file(tmp_path, "euro.txt", b"a;b\n1,5;2\n")
    frame = read_table(path, delimiter=";", decimal=",")
    assert frame["a"].tolist() == [1.5]


def test_read_csv_decimal_comma_implies_semicolon(tmp_path):
    path = write_file(tmp_path, "euro.csv", b"a;b\n1,5;2\n")
    frame = read_table(path, decimal=",")
    assert frame["a"].tolist() == [1.5]


def test_read_csv_headerless_semicolon_decimal_comma(tmp_path):
    path = write_file(tmp_path, "euro.csv", b"1,5;2,25\n3,5;4\n")
    frame = read_table(path, header=False)
    assert list(frame.columns) == ["x1", "x2"]
    assert frame["x2"].tolist() == [2.25, 4.0]


def test_read_csv_european_digit_grouping(tmp_path):
    path = write_file(tmp_path, "euro.csv", b'a;b\n"1.234,5";1\n"2 000,25";2\n')
    frame = read_table(path)
    assert frame["a"].tolist() == [1234.5, 2000.25]


@pytest.mark.parametrize(
    ("content", "delimiter", "suggested"),
    [
        (b"a;b\n1;2\n", ",", "--delimiter ';'"),
        (b"a\tb\n1\t2\n", None, "--delimiter tab"),
        (b"a|b\n1|2\n", None, "--delimiter '|'"),
    ],
)
def test_read_csv_one_column_suggests_delimiter(tmp_path, content, delimiter, suggested):
    path = write_file(tmp_path, "one.csv", content)
    with pytest.raises(InputError, match="only one column") as error:
        read_table(path, delimiter=delimiter)
    assert suggested in str(error.value)


def test_read_csv_single_feature_column_is_fine(tmp_path):
    path = write_file(tmp_path, "one.csv", b"x\n1\n2\n")
    frame = read_table(path)
    assert list(frame.columns) == ["x"]


@pytest.mark.parametrize("name", ["data.tsv", "data.TSV"])
def test_read_tsv_extension_means_tab(tmp_path, name):
    path = write_file(tmp_path, name, b"a\tb\n1\t2\n")
    frame = read_table(path)
    assert list(frame.columns) == ["a", "b"]


@pytest.mark.parametrize("spelling", ["\t", "tab", "\\t"])
def test_read_csv_tab_delimiter_spellings(tmp_path, spelling):
    path = write_file(tmp_path, "data.txt", b"a\tb\n1\t2\n")
    frame = read_table(path, delimiter=spelling)
    assert frame["b"].tolist() == [2]


def test_read_csv_pipe_delimiter(tmp_path):
    path = write_file(tmp_path, "data.csv", b"a|b\n1|2\n")
    frame = read_table(path, delimiter="|")
    assert frame["b"].tolist() == [2]


@pytest.mark.parametrize("delimiter", ["ab", "", '"', "\n"])
def test_read_csv_invalid_delimiter(tmp_path, delimiter):
    path = write_file(tmp_path, "data.csv", b"a,b\n1,2\n")
    with pytest.raises(OptionError, match="delimiter"):
        read_table(path, delimiter=delimiter)


def test_read_csv_invalid_decimal(tmp_path):
    path = write_file(tmp_path, "data.csv", b"a,b\n1,2\n")
    with pytest.raises(OptionError, match="decimal mark"):
        read_table(path, decimal=":")


def test_read_csv_thousands_separators(tmp_path):
    path = write_file(tmp_path, "money.csv", b'a,b\n"1,234.5",1\n12,2\n"-1,000,000",3\n"+2,000",4\n')
    frame = read_table(path)
    assert frame["a"].dtype == np.float64
    assert frame["a"].tolist() == [1234.5, 12.0, -1_000_000.0, 2000.0]


def test_read_csv_thousands_with_empty_cell(tmp_path):
    path = write_file(tmp_path, "money.csv", b'a,b\n"1,234.5",1\n"",2\n')
    frame = read_table(path)
    assert frame["a"].iloc[0] == 1234.5
    assert np.isnan(frame["a"].iloc[1])


def test_read_csv_thousands_mixed_with_text_stays_text(tmp_path):
    path = write_file(tmp_path, "money.csv", b'a,b\n"1,234.5",1\nabc,2\n')
    frame = read_table(path)
    assert frame["a"].tolist() == ["1,234.5", "abc"]


def test_read_csv_overflowing_literal_reads_as_inf(tmp_path):
    path = write_file(tmp_path, "big.csv", b"a,b\n1e400,1\n-1e400,2\n")
    frame = read_table(path)
    assert frame["a"].tolist() == [np.inf, -np.inf]


def test_read_csv_empty_column_is_float(tmp_path):
    path = write_file(tmp_path, "empty_column.csv", b"a,b\n,1\n,2\n")
    frame = read_table(path)
    assert frame["a"].dtype == np.float64
    assert frame["a"].isna().all()


def test_read_csv_quoted_newline_in_value(tmp_path):
    path = write_file(tmp_path, "quoted.csv", b'a,note\n1,"two\nlines"\n2,plain\n')
    frame = read_table(path)
    assert frame["note"].tolist() == ["two\nlines", "plain"]


def test_read_csv_no_header_names_columns(tmp_path):
    path = write_file(tmp_path, "data.csv", b"1,2,3\n4,5,6\n")
    frame = read_table(path, header=False)
    assert list(frame.columns) == ["x1", "x2", "x3"]
    assert frame["x1"].tolist() == [1, 4]


def test_read_csv_no_header_single_row(tmp_path):
    path = write_file(tmp_path, "data.csv", b"1,2\n")
    frame = read_table(path, header=False)
    assert frame.shape == (1, 2)


def test_read_csv_numeric_header_warns(tmp_path):
    path = write_file(tmp_path, "data.csv", b"1.5,2\n3,4\n")
    with pytest.warns(InputWarning, match="--no-header"):
        read_table(path)


def test_read_csv_text_header_does_not_warn(tmp_path):
    path = write_file(tmp_path, "data.csv", b"a,2\n3,4\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_table(path)


def test_read_csv_no_header_does_not_warn(tmp_path):
    path = write_file(tmp_path, "data.csv", b"1,2\n3,4\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_table(path, header=False)


@pytest.mark.parametrize("content", [b"", b"   \n\n\t\r\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n"])
def test_read_empty_file(tmp_path, content):
    path = write_file(tmp_path, "empty.csv", content)
    with pytest.raises(InputError, match=r"input '.*empty\.csv' is empty"):
        read_table(path)


def test_read_empty_parquet_name(tmp_path):
    path = write_file(tmp_path, "empty.parquet", b"")
    with pytest.raises(InputError, match="is empty"):
        read_table(path)


def test_read_empty_gzip(tmp_path):
    path = write_file(tmp_path, "empty.csv.gz", gzip.compress(b""))
    with pytest.raises(InputError, match="is empty"):
        read_table(path)


@pytest.mark.parametrize("content", [b"a,b\n", b"a,b", b"a,b\r\n\r\n", b"a,b\n\n\n"])
def test_read_header_only(tmp_path, content):
    path = write_file(tmp_path, "header.csv", content)
    with pytest.raises(InputError, match=r"input '.*header\.csv' has a header but no data rows"):
        read_table(path)


def test_read_missing_file_names_path(tmp_path):
    path = str(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="not found") as error:
        read_table(path)
    assert path in str(error.value)


def test_read_folder_is_error(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        read_table(str(tmp_path))


def test_read_ragged_row(tmp_path):
    path = write_file(tmp_path, "ragged.csv", b"a,b\n1,2\n3\n")
    with pytest.raises(InputError, match="has 2 columns but a row has 1 fields"):
        read_table(path)


def test_read_duplicate_column_names(tmp_path):
    path = write_file(tmp_path, "dup.csv", b"a,b,a\n1,2,3\n")
    with pytest.raises(InputError, match="two columns named 'a'"):
        read_table(path)


def test_read_latin1_is_not_utf8(tmp_path):
    path = write_file(tmp_path, "latin1.csv", "city,x\nZürich,1\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_table(path)


def test_read_invalid_utf8_after_first_bytes(tmp_path):
    path = write_file(tmp_path, "late.csv", b"a,b\n" + b"x,1\n" * 20_000 + b"\xe9,2\n")
    with pytest.raises(InputError, match="column 'a' has invalid bytes"):
        read_table(path)


def test_read_header_longer_than_sample(tmp_path):
    names = [f"column{i}" for i in range(10_000)]
    content = ",".join(names) + "\n" + ",".join("1" for _ in names) + "\n"
    path = write_file(tmp_path, "wide.csv", content.encode())
    frame = read_table(path)
    assert list(frame.columns) == names


def test_read_tsv_decimal_comma_detected(tmp_path):
    path = write_file(tmp_path, "euro.tsv", b"a\tb\n1,5\t2\n")
    frame = read_table(path)
    assert frame["a"].tolist() == [1.5]


def test_error_messages_are_one_line(tmp_path):
    path = write_file(tmp_path, "ragged.csv", b"a,b\n1,2\n3\n")
    with pytest.raises(InputError) as error:
        read_table(path)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------------------------
# Compression, Parquet and content sniffing


def test_read_gzip_csv(tmp_path):
    path = write_file(tmp_path, "data.csv.gz", gzip.compress(b"a,b\n1,2\n3,4\n"))
    frame = read_table(path)
    assert frame["a"].tolist() == [1, 3]


def test_read_gzip_tsv(tmp_path):
    path = write_file(tmp_path, "data.tsv.gz", gzip.compress(b"a\tb\n1\t2\n"))
    frame = read_table(path)
    assert frame["b"].tolist() == [2]


def test_read_gzip_detected_by_magic_bytes(tmp_path):
    path = write_file(tmp_path, "data.csv", gzip.compress(b"a,b\n1,2\n"))
    frame = read_table(path)
    assert frame["b"].tolist() == [2]


def test_read_truncated_gzip(tmp_path):
    path = write_file(tmp_path, "data.csv.gz", gzip.compress(b"a,b\n1,2\n" * 100)[:30])
    with pytest.raises(InputError, match="cannot be decompressed"):
        read_table(path)


def test_read_gzip_from_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeStdin(gzip.compress(b"a,b\n1,2\n")))
    frame = read_table("-")
    assert frame["a"].tolist() == [1]


def test_read_csv_from_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeStdin(b"a;b\n1,5;2\n"))
    frame = read_table("-")
    assert frame["a"].tolist() == [1.5]


def test_read_parquet_from_stdin(monkeypatch):
    frame = pd.DataFrame({"a": [1.5, 2.5], "b": [1, 2]})
    monkeypatch.setattr(sys, "stdin", FakeStdin(parquet_bytes(frame)))
    result = read_table("-")
    assert result.equals(frame)


def test_read_empty_stdin_names_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeStdin(b""))
    with pytest.raises(InputError, match="input '<stdin>' is empty"):
        read_table("-")


@pytest.mark.parametrize("name", ["data.parquet", "data.pq"])
def test_read_parquet(tmp_path, name):
    frame = pd.DataFrame({"a": [1.5, 2.5, -1.0], "b": [3, 1, 2], "name": ["x", "y", "z"]})
    path = write_file(tmp_path, name, parquet_bytes(frame))
    result = read_table(path)
    assert result.equals(frame)


def test_read_parquet_with_empty_row_group(tmp_path):
    path = str(tmp_path / "groups.parquet")
    schema = pa.schema([("a", pa.float64()), ("b", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        writer.write_table(pa.table({"a": pa.array([], pa.float64()), "b": pa.array([], pa.int64())}))
        writer.write_table(pa.table({"a": [1.0, 2.0], "b": [3, 4]}))
        writer.write_table(pa.table({"a": [5.0], "b": [6]}))
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    frame = read_table(path)
    assert frame["a"].tolist() == [1.0, 2.0, 5.0]
    assert frame["b"].tolist() == [3, 4, 6]


def test_read_parquet_without_rows(tmp_path):
    path = write_file(tmp_path, "empty.parquet", parquet_bytes(pd.DataFrame({"a": pd.Series([], dtype=float)})))
    with pytest.raises(InputError, match="no data rows"):
        read_table(path)


def test_read_parquet_named_index_becomes_column(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0]}, index=pd.Index(["p", "q"], name="key"))
    path = str(tmp_path / "indexed.parquet")
    frame.to_parquet(path)
    result = read_table(path)
    assert list(result.columns) == ["key", "a"]
    assert isinstance(result.index, pd.RangeIndex)


def test_read_parquet_named_csv(tmp_path):
    frame = pd.DataFrame({"a": [1.5], "b": [2]})
    path = write_file(tmp_path, "really_parquet.csv", parquet_bytes(frame))
    result = read_table(path)
    assert result.equals(frame)


def test_read_csv_named_parquet(tmp_path):
    path = write_file(tmp_path, "really_csv.parquet", b"a,b\n1,2\n")
    frame = read_table(path)
    assert frame["b"].tolist() == [2]


def test_read_truncated_parquet(tmp_path):
    data = parquet_bytes(pd.DataFrame({"a": np.arange(100.0)}))
    path = write_file(tmp_path, "cut.parquet", data[: len(data) // 2])
    with pytest.raises(InputError, match="not a valid Parquet file"):
        read_table(path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("garbage.csv", "has a CSV extension but is not a CSV file"),
        ("garbage.parquet", "has a Parquet extension but is not a Parquet file"),
        ("garbage.bin", "is neither CSV text nor Parquet nor gzip"),
    ],
)
def test_read_binary_garbage(tmp_path, name, message):
    garbage = bytes(range(256)) * 8
    path = write_file(tmp_path, name, garbage)
    with pytest.raises(InputError, match=message):
        read_table(path)


# ---------------------------------------------------------------------------------------------
# Output paths and atomic writes


def test_output_format_by_extension():
    assert output_format("a.csv") == "csv"
    assert output_format("a.TSV") == "tsv"
    assert output_format("a.csv.gz") == "csv.gz"
    assert output_format("a.tsv.gz") == "tsv.gz"
    assert output_format("a.parquet") == "parquet"
    assert output_format("a.pq") == "parquet"
    assert output_format("-") == "csv"


@pytest.mark.parametrize("name", ["out.txt", "out.json", "out", "out.gz"])
def test_write_unsupported_extension(tmp_path, name):
    with pytest.raises(OptionError, match=r"unsupported extension; use one of .*\.csv.*\.parquet"):
        write_table(pd.DataFrame({"a": [1]}), str(tmp_path / name))


def test_write_refuses_existing_without_force(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    with pytest.raises(OutputError, match=r"output '.*out\.csv' exists; pass --force to replace it"):
        write_table(pd.DataFrame({"a": [1]}), str(path))
    assert path.read_text() == "old\n"


def test_write_force_replaces_existing(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    write_table(pd.DataFrame({"a": [1]}), str(path), force=True)
    assert path.read_text() == "a\n1\n"


def test_write_force_keeps_file_mode(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    path.chmod(0o640)
    write_table(pd.DataFrame({"a": [1]}), str(path), force=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_write_new_file_has_umask_mode(tmp_path):
    path = tmp_path / "out.csv"
    umask = os.umask(0o022)
    try:
        write_table(pd.DataFrame({"a": [1]}), str(path))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("force", [False, True])
def test_write_refuses_input_path(tmp_path, force, monkeypatch):
    path = tmp_path / "data.csv"
    path.write_text("a\n1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="is the input file"):
        write_table(pd.DataFrame({"a": [2]}), "./data.csv", force=force, input_path=str(path))
    assert path.read_text() == "a\n1\n"


def test_check_output_path_missing_folder(tmp_path):
    folder = tmp_path / "no" / "such"
    with pytest.raises(OutputError, match="does not exist") as error:
        check_output_path(str(folder / "out.csv"), force=False)
    assert str(folder) in str(error.value)


def test_check_output_path_is_folder(tmp_path):
    (tmp_path / "sub.csv").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_output_path(str(tmp_path / "sub.csv"), force=True)


def test_check_output_path_accepts_stdout(tmp_path):
    check_output_path("-", force=False, input_path=str(tmp_path / "x.csv"))


def test_check_output_path_accepts_new_file(tmp_path):
    check_output_path(str(tmp_path / "new.csv"), force=False, input_path=str(tmp_path / "x.csv"))


def test_check_output_path_relative_name_in_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_output_path("out.csv", force=False)


def test_atomic_output_renames_on_success(tmp_path):
    path = tmp_path / "model.json"
    with atomic_output(str(path), force=False) as temporary_path:
        assert os.path.dirname(temporary_path) == str(tmp_path)
        with open(temporary_path, "w") as file:
            file.write("{}")
    assert path.read_text() == "{}"
    assert temporary_files(tmp_path) == []


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_atomic_output_cleans_up_on_exception(tmp_path, exception):
    path = tmp_path / "model.json"
    path.write_text("old")
    with pytest.raises(exception):
        with atomic_output(str(path), force=True) as temporary_path:
            with open(temporary_path, "w") as file:
                file.write("partial")
            raise exception()
    assert path.read_text() == "old"
    assert temporary_files(tmp_path) == []


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_write_failure_keeps_old_file(tmp_path, monkeypatch, exception):
    path = tmp_path / "out.parquet"
    path.write_bytes(b"old")

    def fail_midway(frame, temporary_path, table_format):
        with open(temporary_path, "wb") as file:
            file.write(b"partial")
        raise exception()

    monkeypatch.setattr(tables, "_write_file", fail_midway)
    with pytest.raises(exception):
        write_table(pd.DataFrame({"a": [1.0]}), str(path), force=True)
    assert path.read_bytes() == b"old"
    assert temporary_files(tmp_path) == []


def test_write_failure_without_old_file_leaves_nothing(tmp_path, monkeypatch):
    def fail(frame, temporary_path, table_format):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tables, "_write_file", fail)
    with pytest.raises(OutputError, match="No space left on device"):
        write_table(pd.DataFrame({"a": [1.0]}), str(tmp_path / "out.csv"))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Round trips and deterministic bytes


def example_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    random_floats = rng.standard_normal(200) * 10.0 ** rng.integers(-300, 300, 200)
    floats = np.concatenate([random_floats, SPECIAL_FLOATS])
    return pd.DataFrame(
        {
            "value": floats,
            "count": np.arange(floats.size, dtype=np.int64),
            "name": [f"row {i}, \"quoted\"" for i in range(floats.size)],
        }
    )


@pytest.mark.parametrize("name", ["out.csv", "out.tsv", "out.csv.gz", "out.tsv.gz", "out.parquet", "out.pq"])
def test_write_read_round_trip_exact_floats(tmp_path, name):
    frame = example_frame()
    path = str(tmp_path / name)
    write_table(frame, path)
    result = read_table(path)
    expected_bits = frame["value"].to_numpy().view(np.int64)
    assert np.array_equal(result["value"].to_numpy(dtype=np.float64).view(np.int64), expected_bits)
    assert result["count"].tolist() == frame["count"].tolist()
    assert result["name"].tolist() == frame["name"].tolist()


@pytest.mark.parametrize("name", ["out.csv", "out.tsv", "out.csv.gz", "out.parquet"])
def test_write_is_deterministic(tmp_path, name):
    frame = example_frame()
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    write_table(frame, str(first / name))
    write_table(frame.copy(), str(second / name))
    assert (first / name).read_bytes() == (second / name).read_bytes()


def test_write_csv_format(tmp_path):
    path = tmp_path / "out.csv"
    write_table(pd.DataFrame({"a": [1.5, np.nan], "b": ["x", "y,z"]}, index=[5, 6]), str(path))
    assert path.read_bytes() == b'a,b\n1.5,x\n,"y,z"\n'


def test_write_tsv_uses_tabs(tmp_path):
    path = tmp_path / "out.tsv"
    write_table(pd.DataFrame({"a": [1], "b": [2]}), str(path))
    assert path.read_bytes() == b"a\tb\n1\t2\n"


def test_write_gzip_header_has_no_name_or_time(tmp_path):
    path = tmp_path / "out.csv.gz"
    write_table(pd.DataFrame({"a": [1]}), str(path))
    header = path.read_bytes()[:10]
    flags = header[3]
    assert flags & 0x08 == 0
    assert header[4:8] == b"\x00\x00\x00\x00"


def test_write_float32_column_round_trips(tmp_path):
    values = np.float32([0.1, 1 / 3, 3.4028235e38, 1e-45])
    path = str(tmp_path / "out.csv")
    write_table(pd.DataFrame({"a": values}), path)
    result = read_table(path)["a"].to_numpy().astype(np.float32)
    assert np.array_equal(result, values)


# ---------------------------------------------------------------------------------------------
# Standard output


class FakeStdout:
    def __init__(self, buffer, descriptor: int = -1):
        self.buffer = buffer
        self.descriptor = descriptor

    def flush(self):
        pass

    def fileno(self):
        return self.descriptor


class ClosedPipe(io.BytesIO):
    def write(self, data):
        raise BrokenPipeError(32, "Broken pipe")


def test_write_stdout_csv(monkeypatch):
    stdout = FakeStdout(io.BytesIO())
    monkeypatch.setattr(sys, "stdout", stdout)
    write_table(pd.DataFrame({"a": [1.5], "b": ["x"]}), "-")
    assert stdout.buffer.getvalue() == b"a,b\n1.5,x\n"


def test_write_stdout_ignores_force_and_input(monkeypatch, tmp_path):
    stdout = FakeStdout(io.BytesIO())
    monkeypatch.setattr(sys, "stdout", stdout)
    write_table(pd.DataFrame({"a": [1]}), "-", force=False, input_path="-")
    assert stdout.buffer.getvalue() == b"a\n1\n"


def test_write_stdout_broken_pipe_raises_output_closed(monkeypatch, tmp_path):
    target = tmp_path / "stdout.txt"
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT)
    try:
        monkeypatch.setattr(sys, "stdout", FakeStdout(ClosedPipe(), descriptor))
        with pytest.raises(OutputClosed):
            write_table(pd.DataFrame({"a": [1]}), "-")
        os.write(descriptor, b"after")
        redirected = os.fstat(descriptor)
    finally:
        os.close(descriptor)
    devnull = os.stat(os.devnull)
    assert (redirected.st_dev, redirected.st_ino) == (devnull.st_dev, devnull.st_ino)
    assert target.read_bytes() == b""


def test_output_closed_is_not_softkm_error():
    assert not issubclass(OutputClosed, SoftkmError)


def test_broken_pipe_exits_quietly_in_subprocess():
    script = (
        "import sys\n"
        "import pandas as pd\n"
        "from softkm.tables import OutputClosed, write_table\n"
        "try:\n"
        "    write_table(pd.DataFrame({'a': range(300000)}), '-')\n"
        "except OutputClosed:\n"
        "    sys.exit(3)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first_bytes = process.stdout.read(2)
    process.stdout.close()
    stderr = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=60) == 3
    assert first_bytes == b"a\n"
    assert stderr == b""
