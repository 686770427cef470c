"""Reliability of the command line on hostile input, interruption and closed pipes.

Each test feeds ``softkm`` one kind of bad or unusual input and checks that it ends
with a correct result or with a single ``softkm: error:`` line, and that no output file
is left half-written. ``docs/reliability.md`` lists every input kind with its test.
Commands run in-process through Typer's CliRunner, except where a real process is
needed: signals, closed pipes and BLAS thread counts.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from softkm.cli import app

ERROR_PREFIX = "softkm: error: "

runner = CliRunner(env={"SOFTKM_DEBUG": None, "COLUMNS": "80"})


def run(*args, input: bytes | None = None):
    return runner.invoke(app, [str(arg) for arg in args], input=input)


def error_line(result) -> str:
    """Return the single ``softkm: error:`` line on stderr, checking that there is exactly one."""
    lines = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(lines) == 1, result.stderr
    return lines[0]


def assert_error(result, *words: str, exit_code: int = 1) -> None:
    """Check the exit code, one error line on stderr, nothing else on stderr, and its key words."""
    assert result.exit_code == exit_code, result.output
    line = error_line(result)
    assert result.stderr.strip() == line, result.stderr
    for word in words:
        assert word in line, line


def write(path, content: str | bytes):
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def labels_of(result) -> pd.DataFrame:
    assert result.exit_code == 0, result.output
    return pd.read_csv(io.StringIO(result.stdout))


# ---------------------------------------------------------------------------------------------
# Usage errors


@pytest.mark.parametrize(
    "args, words",
    [
        (["fit", "{data}", "-k", "0"], ["'-k' / '--n-clusters'", "softkm fit --help"]),
        (["fit", "{data}", "-k", "2", "--tau", "0"], ["'--tau'", "must be finite and > 0, got 0.0"]),
        (["fit", "{data}", "-k", "2", "--tau", "nan"], ["'--tau'", "got nan"]),
        (["fit", "{data}", "-k", "2", "--tau", "inf"], ["'--tau'", "got inf"]),
        (["fit", "{data}", "-k", "2", "--tau", "-1"], ["'--tau'", "got -1.0"]),
        (["fit", "{data}", "-k", "2", "--learning-rate", "0"], ["'--learning-rate'", "got 0.0"]),
        (["fit", "{data}", "-k", "2", "--learning-rate", "-0.5"], ["'--learning-rate'"]),
        (["fit", "{data}", "-k", "2", "--tau-start", "nan"], ["'--tau-start'"]),
        (["fit", "{data}", "-k", "2", "--batch-size", "0"], ["'--batch-size'"]),
        (["fit", "{data}", "-k", "2", "--no-such-option"], ["No such option: --no-such-option"]),
        (["fit"], ["Missing argument", "softkm fit --help"]),
        (["assign", "model.json", "{data}", "--tau", "0"], ["'--tau'", "softkm assign --help"]),
    ],
)
def test_usage_error_one_line(tmp_path, args, words):
    data = write(tmp_path / "data.csv", "a,b\n1,2\n3,4\n10,11\n")
    result = run(*[arg.replace("{data}", str(data)) for arg in args])
    assert_error(result, *words, exit_code=2)
    assert "╭" not in result.stderr
    assert not error_line(result).endswith(".")


# ---------------------------------------------------------------------------------------------
# Text files

# Two well separated groups in two columns: rows 1-3 near the origin, rows 4-6 near 10.
ROWS = [(1.5, 2.25), (1.25, 2.5), (1.75, 2.0), (10.5, 11.25), (10.25, 11.5), (10.75, 11.0)]
GROUPS = [0, 0, 0, 1, 1, 1]


def comma_csv(rows=ROWS, header="a,b", line_end="\n") -> str:
    lines = [header] + [f"{a!r},{b!r}" for a, b in rows]
    return line_end.join(lines) + line_end


def same_groups(labels, expected=GROUPS) -> bool:
    """Return whether two labelings define the same partition, whatever the cluster numbers."""
    pairs = set(zip(labels, expected))
    return len(pairs) == len(set(labels)) == len(set(expected))


def fit_labels(path, *extra) -> list[int]:
    result = run("fit", path, "-k", 2, "-q", *extra)
    return labels_of(result)["cluster"].tolist()


def test_text_byte_order_mark(tmp_path):
    path = write(tmp_path / "bom.csv", b"\xef\xbb\xbf" + comma_csv().encode())
    model = tmp_path / "model.json"
    assert same_groups(fit_labels(path, "--model", model))
    assert '"a"' in model.read_text()


def test_text_semicolon_decimal_comma_detected(tmp_path):
    text = comma_csv().replace(",", ";").replace(".", ",")
    path = write(tmp_path / "semicolon.csv", text)
    assert fit_labels(path) == fit_labels(write(tmp_path / "plain.csv", comma_csv()))


def test_text_semicolon_decimal_comma_options(tmp_path):
    # A .tsv name makes tab the default delimiter, so only the options make this file readable.
    text = comma_csv().replace(",", ";").replace(".", ",")
    path = write(tmp_path / "semicolon.tsv", text)
    expected = fit_labels(write(tmp_path / "plain.csv", comma_csv()))
    assert fit_labels(path, "--delimiter", ";", "--decimal", ",") == expected


def test_text_wrong_delimiter_suggests_semicolon(tmp_path):
    text = comma_csv().replace(",", ";").replace(".", ",")
    path = write(tmp_path / "semicolon.csv", text)
    result = run("fit", path, "-k", 2, "--delimiter", ",")
    assert_error(result, "only one column", "pass --delimiter ';'")


def test_text_tab_file_named_csv(tmp_path):
    path = write(tmp_path / "tabs.csv", comma_csv().replace(",", "\t"))
    assert_error(run("fit", path, "-k", 2), "only one column", "pass --delimiter tab")


def test_text_quoted_thousands_separators(tmp_path):
    text = 'a,b\n"1,001.5",2\n"1,002.5",3\n"9,000",50\n"9,001",51\n'
    path = write(tmp_path / "thousands.csv", text)
    result = run("fit", path, "-k", 2, "-q", "--centroids", tmp_path / "centroids.csv")
    assert labels_of(result)["cluster"].tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])
    centroids = pd.read_csv(tmp_path / "centroids.csv").sort_values("a")
    assert centroids["a"].tolist() == [1002.0, 9000.5]


def test_text_no_header_option(tmp_path):
    path = write(tmp_path / "headerless.csv", comma_csv().split("\n", 1)[1])
    model = tmp_path / "model.json"
    assert same_groups(fit_labels(path, "--no-header", "--model", model))
    assert '"x1"' in model.read_text()


def test_text_numeric_header_warns(tmp_path):
    path = write(tmp_path / "headerless.csv", comma_csv().split("\n", 1)[1])
    result = run("fit", path, "-k", 2)
    assert result.exit_code == 0, result.output
    assert "softkm: warning: every column name" in result.stderr
    assert "--no-header" in result.stderr
    assert len(labels_of(result)) == len(ROWS) - 1


@pytest.mark.parametrize("ending", ["\n\n\n", "\n   \n\t\n", "\r\n\r\n"])
def test_text_trailing_empty_lines(tmp_path, ending):
    path = write(tmp_path / "trailing.csv", comma_csv().rstrip("\n") + ending)
    assert len(fit_labels(path)) == len(ROWS)


def test_text_windows_line_endings(tmp_path):
    path = write(tmp_path / "windows.csv", comma_csv(line_end="\r\n"))
    model = tmp_path / "model.json"
    labels = fit_labels(path, "--model", model)
    assert labels == fit_labels(write(tmp_path / "unix.csv", comma_csv()))
    assert '"b\\r"' not in model.read_text()


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf", b"  \r\n"])
def test_text_empty_file(tmp_path, content):
    path = write(tmp_path / "empty.csv", content)
    assert_error(run("fit", path, "-k", 1), "is empty")


@pytest.mark.parametrize("content", ["a,b\n", "a,b", "a,b\r\n\r\n"])
def test_text_header_only(tmp_path, content):
    path = write(tmp_path / "header.csv", content)
    assert_error(run("fit", path, "-k", 1), "has a header but no data rows")


def test_parquet_empty_row_group(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "groups.parquet"
    schema = pa.schema([("a", pa.float64()), ("b", pa.float64())])
    with pq.ParquetWriter(path, schema) as writer:
        writer.write_table(pa.table({"a": pa.array([], pa.float64()), "b": pa.array([], pa.float64())}))
        writer.write_table(pa.table({"a": [a for a, _ in ROWS], "b": [b for _, b in ROWS]}))
    assert pq.ParquetFile(path).metadata.num_row_groups == 2
    assert fit_labels(path) == fit_labels(write(tmp_path / "same.csv", comma_csv()))


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("data.csv", b"PAR1\x00\x01garbage", ["not a valid Parquet file"]),
        ("data.csv", bytes(range(256)) * 4, ["has a CSV extension but is not a CSV file"]),
        ("data.csv.gz", b"\x1f\x8b\x08\x00garbage", ["cannot be decompressed"]),
        ("data.csv", "a,b\n1,2\n".encode("utf-16-le"), ["has a CSV extension but is not a CSV file"]),
        ("data.csv", "a,b\n1,\xe9\n".encode("latin-1"), ["is not UTF-8 text"]),
    ],
)
def test_file_not_what_extension_says(tmp_path, name, content, words):
    path = write(tmp_path / name, content)
    assert_error(run("fit", path, "-k", 1), *words)


def test_csv_named_parquet_is_read(tmp_path):
    # The format comes from the content, so a misnamed CSV file is still read correctly.
    path = write(tmp_path / "data.parquet", comma_csv())
    assert same_groups(fit_labels(path))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_text_utf16_with_byte_order_mark(tmp_path, encoding):
    content = comma_csv().encode(encoding)
    if encoding == "utf-16-be":
        content = b"\xfe\xff" + content
    path = write(tmp_path / "unicode.csv", content)
    assert same_groups(fit_labels(path))


def test_gzip_csv_named_parquet_is_read(tmp_path):
    import gzip

    path = write(tmp_path / "data.parquet", gzip.compress(comma_csv().encode()))
    assert same_groups(fit_labels(path))


# ---------------------------------------------------------------------------------------------
# Values


def test_text_column_named_in_warning(tmp_path):
    path = write(tmp_path / "names.csv", "a,b,city\n1,2,Oslo\n1,3,Bergen\n9,9,Oslo\n9,8,Molde\n")
    model = tmp_path / "model.json"
    result = run("fit", path, "-k", 2, "--model", model)
    assert result.exit_code == 0, result.output
    assert "softkm: warning: non-numeric column(s) 'city' left out of the features" in result.stderr
    assert "--exclude city" in result.stderr
    assert '"city"' not in model.read_text()


@pytest.mark.parametrize("option", [["--exclude", "city"], ["--keep", "city"], ["--columns", "a,b"]])
def test_text_column_chosen_without_warning(tmp_path, option):
    path = write(tmp_path / "names.csv", "a,b,city\n1,2,Oslo\n1,3,Bergen\n9,9,Oslo\n9,8,Molde\n")
    result = run("fit", path, "-k", 2, *option)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_text_column_requested_is_error(tmp_path):
    path = write(tmp_path / "names.csv", "a,b,city\n1,2,Oslo\n1,3,Bergen\n9,9,Oslo\n")
    assert_error(run("fit", path, "-k", 2, "--columns", "a,city"), "column 'city' is not numeric", "'Oslo'")


def test_text_value_in_numeric_column(tmp_path):
    path = write(tmp_path / "typo.csv", "a,b\n1,2\n1,3\n9,9\n9,n/a?\n8,8\n")
    assert_error(run("fit", path, "-k", 2), "column 'b'", "data row 4", "'n/a?'", "--exclude")


@pytest.mark.parametrize(
    "cell, described",
    [("", "'b' missing"), ("nan", "'b' missing"), ("NA", "'b' missing"), ("inf", "'b' inf"),
     ("-inf", "'b' -inf"), ("1e400", "'b' inf"), ("-1e400", "'b' -inf")],
)
def test_missing_or_infinite_value(tmp_path, cell, described):
    path = write(tmp_path / "holes.csv", f"a,b\n1,2\n1,3\n9,{cell}\n9,9\n8,8\n")
    assert_error(run("fit", path, "-k", 2), "data row 3", described, "--missing drop")


def test_missing_drop_keeps_rows_aligned(tmp_path):
    path = write(tmp_path / "holes.csv", "a,b\n1,2\n1,3\n9,\n9,9\n8,1e400\n8,8\n")
    labels = labels_of(run("fit", path, "-k", 2, "-q", "--missing", "drop"))
    assert len(labels) == 6
    assert labels["cluster"].isna().tolist() == [False, False, True, False, True, False]
    assert same_groups(labels["cluster"].dropna().astype(int).tolist(), [0, 0, 1, 1])


def test_integer_columns(tmp_path):
    path = write(tmp_path / "integers.csv", "a,b\n1,2\n1,3\n9,9\n9,8\n")
    centroids = tmp_path / "centroids.csv"
    result = run("fit", path, "-k", 2, "-q", "--centroids", centroids)
    assert same_groups(labels_of(result)["cluster"].tolist(), [0, 0, 1, 1])
    table = pd.read_csv(centroids).sort_values("a")
    assert table["a"].tolist() == [1.0, 9.0]
    assert table["b"].tolist() == [2.5, 8.5]


def test_single_feature_column(tmp_path):
    path = write(tmp_path / "one.csv", "a\n1\n2\n10\n11\n")
    result = run("fit", path, "-k", 2, "-q", "--centroids", tmp_path / "centroids.csv")
    assert same_groups(labels_of(result)["cluster"].tolist(), [0, 0, 1, 1])
    assert sorted(pd.read_csv(tmp_path / "centroids.csv")["a"]) == [1.5, 10.5]


@pytest.mark.parametrize("standardize", [[], ["--standardize"]])
@pytest.mark.parametrize("mode", ["hard", "soft", "gumbel"])
def test_constant_column(tmp_path, standardize, mode):
    path = write(tmp_path / "constant.csv", "a,b\n1,5\n2,5\n10,5\n11,5\n")
    centroids = tmp_path / "centroids.csv"
    result = run("fit", path, "-k", 2, "-q", "--mode", mode, "--centroids", centroids, *standardize)
    assert same_groups(labels_of(result)["cluster"].tolist(), [0, 0, 1, 1])
    table = pd.read_csv(centroids)
    assert table["b"].tolist() == [5.0, 5.0]


def fit_outputs(path, tmp_path, *extra) -> tuple[list[int], pd.DataFrame, dict]:
    """Fit ``path`` with k=2 and return (labels, centroids table, model document)."""
    centroids = tmp_path / "centroids.csv"
    model = tmp_path / "model.json"
    result = run("fit", path, "-k", 2, "-q", "--force", "--centroids", centroids, "--model", model, *extra)
    labels = labels_of(result)["cluster"].tolist()
    return labels, pd.read_csv(centroids), json.loads(model.read_text())


@pytest.mark.parametrize("magnitude", [1e150, 1e-150])
@pytest.mark.parametrize("mode", ["hard", "soft", "gumbel"])
def test_extreme_magnitudes(tmp_path, magnitude, mode):
    unit_labels, unit_centroids, unit_model = fit_outputs(write(tmp_path / "unit.csv", comma_csv()), tmp_path,
                                                          "--mode", mode)
    rows = [(a * magnitude, b * magnitude) for a, b in ROWS]
    path = write(tmp_path / "extreme.csv", comma_csv(rows))
    labels, centroids, model = fit_outputs(path, tmp_path, "--mode", mode)

    assert labels == unit_labels
    assert same_groups(labels)
    # Soft mode stops at a relative objective change of 1e-4, and the scaled data takes
    # another path there, so its centroids agree to about that tolerance only.
    tolerance = 1e-3 if mode == "soft" else 1e-9
    expected = unit_centroids[["a", "b"]].to_numpy() * magnitude
    assert centroids[["a", "b"]].to_numpy() == pytest.approx(expected, rel=tolerance)
    assert model["fit"]["inertia"] == pytest.approx(unit_model["fit"]["inertia"] * magnitude**2, rel=tolerance)
    assert model["fit"]["inertia"] > 0


@pytest.mark.parametrize("magnitude, direction", [(1e300, "overflow"), (1e-300, "underflow")])
def test_magnitude_beyond_float64_squares(tmp_path, magnitude, direction):
    rows = [(a * magnitude, b * magnitude) for a, b in ROWS]
    path = write(tmp_path / "extreme.csv", comma_csv(rows))
    assert_error(run("fit", path, "-k", 2), f"squared distances would {direction}", "--standardize")


@pytest.mark.parametrize("magnitude", [1e300, 1e-300])
def test_magnitude_beyond_float64_standardized(tmp_path, magnitude):
    rows = [(a * magnitude, b * magnitude) for a, b in ROWS]
    labels, centroids, _ = fit_outputs(write(tmp_path / "extreme.csv", comma_csv(rows)), tmp_path, "--standardize")
    assert same_groups(labels)
    assert sorted(centroids["a"]) == pytest.approx([1.5 * magnitude, 10.5 * magnitude], rel=1e-12)


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_far_from_origin_float32(tmp_path, offset):
    # Spread 0.25 around points 1 apart, far from the origin: float32 keeps 7 digits.
    rows = [(offset + a / 10, offset - b / 10) for a, b in ROWS]
    path = write(tmp_path / "far.csv", comma_csv(rows))
    labels = fit_labels(path, "--dtype", "float32")
    assert same_groups(labels)


def test_far_from_origin_float32_rounding_warns(tmp_path):
    # Near 1e5 float32 numbers are 1/128 apart: a spread of about 0.04 survives, blurred.
    rows = [(1e5 + a / 100, b) for a, b in ROWS]
    path = write(tmp_path / "far.csv", comma_csv(rows))
    result = run("fit", path, "-k", 2, "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert "softkm: warning: column 'a' loses precision in float32" in result.stderr
    assert "--dtype float64" in result.stderr
    assert "column 'b'" not in result.stderr


def test_far_from_origin_float32_rounded_away_is_error(tmp_path):
    # Near 1e7 float32 numbers are 1 apart, so a spread of about 0.04 is rounded away.
    rows = [(1e7 + a / 100, b) for a, b in ROWS]
    path = write(tmp_path / "far.csv", comma_csv(rows))
    assert_error(run("fit", path, "-k", 2, "--dtype", "float32"),
                 "column 'a' cannot be held in float32", "--dtype float64")


def test_weights_text_value_named(tmp_path):
    path = write(tmp_path / "weights.csv", "a,w\n1,1\n2,2.5\n3,heavy\n4,1\n")
    assert_error(run("fit", path, "-k", 2, "--weights", "w"), "weights column 'w'", "data row 3", "'heavy'")


@pytest.mark.parametrize(
    "weights, words",
    [("1,-2,1,1", ["negative weight -2.0", "data row 2"]), ("0,0,0,0", ["all weights", "are 0"])],
)
def test_weights_invalid(tmp_path, weights, words):
    rows = "".join(f"{index},{weight}\n" for index, weight in enumerate(weights.split(",")))
    path = write(tmp_path / "weights.csv", "a,w\n" + rows)
    assert_error(run("fit", path, "-k", 2, "--weights", "w"), *words)


# ---------------------------------------------------------------------------------------------
# Kept columns

IDS_CSV = 'id,code,a,b\n007,00A,1,2\n18446744073709551617,,1,3\n1.50,NA,9,9\n" 42 ","x,y",9,8\n'


def test_keep_copies_csv_text(tmp_path):
    path = write(tmp_path / "ids.csv", IDS_CSV)
    result = run("fit", path, "-k", 2, "-q", "--exclude", "id", "--keep", "id,code,a")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "id,code,a,cluster"
    assert [line.rsplit(",", 1)[0] for line in lines[1:]] == [
        "007,00A,1", "18446744073709551617,,1", "1.50,NA,9", ' 42 ,"x,y",9'
    ]


def test_keep_copies_text_to_parquet(tmp_path):
    path = write(tmp_path / "ids.csv", IDS_CSV)
    output = tmp_path / "labels.parquet"
    result = run("fit", path, "-k", 2, "-q", "--exclude", "id", "--keep", "id", "-o", output)
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(output)["id"].tolist() == ["007", "18446744073709551617", "1.50", " 42 "]


def test_keep_copies_text_in_assign(tmp_path):
    path = write(tmp_path / "ids.csv", IDS_CSV)
    model = tmp_path / "model.json"
    assert run("fit", path, "-k", 2, "-q", "--exclude", "id", "--model", model).exit_code == 0
    result = run("assign", model, path, "-q", "--keep", "id")
    assert result.exit_code == 0, result.output
    ids = [line.rsplit(",", 1)[0] for line in result.stdout.splitlines()[1:]]
    assert ids == ["007", "18446744073709551617", "1.50", " 42 "]


def test_keep_column_with_dropped_rows(tmp_path):
    path = write(tmp_path / "ids.csv", "id,a\nA1,1\nA2,\nA3,9\nA4,8\n")
    result = run("fit", path, "-k", 2, "-q", "--keep", "id", "--missing", "drop")
    assert result.stdout.splitlines() == ["id,cluster", "A1,1", "A2,", "A3,0", "A4,0"]


# ---------------------------------------------------------------------------------------------
# Failure behaviour: interrupted runs, closed pipes, special outputs

SOFTKM = Path(sys.executable).parent / "softkm"

# Runs the real command line in a child process with one function replaced. The test
# reads the replacement's name from SOFTKM_TEST_PATCH:
#   slow-writer: write part of each CSV output, flush it, then wait for a signal;
#   signal-at-rename: send SIGINT to the process at its first rename of an output.
PATCHED_CLI = """
import os, signal, sys, time
import softkm.tables as tables
from softkm.cli import main

