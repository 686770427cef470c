"""Reliability of the command line on hostile input, interruption and closed pipes.

Each test feeds ``softkm`` one kind of bad or unusual input and checks that it ends
with a correct result or with a single ``softkm: error:`` line, and that no output file
is left half-written. ``docs/reliability.md`` lists every input kind with its test.
Commands run in-process through Typer's CliRunner, except where a real process is
needed: signals, closed pipes and BLAS thread counts.
"""

from __future__ import annotations

import io

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
