"""The Dask engine: the same chunk kernels, run on the partitions of a dask.distributed cluster.

Each partition is a ``ChunkedData`` block in working units that stays on a worker. A
pass sends the kernel, a pure function of a chunk and the centroids, to every
partition. The per-partition ``ChunkStats`` are added in a binary tree of fixed shape.
So only the centroids and n_clusters x (n_features + 2) statistics per partition cross
the network, and the sums do not depend on which worker ran what.

Parquet input is read with ``dask.dataframe.read_parquet``, one partition per row
group, so that a partition's rows have a known place in the input. The blocks are
persisted in the workers' memory when they fit into half of it, and read again
on every pass otherwise. Dask is imported here only, and only when this module is.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
from collections.abc import Iterator

import numpy as np

from softkm.chunks import Chunk, ChunkedData
from softkm.errors import EngineError, InputError, OptionError
from softkm.kernels import ChunkStats, chunk_rows
from softkm.preprocessing import DataMoments, MomentSums, Preprocessing

try:
    import dask
    import dask.dataframe as dask_dataframe
    import distributed
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise OptionError(
        f"--engine dask needs Dask, which is not installed ({error.name} not found); "
        "install it with pip install 'softkm[dask]'"
    ) from None

# Seconds that connecting to a --scheduler address may take before the command fails.
CONNECT_TIMEOUT_SECONDS = 10

# Times the scheduler resubmits a task whose worker died before the pass fails.
TASK_RETRIES = 2

# Persisted blocks may take this fraction of the workers' total memory limit.
_PERSIST_FRACTION = 0.5


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[distributed.Client]:
    """Yield a client of the scheduler at ``address``, or of a new local cluster.

    The local cluster listens on 127.0.0.1 only, runs one worker process per core (the
    ``LocalCluster`` default) without a dashboard, and is closed on exit. Raises
    OptionError for an address without a port or with an unknown scheme, and EngineError
    when the connection to the scheduler times out after CONNECT_TIMEOUT_SECONDS.
    """
    if address is not None:
        check_scheduler_address(address)
    cluster = None
    try:
        if address is None:
            cluster = distributed.LocalCluster(host="127.0.0.1", dashboard_address=None, processes=True)
            client = distributed.Client(cluster)
        else:
            client = distributed.Client(address, timeout=f"{CONNECT_TIMEOUT_SECONDS}s")
    except (OSError, TimeoutError) as error:
        if cluster is not None:
            cluster.close()
        if address is None:
            raise EngineError(
                f"cannot start a local Dask cluster on 127.0.0.1 ({error}); pass --scheduler to use a running scheduler"
            ) from None
        raise EngineError(
            f"cannot connect to the Dask scheduler at '{address}' within {CONNECT_TIMEOUT_SECONDS} s ({error}); "
            "check the address and that the scheduler runs"
        ) from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def check_scheduler_address(address: str) -> None:
    """Raise OptionError unless ``address`` names a scheduler by host and port, such as tcp://HOST:8786."""
    try:
        distributed.comm.get_address_host_port(address)
    except ValueError as error:
        raise OptionError(
            f"--scheduler {address!r} is not a scheduler address: {error}; write it as tcp://HOST:8786"
        ) from None