patch = os.environ["SOFTKM_TEST_PATCH"]
if patch == "slow-writer":
    write_csv = tables._write_csv

    def slow_write_csv(frame, binary_file, separator):
        write_csv(frame.iloc[: len(frame) // 2], binary_file, separator)
        binary_file.flush()
        time.sleep(120)

    tables._write_csv = slow_write_csv
elif patch == "signal-at-rename":
    replace = os.replace

    def replace_after_signal(source, destination):
        if not os.environ.get("SOFTKM_TEST_SIGNALLED"):
            os.environ["SOFTKM_TEST_SIGNALLED"] = "1"
            os.kill(os.getpid(), signal.SIGINT)
        replace(source, destination)

    tables.os.replace = replace_after_signal
sys.argv[0] = "softkm"
main()
"""


def child_environment(**extra: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key != "SOFTKM_DEBUG"}
    environment.update(extra)
    return environment


def temporary_files(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith(".softkm-"))


def wait_for_partial_output(folder: Path, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until a temporary output file in ``folder`` has bytes in it, so the child is mid-write."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for name in temporary_files(folder):
            with contextlib.suppress(FileNotFoundError):
                if (folder / name).stat().st_size > 0:
                    return
        time.sleep(0.02)
    raise AssertionError(f"no partial output appeared in {folder} within {timeout} s")


@pytest.fixture
def medium_csv(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path / "input" / "medium.csv"
    path.parent.mkdir()
    pd.DataFrame(rng.normal(size=(20_000, 3)), columns=["a", "b", "c"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_write_keeps_old_outputs(tmp_path, medium_csv, signal_number, exit_code):
    folder = tmp_path / "out"
    folder.mkdir()
    outputs = {name: folder / name for name in ("labels.csv", "centroids.csv", "model.json")}
    for path in outputs.values():
        path.write_text("old\n")

    process = subprocess.Popen(
        [sys.executable, "-c", PATCHED_CLI, "fit", str(medium_csv), "-k", "3", "--force", "-q",
         "-o", str(outputs["labels.csv"]), "--centroids", str(outputs["centroids.csv"]),
         "--model", str(outputs["model.json"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=child_environment(SOFTKM_TEST_PATCH="slow-writer"),
    )
    try:
        wait_for_partial_output(folder, process)
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "discarded" in stderr
    for path in outputs.values():
        assert path.read_text() == "old\n", path
    assert temporary_files(folder) == []


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_write_new_output(tmp_path, medium_csv, signal_number, exit_code):
    folder = tmp_path / "out"
    folder.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", PATCHED_CLI, "fit", str(medium_csv), "-k", "3", "-q", "-o", str(folder / "labels.csv")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=child_environment(SOFTKM_TEST_PATCH="slow-writer"),
    )
    try:
        wait_for_partial_output(folder, process)
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == exit_code, stderr
    assert os.listdir(folder) == []


def test_signal_during_renames_commits_all(tmp_path, medium_csv):
    folder = tmp_path / "out"
    folder.mkdir()
    outputs = {name: folder / name for name in ("labels.csv", "centroids.csv", "model.json")}
    for path in outputs.values():
        path.write_text("old\n")

    completed = subprocess.run(
        [sys.executable, "-c", PATCHED_CLI, "fit", str(medium_csv), "-k", "3", "--force", "-q",
         "-o", str(outputs["labels.csv"]), "--centroids", str(outputs["centroids.csv"]),
         "--model", str(outputs["model.json"])],
        capture_output=True, text=True, timeout=120, env=child_environment(SOFTKM_TEST_PATCH="signal-at-rename"),
    )

    # The signal arrived before the first rename and was handled after the last one.
    assert completed.returncode == 130, completed.stderr
    assert len(pd.read_csv(outputs["labels.csv"])) == 20_000
    assert len(pd.read_csv(outputs["centroids.csv"])) == 3
    assert json.loads(outputs["model.json"].read_text())["n_clusters"] == 3
    assert temporary_files(folder) == []


def test_interrupted_fit_leaves_no_partial_file_in_process(tmp_path, monkeypatch):
    import softkm.tables as tables

    path = write(tmp_path / "data.csv", comma_csv())
    labels = write(tmp_path / "labels.csv", "old\n")
    model = tmp_path / "model.json"

    def interrupted_write_csv(frame, binary_file, separator):
        binary_file.write(b"cluster\n0\n")
        raise KeyboardInterrupt()

    monkeypatch.setattr(tables, "_write_csv", interrupted_write_csv)
    result = run("fit", path, "-k", 2, "--force", "-o", labels, "--model", model)
    assert result.exit_code == 130, result.output
    assert labels.read_text() == "old\n"
    assert not model.exists()
    assert temporary_files(tmp_path) == []


def test_closed_pipe_keeps_summary(tmp_path):
    # 200,000 label lines (about 400 kB) overflow the pipe buffer, so softkm is still
    # writing when head exits.
    rng = np.random.default_rng(0)
    path = tmp_path / "large.csv"
    pd.DataFrame(rng.normal(size=(200_000, 2)), columns=["x1", "x2"]).to_csv(path, index=False)
    model = tmp_path / "model.json"
    for arguments in (f"fit '{path}' -k 3 --max-iter 5 --model '{model}'", f"assign '{model}' '{path}'"):
        command = f"set -o pipefail; '{SOFTKM}' {arguments} | head -1"
        completed = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                                   env=child_environment())
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout == "cluster\n"
        assert "Traceback" not in completed.stderr
        assert "error" not in completed.stderr
        assert "inertia" in completed.stderr
        assert "closed it before every row was written" in completed.stderr
    assert json.loads(model.read_text())["n_clusters"] == 3


def test_output_to_fifo_streams(tmp_path):
    path = write(tmp_path / "data.csv", comma_csv())
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = run("fit", path, "-k", 2, "-q", "-o", fifo)
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received[0].decode().splitlines()[0] == "cluster"
    assert len(received[0].decode().splitlines()) == len(ROWS) + 1
    assert temporary_files(tmp_path) == []


def test_output_to_character_device(tmp_path):
    path = write(tmp_path / "data.csv", comma_csv())
    result = run("fit", path, "-k", 2, "-q", "-o", os.devnull, "--model", tmp_path / "model.json")
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert (tmp_path / "model.json").exists()


def test_output_to_socket_rejected(tmp_path):
    path = write(tmp_path / "data.csv", comma_csv())
    socket_path = tmp_path / "labels.csv"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(socket_path))
        result = run("fit", path, "-k", 2, "-o", socket_path, "--force")
    finally:
        server.close()
    assert_error(result, "neither a regular file nor a FIFO nor a character device")


def test_output_symlink_replaces_target(tmp_path):
    path = write(tmp_path / "data.csv", comma_csv())
    target = write(tmp_path / "target.csv", "old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target.name)
    result = run("fit", path, "-k", 2, "-q", "-o", link, "--force")
    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    assert target.read_text().startswith("cluster\n")


def test_existing_output_needs_force(tmp_path):
    path = write(tmp_path / "data.csv", comma_csv())
    labels = write(tmp_path / "labels.csv", "old\n")
    model = tmp_path / "model.json"
    result = run("fit", path, "-k", 2, "-o", labels, "--model", model)
    assert_error(result, "exists", "--force")
    assert labels.read_text() == "old\n"
    assert not model.exists()


# ---------------------------------------------------------------------------------------------
# Shapes


def test_k_larger_than_rows(tmp_path):
    path = write(tmp_path / "data.csv", comma_csv())
    assert_error(run("fit", path, "-k", 7), "n_clusters=7 is larger than the number of rows (6)", "lower -k")


def test_fewer_distinct_rows_than_k(tmp_path):
    path = write(tmp_path / "dup.csv", "a,b\n1,1\n1,1\n1,1\n2,2\n")
    result = run("fit", path, "-k", 3)
    assert result.exit_code == 0, result.output
    assert "fewer than n_clusters=3" in result.stderr
    labels = labels_of(result)["cluster"]
    assert labels.between(0, 2).all()
    assert labels[0] == labels[1] == labels[2] != labels[3]


@pytest.mark.parametrize("mode", ["hard", "soft", "gumbel"])
def test_many_duplicate_rows(tmp_path, mode):
    rows = "0,0\n" * 5000 + "10,10\n" * 5000 + "0,10\n"
    path = write(tmp_path / "dup.csv", "a,b\n" + rows)
    centroids = tmp_path / "centroids.csv"
    result = run("fit", path, "-k", 3, "-q", "--mode", mode, "--centroids", centroids, "--seed", 4)
    labels = labels_of(result)["cluster"]
    assert labels.between(0, 2).all()
    # Gumbel noise can leave the single point at (0, 10) with a centroid of another group.
    if mode != "gumbel":
        assert labels.nunique() == 3
    table = pd.read_csv(centroids)
    assert np.isfinite(table[["a", "b"]].to_numpy()).all()


def test_coinciding_initial_centroids(tmp_path):
    path = write(tmp_path / "data.csv", comma_csv())
    init = write(tmp_path / "init.csv", "a,b\n5,5\n5,5\n")
    result = run("fit", path, "-k", 2, "--init", init)
    assert result.exit_code == 0, result.output
    assert same_groups(labels_of(result)["cluster"].tolist())
    assert "were moved to the farthest points" in result.stderr


def test_init_file_columns_mismatch(tmp_path):
    path = write(tmp_path / "data.csv", comma_csv())
    init = write(tmp_path / "init.csv", "x,y\n0,0\n9,9\n")
    assert_error(run("fit", path, "-k", 2, "--init", init), "lacks feature column(s) a, b")


@pytest.mark.parametrize("init_rows", ["0\n10\n", "10\n0\n"])
def test_tie_goes_to_lowest_index(tmp_path, init_rows):
    # The point at 5 has weight 0, so the centroids stay at 0 and 10 and it stays tied.
    path = write(tmp_path / "tie.csv", "a,w\n0,1\n5,0\n10,1\n")
    init = write(tmp_path / "init.csv", "a\n" + init_rows)
    model = tmp_path / "model.json"
    result = run("fit", path, "-k", 2, "-q", "--weights", "w", "--init", init, "--model", model)
    fit_labels = labels_of(result)["cluster"].tolist()
    assigned = labels_of(run("assign", model, path, "-q"))["cluster"].tolist()
    centroids = json.loads(model.read_text())["centroids"]
    assert sorted(row[0] for row in centroids) == [0.0, 10.0]
    assert fit_labels[1] == 0
    assert assigned == fit_labels


# ---------------------------------------------------------------------------------------------
# Models


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = write(tmp_path / "data.csv", comma_csv())
    model = tmp_path / "model.json"
    assert run("fit", path, "-k", 2, "-q", "--model", model).exit_code == 0
    return model


def test_assign_reordered_and_extra_columns(tmp_path, model_file):
    original = labels_of(run("assign", model_file, write(tmp_path / "same.csv", comma_csv()), "-q"))
    text = "extra,b,a\n" + "".join(f"x,{b!r},{a!r}\n" for a, b in ROWS)
    result = run("assign", model_file, write(tmp_path / "reordered.csv", text), "-q")
    assert labels_of(result)["cluster"].tolist() == original["cluster"].tolist()


def test_assign_missing_column(tmp_path, model_file):
    path = write(tmp_path / "partial.csv", "a,c\n1,2\n")
    assert_error(run("assign", model_file, path), "lacks the model's feature column(s) b")


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda text: text[: len(text) // 2], ["is not valid JSON", "truncated"]),
        (lambda text: text.replace('"format_version": 1', '"format_version": 2'), ["format version 2"]),
        (lambda text: text.replace('"format_version": 1', '"format_version": "1"'), ["format version '1'"]),
        (lambda text: re.sub(r'("centroids": \[\s*\[\s*)[-0-9.e]+', r"\1NaN", text), ["non-finite value NaN"]),
        (lambda text: re.sub(r'("centroids": \[\s*\[\s*)[-0-9.e]+', r"\g<1>1e999", text), ["non-finite"]),
        (lambda text: re.sub(r'("centroids": \[\s*\[\s*)[-0-9.e]+', r'\1"x"', text), ["not a matrix of numbers"]),
        (lambda text: text.replace('"format": "softkm-model"', '"format": "other"'), ["not a softkm model file"]),
        (lambda text: "", ["is not valid JSON"]),
        (lambda text: "[1, 2]", ["not a softkm model file"]),
    ],
)
def test_assign_damaged_model(tmp_path, model_file, edit, words):
    damaged = write(tmp_path / "damaged.json", edit(model_file.read_text()))
    assert damaged.read_text() != model_file.read_text()
    assert_error(run("assign", damaged, write(tmp_path / "data.csv", comma_csv())), *words)


def test_assign_pickle_is_rejected(tmp_path):
    import pickle

    damaged = write(tmp_path / "model.json", pickle.dumps({"format": "softkm-model", "format_version": 1}))
    assert_error(run("assign", damaged, write(tmp_path / "data.csv", comma_csv())), "model file")


def test_assign_probabilities_of_hard_model(tmp_path, model_file):
    path = write(tmp_path / "data.csv", comma_csv())
    assert_error(run("assign", model_file, path, "--probabilities"), "hard model has no temperature", "--tau")
    result = run("assign", model_file, path, "-q", "--probabilities", "--tau", "0.5")
    probabilities = labels_of(result)[["p_0", "p_1"]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0)


# ---------------------------------------------------------------------------------------------
# Options


def test_batch_size_larger_than_data(tmp_path):
    path = write(tmp_path / "data.csv", comma_csv())
    full = fit_labels(path, "--mode", "soft")
    assert fit_labels(path, "--mode", "soft", "--batch-size", 1000) == full


@pytest.mark.parametrize("threads", ["1", "2"])
def test_blas_threads_same_bytes(tmp_path, threads):
    """Compare the outputs of every mode with 1 and 2 BLAS threads against a reference run."""
    rng = np.random.default_rng(11)
    path = tmp_path / "data.csv"
    pd.DataFrame(rng.normal(size=(20_000, 6)) + rng.integers(0, 4, size=(20_000, 1)) * 3).to_csv(path, index=False)
    outputs = {}
    for count in ("1", threads):
        environment = child_environment(
            OMP_NUM_THREADS=count, OPENBLAS_NUM_THREADS=count, MKL_NUM_THREADS=count
        )
        for mode in ("hard", "soft", "gumbel"):
            folder = tmp_path / f"{mode}-{count}"
            folder.mkdir(exist_ok=True)
            command = [str(SOFTKM), "fit", str(path), "-k", "4", "--mode", mode, "-q", "--force", "--max-iter", "30",
                       "-o", str(folder / "labels.csv"), "--centroids", str(folder / "centroids.csv"),
                       "--model", str(folder / "model.json")]
            completed = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
            assert completed.returncode == 0, completed.stderr
            model = json.loads((folder / "model.json").read_text())
            del model["fit"]["runtime_seconds"]
            outputs[mode, count] = ((folder / "labels.csv").read_bytes(), (folder / "centroids.csv").read_bytes(),
                                    model)
    for mode in ("hard", "soft", "gumbel"):
        assert outputs[mode, "1"] == outputs[mode, threads], mode


def test_no_network_connection(tmp_path, monkeypatch, model_file):
    def reject_connection(*args, **kwargs):
        raise AssertionError("softkm opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", reject_connection)
    monkeypatch.setattr(socket, "create_connection", reject_connection)
    path = write(tmp_path / "data.csv", comma_csv())
    assert run("fit", path, "-k", 2, "-q", "--force", "--model", tmp_path / "again.json").exit_code == 0
    assert run("assign", model_file, path, "-q").exit_code == 0
