"""Data split into row chunks, with the reductions the engine runs over them.

``ChunkedData`` is the only thing the fitting loops know about the data: they hand
it a per-chunk kernel and get back the statistics summed over all chunks. An
out-of-core or distributed source only has to provide the same two methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from softkm.kernels import ChunkStats, chunk_rows, chunk_slices, row_norms_squared
from softkm.parallel import parallel_map


@dataclass
class Chunk:
    """One block of rows: X (n_rows, n_features), ``|x|^2`` (n_rows,), weights or None."""

    index: int
    rows: slice
    X: np.ndarray
    x_squared_norms: np.ndarray
    sample_weight: np.ndarray | None


@dataclass
class ChunkedData:
    """Working-unit data X (n_samples, n_features) with cached row norms and weights."""

    X: np.ndarray
    sample_weight: np.ndarray | None
    rows_per_chunk: int
    x_squared_norms: np.ndarray = field(init=False)
    total_weight: float = field(init=False)

    def __post_init__(self) -> None:
        self.x_squared_norms = row_norms_squared(self.X)
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

    def chunks(self) -> Iterator[Chunk]:
        """Yield the chunks in row order."""
        for index, rows in enumerate(chunk_slices(self.n_samples, self.rows_per_chunk)):
            weights = None if self.sample_weight is None else self.sample_weight[rows]
            yield Chunk(index, rows, self.X[rows], self.x_squared_norms[rows], weights)

    def reduce(self, kernel: Callable[[Chunk], ChunkStats], n_clusters: int) -> ChunkStats:
        """Run ``kernel`` on every chunk and return the sum of its statistics.

        The chunks run on the thread pool of ``softkm.parallel``. Their statistics are
        added in row order, so the floating-point result does not depend on how the
        work is scheduled or on the number of threads. ``kernel`` may write into
        disjoint row slices of shared arrays, and must not print or touch other state.
        """
        total = ChunkStats.zeros(n_clusters, self.n_features)
        for stats in parallel_map(kernel, self.chunks()):
            total.add(stats)
        return total

    def subset(self, indices: np.ndarray) -> "ChunkedData":
        """Return the rows at ``indices`` (a mini-batch) as a new ``ChunkedData``."""
        weights = None if self.sample_weight is None else self.sample_weight[indices]
        return ChunkedData(self.X[indices], weights, self.rows_per_chunk)
