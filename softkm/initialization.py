"""Initial centroids: greedy k-means++ and uniform random choice of points.

Both work in the engine's working units on X (n_samples, n_features) and return
float64 centroids (n_clusters, n_features). Sample weights act as point
multiplicities: a zero-weight point is never chosen while positive weight remains.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from softkm.errors import DegenerateDataWarning
from softkm.kernels import block_rows, chunk_slices, row_norms_squared


def kmeans_plusplus(
    X: np.ndarray,
    n_clusters: int,
    rng: np.random.Generator,
    sample_weight: np.ndarray | None = None,
    x_squared_norms: np.ndarray | None = None,
    n_local_trials: int | None = None,
) -> np.ndarray:
    """Choose n_clusters centroids by greedy k-means++.

    The first centroid is a point drawn with probability proportional to its weight.
    Each later step draws ``n_local_trials`` candidates (default ``2 + ln k``) with
    probability proportional to ``weight * D(x)^2``, the squared distance to the nearest
    centroid so far, and keeps the candidate that lowers the total potential most.

    When every remaining point already coincides with a centroid (the potential is 0,
    so the data has fewer distinct points than n_clusters), the remaining centroids are
    drawn by weight alone and a ``DegenerateDataWarning`` is issued.
    """
    n_samples = X.shape[0]
    weights = np.ones(n_samples) if sample_weight is None else sample_weight.astype(np.float64)
    if x_squared_norms is None:
        x_squared_norms = row_norms_squared(X)
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))

    centroids = np.empty((n_clusters, X.shape[1]))
    first = _draw_by_weight(rng, weights, 1)[0]
    centroids[0] = X[first]
    closest = _squared_distances_to(X, x_squared_norms, X[[first]])[:, 0]  # (n,)
    potential = float(weights @ closest)

    trial_buffer = np.empty((n_samples, n_local_trials))
    for index in range(1, n_clusters):
        if potential <= 0.0:
            warnings.warn(
                f"the data has fewer distinct points than n_clusters={n_clusters}; "
                "some centroids will coincide",
                DegenerateDataWarning,
                stacklevel=2,
            )
            rest = _draw_by_weight(rng, weights, n_clusters - index)
            centroids[index:] = X[rest]
            break
        cumulative = np.cumsum(weights * closest)
        # side="right" never returns a point of zero mass, even for a draw of exactly 0.
        draws = rng.uniform(size=n_local_trials) * cumulative[-1]
        candidates = np.minimum(np.searchsorted(cumulative, draws, side="right"), n_samples - 1)

        # One buffer serves every step, so two (n, t) arrays are never alive at once.
        candidate_distances = _squared_distances_to(X, x_squared_norms, X[candidates], out=trial_buffer)  # (n, t)
        np.minimum(candidate_distances, closest[:, None], out=candidate_distances)
        potentials = weights @ candidate_distances  # (t,)
        best = int(np.argmin(potentials))

        centroids[index] = X[candidates[best]]
        closest = candidate_distances[:, best].copy()
        potential = float(potentials[best])
    return centroids


def random_points(
    X: np.ndarray, n_clusters: int, rng: np.random.Generator, sample_weight: np.ndarray | None = None
) -> np.ndarray:
    """Choose n_clusters distinct rows of X at random (weighted), as float64 centroids."""
    weights = np.ones(X.shape[0]) if sample_weight is None else sample_weight.astype(np.float64)
    chosen = _draw_by_weight(rng, weights, n_clusters)
    return X[chosen].astype(np.float64)


def _draw_by_weight(rng: np.random.Generator, weights: np.ndarray, count: int) -> np.ndarray:
    """Draw ``count`` distinct row indices with probability proportional to weight.

    Rows of positive weight come first; once they are used up, zero-weight rows fill
    the rest so that the caller always gets ``count`` indices.
    """
    positive = np.flatnonzero(weights > 0)
    if len(positive) >= count:
        probabilities = weights[positive] / weights[positive].sum()
        return positive[rng.choice(len(positive), size=count, replace=False, p=probabilities)]
    zero = np.flatnonzero(weights <= 0)
    extra = zero[rng.choice(len(zero), size=count - len(positive), replace=False)]
    return np.concatenate([rng.permutation(positive), extra])


def _squared_distances_to(
    X: np.ndarray, x_squared_norms: np.ndarray, points: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Return float64 squared distances (n_samples, n_points) from every row of X to points.

    There are few points (the local trials), so the result is small; the work is chunked
    only to bound the temporary float64 copy of X. ``out``, if given, receives the result.
    """
    points = points.astype(X.dtype)
    point_norms = row_norms_squared(points).astype(np.float64)
    if out is None:
        out = np.empty((X.shape[0], points.shape[0]))
    for rows in chunk_slices(X.shape[0], block_rows(points.shape[0])):
        block = (X[rows] @ points.T).astype(np.float64)
        block *= -2.0
        block += point_norms
        block += x_squared_norms[rows, None]
        np.maximum(block, 0.0, out=block)
        out[rows] = block
    return out
