"""Tests for ``softkm compare``: the comparison maths, its output formats, errors and plots.

The command-line tests run in-process through Typer's CliRunner, which captures stdout
and stderr separately. Its stdout is not a terminal, so the default format there is CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from softkm import comparison, engine
from softkm.cli import app
from softkm.comparison import BASE_COLUMNS, TRUTH_COLUMNS, CompareSettings
from softkm.errors import InputError, OptionError
from shared_data import BENCHMARK_DATA

REPO = Path(__file__).resolve().parents[1]
BLOBS = REPO / "sample_data" / "blobs_separated.csv"
OVERLAPPING = REPO / "sample_data" / "blobs_overlapping.parquet"
SHARED_DATA = BENCHMARK_DATA

ERROR_PREFIX = "softkm: error: "

# SOFTKM_DEBUG would turn error lines into tracebacks.
runner = CliRunner(env={"SOFTKM_DEBUG": None, "COLUMNS": "250"})

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"benchmark data folder {SHARED_DATA} not found"
)


def run(*args):
    return runner.invoke(app, ["compare", *(str(arg) for arg in args)])


def compare_blobs(*extra):
    """Run ``softkm compare`` on the 4 separated blobs, with their labels as the truth."""
    return run(BLOBS, "-k", 4, "--truth", "label", *extra)


def json_output(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_error(result, *words: str) -> None:
    """Check exit code 1, a single ``softkm: error:`` line, and the key words of its message."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def blobs() -> pd.DataFrame:
    return pd.read_csv(BLOBS)


# ---------------------------------------------------------------------------
# Output formats


def test_json_contains_every_column():
    document = json_output(compare_blobs("--format", "json"))

    assert set(document) == {"parameters", "rows"}
    rows = document["rows"]
    assert [row["mode"] for row in rows] == ["hard", "soft", "gumbel"]
    for row in rows:
        assert list(row) == list(BASE_COLUMNS + TRUTH_COLUMNS)
        for column in ("inertia", "objective", "runtime", "runtime_min", "runtime_max", "ari_vs_hard", "ari", "nmi"):
            assert isinstance(row[column], float), column
        for column in ("iterations", "size_smallest", "size_largest", "empty_clusters", "centroid_index"):
            assert isinstance(row[column], int), column
        assert isinstance(row["converged"], bool)
    assert rows[0]["tau"] is None
    assert rows[1]["tau"] == 0.5
    assert rows[0]["mean_entropy"] is None
    assert rows[1]["mean_entropy"] > 0


def test_json_parameters():
    parameters = json_output(compare_blobs("--format", "json", "--seed", 3, "--repeat", 2))["parameters"]

    assert parameters["n_clusters"] == 4
    assert parameters["modes"] == ["hard", "soft", "gumbel"]
    assert parameters["taus"] == [0.5]
    assert parameters["seed"] == 3
    assert parameters["repeat"] == 2
    assert parameters["truth"] == "label"
    assert parameters["features"] == ["x1", "x2"]
    assert parameters["n_samples"] == 600


def test_csv_is_default_when_piped():
    result = compare_blobs()

    assert result.exit_code == 0, result.output
    lines = list(csv.reader(io.StringIO(result.stdout)))
    assert lines[0] == list(BASE_COLUMNS + TRUTH_COLUMNS)
    assert [line[0] for line in lines[1:]] == ["hard", "soft", "gumbel"]
    hard = dict(zip(lines[0], lines[1]))
    assert hard["tau"] == ""
    assert hard["mean_entropy"] == ""
    assert hard["converged"] in ("true", "false")
    assert float(hard["inertia"]) > 0


def test_markdown_table_shape():
    result = compare_blobs("--format", "markdown", "--tau", "0.5,1")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2 + 5
    cells = [line.split("|") for line in lines]
    assert len({len(row) for row in cells}) == 1
    assert re.fullmatch(r"\|---(\|---:)+\|", lines[1]), lines[1]
    for line in lines[:1] + lines[2:]:
        assert line.startswith("| ") and line.endswith(" |"), line
    header = [cell.strip() for cell in cells[0][1:-1]]
    assert header[0] == "mode"
    assert "runtime_min" not in header
    assert "ari" in header
    modes = [row[1].strip() for row in cells[2:]]
    assert modes == ["hard", "soft", "soft", "gumbel", "gumbel"]


def test_table_format():
    result = compare_blobs("--format", "table")

    assert result.exit_code == 0, result.output
    assert "softkm compare: k=4, 600 rows, 2 features" in result.stdout
    for mode in ("hard", "soft", "gumbel"):
        assert mode in result.stdout


