"""Data split into row chunks, and the data-source protocol the fitting loops use.

The fitting loops never touch a data matrix directly. They hand a ``DataSource`` a
per-chunk kernel and get back the statistics summed over all chunks (``reduce``), or
the kernel's result for every chunk in row order (``map``). ``ChunkedData`` is the
in-memory source. ``softkm.streaming`` streams Parquet batches from disk and
``softkm.dask_engine`` runs the kernels on the partitions of a Dask cluster. Both
implement the same protocol, so one fitting loop serves all three.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from softkm.kernels import (
    BINCOUNT_MAX_FEATURES,
    ChunkStats,
    assign_chunk,
    chunk_rows,
    chunk_slices,
    cluster_sums,
    cluster_weights,
    label_order,
    row_norms_squared,
    segment_sums,
    squared_residuals,
)
from softkm.parallel import parallel_map

Result = TypeVar("Result")

# ``range_statistics`` splits the clusters into about this many groups for the threads.
_SUM_GROUPS = 16
# ``cluster_statistics`` sums ranges of chunks with about this many rows, so its labels,
# sort order and keys (14 bytes per row, 14 MiB per range) stay bounded. Each range
# costs a pass's synchronisation, so ranges are long: ranges of 16,384 rows made a plain
# Lloyd iteration on 50,000 x 256 float32 about 35% slower than one range.
_SUM_RANGE_ROWS = 1 << 20


@dataclass
class Chunk:
    """One block of rows: X (n_rows, n_features), ``|x|^2`` (n_rows,), weights or None.

    ``rows`` is the block's position among all rows of its source, and ``index`` its
    position among the source's chunks.
    """

    index: int
    rows: slice
    X: np.ndarray
    x_squared_norms: np.ndarray
    sample_weight: np.ndarray | None


class DataSource(Protocol):
    """Working-unit data that the fitting loops reach only through kernels.

    ``reduce`` must add the chunk statistics in row order, whatever runs the kernels,
    so that a result does not depend on scheduling. ``take`` returns the rows at sorted
    indices in memory (for initialisation samples), and ``minibatches`` an endless
    stream of seeded mini-batches of about ``batch_size`` rows.
    """

    n_samples: int
    n_features: int
    dtype: np.dtype
    total_weight: float
    min_positive_weight: float

    def reduce(self, kernel: Callable[[Chunk], ChunkStats], n_clusters: int) -> ChunkStats: ...

    def map(self, function: Callable[[Chunk], Result]) -> Iterator[Result]: ...

    def take(self, rows: np.ndarray) -> "ChunkedData": ...

    def minibatches(self, batch_size: int, rng: np.random.Generator) -> Iterator["DataSource"]: ...


@dataclass
class ChunkedData:
    """Working-unit data X (n_samples, n_features) in memory, with cached row norms and weights."""

    X: np.ndarray
    sample_weight: np.ndarray | None
    rows_per_chunk: int
    x_squared_norms: np.ndarray = field(init=False)
    total_weight: float = field(init=False)

    def __post_init__(self) -> None:
        # Each row's norm depends on that row alone, so computing them chunk by chunk on
        # the pool gives the same values as one call over all rows.
        self.x_squared_norms = np.empty(self.X.shape[0], dtype=self.X.dtype)

        def norms(rows: slice) -> None:
            self.x_squared_norms[rows] = row_norms_squared(self.X[rows])

        for _ in parallel_map(norms, chunk_slices(self.X.shape[0], self.rows_per_chunk)):
            pass
        if self.sample_weight is None:
            self.total_weight = float(self.X.shape[0])
        else:
            self.total_weight = float(self.sample_weight.sum())

    @classmethod
    def build(
        cls, X: np.ndarray, sample_weight: np.ndarray | None, n_clusters: int, chunk_size: int | None = None
    ) -> "ChunkedData":
        return cls(X, sample_weight, chunk_rows(X.shape[0], n_clusters, chunk_size, X.shape[1]))

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    @property
    def min_positive_weight(self) -> float:
        """The smallest positive sample weight, 1.0 without weights (or without a positive one)."""
        if self.sample_weight is None:
            return 1.0
        positive = self.sample_weight[self.sample_weight > 0]
        return float(positive.min()) if positive.size else 1.0

    def chunks(self, within: slice | None = None) -> Iterator[Chunk]:
        """Yield the chunks in row order, or those of ``within``, a range of whole chunks."""
        for index, rows in enumerate(chunk_slices(self.n_samples, self.rows_per_chunk)):
            if within is not None and not within.start <= rows.start < within.stop:
                continue
            weights = None if self.sample_weight is None else self.sample_weight[rows]
            yield Chunk(index, rows, self.X[rows], self.x_squared_norms[rows], weights)

    def reduce(
        self, kernel: Callable[[Chunk], ChunkStats], n_clusters: int, within: slice | None = None
    ) -> ChunkStats:
        """Run ``kernel`` on every chunk (of ``within``) and return the sum of its statistics.

        The chunks run on the thread pool of ``softkm.parallel``. Their statistics are
        added in row order, so the floating-point result does not depend on how the
        work is scheduled or on the number of threads. ``kernel`` may write into
        disjoint row slices of shared arrays, and must not print or touch other state.
        """
        total = ChunkStats.zeros(n_clusters, self.n_features)
        for stats in parallel_map(kernel, self.chunks(within)):
            total.add(stats)
        return total

    def map(self, function: Callable[[Chunk], Result], within: slice | None = None) -> Iterator[Result]:
        """Yield ``function(chunk)`` for every chunk (of ``within``), in row order, run on the thread pool."""
        yield from parallel_map(function, self.chunks(within))

    def label_ranges(self) -> list[slice]:
        """Return consecutive ranges of whole chunks, each with at most about
        ``_SUM_RANGE_ROWS`` rows (one chunk at least), covering every row.

        ``cluster_statistics`` sums range by range, so its temporaries stay range-sized.
        """
        chunks_per_range = max(1, _SUM_RANGE_ROWS // max(self.rows_per_chunk, 1))
        return chunk_slices(self.n_samples, chunks_per_range * self.rows_per_chunk)

    def cluster_statistics(self, labels: np.ndarray, n_clusters: int) -> ChunkStats:
        """Return the per-cluster weighted sums (n_clusters, n_features) and weights of ``labels`` (n_samples,).

        The sums of the ``label_ranges`` are added in row order, so this equals adding
        ``range_statistics`` over those ranges, as Lloyd's pass does.
        """
        total = ChunkStats.zeros(n_clusters, self.n_features)
        for rows in self.label_ranges():
            total.add(self.range_statistics(rows, labels[rows], n_clusters))
        return total

    def range_statistics(self, rows: slice, labels: np.ndarray, n_clusters: int) -> ChunkStats:
        """Return the per-cluster weighted sums and weights of the rows ``rows`` (a range
        of whole chunks, see ``label_ranges``), whose labels are ``labels``.

        With few features each chunk is summed by ``softkm.kernels.cluster_sums`` and the
        chunks are added in row order. Otherwise the range's rows are grouped by label
        once, and each cluster's rows are summed on their own by
        ``softkm.kernels.segment_sums``, clusters in parallel: per chunk, k clusters of a
        few rows each would cost k small products. Either way the result does not depend
        on the number of threads.
        """
        if self.n_features <= BINCOUNT_MAX_FEATURES:

            def kernel(chunk: Chunk) -> ChunkStats:
                local = slice(chunk.rows.start - rows.start, chunk.rows.stop - rows.start)
                return ChunkStats(*cluster_sums(chunk.X, labels[local], chunk.sample_weight, n_clusters))

            return self.reduce(kernel, n_clusters, within=rows)
        X = self.X[rows]
        weights = None if self.sample_weight is None else self.sample_weight[rows]
        order, offsets = label_order(labels, n_clusters, weights)
        # Contiguous groups of clusters with about equal numbers of rows.
        targets = np.linspace(0, offsets[-1], _SUM_GROUPS + 1)[1:-1]
        cuts = np.unique(np.clip(np.concatenate([[0], np.searchsorted(offsets, targets), [n_clusters]]), 0, n_clusters))
        groups = [range(low, high) for low, high in zip(cuts[:-1], cuts[1:])]
        sums = np.concatenate(list(parallel_map(
            lambda group: segment_sums(X, order, offsets, weights, group), groups
        )))
        return ChunkStats(sums, cluster_weights(labels, weights, n_clusters))

    def subset(self, indices: np.ndarray) -> "ChunkedData":
        """Return the rows at ``indices`` (a mini-batch) as a new ``ChunkedData``."""
        weights = None if self.sample_weight is None else self.sample_weight[indices]
        return ChunkedData(self.X[indices], weights, self.rows_per_chunk)

    def take(self, rows: np.ndarray) -> "ChunkedData":
        """Return the rows at sorted indices ``rows``; all rows are returned as they are."""
        if len(rows) == self.n_samples:
            return self
        return self.subset(rows)

    def minibatches(self, batch_size: int, rng: np.random.Generator) -> Iterator["ChunkedData"]:
        """Yield mini-batches of ``batch_size`` distinct rows drawn uniformly, in row order.

        Each batch is drawn when it is requested, so the draws interleave with the
        caller's other uses of ``rng`` in a fixed order.
        """
        while True:
            yield self.subset(np.sort(rng.choice(self.n_samples, size=batch_size, replace=False)))


@dataclass
class FarthestPoints:
    """The rows farthest from their nearest centroid, farthest first (ties: lowest row).

    ``points`` (count, n_features) are float64 working units, ``labels`` the nearest
    centroid of each and ``distances`` the squared distance to it, in float64. ``max_squared_norm`` is the largest ``|x|^2`` of the whole data.
    """

    rows: np.ndarray
    points: np.ndarray
    weights: np.ndarray
    labels: np.ndarray
    distances: np.ndarray
    max_squared_norm: float


def farthest_points(
    data: DataSource, centroids: np.ndarray, count: int, labels: np.ndarray | None = None
) -> FarthestPoints:
    """Find the ``count`` rows farthest from their nearest centroid, as one pass over ``data``.

    The distances are ``|x - c|^2`` computed directly in float64, so the ranking does not
    depend on how the nearest centroid was found. ``labels`` (n_samples,), when the
    caller already has every row's nearest centroid, saves the assignment step.
    Each chunk returns its own ``count`` farthest rows and the candidates are merged on
    the caller's side, so only ``count`` rows per chunk leave the source.
    """
    working = centroids.astype(data.dtype)
    c_squared_norms = row_norms_squared(working)
    known = labels

    def candidates(chunk: Chunk) -> FarthestPoints:
        if known is None:
            labels, _ = assign_chunk(chunk.X, chunk.x_squared_norms, working, c_squared_norms)
        else:
            labels = known[chunk.rows]
        distances = squared_residuals(chunk.X, working, labels)
        order = np.argsort(-distances, kind="stable")[:count]
        weights = np.ones(len(order)) if chunk.sample_weight is None else chunk.sample_weight[order]
        return FarthestPoints(
            chunk.rows.start + order, chunk.X[order].astype(np.float64), weights.astype(np.float64),
            labels[order], distances[order], float(chunk.x_squared_norms.max(initial=0.0)),
        )

    found = list(data.map(candidates))
    rows = np.concatenate([item.rows for item in found])
    distances = np.concatenate([item.distances for item in found])
    # Farthest first; among equal distances the lowest row wins, as in a stable sort of all rows.
    order = np.lexsort((rows, -distances))[:count]
    return FarthestPoints(
        rows[order],
        np.concatenate([item.points for item in found])[order],
        np.concatenate([item.weights for item in found])[order],
        np.concatenate([item.labels for item in found])[order],
        distances[order],
        max(item.max_squared_norm for item in found),
    )


def draw_sample(data: DataSource, size: int, rng: np.random.Generator) -> ChunkedData:
    """Return a seeded uniform sample of ``size`` distinct rows in row order, or all rows.

    With ``size >= n_samples`` every row is returned and ``rng`` is not used, so every
    source of the same rows gives the same sample.
    """
    if size >= data.n_samples:
        return data.take(np.arange(data.n_samples))
    return data.take(sample_rows(data.n_samples, size, rng))


# Rows per block of ``sample_rows``: its temporaries are a few such blocks of int64.
_SAMPLE_BLOCK_ROWS = 1 << 16


def sample_rows(n_samples: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``size`` distinct row indices drawn uniformly from range(n_samples), sorted.

    The rows are split into blocks, the number drawn from each block follows the
    multivariate hypergeometric distribution, and each block draws its rows without
    replacement. That is a uniform sample, and unlike ``rng.choice`` over all rows,
    which permutes every index, it needs memory for one block, not for n_samples.
    """
    starts = np.arange(0, n_samples, _SAMPLE_BLOCK_ROWS)
    lengths = np.minimum(starts + _SAMPLE_BLOCK_ROWS, n_samples) - starts
    counts = rng.multivariate_hypergeometric(lengths, size)
    rows = [start + np.sort(rng.choice(length, size=count, replace=False))
            for start, length, count in zip(starts, lengths, counts) if count]
    return np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
