"""Streaming Parquet input: the same fits as in memory, batch-by-batch outputs, input checks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from softkm import engine
from softkm.cli import app
from softkm.errors import InputError, OptionError
from softkm.streaming import (
    LabelsWriter,
    ParquetInput,
    ParquetStream,
    batch_rows_for,
    parse_memory_size,
    resolve_parquet_files,
)

runner = CliRunner(env={"SOFTKM_DEBUG": None, "COLUMNS": "250"})


def make_blobs(n_per_cluster: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 6.0, 6.0]])
    X = np.concatenate([rng.normal(centre, 1.0, size=(n_per_cluster, 3)) for centre in centres])
    order = rng.permutation(len(X))
    frame = pd.DataFrame(X[order] + 1000.0, columns=["a", "b", "c"])
    frame["w"] = rng.uniform(0.5, 2.0, size=len(frame))
    frame["id"] = np.arange(len(frame))
    return frame


def write_folder(frame: pd.DataFrame, folder, n_files: int = 3, row_group_size: int = 150) -> None:
    """Write ``frame`` as ``n_files`` Parquet files of several row groups each, in row order."""
    folder.mkdir()
    for index, part in enumerate(np.array_split(np.arange(len(frame)), n_files)):
        table = pa.Table.from_pandas(frame.iloc[part], preserve_index=False)
        pq.write_table(table, folder / f"part-{index:02d}.parquet", row_group_size=row_group_size)


@pytest.fixture()
def blobs_folder(tmp_path):
    frame = make_blobs()
    write_folder(frame, tmp_path / "blobs")
    return frame, tmp_path / "blobs"


# ---------------------------------------------------------------------------------------------
# The engine on a stream


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_stream_fit_matches_memory(blobs_folder, mode, weighted):
    frame, folder = blobs_folder
    weights = "w" if weighted else None
    X = frame[["a", "b", "c"]].to_numpy()
    sample_weight = frame["w"].to_numpy() if weighted else None
    options = dict(mode=mode, seed=3, max_iter=60)

    expected = engine.fit(X, 3, sample_weight=sample_weight, **options)
    data = ParquetInput.open(str(folder), columns=["a", "b", "c"], weights=weights)
    result = engine.fit_source(ParquetStream(data, batch_rows=100), 3, **options)

    assert result.labels is None
    assert result.n_iter == expected.n_iter
    assert np.allclose(result.centroids, expected.centroids, rtol=1e-9, atol=0)
    assert result.inertia == pytest.approx(expected.inertia, rel=1e-9)
    assert np.allclose(result.preprocessing.offset, expected.preprocessing.offset, rtol=1e-12)
    assert np.array_equal(result.preprocessing.scale, expected.preprocessing.scale)


def test_stream_gumbel_reproducible(blobs_folder):
    # The noise is drawn per chunk, and a stream's chunks follow its batches, so a gumbel
    # fit is reproducible for one batch size but differs from the in-memory fit.
    frame, folder = blobs_folder
    data = ParquetInput.open(str(folder), columns=["a", "b", "c"])
    options = dict(mode="gumbel", seed=3, max_iter=60)

    first = engine.fit_source(ParquetStream(data, batch_rows=100), 3, **options)
    second = engine.fit_source(ParquetStream(data, batch_rows=100), 3, **options)
    expected = engine.fit(frame[["a", "b", "c"]].to_numpy(), 3, **options)

    assert np.array_equal(first.centroids, second.centroids)
    assert first.inertia == pytest.approx(expected.inertia, rel=1e-2)


def test_stream_fit_standardize_float32(blobs_folder):
    frame, folder = blobs_folder
    X = frame[["a", "b", "c"]].to_numpy().astype(np.float32)

    expected = engine.fit(X, 3, standardize=True, dtype="float32", seed=1)
    data = ParquetInput.open(str(folder), columns=["a", "b", "c"], dtype="float32")
    result = engine.fit_source(ParquetStream(data, batch_rows=128), 3, standardize=True, dtype="float32", seed=1)

    assert np.allclose(result.preprocessing.scale, expected.preprocessing.scale, rtol=1e-9)
    assert np.allclose(result.centroids, expected.centroids, rtol=1e-5)


def test_stream_relocates_empty_cluster(tmp_path):
    # Two starts coincide, so the second loses every tie and starts empty.
    X = np.concatenate([np.zeros((50, 2)), np.full((50, 2), 10.0)]) + np.linspace(0, 1, 100)[:, None]
    frame = pd.DataFrame(X, columns=["x", "y"])
    write_folder(frame, tmp_path / "data", n_files=2, row_group_size=20)
    start = np.array([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]])

    with pytest.warns(Warning, match="lost all their points"):
        expected = engine.fit(X, 3, init=start, max_iter=10)
    data = ParquetInput.open(str(tmp_path / "data"))
    with pytest.warns(Warning, match="lost all their points"):
        result = engine.fit_source(ParquetStream(data, batch_rows=32), 3, init=start, max_iter=10)

    assert result.n_relocated == expected.n_relocated >= 1
    assert np.allclose(result.centroids, expected.centroids, rtol=1e-9, atol=1e-12)


def test_stream_init_sample_below_rows(blobs_folder):
    frame, folder = blobs_folder
    X = frame[["a", "b", "c"]].to_numpy()

    expected = engine.fit(X, 3, init_sample=200, seed=5)
    data = ParquetInput.open(str(folder), columns=["a", "b", "c"])
    result = engine.fit_source(ParquetStream(data, batch_rows=64), 3, init_sample=200, seed=5)

    assert np.allclose(result.centroids, expected.centroids, rtol=1e-9)


def test_stream_minibatches_cover_epoch(blobs_folder):
    _, folder = blobs_folder
    data = ParquetInput.open(str(folder), columns=["a"], dtype="float64")
    stream = ParquetStream(data, batch_rows=100)
    moments = stream.moments("float64")
    preprocessing = engine.Preprocessing(np.zeros(1), np.ones(1), False)
    source = stream.working(preprocessing, "float64", 3, None)

    batches = source.minibatches(200, np.random.default_rng(0))
    epoch = np.concatenate([next(batches).X[:, 0] for _ in range(6)])

    assert moments.n_samples == 1200
    assert np.array_equal(np.sort(epoch), np.sort(pd.read_parquet(folder)["a"].to_numpy()))


def test_stream_soft_minibatch_fit_runs(blobs_folder):
    _, folder = blobs_folder
    data = ParquetInput.open(str(folder), columns=["a", "b", "c"])

    first = engine.fit_source(ParquetStream(data, 100), 3, mode="soft", batch_size=256, max_iter=40, seed=2)
    second = engine.fit_source(ParquetStream(data, 100), 3, mode="soft", batch_size=256, max_iter=40, seed=2)

    assert first.n_iter == 40
    assert np.array_equal(first.centroids, second.centroids)


# ---------------------------------------------------------------------------------------------
# Input


def test_resolve_files_folder_and_glob(tmp_path, blobs_folder):
    _, folder = blobs_folder
    (folder / "_SUCCESS").write_text("")

    from_folder = resolve_parquet_files(str(folder))
    from_glob = resolve_parquet_files(str(folder / "part-*.parquet"))

    assert [os.path.basename(path) for path in from_folder] == ["part-00.parquet", "part-01.parquet", "part-02.parquet"]
    assert [os.path.realpath(path) for path in from_glob] == [os.path.realpath(path) for path in from_folder]


def test_resolve_files_glob_without_match(tmp_path):
    with pytest.raises(InputError, match="matches no files"):
        resolve_parquet_files(str(tmp_path / "*.parquet"))


def test_missing_value_names_input_row(tmp_path):
    frame = make_blobs(50)
    frame.loc[130, "b"] = np.nan
    write_folder(frame, tmp_path / "data", n_files=2, row_group_size=40)
    data = ParquetInput.open(str(tmp_path / "data"), columns=["a", "b", "c"])

    with pytest.raises(InputError, match=r"data row 131 of .*'b' missing.*--missing drop"):
        ParquetStream(data, 32).moments("float64")


def test_negative_weight_rejected(tmp_path):
    frame = make_blobs(50)
    frame.loc[7, "w"] = -1.0
    write_folder(frame, tmp_path / "data", n_files=1)
    data = ParquetInput.open(str(tmp_path / "data"), columns=["a"], weights="w")

    with pytest.raises(InputError, match="negative weight -1.0 in data row 8"):
        ParquetStream(data, 32).moments("float64")


def test_float32_overflow_rejected(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 1e300, 2.0]})
    write_folder(frame, tmp_path / "data", n_files=1)
    data = ParquetInput.open(str(tmp_path / "data"), dtype="float32")

    with pytest.raises(InputError, match=r"data row 2 .*float32 maximum"):
        ParquetStream(data, 32).moments("float32")


def test_default_features_skip_text_and_bool(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0], "name": ["a", "b"], "flag": [True, False], "n": [1, 2]})
    write_folder(frame, tmp_path / "data", n_files=1)

    data = ParquetInput.open(str(tmp_path / "data"))

    assert data.feature_names == ["x", "n"]


def test_unknown_column_rejected(blobs_folder):
    _, folder = blobs_folder

    with pytest.raises(InputError, match="column\\(s\\) nope not found"):
        ParquetInput.open(str(folder), columns=["a", "nope"])


def test_text_feature_column_rejected(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0], "name": ["a", "b"]})
    write_folder(frame, tmp_path / "data", n_files=1)

    with pytest.raises(InputError, match="feature column 'name'"):
        ParquetInput.open(str(tmp_path / "data"), columns=["x", "name"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000", 1000), ("512MB", 512_000_000), ("2GiB", 2 * 1024**3), ("1.5G", 1_500_000_000), ("64 kib", 65536)],
)
def test_parse_memory_size(text, expected):
    assert parse_memory_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "12XB", "-5MB", "0"])
def test_parse_memory_size_invalid(text):
    with pytest.raises(OptionError, match="--memory-limit"):
        parse_memory_size(text)


def test_batch_rows_grow_with_limit():
    small = batch_rows_for(parse_memory_size("64MB"), 32)
    large = batch_rows_for(parse_memory_size("1GB"), 32)

    assert 1024 <= small < large <= 1 << 20


# ---------------------------------------------------------------------------------------------
# Outputs


def test_labels_writer_failure_leaves_nothing(tmp_path):
    destination = tmp_path / "labels.parquet"
    table = pa.table({"cluster": pa.array([0, 1], type=pa.int64())})

    with pytest.raises(RuntimeError), LabelsWriter(str(destination), force=False, input_path=None) as writer:
        writer.write(table)
        raise RuntimeError("interrupted")

    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".csv.gz"])
@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_cli_stream_labels_match_memory(tmp_path, mode, suffix):
    frame = make_blobs(300)
    frame.loc[[5, 444], "a"] = np.nan
    write_folder(frame, tmp_path / "data")
    frame.to_parquet(tmp_path / "whole.parquet", index=False)
    common = ["-k", "3", "--mode", mode, "--columns", "a,b,c", "--keep", "id", "--missing", "drop",
              "--probabilities", "--tau", "0.5", "--max-iter", "40", "-q", "--force"]

    streamed = runner.invoke(app, ["fit", str(tmp_path / "data"), "-o", str(tmp_path / f"s{suffix}"),
                                   "--model", str(tmp_path / "s.json"), *common])
    in_memory = runner.invoke(app, ["fit", str(tmp_path / "whole.parquet"), "-o", str(tmp_path / f"m{suffix}"), *common])

    assert streamed.exit_code == 0, streamed.output
    assert in_memory.exit_code == 0, in_memory.output
    read = pd.read_parquet if suffix == ".parquet" else pd.read_csv
    got = read(tmp_path / f"s{suffix}")
    expected = read(tmp_path / f"m{suffix}")
    assert got["id"].tolist() == frame["id"].tolist()
    assert got["cluster"].isna().tolist() == expected["cluster"].isna().tolist()
    assert got["cluster"].fillna(-1).astype(int).tolist() == expected["cluster"].fillna(-1).astype(int).tolist()
    probabilities = [f"p_{index}" for index in range(3)]
    assert np.allclose(got[probabilities].to_numpy(), expected[probabilities].to_numpy(), rtol=1e-6, equal_nan=True)


def test_cli_stream_assign_matches_memory(tmp_path):
    frame = make_blobs(200)
    write_folder(frame, tmp_path / "data")
    frame.to_parquet(tmp_path / "whole.parquet", index=False)
    model = tmp_path / "model.json"
    fitted = runner.invoke(app, ["fit", str(tmp_path / "whole.parquet"), "-k", "3", "--columns", "a,b,c",
                                 "--model", str(model), "-o", str(tmp_path / "fit.csv"), "-q"])

    streamed = runner.invoke(app, ["assign", str(model), str(tmp_path / "data" / "*.parquet"), "--keep", "id", "-q"])
    in_memory = runner.invoke(app, ["assign", str(model), str(tmp_path / "whole.parquet"), "--keep", "id", "-q"])

    assert fitted.exit_code == 0, fitted.output
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout == in_memory.stdout


def test_cli_memory_limit_streams_file(tmp_path):
    frame = make_blobs(200)
    frame.to_parquet(tmp_path / "whole.parquet", index=False)

    result = runner.invoke(app, ["fit", str(tmp_path / "whole.parquet"), "-k", "3", "--columns", "a,b,c",
                                 "--memory-limit", "1MB"])
    in_memory = runner.invoke(app, ["fit", str(tmp_path / "whole.parquet"), "-k", "3", "--columns", "a,b,c"])

    assert result.exit_code == 0, result.output
    assert result.stdout == in_memory.stdout
    assert "600 rows" in result.stderr


def test_cli_memory_limit_rejects_csv(tmp_path):
    path = tmp_path / "data.csv"
    make_blobs(20).to_csv(path, index=False)

    result = runner.invoke(app, ["fit", str(path), "-k", "3", "--memory-limit", "1GB"])

    assert result.exit_code == 1
    assert "softkm: error: --memory-limit streams Parquet input only" in result.stderr


def test_cli_stream_existing_output_kept(tmp_path, blobs_folder):
    _, folder = blobs_folder
    output = tmp_path / "labels.csv"
    output.write_text("old\n")

    result = runner.invoke(app, ["fit", str(folder), "-k", "3", "-o", str(output)])

    assert result.exit_code == 1
    assert "exists; pass --force" in result.stderr
    assert output.read_text() == "old\n"


def test_cli_import_loads_no_data_libraries():
    code = (
        "import softkm.cli, sys; "
        "print(sorted(m for m in ('dask', 'distributed', 'pandas', 'pyarrow') if m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