@pytest.mark.parametrize("width, taus, transposed", [
    (80, (0.5,), True),
    (200, (0.5,), False),
    # Nine fits do not fit in 80 columns even transposed, so they are split over tables.
    (80, (0.1, 0.5, 1.0, 2.0), True),
])
def test_table_fits_console_width(width, taus, transposed):
    from rich.console import Console

    from softkm.report import print_comparison_table

    X = pd.read_csv(BLOBS)
    settings = CompareSettings(taus=taus)
    result = comparison.compare(X[["x1", "x2"]].to_numpy(), 4, settings, truth=X["label"].to_numpy())
    console = Console(file=io.StringIO(), width=width, highlight=False)

    print_comparison_table(console, result)

    text = console.file.getvalue()
    assert "…" not in text, f"a cell was cut short at width {width}:\n{text}"
    assert max(len(line) for line in text.splitlines()) <= width
    header = next(line for line in text.splitlines() if "hard" in line or "mode" in line)
    # Transposed, the modes head the columns; otherwise each mode starts a row.
    assert ("measure" in header) == transposed, text
    assert "1185.91" in text


def test_truth_with_a_class_per_row_warns():
    from softkm.errors import InputWarning

    X = pd.read_csv(BLOBS)
    settings = CompareSettings(modes=("hard",))

    with pytest.warns(InputWarning, match=r"572 classes for 600 rows, so they look like an id"):
        comparison.compare(X[["x1", "x2"]].to_numpy(), 4, settings, truth=X["x1"].to_numpy())


def test_repeat_gives_runtime_range():
    rows = json_output(compare_blobs("--format", "json", "--repeat", 3))["rows"]

    for row in rows:
        assert 0 < row["runtime_min"] <= row["runtime"] <= row["runtime_max"]


def test_modes_option_selects_rows():
    rows = json_output(compare_blobs("--format", "json", "--modes", "soft,hard", "--tau", "0.2,0.5"))["rows"]

    assert [(row["mode"], row["tau"]) for row in rows] == [("soft", 0.2), ("soft", 0.5), ("hard", None)]


# ---------------------------------------------------------------------------
# Measures


def test_hard_row_ari_vs_hard_is_one():
    rows = json_output(compare_blobs("--format", "json"))["rows"]

    assert rows[0]["mode"] == "hard"
    assert rows[0]["ari_vs_hard"] == 1.0
    for row in rows[1:]:
        assert -1.0 <= row["ari_vs_hard"] <= 1.0


def test_truth_metrics_only_with_truth():
    with_truth = json_output(compare_blobs("--format", "json"))["rows"]
    without = json_output(run(BLOBS, "-k", 4, "--exclude", "label", "--format", "json"))["rows"]

    for row in with_truth:
        assert set(TRUTH_COLUMNS) <= set(row)
    for row in without:
        assert not set(TRUTH_COLUMNS) & set(row)


def test_separated_blobs_are_found():
    rows = json_output(compare_blobs("--format", "json"))["rows"]

    for row in rows:
        assert row["ari"] > 0.99
        assert row["centroid_index"] == 0
        assert row["empty_clusters"] == 0


def test_truth_column_is_not_a_feature(blobs):
    result = comparison.compare(
        blobs[["x1", "x2"]].to_numpy(), 4, CompareSettings(modes=("hard",)), truth=blobs["label"].to_numpy()
    )

    assert result.parameters["features"] == ["x1", "x2"]
    parameters = json_output(compare_blobs("--format", "json"))["parameters"]
    assert "label" not in parameters["features"]


def test_entropy_range(blobs):
    X = blobs[["x1", "x2"]].to_numpy()
    rows = comparison.compare(X, 4, CompareSettings(taus=(0.1, 2.0))).records()

    for row in rows:
        if row["mode"] == "hard":
            assert row["mean_entropy"] is None
        else:
            assert 0 < row["mean_entropy"] <= math.log(4)
    soft = {row["tau"]: row["mean_entropy"] for row in rows if row["mode"] == "soft"}
    assert soft[0.1] < soft[2.0]


def test_no_hard_row_leaves_ari_vs_hard_empty(blobs):
    X = blobs[["x1", "x2"]].to_numpy()
    rows = comparison.compare(X, 4, CompareSettings(modes=("soft",))).records()

    assert rows[0]["ari_vs_hard"] is None


def test_centroid_index_counts_missed_clusters(blobs):
    X = blobs[["x1", "x2"]].to_numpy()
    truth = blobs["label"].to_numpy()
    rows = comparison.compare(X, 2, CompareSettings(modes=("hard",)), truth=truth).records()

    # Two centroids can be nearest to at most two of the four true clusters.
    assert rows[0]["centroid_index"] >= 2


