"""Tests for the softkm command line: options, outputs, error lines and exit codes.

Commands run in-process through Typer's CliRunner, which captures stdout and stderr
separately (``result.stdout`` and ``result.stderr``). Two tests start real processes: the
import-time check and the closed-pipe check.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer.main
from typer.testing import CliRunner

from softkm.cli import app
from shared_data import BENCHMARK_DATA

REPO = Path(__file__).resolve().parents[1]
BLOBS = REPO / "sample_data" / "blobs_separated.csv"
OVERLAPPING = REPO / "sample_data" / "blobs_overlapping.parquet"
CUSTOMERS = REPO / "sample_data" / "customers.csv"
SHARED_DATA = BENCHMARK_DATA
SOFTKM = Path(sys.executable).parent / "softkm"

ERROR_PREFIX = "softkm: error: "
MODES = ["hard", "soft", "gumbel"]

# SOFTKM_DEBUG would turn error lines into tracebacks. A wide terminal keeps Typer's help
# and usage boxes from wrapping option descriptions.
runner = CliRunner(env={"SOFTKM_DEBUG": None, "COLUMNS": "250"})

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"benchmark data folder {SHARED_DATA} not found"
)


def run(*args, input: bytes | None = None):
    return runner.invoke(app, [str(arg) for arg in args], input=input)


def fit_blobs(*extra):
    """Run ``softkm fit`` on the 4 separated blobs with the truth column excluded."""
    return run("fit", BLOBS, "-k", 4, "--exclude", "label", *extra)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]


def assert_error(result, *words: str) -> None:
    """Check exit code 1, a single ``softkm: error:`` line, and the key words of its message."""
    assert result.exit_code == 1, result.output
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def assert_usage_error(result, *words: str) -> None:
    """Check exit code 2 (invalid option value, reported by Typer) and key words of the message."""
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.stderr, result.stderr


def read_labels(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text))


def assert_valid_labels(labels: pd.DataFrame, n_rows: int, k: int) -> None:
    """Check one 0-based integer ``cluster`` per input row."""
    assert len(labels) == n_rows
    assert pd.api.types.is_integer_dtype(labels["cluster"]), labels["cluster"].dtype
    assert labels["cluster"].min() >= 0
    assert labels["cluster"].max() <= k - 1


def probability_columns(labels: pd.DataFrame, k: int) -> np.ndarray:
    return labels[[f"p_{index}" for index in range(k)]].to_numpy()


def load_model(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def blobs() -> pd.DataFrame:
    return pd.read_csv(BLOBS)


@pytest.fixture(scope="module")
def baseline() -> str:
    """Labels CSV of the default hard fit of the blobs, seed 0."""
    result = fit_blobs("-q")
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def blobs_copy(tmp_path) -> Path:
    path = tmp_path / "blobs.csv"
    path.write_bytes(BLOBS.read_bytes())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A model file of the blobs for every mode."""
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for mode in MODES:
        paths[mode] = folder / f"{mode}.json"
        result = fit_blobs("--mode", mode, "--model", paths[mode], "-q")
        assert result.exit_code == 0, result.output
    return paths


# ---------------------------------------------------------------------------------------------
# fit: clusters, modes and temperatures


def test_fit_default_labels(baseline, blobs):
    labels = read_labels(baseline)
    assert_valid_labels(labels, len(blobs), 4)
    assert list(labels.columns) == ["cluster"]


