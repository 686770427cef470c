"""The Dask engine against the local engine, on a two-process LocalCluster on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from softkm import engine
from softkm.cli import app
from softkm.errors import EngineError, InputError, OutputError
from softkm.streaming import ParquetInput, ParquetStream

distributed = pytest.importorskip("distributed", reason="Dask is not installed; pip install 'softkm[dask]'")
pytest.importorskip("dask.dataframe", reason="dask.dataframe is not installed; pip install 'softkm[dask]'")

from softkm import dask_engine  # imported after the skip, because it imports Dask

runner = CliRunner(env={"SOFTKM_DEBUG": None, "COLUMNS": "250"})
MODES = ["hard", "soft", "gumbel"]


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
    )
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


def make_blobs(n_per_cluster: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 0.0], [0.0, 5.0, 5.0], [5.0, 0.0, 5.0]])
    X = np.concatenate([rng.normal(centre, 1.0, size=(n_per_cluster, 3)) for centre in centres])
    order = rng.permutation(len(X))
    return X[order] + 100.0, rng.uniform(0.5, 2.0, size=len(X))


def write_folder(X: np.ndarray, weights: np.ndarray, folder, n_files: int = 3, row_group_size: int = 100) -> None:
    folder.mkdir()
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["w"] = weights
    frame["id"] = np.arange(len(frame))
    for index, rows in enumerate(np.array_split(np.arange(len(frame)), n_files)):
        table = pa.Table.from_pandas(frame.iloc[rows], preserve_index=False)
        pq.write_table(table, folder / f"part-{index}.parquet", row_group_size=row_group_size)


# ---------------------------------------------------------------------------------------------
# Same results as the local engine


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_scattered_fit_matches_local(client, mode, weighted):
    X, weights = make_blobs()
    sample_weight = weights if weighted else None
    # A small chunk size gives several chunks per partition and several partitions.
    options = dict(mode=mode, seed=2, max_iter=50, chunk_size=64, sample_weight=sample_weight)

    expected = engine.fit(X, 4, **options)
    result = engine.fit(X, 4, client=client, **options)

    assert result.n_iter == expected.n_iter
    assert np.allclose(result.centroids, expected.centroids, rtol=1e-9, atol=0)
    assert result.inertia == pytest.approx(expected.inertia, rel=1e-9)
    assert np.array_equal(result.labels, expected.labels)


def test_scattered_minibatch_matches_local(client):
    X, _ = make_blobs()
    options = dict(mode="soft", seed=4, max_iter=30, batch_size=200, chunk_size=64)

    expected = engine.fit(X, 4, **options)
    result = engine.fit(X, 4, client=client, **options)

    assert np.allclose(result.centroids, expected.centroids, rtol=1e-9, atol=0)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_parquet_fit_matches_local(client, tmp_path, mode):
    X, weights = make_blobs()
    write_folder(X, weights, tmp_path / "data")
    data = ParquetInput.open(str(tmp_path / "data"), columns=["a", "b", "c"], weights="w")
    options = dict(mode=mode, seed=1, max_iter=50)

    expected = engine.fit(X, 4, sample_weight=weights, **options)
    streamed = engine.fit_source(ParquetStream(data, batch_rows=128), 4, **options)
    result = engine.fit_source(dask_engine.DaskParquetStream(client, data), 4, **options)

    assert np.allclose(result.centroids, expected.centroids, rtol=1e-9, atol=0)
    assert np.allclose(result.centroids, streamed.centroids, rtol=1e-9, atol=0)
    assert result.n_iter == expected.n_iter


def test_parquet_gumbel_reproducible(client, tmp_path):
    X, weights = make_blobs()
    write_folder(X, weights, tmp_path / "data")
    data = ParquetInput.open(str(tmp_path / "data"), columns=["a", "b", "c"])
    options = dict(mode="gumbel", seed=1, max_iter=40)

    first = engine.fit_source(dask_engine.DaskParquetStream(client, data), 4, **options)
    second = engine.fit_source(dask_engine.DaskParquetStream(client, data), 4, **options)

    assert np.array_equal(first.centroids, second.centroids)


def test_parquet_missing_value_names_row(client, tmp_path):
    X, weights = make_blobs(50)
    X[123, 1] = np.nan
    write_folder(X, weights, tmp_path / "data", n_files=2, row_group_size=40)
    data = ParquetInput.open(str(tmp_path / "data"), columns=["a", "b", "c"])

    with pytest.raises(InputError, match=r"data row 124 of .*'b' missing"):
        engine.fit_source(dask_engine.DaskParquetStream(client, data), 3)


def test_reduce_order_fixed(client):
    X, _ = make_blobs()
    data = engine.ChunkedData.build(X, None, 4, 50)
    source = dask_engine.DaskSource.scatter(client, data, n_partitions=5)
    centroids = X[:4].copy()

    from softkm.lloyd import assignment_pass

    first = assignment_pass(source, centroids)
    second = assignment_pass(source, centroids)

    assert len(source.blocks) == 5
    assert np.array_equal(first.sums, second.sums)
    assert first.inertia == second.inertia


# ---------------------------------------------------------------------------------------------
# Command line


def test_cli_fit_assign_compare_dask(client, tmp_path):
    X, weights = make_blobs()
    write_folder(X, weights, tmp_path / "data")
    address = client.scheduler.address
    common = ["-k", "4", "--columns", "a,b,c", "--keep", "id", "-q"]

    local = runner.invoke(app, ["fit", str(tmp_path / "data"), *common, "--model", str(tmp_path / "m.json")])
    remote = runner.invoke(app, ["fit", str(tmp_path / "data"), *common, "--engine", "dask", "--scheduler", address])
    assigned = runner.invoke(app, ["assign", str(tmp_path / "m.json"), str(tmp_path / "data"), "--keep", "id",
                                   "--engine", "dask", "--scheduler", address, "-q"])
    compared = runner.invoke(app, ["compare", str(tmp_path / "data" / "part-0.parquet"), "-k", "4",
                                   "--columns", "a,b,c", "--modes", "hard,soft", "--format", "json",
                                   "--engine", "dask", "--scheduler", address])

    assert local.exit_code == 0, local.output
    assert remote.exit_code == 0, remote.output
    assert remote.stdout == local.stdout
    assert assigned.exit_code == 0, assigned.output
    assert assigned.stdout == local.stdout
    assert compared.exit_code == 0, compared.output
    assert '"mode": "soft"' in compared.stdout


def test_cli_scheduler_needs_dask_engine(tmp_path):
    X, weights = make_blobs(20)
    write_folder(X, weights, tmp_path / "data")

    result = runner.invoke(app, ["fit", str(tmp_path / "data"), "-k", "2", "--scheduler", "tcp://127.0.0.1:1"])

    assert result.exit_code == 1
    assert "softkm: error: --scheduler applies to --engine dask only" in result.stderr


def test_cli_unreachable_scheduler(tmp_path):
    X, weights = make_blobs(20)
    write_folder(X, weights, tmp_path / "data")

    started = time.monotonic()
    result = runner.invoke(app, ["fit", str(tmp_path / "data"), "-k", "2", "--engine", "dask",
                                 "--scheduler", "tcp://127.0.0.1:9"])
    elapsed = time.monotonic() - started

    assert result.exit_code == 1
    assert "softkm: error: cannot connect to the Dask scheduler at 'tcp://127.0.0.1:9' within 10 s" in result.stderr
    assert elapsed < 10 + 15


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("notanaddress", "missing port number in address 'notanaddress'"),
        ("tcp://127.0.0.1", "missing port number in address '127.0.0.1'"),
        ("nope://127.0.0.1:8786", "unknown address scheme 'nope'"),
    ],
)
def test_cli_invalid_scheduler_address(tmp_path, address, reason):
    X, weights = make_blobs(20)
    write_folder(X, weights, tmp_path / "data")

    result = runner.invoke(app, ["fit", str(tmp_path / "data"), "-k", "2", "--engine", "dask", "--scheduler", address])

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"softkm: error: --scheduler {address!r} is not a scheduler address: {reason}")
    assert lines[0].endswith("; write it as tcp://HOST:8786")


def test_cli_dask_writes_dev_null(client, tmp_path):
    X, weights = make_blobs(50)
    write_folder(X, weights, tmp_path / "data")

    result = runner.invoke(app, ["fit", str(tmp_path / "data"), "-k", "4", "--columns", "a,b,c", "-o", os.devnull,
                                 "--centroids", str(tmp_path / "centroids.csv"), "-q",
                                 "--engine", "dask", "--scheduler", client.scheduler.address])

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert len(pd.read_csv(tmp_path / "centroids.csv")) == 4


def test_dask_labels_output_checked_before_tasks(client, tmp_path, monkeypatch):
    X, weights = make_blobs(50)
    write_folder(X, weights, tmp_path / "data")
    data = ParquetInput.open(str(tmp_path / "data"), columns=["a", "b", "c"])
    stream = dask_engine.DaskParquetStream(client, data)
    submitted = []
    monkeypatch.setattr(client, "compute", lambda *args, **kwargs: submitted.append(args))

    with pytest.raises(OutputError, match="output folder .* does not exist"):
        stream.write_labels(str(tmp_path / "missing" / "labels.csv"), lambda X: None, keep=[], n_clusters=4,
                            probabilities=False, force=False)

    assert submitted == []


def test_cli_without_dask_names_extra(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"x": [0.0, 1.0, 5.0, 6.0]}).to_csv(path, index=False)
    # A None entry in sys.modules makes every import of that module fail, as if it were absent.
    code = (
        "import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None; "
        "from softkm.cli import main; "
        f"sys.argv = ['softkm', 'fit', {str(path)!r}, '-k', '2', '--engine', 'dask']; main()"
    )
    environment = {key: value for key, value in os.environ.items() if key != "SOFTKM_DEBUG"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                               env=environment)

    assert completed.returncode == 1
    assert "pip install 'softkm[dask]'" in completed.stderr


# ---------------------------------------------------------------------------------------------
# A worker that dies mid-run


def test_killed_worker_scattered_fails_clearly(client):
    X, _ = make_blobs(2000)
    options = dict(mode="hard", seed=0, max_iter=30, tol=0.0, chunk_size=500, init=X[:4])
    expected = engine.fit(X, 4, **options)
    pids = list(client.run(os.getpid).values())
    killed = []

    def kill_one_worker(restart, record):
        if record.iteration == 2 and not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    try:
        result = engine.fit(X, 4, client=client, on_iteration=kill_one_worker, **options)
    except EngineError as error:
        assert "worker" in str(error)
    else:
        assert np.allclose(result.centroids, expected.centroids, rtol=1e-9, atol=0)
        assert np.array_equal(result.labels, expected.labels)
    finally:
        client.wait_for_workers(2, timeout=120)

    assert killed == pids[:1]


def test_killed_worker_parquet_recovers(client, tmp_path):
    X, weights = make_blobs(1000)
    write_folder(X, weights, tmp_path / "data", n_files=4, row_group_size=250)
    data = ParquetInput.open(str(tmp_path / "data"), columns=["a", "b", "c"])
    options = dict(mode="hard", seed=0, max_iter=30, tol=0.0, init=X[:4])
    expected = engine.fit_source(ParquetStream(data, batch_rows=250), 4, **options)
    pids = list(client.run(os.getpid).values())
    killed = []

    def kill_one_worker(restart, record):
        if record.iteration == 2 and not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    try:
        # The blocks are read again from the files on a live worker, so the fit either
        # completes with the same centroids or fails with an EngineError, never with others.
        result = engine.fit_source(dask_engine.DaskParquetStream(client, data), 4, on_iteration=kill_one_worker,
                                   **options)
    except EngineError as error:
        assert "worker" in str(error)
    else:
        assert np.allclose(result.centroids, expected.centroids, rtol=1e-9, atol=0)
        assert result.n_iter == expected.n_iter
    finally:
        client.wait_for_workers(2, timeout=120)

    assert killed == pids[:1]