class DaskSource:
    """A ``DataSource`` over ``ChunkedData`` blocks on a cluster, one per partition, in row order.

    ``blocks`` are futures (persisted) or delayed objects (computed again on every
    pass), ``block_rows`` their numbers of rows. Every block is chunked with the
    ``rows_per_chunk`` an in-memory ``ChunkedData`` of all rows would use, and its
    chunks are numbered across blocks. When the blocks start on chunk boundaries (as
    ``scatter`` splits them), a kernel gets the same chunks as on the local engine.
    """

    def __init__(
        self, client, blocks: list, block_rows: list[int], n_features: int, dtype: np.dtype, rows_per_chunk: int,
        total_weight: float, min_positive_weight: float,
    ) -> None:
        self.client = client
        self.blocks = blocks
        self.block_rows = block_rows
        self.n_samples = int(sum(block_rows))
        self.n_features = n_features
        self.dtype = np.dtype(dtype)
        self.rows_per_chunk = rows_per_chunk
        self.total_weight = total_weight
        self.min_positive_weight = min_positive_weight
        self.first_rows = [int(value) for value in np.cumsum([0] + list(block_rows))[:-1]]
        chunks_per_block = [math.ceil(rows / rows_per_chunk) for rows in block_rows]
        self.first_chunks = [int(value) for value in np.cumsum([0] + chunks_per_block)[:-1]]

    @classmethod
    def scatter(cls, client, data: ChunkedData, n_partitions: int | None = None) -> "DaskSource":
        """Send in-memory working data to the workers, split on chunk boundaries.

        The default is two partitions per worker, so that a pass keeps every worker busy.
        """
        if n_partitions is None:
            n_partitions = 2 * max(1, len(client.scheduler_info()["workers"]))
        n_chunks = max(1, math.ceil(data.n_samples / data.rows_per_chunk))
        rows_per_partition = math.ceil(n_chunks / n_partitions) * data.rows_per_chunk
        blocks, block_rows = [], []
        for start in range(0, data.n_samples, rows_per_partition):
            rows = slice(start, min(start + rows_per_partition, data.n_samples))
            weights = None if data.sample_weight is None else data.sample_weight[rows]
            blocks.append(ChunkedData(data.X[rows], weights, data.rows_per_chunk))
            block_rows.append(rows.stop - rows.start)
        futures = client.scatter(blocks, hash=False)
        return cls(client, futures, block_rows, data.n_features, data.dtype, data.rows_per_chunk,
                   data.total_weight, data.min_positive_weight)

    def reduce(self, kernel, n_clusters: int) -> ChunkStats:
        """Run ``kernel`` on every chunk on the cluster and return the sum of its statistics.

        The partitions' statistics are added pairwise in a binary tree of fixed shape
        (0+1, 2+3, ... then again), so the result does not depend on scheduling. The
        local engine adds the same chunks one after the other, which can differ by rounding.
        """
        level = [
            dask.delayed(_reduce_block, pure=False)(kernel, block, first_chunk, first_row, n_clusters, self.n_features)
            for block, first_chunk, first_row in zip(self.blocks, self.first_chunks, self.first_rows)
        ]
        while len(level) > 1:
            pairs = [dask.delayed(_add_stats, pure=False)(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                pairs.append(level[-1])
            level = pairs
        return self._compute(level[0])

    def map(self, function) -> Iterator:
        """Yield ``function(chunk)`` for every chunk, in row order, gathering one partition at a time."""
        tasks = [
            dask.delayed(_map_block, pure=False)(function, block, first_chunk, first_row)
            for block, first_chunk, first_row in zip(self.blocks, self.first_chunks, self.first_rows)
        ]
        futures = self._submit(tasks)
        for position in range(len(futures)):
            results = self._result(futures[position])
            futures[position] = None
            yield from results

    def take(self, rows: np.ndarray) -> ChunkedData:
        """Return the rows at sorted indices ``rows``, gathered from their partitions."""
        if len(rows) == self.n_samples:
            local = [np.arange(count) for count in self.block_rows]
        else:
            edges = np.searchsorted(rows, self.first_rows + [self.n_samples])
            local = [rows[edges[i] : edges[i + 1]] - self.first_rows[i] for i in range(len(self.blocks))]
        tasks = [
            dask.delayed(_take_block, pure=False)(block, indices)
            for block, indices in zip(self.blocks, local) if len(indices)
        ]
        parts = [self._result(future) for future in self._submit(tasks)]
        X = np.concatenate([part[0] for part in parts])
        weights = None if parts[0][1] is None else np.concatenate([part[1] for part in parts])
        return ChunkedData(X, weights, self.rows_per_chunk)

    def minibatches(self, batch_size: int, rng: np.random.Generator) -> Iterator[ChunkedData]:
        """Yield mini-batches of ``batch_size`` distinct rows drawn as the in-memory source draws them."""
        while True:
            yield self.take(np.sort(rng.choice(self.n_samples, size=batch_size, replace=False)))

    def _submit(self, tasks: list) -> list:
        return self.client.compute(tasks, retries=TASK_RETRIES)

    def _compute(self, task):
        return self._result(self.client.compute(task, retries=TASK_RETRIES))

    def _result(self, future):
        return gather(future)


def gather(future):
    """Return a future's result, turning a lost worker into an ``EngineError``."""
    try:
        return future.result()
    except distributed.KilledWorker as error:
        raise EngineError(
            f"a Dask worker died while running a softkm pass, also after {TASK_RETRIES} retries ({error}); "
            "check the workers' logs and memory limits"
        ) from None
    except concurrent.futures.CancelledError as error:
        # Data sent with scatter has no task that could compute it again, so losing the
        # worker that stored it cancels every pass that needs it.
        raise EngineError(
            f"a Dask worker that stored part of the data died, and the data cannot be recomputed ({error}); "
            "run the fit again, or read the data from Parquet files so that Dask can read it again"
        ) from None
    except (OSError, distributed.TimeoutError) as error:
        raise EngineError(f"the Dask cluster failed during a softkm pass ({error}); check that the scheduler runs") from None


class DaskParquetStream:
    """A ``RawSource`` that reads a ``ParquetInput`` on the cluster with ``dask.dataframe.read_parquet``."""

    def __init__(self, client, data) -> None:
        self.client = client
        self.input = data
        self.n_samples = data.n_rows
        self.n_features = len(data.feature_names)
        self.n_dropped = 0
        self._parts: list | None = None
        self._summaries: list | None = None

    def _read_partitions(self, extra_columns: list[str]) -> list:
        """Return one delayed ``RawBatch`` per row group of the input, in input order."""
        columns = list(dict.fromkeys(
            self.input.feature_names + ([self.input.weights] if self.input.weights else []) + extra_columns
        ))
        frame = dask_dataframe.read_parquet(self.input.files, columns=columns, split_row_groups=True)
        partitions = frame.to_delayed()
        if len(partitions) != len(self.input.row_groups):
            raise EngineError(
                f"dask.dataframe.read_parquet split '{self.input.source}' into {len(partitions)} partitions "
                f"for {len(self.input.row_groups)} row groups; rewrite the files with pyarrow"
            )
        offsets = self.input.row_group_offsets()
        return [
            dask.delayed(_check_partition, pure=True)(part, self.input, first_row, extra_columns)
            for part, first_row in zip(partitions, offsets)
        ]

    def moments(self, dtype: str) -> DataMoments:
        """Read the input on the cluster once and return the moments of its features.

        The checked partitions are persisted when they fit into the workers' memory.
        """
        parts = self._read_partitions([])
        itemsize = np.dtype(dtype).itemsize
        self._persist = _fits_in_memory(self.client, 2 * self.input.n_rows * self.n_features * itemsize)
        if self._persist:
            parts = self.client.persist(parts, retries=TASK_RETRIES)
        futures = self.client.compute([dask.delayed(_summarize)(part) for part in parts], retries=TASK_RETRIES)
        summaries = [gather(future) for future in futures]
        self._parts = parts
        self._summaries = summaries

        weighted = unweighted = None
        for summary in summaries:
            weighted = summary["weighted"] if weighted is None else weighted.merge(summary["weighted"])
            if summary["unweighted"] is not None:
                unweighted = summary["unweighted"] if unweighted is None else unweighted.merge(summary["unweighted"])
        n_samples = sum(summary["n_valid"] for summary in summaries)
        self.n_dropped = sum(summary["n_rows"] - summary["n_valid"] for summary in summaries)
        if n_samples == 0:
            raise InputError(
                f"all {self.input.n_rows} rows of '{self.input.source}' have missing or infinite values, "
                "so none is left after --missing drop; check the feature columns with --columns"
            )
        if weighted.weight <= 0:
            raise InputError(f"all weights in column '{self.input.weights}' are 0; at least one row needs a positive weight")
        smallest = min(summary["min_positive_weight"] for summary in summaries)
        self.n_samples = n_samples
        self._total_weight = weighted.weight
        self._min_positive_weight = smallest if np.isfinite(smallest) else 1.0
        unweighted_std = weighted.std if unweighted is None else unweighted.std
        return DataMoments(weighted.mean, weighted.std, unweighted_std, n_samples)

    def working(self, preprocessing: Preprocessing, dtype: str, n_clusters: int, chunk_size: int | None) -> DaskSource:
        """Map every partition to working units on the cluster and return them as a ``DaskSource``."""
        if self._parts is None:
            raise RuntimeError("DaskParquetStream.moments must run before DaskParquetStream.working")
        rows_per_chunk = chunk_rows(self.n_samples, n_clusters, chunk_size, self.n_features)
        blocks = [
            dask.delayed(_working_block, pure=True)(part, preprocessing, np.dtype(dtype), rows_per_chunk)
            for part in self._parts
        ]
        if self._persist:
            blocks = self.client.persist(blocks, retries=TASK_RETRIES)
            self._parts = None
        block_rows = [summary["n_valid"] for summary in self._summaries]
        return DaskSource(self.client, blocks, block_rows, self.n_features, np.dtype(dtype), rows_per_chunk,
                          self._total_weight, self._min_positive_weight)

    def write_labels(self, destination: str, predictor, *, keep: list[str], n_clusters: int, probabilities: bool,
                     force: bool) -> tuple[int, int, float]:
        """Assign every partition on the cluster and write the labels in input order.

        The partitions' label tables are gathered one at a time, so the client keeps
        one partition's labels in memory at once. Returns (rows assigned, rows dropped, inertia).
        """
        from softkm.streaming import LabelsWriter

        tasks = [
            dask.delayed(_label_partition, pure=False)(part, predictor, n_clusters, probabilities)
            for part in self._read_partitions(list(keep))
        ]
        n_assigned = n_dropped = 0
        inertia = 0.0
        # The output is opened before the tasks are submitted, so that an unusable output
        # fails before the workers run anything.
        # NOTE: a write that fails later closes the cluster while tasks still run, and the
        # LocalCluster's workers then log a CancelledError warning to stderr. Cancelling
        # the futures first does not prevent it in distributed 2026.8.0.
        with LabelsWriter(destination, force=force, input_path=self.input.source) as writer:
            futures = self.client.compute(tasks, retries=TASK_RETRIES)
            for position in range(len(futures)):
                table, assigned, dropped, partition_inertia = gather(futures[position])
                futures[position] = None
                writer.write(table)
                n_assigned += assigned
                n_dropped += dropped
                inertia += partition_inertia
        return n_assigned, n_dropped, inertia


def predict_array(client, predictor, X: np.ndarray) -> tuple[np.ndarray, float, np.ndarray | None]:
    """Run ``predictor`` on row blocks of X on the cluster and return its joined results, in row order."""
    n_parts = 2 * max(1, len(client.scheduler_info()["workers"]))
    blocks = np.array_split(np.arange(X.shape[0]), n_parts)
    futures = client.map(predictor, client.scatter([X[rows] for rows in blocks if len(rows)], hash=False), retries=TASK_RETRIES)
    results = [gather(future) for future in futures]
    labels = np.concatenate([result[0] for result in results])
    inertia = float(sum(result[1] for result in results))
    memberships = None if results[0][2] is None else np.concatenate([result[2] for result in results])
    return labels, inertia, memberships


# ---------------------------------------------------------------------------------------------
# Tasks. These run on the workers and refer to nothing but their arguments.


def _fits_in_memory(client, n_bytes: int) -> bool:
    workers = client.scheduler_info()["workers"].values()
    limits = [worker.get("memory_limit") or 0 for worker in workers]
    if not limits or min(limits) <= 0:
        return True
    return n_bytes <= _PERSIST_FRACTION * sum(limits)


def _check_partition(frame, data, first_row: int, extra_columns: list[str]):
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    return data.check_batch(table, first_row, extra_columns)


def _summarize(batch) -> dict:
    weights = batch.sample_weight
    positive = np.inf if weights is None else float(weights[weights > 0].min(initial=np.inf))
    return {
        "n_rows": batch.n_rows,
        "n_valid": batch.X.shape[0],
        "weighted": MomentSums.of_block(batch.X, weights),
        "unweighted": None if weights is None else MomentSums.of_block(batch.X, None),
        "min_positive_weight": 1.0 if weights is None else positive,
    }


def _working_block(batch, preprocessing: Preprocessing, dtype: np.dtype, rows_per_chunk: int) -> ChunkedData:
    return ChunkedData(preprocessing.transform(batch.X, dtype), batch.sample_weight, rows_per_chunk)


def _placed_chunks(block: ChunkedData, first_chunk: int, first_row: int) -> Iterator[Chunk]:
    """Yield a block's chunks with their index and rows among all chunks and rows of the source."""
    for chunk in block.chunks():
        rows = slice(first_row + chunk.rows.start, first_row + chunk.rows.stop)
        yield Chunk(first_chunk + chunk.index, rows, chunk.X, chunk.x_squared_norms, chunk.sample_weight)


def _reduce_block(kernel, block: ChunkedData, first_chunk: int, first_row: int, n_clusters: int,
                  n_features: int) -> ChunkStats:
    total = ChunkStats.zeros(n_clusters, n_features)
    for chunk in _placed_chunks(block, first_chunk, first_row):
        total.add(kernel(chunk))
    return total


def _add_stats(first: ChunkStats, second: ChunkStats) -> ChunkStats:
    # The inputs may be results that the worker still stores, so they are copied, not edited.
    total = first.copy()
    total.add(second)
    return total


def _map_block(function, block: ChunkedData, first_chunk: int, first_row: int) -> list:
    return [function(chunk) for chunk in _placed_chunks(block, first_chunk, first_row)]


def _take_block(block: ChunkedData, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    weights = None if block.sample_weight is None else block.sample_weight[indices]
    return block.X[indices], weights


def _label_partition(batch, predictor, n_clusters: int, probabilities: bool):
    from softkm.streaming import labels_batch_table

    labels, inertia, memberships = predictor(batch.X)
    table = labels_batch_table(batch, labels, memberships, n_clusters, probabilities)
    return table, len(labels), batch.n_rows - len(labels), inertia
