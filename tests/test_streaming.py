"""Streaming Parquet input: the same fits as in memory, batch-by-batch outputs, input checks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from softkm import engine
from softkm.cli import app
from softkm.errors import InputError, InputWarning, OptionError
from softkm.features import extract_features, warn_skipped_columns
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

    with pytest.warns(InputWarning, match="non-numeric column\\(s\\) 'name', 'flag' left out"):
        data = ParquetInput.open(str(tmp_path / "data"))

    assert data.feature_names == ["x", "n"]


def test_unknown_column_rejected(blobs_folder):
    _, folder = blobs_folder

    with pytest.raises(InputError, match="column 'nope' given in --columns not found; available columns: 'a', "):
        ParquetInput.open(str(folder), columns=["a", "nope"])


def test_text_feature_column_rejected(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0], "name": ["a", "b"]})
    write_folder(frame, tmp_path / "data", n_files=1)

    with pytest.raises(InputError, match=r"column 'name' is not numeric \(sample value 'a'\); remove it from --columns"):
        ParquetInput.open(str(tmp_path / "data"), columns=["x", "name"])


def in_memory_messages(frame: pd.DataFrame, **options) -> tuple[str | None, list[str]]:
    """Return the error and the warnings of ``extract_features`` on ``frame``, as the in-memory path words them."""
    keep = options.pop("keep", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            warn_skipped_columns(extract_features(frame, **options), keep)
        except InputError as error:
            return str(error), [str(item.message) for item in caught]
    return None, [str(item.message) for item in caught]


def stream_messages(source, **options) -> tuple[str | None, list[str]]:
    """Return the error and the warnings of ``ParquetInput.open`` on ``source``."""
    keep = options.pop("keep", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ParquetInput.open(str(source), extra_columns=keep, **options)
        except InputError as error:
            return str(error), [str(item.message) for item in caught]
    return None, [str(item.message) for item in caught]


@pytest.mark.parametrize(
    ("columns", "options"),
    [
        # Numbers stored as text, as the default selection and as a --columns feature.
        ({"x1": [1.0, 2.0, 3.0], "x2": ["0.5", "1.5", "2.5"]}, {}),
        ({"x1": [1.0, 2.0, 3.0], "x2": ["0.5", "1.5", "2.5"]}, {"columns": ["x1", "x2"]}),
        # Mostly numbers, one value that is not.
        ({"x1": [1.0, 2.0, 3.0], "x2": ["0.5", "1.5", "n/a"]}, {}),
        # A text column left out with a warning, and without one when it is a --keep column.
        ({"x1": [1.0, 2.0, 3.0], "name": ["a", "b", "c"]}, {}),
        ({"x1": [1.0, 2.0, 3.0], "name": ["a", "b", "c"]}, {"keep": ["name"]}),
        # Booleans are left out of the default features with the same warning.
        ({"x1": [1.0, 2.0, 3.0], "flag": [True, False, True]}, {}),
        ({"x1": [1.0, 2.0, 3.0], "w": ["a", "b", "c"]}, {"weights": "w"}),
    ],
)
def test_stream_messages_match_memory(tmp_path, columns, options):
    frame = pd.DataFrame(columns)
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    expected_error, expected_warnings = in_memory_messages(frame, **options)
    error, warned = stream_messages(tmp_path / "data.parquet", **options)

    assert error == expected_error
    assert warned == expected_warnings


def test_stream_without_numeric_column(tmp_path):
    # The in-memory message starts "the table has"; a stream names its input, which may be a folder.
    pd.DataFrame({"name": ["a", "b"], "label": [1, 2]}).to_parquet(tmp_path / "data.parquet", index=False)

    with pytest.raises(InputError) as raised:
        ParquetInput.open(str(tmp_path / "data.parquet"), exclude=["label"])

    assert str(raised.value) == (
        f"input '{tmp_path / 'data.parquet'}' has no numeric feature columns (columns found: 'name', 'label'); "
        "select feature columns with --columns"
    )


def test_stream_numeric_text_names_row(tmp_path):
    frame = pd.DataFrame({"x1": np.arange(10.0), "x2": [str(value) for value in range(9)] + ["n/a"]})
    frame.to_parquet(tmp_path / "data.parquet", index=False)

    with pytest.raises(InputError, match="column 'x2' looks numeric but data row 10 contains 'n/a'"):
        ParquetInput.open(str(tmp_path / "data.parquet"))


def test_stream_type_differs_between_files(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({"x1": [1.0, 2.0], "x2": ["1", "2"]}).to_parquet(folder / "a.parquet", index=False)
    pd.DataFrame({"x1": [3.0, 4.0], "x2": [3, 4]}).to_parquet(folder / "b.parquet", index=False)

    with pytest.raises(InputError) as raised:
        ParquetInput.open(str(folder))

    message = str(raised.value)
    assert message.startswith("column 'x2' has type ")
    assert "string in '" + str(folder / "a.parquet") + "'" in message
    assert "but int64 in '" + str(folder / "b.parquet") + "'" in message
    assert message.endswith("convert it to one type in every file")


def test_stream_excluded_column_type_may_differ(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({"x": [1.0, 2.0], "label": ["a", "b"]}).to_parquet(folder / "a.parquet", index=False)
    pd.DataFrame({"x": [3.0, 4.0], "label": [1, 2]}).to_parquet(folder / "b.parquet", index=False)

    data = ParquetInput.open(str(folder), exclude=["label"])

    assert data.feature_names == ["x"]


def test_stream_numeric_types_promoted(tmp_path):
    # pandas writes a column as int64 in a file without NaN and as double in one with NaN.
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({"x": [1, 2], "id": [10, 11]}).to_parquet(folder / "a.parquet", index=False)
    pd.DataFrame({"x": [3.5, np.nan], "id": [12.0, np.nan]}).to_parquet(folder / "b.parquet", index=False)

    data = ParquetInput.open(str(folder), columns=["x"], missing="drop", extra_columns=["id"])
    batches = list(data.batches(16, extra_columns=["id"]))

    assert data.column_types == {"x": pa.float64(), "id": pa.float64()}
    assert np.concatenate([batch.X[:, 0] for batch in batches]).tolist() == [1.0, 2.0, 3.5]
    assert [batch.table.schema for batch in batches] == [batches[0].table.schema] * len(batches)
    assert batches[0].table.schema.field("id").type == pa.float64()


def test_stream_null_typed_file_takes_other_type(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(pa.table({"x": [1.0, 2.0], "note": pa.nulls(2)}), folder / "a.parquet")
    pq.write_table(pa.table({"x": [3.0, 4.0], "note": ["p", "q"]}), folder / "b.parquet")

    with pytest.warns(InputWarning, match="non-numeric column\\(s\\) 'note' left out"):
        data = ParquetInput.open(str(folder))

    assert data.feature_names == ["x"]


@pytest.mark.parametrize("missing_in", ["a.parquet", "b.parquet"])
def test_stream_column_missing_in_one_file(tmp_path, missing_in):
    folder = tmp_path / "data"
    folder.mkdir()
    with_y = pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0]})
    without_y = pd.DataFrame({"x": [3.0, 4.0]})
    for name in ("a.parquet", "b.parquet"):
        (without_y if name == missing_in else with_y).to_parquet(folder / name, index=False)

    with pytest.raises(InputError) as raised:
        ParquetInput.open(str(folder))

    message = str(raised.value)
    assert message.startswith(f"column 'y' not found in '{folder / missing_in}', but ")
    assert "give every file of" in message
    assert message.endswith("or leave it out with --exclude")


def test_stream_column_missing_not_needed_when_excluded(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0]}).to_parquet(folder / "a.parquet", index=False)
    pd.DataFrame({"x": [3.0, 4.0]}).to_parquet(folder / "b.parquet", index=False)

    data = ParquetInput.open(str(folder), exclude=["y"])

    assert data.feature_names == ["x"]


def test_folder_with_csv_file_rejected(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(folder / "part.parquet", index=False)
    (folder / "extra.csv").write_text("x\n3.0\n")

    with pytest.raises(InputError) as from_folder:
        ParquetInput.open(str(folder))
    with pytest.raises(InputError) as from_glob:
        ParquetInput.open(str(folder / "*"))

    assert str(from_folder.value) == (
        f"input folder '{folder}' contains '{folder / 'extra.csv'}', which is not a Parquet file; "
        f"remove it from the folder or pass a glob such as '{folder / '*.parquet'}'"
    )
    assert str(from_glob.value) == (
        f"input pattern '{folder / '*'}' matches '{folder / 'extra.csv'}', which is not a Parquet file; "
        f"narrow the pattern to Parquet files, such as '{folder / '*.parquet'}'"
    )
    assert ParquetInput.open(str(folder / "*.parquet")).n_rows == 2


def test_folder_discovery_skips_hidden(tmp_path):
    folder = tmp_path / "data"
    (folder / "_temporary").mkdir(parents=True)
    (folder / "sub").mkdir()
    pd.DataFrame({"x": [1.0]}).to_parquet(folder / "sub" / "b.parquet", index=False)
    pd.DataFrame({"x": [2.0]}).to_parquet(folder / "a.parquet", index=False)
    (folder / "_temporary" / "part.csv").write_text("x\n")
    (folder / ".part.parquet.crc").write_text("")

    files = resolve_parquet_files(str(folder))

    assert files == [str(folder / "a.parquet"), str(folder / "sub" / "b.parquet")]


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


def test_cli_stream_errors_match_memory(tmp_path):
    frame = pd.DataFrame({"x1": [1.0, 2.0, 3.0, 4.0], "x2": ["0.5", "1.5", "2.5", "3.5"], "label": [0, 0, 1, 1]})
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    command = ["fit", str(tmp_path / "data.parquet"), "-k", "2", "--exclude", "label", "-q"]

    streamed = runner.invoke(app, [*command, "--memory-limit", "1GB"])
    in_memory = runner.invoke(app, command)

    assert in_memory.exit_code == 1
    assert "contains numbers stored as text" in in_memory.stderr
    assert streamed.exit_code == 1
    assert streamed.stderr == in_memory.stderr


def test_cli_stream_warning_matches_memory(tmp_path):
    frame = pd.DataFrame({"x1": [1.0, 2.0, 3.0, 4.0], "name": ["a", "b", "c", "d"]})
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    command = ["fit", str(tmp_path / "data.parquet"), "-k", "2", "-o", os.devnull]

    streamed = runner.invoke(app, [*command, "--memory-limit", "1GB"])
    in_memory = runner.invoke(app, command)

    assert streamed.exit_code == 0, streamed.output
    assert "softkm: warning: non-numeric column(s) 'name' left out of the features" in streamed.stderr
    assert streamed.stderr.splitlines()[0] == in_memory.stderr.splitlines()[0]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_cli_stream_writes_fifo(tmp_path, suffix):
    frame = make_blobs(100)
    write_folder(frame, tmp_path / "data")
    fifo = tmp_path / f"labels{suffix}"
    os.mkfifo(fifo)
    received = {}

    def read_fifo() -> None:
        with open(fifo, "rb") as handle:
            received["bytes"] = handle.read()

    reader = threading.Thread(target=read_fifo)
    reader.start()
    result = runner.invoke(app, ["fit", str(tmp_path / "data"), "-k", "3", "--columns", "a,b,c", "--keep", "id",
                                 "-o", str(fifo), "-q"])
    reader.join(timeout=60)

    assert result.exit_code == 0, result.output
    assert not reader.is_alive()
    regular = tmp_path / f"copy{suffix}"
    regular.write_bytes(received["bytes"])
    labels = pd.read_parquet(regular) if suffix == ".parquet" else pd.read_csv(regular)
    assert labels["id"].tolist() == frame["id"].tolist()
    assert set(labels["cluster"]) == {0, 1, 2}
    assert fifo.is_fifo()


def test_cli_stream_writes_dev_null(tmp_path, blobs_folder):
    _, folder = blobs_folder

    result = runner.invoke(app, ["fit", str(folder), "-k", "3", "--columns", "a,b,c", "-o", os.devnull,
                                 "--centroids", str(tmp_path / "centroids.csv"), "-q"])

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert len(pd.read_csv(tmp_path / "centroids.csv")) == 3


def test_cli_import_loads_no_data_libraries():
    code = (
        "import softkm.cli, sys; "
        "print(sorted(m for m in ('dask', 'distributed', 'pandas', 'pyarrow') if m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
