"""Peak memory of streaming fits and time per iteration of the Dask engine.

Writes synthetic float32 Parquet data (32 features, 8 Gaussian blobs, files of 1e6 rows
in row groups of 131072) to a temporary folder. Then:

1. runs ``softkm fit FOLDER --memory-limit 256MB`` in a child process for 1e6 and 1e7
   rows and reports the child's peak resident memory (``ru_maxrss``);
2. fits the 1e6-row data for a fixed number of hard-mode iterations with the local
   in-memory engine, the local streaming engine and the Dask engine on a LocalCluster
   of two worker processes on 127.0.0.1, and reports the median time per iteration.

Usage (1e7 rows need 1.3 GB of free disk space in the temporary folder):

    python benchmarks/scaling.py [--rows 1000000,10000000] [--iterations 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N_FEATURES = 32
N_CLUSTERS = 8
FILE_ROWS = 1_000_000
ROW_GROUP_ROWS = 131_072


def write_data(folder: Path, n_rows: int, seed: int = 0) -> None:
    """Write ``n_rows`` rows of blobs as float32 Parquet files of ``FILE_ROWS`` rows each."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 5.0, size=(N_CLUSTERS, N_FEATURES))
    for index, start in enumerate(range(0, n_rows, FILE_ROWS)):
        rows = min(FILE_ROWS, n_rows - start)
        labels = rng.integers(0, N_CLUSTERS, size=rows)
        X = (centres[labels] + rng.normal(size=(rows, N_FEATURES))).astype(np.float32)
        table = pa.table({f"x{j}": X[:, j] for j in range(N_FEATURES)})
        pq.write_table(table, folder / f"part-{index:04d}.parquet", row_group_size=ROW_GROUP_ROWS)


def peak_memory_of_fit(folder: Path, output: Path, iterations: int) -> tuple[float, float]:
    """Run a streaming fit in a child process; return (peak RSS in MiB, wall seconds)."""
    softkm = Path(sys.executable).parent / "softkm"
    command = [str(softkm), "fit", str(folder), "-k", str(N_CLUSTERS), "--dtype", "float32", "--memory-limit",
               "256MB", "--max-iter", str(iterations), "--tol", "0", "-o", str(output), "--force", "-q"]
    # A fresh interpreter per run, so that RUSAGE_CHILDREN covers this one fit only.
    probe = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    return int(completed.stdout.strip()) / 1024, seconds


def seconds_per_iteration(history) -> float:
    """Return the median time of one iteration from a fit's history (seconds since the run began)."""
    times = np.diff([0.0] + [record.seconds for record in history])
    return float(np.median(times))


def time_engines(folder: Path, iterations: int) -> dict[str, float]:
    """Fit the same data with every engine from the same start; return the median seconds per iteration."""
    import distributed

    from softkm import dask_engine, engine
    from softkm.streaming import ParquetInput, ParquetStream, batch_rows_for

    data = ParquetInput.open(str(folder), dtype="float32")
    X = pq.read_table(folder).to_pandas().to_numpy(dtype=np.float32)
    start = X[:N_CLUSTERS].astype(np.float64)
    options = dict(init=start, max_iter=iterations, tol=0.0, dtype="float32")

    figures = {}
    figures["local, in memory"] = seconds_per_iteration(engine.fit(X, N_CLUSTERS, **options).history)
    stream = ParquetStream(data, batch_rows_for(256_000_000, N_FEATURES))
    figures["local, streaming (256MB)"] = seconds_per_iteration(engine.fit_source(stream, N_CLUSTERS, **options).history)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    try:
        with distributed.Client(cluster) as client:
            result = engine.fit_source(dask_engine.DaskParquetStream(client, data), N_CLUSTERS, **options)
            figures["dask, LocalCluster 2 x 1 thread, Parquet"] = seconds_per_iteration(result.history)
            result = engine.fit(X, N_CLUSTERS, client=client, **options)
            figures["dask, LocalCluster 2 x 1 thread, scattered"] = seconds_per_iteration(result.history)
    finally:
        cluster.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000")
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    # Every fit runs a fixed number of iterations on purpose, so max_iter is always reached.
    warnings.filterwarnings("ignore", message=".*reached max_iter")
    row_counts = [int(float(value)) for value in args.rows.split(",")]

    import numpy
    import pyarrow

    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"Python {platform.python_version()}, NumPy {numpy.__version__}, pyarrow {pyarrow.__version__}")
    with tempfile.TemporaryDirectory(prefix="softkm-scaling-") as scratch:
        print("\n| rows | Parquet size (MB) | peak RSS (MiB) | wall time (s) |\n|---|---|---|---|")
        for n_rows in row_counts:
            folder = Path(scratch) / f"rows-{n_rows}"
            write_data(folder, n_rows)
            size = sum(path.stat().st_size for path in folder.iterdir()) / 1e6
            peak, seconds = peak_memory_of_fit(folder, Path(scratch) / "labels.parquet", args.iterations)
            print(f"| {n_rows:.0e} | {size:.0f} | {peak:.0f} | {seconds:.1f} |", flush=True)

        folder = Path(scratch) / f"rows-{row_counts[0]}"
        print(f"\nTime per hard iteration, {row_counts[0]:.0e} rows x {N_FEATURES} float32, k={N_CLUSTERS}, "
              f"median of {args.iterations}:\n\n| engine | seconds per iteration |\n|---|---|")
        for name, seconds in time_engines(folder, args.iterations).items():
            print(f"| {name} | {seconds:.3f} |", flush=True)


if __name__ == "__main__":
    main()