def test_string_truth_labels(blobs):
    X = blobs[["x1", "x2"]].to_numpy()
    truth = np.array([f"class {label}" for label in blobs["label"]])
    rows = comparison.compare(X, 4, CompareSettings(modes=("hard",)), truth=truth).records()

    assert rows[0]["ari"] > 0.99


def test_input_is_not_modified(blobs):
    X = blobs[["x1", "x2"]].to_numpy()
    original = X.copy()
    comparison.compare(X, 4, CompareSettings(taus=(0.5,)))

    np.testing.assert_array_equal(X, original)


# ---------------------------------------------------------------------------
# Same starts in every mode


def test_modes_share_initial_centroids(blobs, monkeypatch):
    starts = []
    choose = engine.initial_centroids

    def record(*args, **kwargs):
        centroids = choose(*args, **kwargs)
        starts.append(centroids.copy())
        return centroids

    monkeypatch.setattr(engine, "initial_centroids", record)
    X = blobs[["x1", "x2"]].to_numpy()
    settings = CompareSettings(taus=(0.2, 1.0), n_init=2, seed=7)
    comparison.compare(X, 4, settings)

    n_fits = 1 + 2 * 2
    assert len(starts) == n_fits * settings.n_init
    first_fit = starts[: settings.n_init]
    assert not np.array_equal(first_fit[0], first_fit[1])
    for fit in range(1, n_fits):
        for restart in range(settings.n_init):
            np.testing.assert_array_equal(starts[fit * settings.n_init + restart], first_fit[restart])


def test_first_iteration_inertia_is_shared():
    X = pd.read_parquet(OVERLAPPING).drop(columns="label").to_numpy()
    result = comparison.compare(X, 6, CompareSettings(taus=(0.5, 1.0), seed=4))

    # The first record measures the hard inertia of the initial centroids.
    first = [row.result.history[0].inertia for row in result.rows]
    for value in first[1:]:
        assert value == pytest.approx(first[0], rel=1e-12)


# ---------------------------------------------------------------------------
# Library functions


def test_parse_modes():
    assert comparison.parse_modes("hard, soft,hard") == ("hard", "soft")
    with pytest.raises(OptionError, match="unknown mode 'fuzzy'"):
        comparison.parse_modes("hard,fuzzy")
    with pytest.raises(OptionError, match="names no mode"):
        comparison.parse_modes(" , ")


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "abc", ""])
def test_parse_taus_rejects(text):
    with pytest.raises(OptionError):
        comparison.parse_taus(text)


def test_parse_taus():
    assert comparison.parse_taus("0.5, 1,0.5,2e-1") == (0.5, 1.0, 0.2)


def test_compare_rejects_single_truth_value(blobs):
    X = blobs[["x1", "x2"]].to_numpy()
    with pytest.raises(InputError, match="single value"):
        comparison.compare(X, 4, truth=np.zeros(len(X)))


def test_compare_rejects_truth_length(blobs):
    X = blobs[["x1", "x2"]].to_numpy()
    with pytest.raises(OptionError, match="one label per row"):
        comparison.compare(X, 4, truth=np.arange(3))


def test_convergence_curves_in_user_units(blobs):
    X = blobs[["x1", "x2"]].to_numpy()
    result = comparison.compare(X, 4, CompareSettings(modes=("hard",)))
    row = result.rows[0]
    iterations, objective, inertia = comparison.convergence_curves(row)

    assert row.result.preprocessing.squared_unit != 1.0
    assert list(iterations) == list(range(1, row.result.n_iter + 1))
    # Lloyd stops on the blobs when its labels no longer change. So the last iteration
    # starts from the final centroids, and its inertia is the final one per unit weight.
    assert inertia[-1] == pytest.approx(row.result.inertia / len(X), rel=1e-9)
    assert objective[-1] == pytest.approx(row.result.objective, rel=1e-9)


def test_scatter_view_two_features(blobs):
    X = blobs[["x1", "x2"]].to_numpy()
    result = comparison.compare(X, 4, CompareSettings(modes=("hard",)))
    view = comparison.scatter_view(result)

    np.testing.assert_array_equal(view.points, X)
    np.testing.assert_array_equal(view.centroids[0], result.rows[0].result.centroids)
    assert view.explained is None