def test_fit_long_clusters_option(baseline):
    result = run("fit", BLOBS, "--n-clusters", 4, "--exclude", "label", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == baseline


def test_fit_missing_k_exit_2():
    result = run("fit", BLOBS)
    assert_usage_error(result, "--n-clusters")


def test_fit_k_zero_exit_2():
    result = run("fit", BLOBS, "-k", 0)
    assert_usage_error(result, "--n-clusters")


@pytest.mark.parametrize("mode", MODES)
def test_fit_mode_model(mode, tmp_path, blobs):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--mode", mode, "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert_valid_labels(read_labels(result.stdout), len(blobs), 4)
    assert load_model(model_path)["mode"] == mode


def test_fit_unknown_mode_exit_2():
    result = fit_blobs("--mode", "fuzzy")
    assert_usage_error(result, "--mode", "fuzzy")


def test_fit_tau_stored(tmp_path):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--mode", "soft", "--tau", 0.25, "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    model = load_model(model_path)
    assert model["parameters"]["tau"] == 0.25
    assert model["temperature"] == pytest.approx(0.25 * model["scale"])


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_fit_tau_invalid_exit_2(value):
    result = fit_blobs("--mode", "soft", f"--tau={value}")
    assert_usage_error(result, "--tau", "must be finite and > 0")


def test_fit_tau_start_stored(tmp_path):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--mode", "soft", "--tau", 0.2, "--tau-start", 2, "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert load_model(model_path)["parameters"]["tau_start"] == 2.0


def test_fit_tau_start_below_tau():
    result = fit_blobs("--mode", "soft", "--tau", 0.5, "--tau-start", 0.1)
    assert_error(result, "tau_start=0.1", "below tau=0.5")


def test_fit_tau_start_invalid_exit_2():
    result = fit_blobs("--mode", "soft", "--tau-start=0")
    assert_usage_error(result, "--tau-start", "must be finite and > 0")


def test_fit_anneal_rate_stored(tmp_path):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--mode", "gumbel", "--anneal-rate", 0.1, "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert load_model(model_path)["parameters"]["anneal_rate"] == 0.1


def test_fit_anneal_rate_negative_exit_2():
    result = fit_blobs("--mode", "gumbel", "--anneal-rate=-0.1")
    assert_usage_error(result, "--anneal-rate")


def test_fit_straight_through_gumbel(tmp_path, blobs):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--mode", "gumbel", "--straight-through", "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert_valid_labels(read_labels(result.stdout), len(blobs), 4)
    assert load_model(model_path)["parameters"]["straight_through"] is True


def test_fit_straight_through_soft_rejected():
    result = fit_blobs("--mode", "soft", "--straight-through")
    assert_error(result, "--straight-through applies to gumbel mode only", "--mode soft")


@pytest.mark.parametrize(
    "options, option, modes",
    [
        (["--batch-size", "10"], "--batch-size", "soft and gumbel modes"),
        (["--optimizer", "gd"], "--optimizer", "soft and gumbel modes"),
        (["--learning-rate", "0.1"], "--learning-rate", "soft and gumbel modes"),
        (["--tau-start", "2"], "--tau-start", "soft and gumbel modes"),
        (["--tau", "0.3"], "--tau", "soft and gumbel modes"),
        (["--anneal-rate", "0.1"], "--anneal-rate", "gumbel mode"),
    ],
)
def test_fit_hard_rejects_relaxed_options(options, option, modes):
    result = fit_blobs(*options)
    assert_error(result, f"{option} applies to {modes} only", "this fit is --mode hard", f"drop {option}")


def test_fit_soft_rejects_anneal_rate():
    result = fit_blobs("--mode", "soft", "--anneal-rate", "0.1")
    assert_error(result, "--anneal-rate applies to gumbel mode only", "--mode soft")


def test_fit_hard_tau_with_probabilities_accepted(tmp_path):
    result = fit_blobs("--tau", "0.3", "--probabilities", "-o", tmp_path / "labels.csv", "-q")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("optimizer", ["adam", "gd", "scaled-gd"])
def test_fit_optimizer_stored(optimizer, tmp_path, blobs):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--mode", "soft", "--optimizer", optimizer, "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert_valid_labels(read_labels(result.stdout), len(blobs), 4)
    assert load_model(model_path)["parameters"]["optimizer"] == optimizer


def test_fit_unknown_optimizer_exit_2():
    result = fit_blobs("--mode", "soft", "--optimizer", "sgd")
    assert_usage_error(result, "--optimizer", "sgd")


def test_fit_learning_rate_stored(tmp_path):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--mode", "soft", "--optimizer", "gd", "--learning-rate", 0.3, "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert load_model(model_path)["parameters"]["learning_rate"] == 0.3


@pytest.mark.parametrize("value", ["0", "-0.5"])
def test_fit_learning_rate_invalid_exit_2(value):
    result = fit_blobs("--mode", "soft", f"--learning-rate={value}")
    assert_usage_error(result, "--learning-rate", "must be finite and > 0")


def test_fit_batch_size_stored(tmp_path, blobs):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--mode", "soft", "--batch-size", 64, "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert_valid_labels(read_labels(result.stdout), len(blobs), 4)
    assert load_model(model_path)["parameters"]["batch_size"] == 64


def test_fit_batch_size_zero_exit_2():
    result = fit_blobs("--mode", "soft", "--batch-size", 0)
    assert_usage_error(result, "--batch-size")


# ---------------------------------------------------------------------------------------------
# fit: initialization, restarts and stopping


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_fit_init_method_stored(init, tmp_path):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--init", init, "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert load_model(model_path)["fit"]["init"] == init


def test_fit_init_file_centroids(tmp_path):
    init_path = tmp_path / "init.csv"
    init_path.write_text("x2,x1\n0,0\n10,0\n0,10\n10,10\n")
    centroids_path = tmp_path / "centroids.csv"
    result = fit_blobs("--init", init_path, "--centroids", centroids_path, "--model", tmp_path / "m.json", "-q")
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "m.json")["fit"]["init"] == "file"

    # The file lists x2 before x1, so this also checks that columns are matched by name.
    # Each starting centroid sits on one blob centre, a corner of the square with side 10,
    # so cluster i ends at the corner of starting row i.
    centroids = pd.read_csv(centroids_path)
    corners = np.array([[0, 0], [0, 10], [10, 0], [10, 10]], dtype=float)
    assert np.abs(centroids[["x1", "x2"]].to_numpy() - corners).max() < 0.5


def test_fit_init_file_missing_column(tmp_path):
    init_path = tmp_path / "init.csv"
    init_path.write_text("x1,z\n0,0\n10,0\n0,10\n10,10\n")
    result = fit_blobs("--init", init_path)
    assert_error(result, "init.csv", "lacks feature column(s) x2")


def test_fit_init_file_wrong_rows(tmp_path):
    init_path = tmp_path / "init.csv"
    init_path.write_text("x1,x2\n0,0\n10,10\n")
    result = fit_blobs("--init", init_path)
    assert_error(result, "initial centroids", "2 rows", "-k is 4")


@pytest.mark.parametrize("bad_value", ["nan", "inf", "abc", ""])
def test_fit_init_file_invalid_value(bad_value, tmp_path):
    init_path = tmp_path / "init.csv"
    init_path.write_text(f"x1,x2\n0,0\n10,0\n0,10\n10,{bad_value}\n")
    result = fit_blobs("--init", init_path)
    assert_error(result, "initial centroids file", "init.csv", "data row 4", "finite values in x1, x2")
    assert "--missing" not in result.stderr


def test_fit_init_file_not_found(tmp_path):
    result = fit_blobs("--init", tmp_path / "absent.csv")
    assert_error(result, "initial centroids file", "absent.csv", "not found")


def test_fit_n_init_restarts(tmp_path):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--n-init", 3, "--model", model_path)
    assert result.exit_code == 0, result.output
    assert load_model(model_path)["fit"]["n_init"] == 3
    assert "of 3 kept" in result.stderr


def test_fit_max_iter_limit(tmp_path):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--init", "random", "--max-iter", 1, "--model", model_path)
    assert result.exit_code == 0, result.output
    assert load_model(model_path)["fit"]["n_iter"] == 1
    assert "softkm: warning: hard mode reached max_iter=1" in result.stderr