def test_scatter_view_principal_components():
    X = pd.read_parquet(OVERLAPPING).drop(columns="label").to_numpy()
    result = comparison.compare(X, 6, CompareSettings(modes=("hard",)))
    view = comparison.scatter_view(result, max_points=500)

    assert view.points.shape == (500, 2)
    assert view.centroids[0].shape == (6, 2)
    assert 0 < view.explained[1] <= view.explained[0] < 1
    # The components are uncorrelated, and the first has the larger variance.
    assert abs(np.corrcoef(view.points.T)[0, 1]) < 0.2
    assert view.points[:, 0].var() >= view.points[:, 1].var()


# ---------------------------------------------------------------------------
# Errors


def test_unknown_truth_column():
    result = run(BLOBS, "-k", 4, "--truth", "species")

    assert_error(result, "truth column 'species' not found", "available columns: 'x1', 'x2', 'label'")
    assert result.stdout == ""


def test_single_valued_truth_column(tmp_path):
    path = tmp_path / "one_class.csv"
    path.write_text("a,b,group\n1,2,7\n3,4,7\n5,1,7\n2,2,7\n")

    assert_error(run(path, "-k", 2, "--truth", "group"), "truth column 'group' has the single value 7")


def test_truth_column_with_missing_value(tmp_path):
    path = tmp_path / "missing_truth.csv"
    path.write_text("a,b,group\n1,2,1\n3,4,\n5,1,2\n2,2,2\n")

    assert_error(run(path, "-k", 2, "--truth", "group"), "truth column 'group' has 1 missing value", "data row 2")


def test_truth_column_in_columns():
    result = run(BLOBS, "-k", 4, "--truth", "label", "--columns", "x1,label")

    assert_error(result, "truth column 'label' is also in --columns")


def test_unknown_mode():
    assert_error(compare_blobs("--modes", "hard,fuzzy"), "unknown mode 'fuzzy' in --modes", "hard, soft, gumbel")


@pytest.mark.parametrize("taus", ["0.5,-1", "0.5,abc", "0"])
def test_invalid_tau_is_usage_error(taus):
    result = compare_blobs("--tau", taus)

    assert result.exit_code == 2, result.output
    assert "--tau" in result.stderr


def test_invalid_format_is_usage_error():
    result = compare_blobs("--format", "xml")

    assert result.exit_code == 2, result.output
    assert "'xml' is not one of table, json, csv, markdown" in result.stderr


def test_too_many_clusters():
    assert_error(compare_blobs("-k", 601), "n_clusters=601")


# ---------------------------------------------------------------------------
# Plots


@pytest.mark.parametrize("extension, signature", [(".png", b"\x89PNG\r\n\x1a\n"), (".svg", b"<svg")])
def test_plot_writes_file(tmp_path, extension, signature):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"compare{extension}"
    result = compare_blobs("--plot", path, "--tau", "0.5,1")

    assert result.exit_code == 0, result.output
    content = path.read_bytes()
    assert len(content) > 1000
    assert signature in content[:400]
    assert not list(tmp_path.glob(".softkm-*"))


def test_plot_of_wide_data(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "overlapping.png"
    result = run(OVERLAPPING, "-k", 6, "--truth", "label", "--plot", path, "--modes", "hard,soft")

    assert result.exit_code == 0, result.output
    assert path.stat().st_size > 1000


def test_svg_plot_is_reproducible(tmp_path):
    pytest.importorskip("matplotlib")
    first = tmp_path / "first.svg"
    second = tmp_path / "second.svg"
    assert compare_blobs("--plot", first, "--modes", "hard").exit_code == 0
    assert compare_blobs("--plot", second, "--modes", "hard").exit_code == 0

    assert first.read_bytes() == second.read_bytes()


def test_plot_rejects_other_extension(tmp_path):
    path = tmp_path / "compare.pdf"

    assert_error(compare_blobs("--plot", path), "unsupported extension", "use .png or .svg")
    assert not path.exists()


def test_plot_keeps_existing_file(tmp_path):
    path = tmp_path / "compare.png"
    path.write_bytes(b"old")

    assert_error(compare_blobs("--plot", path), "exists", "--force")
    assert path.read_bytes() == b"old"


def test_plot_without_matplotlib(tmp_path, monkeypatch):
    # A None entry in sys.modules makes "import matplotlib" raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "compare.png"
    result = compare_blobs("--plot", path)

    assert_error(result, "matplotlib is not installed; run pip install 'softkm[plot]'")
    assert not path.exists()
    assert result.stdout == ""


# ---------------------------------------------------------------------------
# Real benchmark data


@needs_shared_data
def test_iris_hard_ari():
    rows = json_output(run(SHARED_DATA / "iris.csv", "-k", 3, "--truth", "label", "--format", "json"))["rows"]

    hard = rows[0]
    assert hard["mode"] == "hard"
    assert hard["ari"] >= 0.70
    assert hard["centroid_index"] == 0