def test_fit_tol_large_stops_early(tmp_path):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--init", "random", "--tol", 1e9, "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    fit_statistics = load_model(model_path)["fit"]
    assert fit_statistics["n_iter"] == 1
    assert fit_statistics["converged"] is True


def test_fit_tol_negative_exit_2():
    result = fit_blobs("--tol=-1")
    assert_usage_error(result, "--tol")


@pytest.mark.parametrize("mode", MODES)
def test_fit_same_seed_same_bytes(mode):
    args = ("fit", OVERLAPPING, "-k", 6, "--exclude", "label", "--mode", mode, "--seed", 7,
            "--probabilities", "--tau", 0.5, "-q")
    first = run(*args)
    second = run(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout_bytes == second.stdout_bytes


def test_fit_seeds_change_labels():
    outputs = set()
    for seed in range(4):
        result = run("fit", OVERLAPPING, "-k", 6, "--exclude", "label", "--init", "random", "--seed", seed, "-q")
        assert result.exit_code == 0, result.output
        outputs.add(result.stdout)
    assert len(outputs) > 1


def test_fit_seed_negative_exit_2():
    result = fit_blobs("--seed=-1")
    assert_usage_error(result, "--seed")


# ---------------------------------------------------------------------------------------------
# fit: feature selection, weights and missing values


def test_fit_default_takes_numeric_columns(tmp_path):
    model_path = tmp_path / "model.json"
    result = run("fit", BLOBS, "-k", 4, "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert load_model(model_path)["feature_names"] == ["x1", "x2", "label"]


def test_fit_columns_selects_features(tmp_path):
    model_path = tmp_path / "model.json"
    result = run("fit", BLOBS, "-k", 2, "--columns", "x1", "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert load_model(model_path)["feature_names"] == ["x1"]


def test_fit_columns_unknown_name():
    result = run("fit", BLOBS, "-k", 2, "--columns", "x1,height")
    assert_error(result, "height")


def test_fit_exclude_drops_features(tmp_path):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert load_model(model_path)["feature_names"] == ["x1", "x2"]


def test_fit_text_column_skipped(tmp_path):
    model_path = tmp_path / "model.json"
    result = run("fit", CUSTOMERS, "-k", 4, "--exclude", "segment", "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert load_model(model_path)["feature_names"] == ["annual_spend", "visits_per_month", "basket_size"]


def test_fit_weights_move_centroid(tmp_path):
    data_path = tmp_path / "weighted.csv"
    data_path.write_text("x1,w\n0,1\n1,3\n")
    centroids_path = tmp_path / "centroids.csv"
    model_path = tmp_path / "model.json"
    result = run("fit", data_path, "-k", 1, "--weights", "w", "--centroids", centroids_path,
                 "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(centroids_path)["x1"].tolist() == [0.75]
    assert load_model(model_path)["feature_names"] == ["x1"]


def test_fit_weights_negative(tmp_path):
    data_path = tmp_path / "weighted.csv"
    data_path.write_text("x1,x2,w\n0,0,1\n1,1,-1\n5,5,1\n")
    result = run("fit", data_path, "-k", 2, "--weights", "w")
    assert_error(result, "weights column 'w'", "negative weight", "data row 2")


def test_fit_weights_all_zero(tmp_path):
    data_path = tmp_path / "weighted.csv"
    data_path.write_text("x1,x2,w\n0,0,0\n1,1,0\n5,5,0\n")
    result = run("fit", data_path, "-k", 2, "--weights", "w")
    assert_error(result, "all weights", "'w'", "are 0")


def test_fit_weights_unknown_column():
    result = fit_blobs("--weights", "mass")
    assert_error(result, "mass")


@pytest.fixture
def gappy_csv(tmp_path) -> Path:
    """Six rows in two groups. Data rows 2 and 5 have a missing value."""
    path = tmp_path / "gappy.csv"
    path.write_text("id,x1,x2\na,0,0\nb,1,\nc,0.5,0.5\nd,10,10\ne,,11\nf,11,11\n")
    return path


def test_fit_missing_value_rejected(gappy_csv):
    result = run("fit", gappy_csv, "-k", 2)
    assert_error(result, "missing or infinite", "data rows 2", "--missing drop")


def test_fit_missing_drop_aligned(gappy_csv):
    result = run("fit", gappy_csv, "-k", 2, "--missing", "drop", "--keep", "id", "-q")
    assert result.exit_code == 0, result.output
    labels = read_labels(result.stdout)
    assert labels["id"].tolist() == ["a", "b", "c", "d", "e", "f"]
    assert labels["cluster"].isna().tolist() == [False, True, False, False, True, False]
    assert labels.loc[0, "cluster"] == labels.loc[2, "cluster"]
    assert labels.loc[3, "cluster"] == labels.loc[5, "cluster"]
    assert labels.loc[0, "cluster"] != labels.loc[3, "cluster"]


def test_fit_missing_drop_empty_cell(gappy_csv):
    result = run("fit", gappy_csv, "-k", 2, "--missing", "drop", "--keep", "id", "-q")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[2] == "b,"
    assert lines[5] == "e,"


def test_fit_missing_drop_summary(gappy_csv):
    result = run("fit", gappy_csv, "-k", 2, "--missing", "drop")
    assert result.exit_code == 0, result.output
    assert "4 rows (2 dropped)" in result.stderr


def test_fit_missing_drop_parquet(gappy_csv, tmp_path):
    output = tmp_path / "labels.parquet"
    result = run("fit", gappy_csv, "-k", 2, "--missing", "drop", "-o", output, "-q")
    assert result.exit_code == 0, result.output
    labels = pd.read_parquet(output)
    assert len(labels) == 6
    assert labels["cluster"].isna().tolist() == [False, True, False, False, True, False]


def test_fit_missing_drop_probabilities(gappy_csv):
    result = run("fit", gappy_csv, "-k", 2, "--missing", "drop", "--mode", "soft", "--probabilities", "-q")
    assert result.exit_code == 0, result.output
    probabilities = probability_columns(read_labels(result.stdout), 2)
    assert np.isnan(probabilities[[1, 4]]).all()
    assert np.allclose(probabilities[[0, 2, 3, 5]].sum(axis=1), 1.0)


def test_fit_dtype_float32(tmp_path, blobs):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--dtype", "float32", "--model", model_path)
    assert result.exit_code == 0, result.output
    assert_valid_labels(read_labels(result.stdout), len(blobs), 4)
    assert load_model(model_path)["dtype"] == "float32"
    assert "float32" in result.stderr


def test_fit_dtype_unknown_exit_2():
    result = fit_blobs("--dtype", "float16")
    assert_usage_error(result, "--dtype")


def test_fit_standardize_original_units(tmp_path):
    centroids_path = tmp_path / "centroids.csv"
    model_path = tmp_path / "model.json"
    result = run("fit", CUSTOMERS, "-k", 4, "--exclude", "segment", "--standardize", "--n-init", 3,
                 "--centroids", centroids_path, "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert load_model(model_path)["preprocessing"]["standardize"] is True

    # Lloyd's centroids are the means of their clusters, so in original units they match
    # the per-cluster means of the raw columns. Z-scored centroids would be near 0.
    features = ["annual_spend", "visits_per_month", "basket_size"]
    raw = pd.read_csv(CUSTOMERS)
    raw["cluster"] = read_labels(result.stdout)["cluster"]
    means = raw.groupby("cluster")[features].mean().sort_index().to_numpy()
    centroids = pd.read_csv(centroids_path).sort_values("cluster")[features].to_numpy()
    spread = raw[features].std().to_numpy()
    assert np.all(np.abs(centroids - means) <= 1e-6 * spread)


# ---------------------------------------------------------------------------------------------
# fit: CSV dialects and stdin


def test_fit_semicolon_decimal_comma(tmp_path, baseline):
    semicolon_path = tmp_path / "semicolon.csv"
    semicolon_path.write_text(BLOBS.read_text().replace(",", ";").replace(".", ","))
    result = run("fit", semicolon_path, "-k", 4, "--exclude", "label", "--delimiter", ";", "--decimal", ",", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == baseline


def test_fit_delimiter_pipe(tmp_path, baseline):
    pipe_path = tmp_path / "pipe.csv"
    pipe_path.write_text(BLOBS.read_text().replace(",", "|"))
    result = run("fit", pipe_path, "-k", 4, "--exclude", "label", "--delimiter", "|", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == baseline


def test_fit_pipe_without_delimiter(tmp_path):
    pipe_path = tmp_path / "pipe.csv"
    pipe_path.write_text(BLOBS.read_text().replace(",", "|"))
    result = run("fit", pipe_path, "-k", 4)
    assert_error(result, "only one column", "--delimiter '|'")


def test_fit_delimiter_invalid():
    result = fit_blobs("--delimiter", "ab")
    assert_error(result, "delimiter 'ab' is invalid")


def test_fit_decimal_invalid():
    result = fit_blobs("--decimal", "x")
    assert_error(result, "decimal mark 'x' is invalid")


def test_fit_no_header(tmp_path, baseline):
    headerless_path = tmp_path / "headerless.csv"
    headerless_path.write_text(BLOBS.read_text().split("\n", 1)[1])
    model_path = tmp_path / "model.json"
    result = run("fit", headerless_path, "-k", 4, "--no-header", "--columns", "x1,x2", "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == baseline
    assert load_model(model_path)["feature_names"] == ["x1", "x2"]


def test_fit_numeric_header_warning(tmp_path):
    headerless_path = tmp_path / "headerless.csv"
    headerless_path.write_text(BLOBS.read_text().split("\n", 1)[1])
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        result = run("fit", headerless_path, "-k", 4)
    assert result.exit_code == 0, result.output
    # An escaped warning would reach Python's own printer, which adds a source line.
    assert [str(item.message) for item in escaped] == []
    assert "softkm: warning: every column name" in result.stderr
    assert "--no-header" in result.stderr
    assert "InputWarning" not in result.stderr


def test_fit_stdin_input(baseline):
    result = run("fit", "-", "-k", 4, "--exclude", "label", "-q", input=BLOBS.read_bytes())
    assert result.exit_code == 0, result.output
    assert result.stdout == baseline


def test_fit_stdin_parquet(baseline):
    parquet_bytes = (REPO / "sample_data" / "blobs_separated.parquet").read_bytes()
    result = run("fit", "-", "-k", 4, "--exclude", "label", "-q", input=parquet_bytes)
    assert result.exit_code == 0, result.output
    assert result.stdout == baseline


def test_fit_stdin_empty():
    result = run("fit", "-", "-k", 2, input=b"")
    assert_error(result, "<stdin>", "is empty")


# ---------------------------------------------------------------------------------------------
# fit: outputs


@pytest.mark.parametrize("name", ["labels.csv", "labels.tsv", "labels.csv.gz", "labels.parquet"])
def test_fit_output_formats(name, tmp_path, blobs):
    output = tmp_path / name
    result = fit_blobs("-o", output, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    if name.endswith(".parquet"):
        labels = pd.read_parquet(output)
    else:
        labels = pd.read_csv(output, sep="\t" if name.endswith(".tsv") else ",")
    assert_valid_labels(labels, len(blobs), 4)
    assert list(labels.columns) == ["cluster"]


def test_fit_output_matches_stdout(tmp_path, baseline):
    output = tmp_path / "labels.csv"
    result = fit_blobs("--output", output, "-q")
    assert result.exit_code == 0, result.output
    assert output.read_text() == baseline


def test_fit_output_extension_rejected(tmp_path):
    model_path = tmp_path / "model.json"
    centroids_path = tmp_path / "centroids.csv"
    result = fit_blobs("-o", tmp_path / "labels.txt", "--model", model_path, "--centroids", centroids_path)
    assert_error(result, "labels.txt", "unsupported extension")
    assert not model_path.exists()
    assert not centroids_path.exists()


def test_fit_model_stdout_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = fit_blobs("-o", tmp_path / "labels.csv", "--model", "-")
    assert_error(result, "--model", "file path")
    assert not (tmp_path / "-").exists()


def test_fit_two_stdout_outputs_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = fit_blobs("--centroids", "-")
    assert_error(result, "--centroids", "stdout")


def test_fit_centroids_to_stdout(tmp_path):
    result = fit_blobs("-o", tmp_path / "labels.csv", "--centroids", "-", "-q")
    assert result.exit_code == 0, result.output
    centroids = read_labels(result.stdout)
    assert centroids["cluster"].tolist() == [0, 1, 2, 3]


def test_fit_keep_columns(blobs):
    result = fit_blobs("--keep", "label,x1", "-q")
    assert result.exit_code == 0, result.output
    labels = read_labels(result.stdout)
    assert list(labels.columns) == ["label", "x1", "cluster"]
    assert labels["label"].tolist() == blobs["label"].tolist()
    assert labels["x1"].tolist() == blobs["x1"].tolist()


def test_fit_keep_text_id():
    result = run("fit", CUSTOMERS, "-k", 4, "--exclude", "segment", "--keep", "customer_id", "-q")
    assert result.exit_code == 0, result.output
    labels = read_labels(result.stdout)
    assert labels["customer_id"].tolist() == pd.read_csv(CUSTOMERS)["customer_id"].tolist()


def test_fit_keep_unknown_column():
    result = fit_blobs("--keep", "name")
    assert_error(result, "--keep", "name", "not found")


def test_fit_labels_match_truth(blobs):
    result = fit_blobs("--keep", "label", "-q")
    assert result.exit_code == 0, result.output
    labels = read_labels(result.stdout)
    table = pd.crosstab(labels["label"], labels["cluster"])
    # The blobs are well separated, so each true blob becomes exactly one cluster.
    assert ((table > 0).sum(axis=1) == 1).all()
    assert ((table > 0).sum(axis=0) == 1).all()


def test_fit_centroids_file(tmp_path, baseline, blobs):
    centroids_path = tmp_path / "centroids.csv"
    result = fit_blobs("--centroids", centroids_path, "-q")
    assert result.exit_code == 0, result.output
    centroids = pd.read_csv(centroids_path)
    assert list(centroids.columns) == ["cluster", "x1", "x2"]
    assert centroids["cluster"].tolist() == [0, 1, 2, 3]

    blobs = blobs.assign(cluster=read_labels(baseline)["cluster"])
    means = blobs.groupby("cluster")[["x1", "x2"]].mean().to_numpy()
    assert np.allclose(centroids[["x1", "x2"]].to_numpy(), means)


def test_fit_centroids_parquet(tmp_path):
    centroids_path = tmp_path / "centroids.parquet"
    result = fit_blobs("--centroids", centroids_path, "-q")
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(centroids_path)) == 4


def test_fit_model_file(tmp_path, blobs):
    model_path = tmp_path / "model.json"
    centroids_path = tmp_path / "centroids.csv"
    result = fit_blobs("--model", model_path, "--centroids", centroids_path, "-q")
    assert result.exit_code == 0, result.output
    model = load_model(model_path)
    assert model["format"] == "softkm-model"
    assert model["format_version"] == 1
    assert model["feature_names"] == ["x1", "x2"]
    assert model["n_clusters"] == 4
    assert model["fit"]["n_samples"] == len(blobs)
    assert np.array(model["centroids"]).shape == (4, 2)
    assert model["centroids"] == pd.read_csv(centroids_path)[["x1", "x2"]].to_numpy().tolist()


def test_fit_same_output_paths(tmp_path):
    path = tmp_path / "out.csv"
    result = fit_blobs("-o", path, "--centroids", path)
    assert_error(result, "two outputs share one path")


def test_fit_same_path_two_spellings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = fit_blobs("-o", "out.csv", "--centroids", "./out.csv", "--force")
    assert_error(result, "two outputs share one path")
    assert not (tmp_path / "out.csv").exists()


def test_fit_keep_cluster_clash(tmp_path):
    path = tmp_path / "relabel.csv"
    path.write_text("x1,cluster\n0,7\n1,7\n10,8\n11,8\n")
    result = run("fit", path, "-k", 2, "--columns", "x1", "--keep", "cluster")
    assert_error(result, "--keep", "cluster", "overwritten")


def test_assign_keep_probability_clash(models, tmp_path, blobs):
    path = tmp_path / "scored.csv"
    blobs.assign(p_1=0.5).to_csv(path, index=False)
    result = run("assign", models["soft"], path, "--keep", "p_1", "--probabilities")
    assert_error(result, "--keep", "p_1", "overwritten")


@pytest.mark.parametrize("mode", ["soft", "gumbel"])
def test_fit_probabilities_relaxed(mode, blobs):
    result = fit_blobs("--mode", mode, "--probabilities", "-q")
    assert result.exit_code == 0, result.output
    labels = read_labels(result.stdout)
    assert list(labels.columns) == ["cluster", "p_0", "p_1", "p_2", "p_3"]
    probabilities = probability_columns(labels, 4)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert np.all(probabilities >= 0)
    assert (probabilities.argmax(axis=1) == labels["cluster"].to_numpy()).all()


def test_fit_probabilities_hard_needs_tau():
    result = fit_blobs("--probabilities")
    assert_error(result, "hard model has no temperature", "--tau")


def test_fit_probabilities_hard_with_tau(blobs):
    result = fit_blobs("--probabilities", "--tau", 0.5, "-q")
    assert result.exit_code == 0, result.output
    labels = read_labels(result.stdout)
    assert len(labels) == len(blobs)
    assert np.allclose(probability_columns(labels, 4).sum(axis=1), 1.0)


def test_fit_existing_output_kept(tmp_path):
    output = tmp_path / "labels.csv"
    output.write_text("old content\n")
    result = fit_blobs("-o", output)
    assert_error(result, "labels.csv", "exists", "--force")
    assert output.read_text() == "old content\n"


def test_fit_existing_model_kept(tmp_path):
    model_path = tmp_path / "model.json"
    model_path.write_text("{}\n")
    result = fit_blobs("--model", model_path)
    assert_error(result, "model.json", "exists", "--force")
    assert model_path.read_text() == "{}\n"
    assert result.stdout == ""


def test_fit_force_replaces_output(tmp_path, baseline):
    output = tmp_path / "labels.csv"
    output.write_text("old content\n")
    result = fit_blobs("-o", output, "--force", "-q")
    assert result.exit_code == 0, result.output
    assert output.read_text() == baseline


def test_fit_output_is_input(blobs_copy):
    result = run("fit", blobs_copy, "-k", 4, "-o", blobs_copy, "--force")
    assert_error(result, "is the input file")
    assert blobs_copy.read_bytes() == BLOBS.read_bytes()


def test_fit_output_folder_missing(tmp_path):
    result = fit_blobs("-o", tmp_path / "absent" / "labels.csv")
    assert_error(result, "folder", "does not exist")


def test_fit_quiet_no_stderr(baseline):
    result = fit_blobs("--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout == baseline


def test_fit_quiet_hides_warnings(tmp_path):
    headerless_path = tmp_path / "headerless.csv"
    headerless_path.write_text(BLOBS.read_text().split("\n", 1)[1])
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        result = run("fit", headerless_path, "-k", 4, "--init", "random", "--max-iter", 1, "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert [str(item.message) for item in escaped] == []


def test_fit_debug_raises(tmp_path):
    result = run("fit", tmp_path / "absent.csv", "-k", 2, "--debug")
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "InputError"
    assert error_lines(result) == []


def test_fit_debug_environment(tmp_path):
    result = runner.invoke(app, ["fit", str(tmp_path / "absent.csv"), "-k", "2"], env={"SOFTKM_DEBUG": "1"})
    assert type(result.exception).__name__ == "InputError"


def test_fit_error_without_traceback(tmp_path):
    result = run("fit", tmp_path / "absent.csv", "-k", 2)
    assert_error(result, "absent.csv", "not found")
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr


def test_fit_input_not_found(tmp_path):
    result = run("fit", tmp_path / "absent.csv", "-k", 2)
    assert_error(result, "input file", "absent.csv", "not found")


def test_fit_k_larger_than_rows(gappy_csv):
    result = run("fit", gappy_csv, "-k", 5, "--missing", "drop")
    assert_error(result, "n_clusters=5", "larger than the number of rows (4)", "-k")


def test_fit_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    result = run("fit", path, "-k", 2)
    assert_error(result, "empty.csv", "is empty")


def test_fit_header_only_file(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("x1,x2\n")
    result = run("fit", path, "-k", 2)
    assert_error(result, "header.csv", "no data rows")


# ---------------------------------------------------------------------------------------------
# Summary on stderr


def test_summary_hard_fields(blobs):
    result = fit_blobs()
    assert result.exit_code == 0, result.output
    summary = result.stderr
    assert "k=4" in summary
    assert f"{len(blobs)} rows" in summary
    assert "iterations " in summary
    assert "inertia " in summary
    assert "temperature" not in summary


@pytest.mark.parametrize("mode", ["soft", "gumbel"])
def test_summary_relaxed_temperature(mode, tmp_path):
    model_path = tmp_path / "model.json"
    result = fit_blobs("--mode", mode, "--model", model_path)
    assert result.exit_code == 0, result.output
    temperature = load_model(model_path)["temperature"]
    assert f"temperature {temperature:.6g}" in result.stderr
    assert "tau 0.5" in result.stderr


def test_summary_stdout_data_only(baseline):
    result = fit_blobs()
    assert result.stdout == baseline


def test_summary_standardize_units():
    result = run("fit", CUSTOMERS, "-k", 4, "--exclude", "segment", "--standardize")
    assert result.exit_code == 0, result.output
    assert "z-scored units" in result.stderr


# ---------------------------------------------------------------------------------------------
# assign


@pytest.mark.parametrize("mode", MODES)
def test_assign_round_trip_bytes(mode, tmp_path):
    model_path = tmp_path / "model.json"
    fitted = fit_blobs("--mode", mode, "--model", model_path, "--keep", "label", "-q")
    assert fitted.exit_code == 0, fitted.output
    assigned = run("assign", model_path, BLOBS, "--keep", "label", "-q")
    assert assigned.exit_code == 0, assigned.output
    assert assigned.stdout_bytes == fitted.stdout_bytes


@pytest.mark.parametrize("mode", MODES)
def test_assign_round_trip_standardized(mode, tmp_path):
    model_path = tmp_path / "model.json"
    args = ("fit", CUSTOMERS, "-k", 4, "--exclude", "segment", "--standardize", "--mode", mode)
    fitted = run(*args, "--model", model_path, "-q")
    assert fitted.exit_code == 0, fitted.output
    assigned = run("assign", model_path, CUSTOMERS, "-q")
    assert assigned.exit_code == 0, assigned.output
    assert assigned.stdout_bytes == fitted.stdout_bytes


def test_assign_round_trip_float32(tmp_path):
    model_path = tmp_path / "model.json"
    fitted = run("fit", OVERLAPPING, "-k", 6, "--exclude", "label", "--dtype", "float32", "--model", model_path, "-q")
    assert fitted.exit_code == 0, fitted.output
    assigned = run("assign", model_path, OVERLAPPING, "-q")
    assert assigned.exit_code == 0, assigned.output
    assert assigned.stdout_bytes == fitted.stdout_bytes


def test_assign_round_trip_file(tmp_path, models):
    fitted_path = tmp_path / "fitted.parquet"
    assigned_path = tmp_path / "assigned.parquet"
    fitted = fit_blobs("--mode", "soft", "-o", fitted_path, "-q")
    assigned = run("assign", models["soft"], BLOBS, "-o", assigned_path, "-q")
    assert fitted.exit_code == 0, fitted.output
    assert assigned.exit_code == 0, assigned.output
    assert pd.read_parquet(assigned_path).equals(pd.read_parquet(fitted_path))


def test_assign_reordered_extra_columns(tmp_path, models, blobs):
    reference = run("assign", models["hard"], BLOBS, "-q")
    shuffled_path = tmp_path / "shuffled.csv"
    shuffled = blobs[["label", "x2", "x1"]].assign(note="extra", x3=1.5)
    shuffled.to_csv(shuffled_path, index=False)
    result = run("assign", models["hard"], shuffled_path, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == reference.stdout


def test_assign_missing_column(tmp_path, models, blobs):
    path = tmp_path / "partial.csv"
    blobs[["x1", "label"]].to_csv(path, index=False)
    result = run("assign", models["hard"], path)
    assert_error(result, "partial.csv", "lacks", "x2")


def test_assign_keep_columns(models, blobs):
    result = run("assign", models["hard"], BLOBS, "--keep", "label", "-q")
    assert result.exit_code == 0, result.output
    labels = read_labels(result.stdout)
    assert list(labels.columns) == ["label", "cluster"]
    assert labels["label"].tolist() == blobs["label"].tolist()


def test_assign_keep_unknown_column(models):
    result = run("assign", models["hard"], BLOBS, "--keep", "name")
    assert_error(result, "--keep", "name", "not found")


@pytest.mark.parametrize("mode", ["soft", "gumbel"])
def test_assign_probabilities_relaxed(mode, models, blobs):
    result = run("assign", models[mode], BLOBS, "--probabilities", "-q")
    assert result.exit_code == 0, result.output
    labels = read_labels(result.stdout)
    assert len(labels) == len(blobs)
    assert np.allclose(probability_columns(labels, 4).sum(axis=1), 1.0)


def test_assign_probabilities_match_fit(models):
    fitted = fit_blobs("--mode", "soft", "--probabilities", "-q")
    assigned = run("assign", models["soft"], BLOBS, "--probabilities", "-q")
    assert assigned.exit_code == 0, assigned.output
    assert assigned.stdout_bytes == fitted.stdout_bytes


def test_assign_probabilities_hard_rejected(models, tmp_path):
    output = tmp_path / "labels.csv"
    result = run("assign", models["hard"], BLOBS, "--probabilities", "-o", output)
    assert_error(result, "hard model has no temperature", "--tau")
    assert not output.exists()


def test_assign_probabilities_hard_tau(models, blobs):
    result = run("assign", models["hard"], BLOBS, "--probabilities", "--tau", 0.5, "-q")
    assert result.exit_code == 0, result.output
    labels = read_labels(result.stdout)
    assert len(labels) == len(blobs)
    assert np.allclose(probability_columns(labels, 4).sum(axis=1), 1.0)


@pytest.mark.parametrize("value", ["0", "nan", "inf"])
def test_assign_tau_invalid_exit_2(value, models):
    result = run("assign", models["soft"], BLOBS, "--probabilities", f"--tau={value}")
    assert_usage_error(result, "--tau", "must be finite and > 0")


@pytest.mark.parametrize("value", ["5e-324", "1e308"])
def test_assign_tau_out_of_range(value, models, tmp_path):
    # Finite and positive, but tau * s falls outside the float64 range.
    output = tmp_path / "labels.csv"
    result = run("assign", models["soft"], BLOBS, "--probabilities", f"--tau={value}", "-o", output)
    assert_error(result, "tau", "outside the", "choose")
    assert not output.exists()


def test_assign_output_formats(models, tmp_path, blobs):
    output = tmp_path / "labels.tsv"
    result = run("assign", models["hard"], BLOBS, "-o", output, "-q")
    assert result.exit_code == 0, result.output
    assert_valid_labels(pd.read_csv(output, sep="\t"), len(blobs), 4)


def test_assign_stdin_input(models):
    reference = run("assign", models["hard"], BLOBS, "-q")
    result = run("assign", models["hard"], "-", "-q", input=BLOBS.read_bytes())
    assert result.exit_code == 0, result.output
    assert result.stdout == reference.stdout


def test_assign_output_is_input(models, blobs_copy):
    result = run("assign", models["hard"], blobs_copy, "-o", blobs_copy, "--force")
    assert_error(result, "is the input file")
    assert blobs_copy.read_bytes() == BLOBS.read_bytes()


def test_assign_existing_output_kept(models, tmp_path):
    output = tmp_path / "labels.csv"
    output.write_text("old content\n")
    result = run("assign", models["hard"], BLOBS, "-o", output)
    assert_error(result, "exists", "--force")
    assert output.read_text() == "old content\n"


def test_assign_missing_drop_aligned(models, tmp_path):
    path = tmp_path / "gappy.csv"
    path.write_text("x1,x2\n0,0\n,5\n10,10\n")
    result = run("assign", models["hard"], path, "--missing", "drop", "-q")
    assert result.exit_code == 0, result.output
    assert read_labels(result.stdout)["cluster"].isna().tolist() == [False, True, False]


def test_assign_summary_fields(models, blobs):
    result = run("assign", models["soft"], BLOBS)
    assert result.exit_code == 0, result.output
    assert f"{len(blobs)} rows" in result.stderr
    assert "4 soft clusters" in result.stderr
    assert "inertia " in result.stderr


def test_assign_quiet_no_stderr(models):
    result = run("assign", models["hard"], BLOBS, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_assign_model_not_found(tmp_path):
    result = run("assign", tmp_path / "absent.json", BLOBS)
    assert_error(result, "model file", "absent.json", "not found")


def test_assign_truncated_model(models, tmp_path):
    text = models["soft"].read_text()
    path = tmp_path / "truncated.json"
    path.write_text(text[: len(text) // 2])
    result = run("assign", path, BLOBS)
    assert_error(result, "truncated.json", "not valid JSON", "truncated")


def test_assign_future_format_version(models, tmp_path):
    model = load_model(models["hard"])
    model["format_version"] = 99
    path = tmp_path / "future.json"
    path.write_text(json.dumps(model))
    result = run("assign", path, BLOBS)
    assert_error(result, "future.json", "format version 99", "refit")


def test_assign_nan_centroid(models, tmp_path):
    model = load_model(models["hard"])
    model["centroids"][1][0] = math.nan
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(model))
    assert "NaN" in path.read_text()
    result = run("assign", path, BLOBS)
    assert_error(result, "nan.json", "non-finite value NaN", "refit")


def test_assign_not_a_model(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"name": "x"}')
    result = run("assign", path, BLOBS)
    assert_error(result, "other.json", "not a softkm model file")


def test_assign_debug_raises(tmp_path):
    result = run("assign", tmp_path / "absent.json", BLOBS, "--debug")
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "ModelError"


# ---------------------------------------------------------------------------------------------
# Help


def test_help_root_commands():
    result = run("--help")
    assert result.exit_code == 0, result.output
    assert "fit" in result.stdout
    assert "assign" in result.stdout


def test_help_no_arguments():
    result = run()
    assert "Usage" in result.output
    assert "fit" in result.output


@pytest.mark.parametrize("command", ["fit", "assign"])
def test_help_command_exit_0(command):
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert "--output" in result.stdout


@pytest.mark.parametrize("command", ["fit", "assign"])
def test_help_every_option_described(command):
    click_command = typer.main.get_command(app).commands[command]
    undescribed = [param.name for param in click_command.params if not (getattr(param, "help", None) or "").strip()]
    assert undescribed == []


@pytest.mark.parametrize("command", ["fit", "assign"])
def test_help_lists_every_option(command):
    result = run(command, "--help")
    click_command = typer.main.get_command(app).commands[command]
    option_names = [param.opts[-1] for param in click_command.params if param.opts[-1].startswith("--")]
    assert option_names
    absent = [name for name in option_names if name not in result.stdout]
    assert absent == []


def test_help_shows_tau_default():
    # Help text is parsed as Rich markup, where an unescaped "[default: 0.5]" is a style tag
    # that disappears from the output.
    result = run("fit", "--help")
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "modes default to 0.5" in text
    assert "[default: --tau for soft" in text


# ---------------------------------------------------------------------------------------------
# Processes


def test_import_skips_pandas_pyarrow():
    code = "import softkm.cli, sys; print('pandas' in sys.modules, 'pyarrow' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False False"


def test_pipe_head_closes_quietly(tmp_path):
    # 200,000 label lines (about 400 kB) overflow the pipe buffer, so softkm is still
    # writing when head exits.
    rng = np.random.default_rng(0)
    path = tmp_path / "large.csv"
    pd.DataFrame(rng.normal(size=(200_000, 2)), columns=["x1", "x2"]).to_csv(path, index=False)
    command = f"set -o pipefail; '{SOFTKM}' fit '{path}' -k 3 --max-iter 5 | head -1"
    environment = {key: value for key, value in os.environ.items() if key != "SOFTKM_DEBUG"}
    completed = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, env=environment)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "cluster\n"
    assert "Traceback" not in completed.stderr
    assert "error" not in completed.stderr


# ---------------------------------------------------------------------------------------------
# Benchmark data


@needs_shared_data
def test_benchmark_hepta_exact():
    result = run("fit", SHARED_DATA / "hepta.csv", "-k", 7, "--exclude", "label", "--n-init", 10,
                 "--keep", "label", "-q")
    assert result.exit_code == 0, result.output
    labels = read_labels(result.stdout)
    table = pd.crosstab(labels["label"], labels["cluster"])
    # Hepta's 7 clusters are well separated, so the fit recovers the truth up to renaming.
    assert ((table > 0).sum(axis=1) == 1).all()
    assert ((table > 0).sum(axis=0) == 1).all()


@needs_shared_data
@pytest.mark.parametrize("mode", MODES)
def test_benchmark_wdbc_round_trip(mode, tmp_path):
    data_path = SHARED_DATA / "wdbc.csv"
    model_path = tmp_path / "model.json"
    fitted = run("fit", data_path, "-k", 2, "--exclude", "label", "--standardize", "--mode", mode,
                 "--model", model_path, "-q")
    assert fitted.exit_code == 0, fitted.output
    assigned = run("assign", model_path, data_path, "-q")
    assert assigned.exit_code == 0, assigned.output
    assert assigned.stdout_bytes == fitted.stdout_bytes


def test_version_option():
    from softkm import __version__

    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.output.strip() == f"softkm {__version__}"


def test_fit_feature_named_cluster_with_centroids(tmp_path):
    source = tmp_path / "data.csv"
    source.write_text("cluster,b\n" + "\n".join(f"{i % 7},{i % 5}" for i in range(30)) + "\n")
    centroids = tmp_path / "centroids.csv"

    result = CliRunner().invoke(app, ["fit", str(source), "-k", "2", "--centroids", str(centroids),
                                      "-o", str(tmp_path / "labels.csv")])

    assert_error(result, "feature column 'cluster' would clash", "--exclude cluster")
    assert not centroids.exists()
