"""Quality measures for clusterings: inertia, external indices, entropy and silhouette.

Every function accepts array-likes, validates shapes and values, and raises
``OptionError`` with a one-line message for invalid arguments. The computations use
NumPy only. Functions that build temporaries proportional to the data work in chunks
of rows, so that no temporary exceeds ``_CHUNK_ELEMENTS`` float64 values.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np

from softkm.errors import OptionError

__all__ = [
    "adjusted_rand_index",
    "centroid_index",
    "cluster_sizes",
    "contingency_matrix",
    "inertia",
    "mean_entropy",
    "normalized_mutual_info",
    "silhouette_score_sampled",
    "size_summary",
    "true_centroids_from_labels",
]

# Maximum number of values in one chunked temporary: 2**20 float64 values are 8 MiB.
_CHUNK_ELEMENTS = 1 << 20

# Allowed deviation of a responsibilities row sum from 1. The worst-case rounding error
# of a float32 row sum is about n_clusters * 6e-8, so 1e-4 accepts float32 rows of up
# to about 1,600 clusters even in the worst case.
_ROW_SUM_TOLERANCE = 1e-4


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------


def _row_chunks(n_rows: int, row_width: int) -> Iterator[slice]:
    """Yield row slices whose chunks contain at most ``_CHUNK_ELEMENTS`` values."""
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // max(1, row_width))
    for start in range(0, n_rows, rows_per_chunk):
        yield slice(start, min(start + rows_per_chunk, n_rows))


def _as_matrix(name: str, array, shape_text: str) -> np.ndarray:
    matrix = np.asarray(array)
    if matrix.ndim != 2:
        raise OptionError(
            f"{name} must be a 2-D array of shape {shape_text}, got shape {matrix.shape}"
        )
    if matrix.dtype.kind not in "iuf":
        raise OptionError(f"{name} must contain real numbers, got dtype {matrix.dtype}")
    return matrix


def _check_finite(name: str, array: np.ndarray) -> None:
    """Raise OptionError if ``array`` contains NaN or infinity, checking chunk by chunk."""
    if array.dtype.kind != "f":
        return
    width = array.shape[1] if array.ndim == 2 else 1
    for rows in _row_chunks(array.shape[0], width):
        if not np.isfinite(array[rows]).all():
            raise OptionError(f"{name} must contain only finite values, found NaN or infinity")


def _as_labels(name: str, labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise OptionError(
            f"{name} must be a 1-D array of shape (n_samples,), got shape {labels.shape}"
        )
    return labels


def _check_same_length(name: str, length: int, reference_name: str, reference_length: int) -> None:
    if length != reference_length:
        raise OptionError(
            f"{name} must have the same length as {reference_name}, "
            f"got {length} and {reference_length}"
        )


def _check_one_per_row(name: str, length: int, n_rows: int, row_text: str) -> None:
    """Raise OptionError unless ``length`` equals ``n_rows``, for example one label per row of X."""
    if length != n_rows:
        raise OptionError(
            f"{name} must have one entry per {row_text}, got {length} entries for {n_rows}"
        )


def _check_n_clusters(n_clusters) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise OptionError(f"n_clusters must be an integer, got {n_clusters!r}")
    if n_clusters < 1:
        raise OptionError(f"n_clusters must be at least 1, got {n_clusters}")
    return int(n_clusters)


def _check_cluster_labels(labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Raise OptionError unless ``labels`` are integers in [0, n_clusters)."""
    if labels.dtype.kind not in "iu":
        raise OptionError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size == 0:
        return labels
    lowest = labels.min()
    highest = labels.max()
    if lowest < 0 or highest >= n_clusters:
        raise OptionError(
            f"labels must be in [0, n_clusters) = [0, {n_clusters}), "
            f"got values from {lowest} to {highest}"
        )
    return labels


def _as_sample_weight(sample_weight, n_samples: int) -> np.ndarray | None:
    """Return ``sample_weight`` as float64 of shape (n_samples,), or None if not given."""
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight)
    if weights.ndim != 1:
        raise OptionError(
            f"sample_weight must be a 1-D array of shape (n_samples,), got shape {weights.shape}"
        )
    _check_one_per_row("sample_weight", weights.shape[0], n_samples, "sample")
    if weights.dtype.kind not in "iuf":
        raise OptionError(f"sample_weight must contain real numbers, got dtype {weights.dtype}")
    weights = weights.astype(np.float64)
    if not np.isfinite(weights).all():
        raise OptionError("sample_weight must contain only finite values, found NaN or infinity")
    if weights.size and weights.min() < 0:
        raise OptionError(f"sample_weight must be non-negative, got a minimum of {weights.min()}")
    return weights


def _encode_labels(name: str, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the sorted distinct labels and the index of each sample's label among them."""
    try:
        classes, inverse = np.unique(labels, return_inverse=True)
    except TypeError as error:
        raise OptionError(
            f"{name} must contain values of one sortable type, such as all integers or "
            f"all strings ({error})"
        ) from None
    return classes, inverse.reshape(-1)


# ---------------------------------------------------------------------------
# Inertia
# ---------------------------------------------------------------------------


def inertia(X, centroids, labels, sample_weight=None) -> float:
    """Compute the weighted sum of squared distances from each sample to its centroid.

    X has shape (n_samples, n_features), centroids (n_clusters, n_features), labels
    (n_samples,) with integers in [0, n_clusters), and sample_weight (n_samples,) or
    None for unit weights. Each term is sum((x - c) ** 2) evaluated in float64 on
    explicit differences, which keeps full precision for points far from the origin.
    Rows are processed in chunks, so extra memory stays bounded for any n_samples.
    """
    X = _as_matrix("X", X, "(n_samples, n_features)")
    centroids = _as_matrix("centroids", centroids, "(n_clusters, n_features)")
    labels = _as_labels("labels", labels)
    n_samples, n_features = X.shape
    _check_one_per_row("labels", labels.shape[0], n_samples, "row of X")
    if centroids.shape[1] != n_features:
        raise OptionError(
            f"centroids must have as many columns as X, got {centroids.shape[1]} and {n_features}"
        )
    labels = _check_cluster_labels(labels, centroids.shape[0])
    weights = _as_sample_weight(sample_weight, n_samples)
    _check_finite("centroids", centroids)
    centroids = centroids.astype(np.float64)

    total = 0.0
    for rows in _row_chunks(n_samples, n_features):
        chunk = X[rows].astype(np.float64)
        if not np.isfinite(chunk).all():
            raise OptionError("X must contain only finite values, found NaN or infinity")
        differences = chunk - centroids[labels[rows]]
        squared_distances = np.einsum("ij,ij->i", differences, differences)
        if weights is None:
            total += float(squared_distances.sum())
        else:
            total += float(squared_distances @ weights[rows])
    return total


# ---------------------------------------------------------------------------
# External indices: contingency table, ARI, NMI
# ---------------------------------------------------------------------------


def _encode_pair(labels_true, labels_pred):
    """Validate two labelings and return their sparse contingency table.

    Returns ``(rows, columns, counts, class_counts, cluster_counts)``: the class and
    cluster index of each non-empty cell, its count, and the two marginals, all int64.
    Only non-empty cells are built, so all-singleton labelings of many samples stay
    cheap where the dense n_classes x n_clusters table would not fit in memory.
    """
    labels_true = _as_labels("labels_true", labels_true)
    labels_pred = _as_labels("labels_pred", labels_pred)
    _check_same_length("labels_pred", labels_pred.shape[0], "labels_true", labels_true.shape[0])
    classes, class_index = _encode_labels("labels_true", labels_true)
    clusters, cluster_index = _encode_labels("labels_pred", labels_pred)

    n_clusters = clusters.shape[0]
    cell_codes = class_index.astype(np.int64) * n_clusters + cluster_index
    codes, counts = np.unique(cell_codes, return_counts=True)
    rows, columns = np.divmod(codes, n_clusters)
    class_counts = np.bincount(class_index, minlength=classes.shape[0]).astype(np.int64)
    cluster_counts = np.bincount(cluster_index, minlength=n_clusters).astype(np.int64)
    return rows, columns, counts.astype(np.int64), class_counts, cluster_counts


def contingency_matrix(labels_true, labels_pred) -> np.ndarray:
    """Count the samples of each (class, cluster) pair.

    labels_true and labels_pred have shape (n_samples,) and may contain integers or
    strings. Returns an int64 array of shape (n_classes, n_clusters) whose rows follow
    the sorted distinct values of labels_true and whose columns follow those of
    labels_pred. The table is dense, so it needs n_classes * n_clusters * 8 bytes.
    """
    rows, columns, counts, class_counts, cluster_counts = _encode_pair(labels_true, labels_pred)
    table = np.zeros((class_counts.shape[0], cluster_counts.shape[0]), dtype=np.int64)
    table[rows, columns] = counts
    return table


def _count_pairs(counts: np.ndarray) -> int:
    """Return sum(n * (n - 1) / 2) over ``counts`` as an exact Python int.

    The int64 products are exact while every count is below 3 * 10**9.
    """
    return int(np.sum(counts * (counts - 1) // 2))


def adjusted_rand_index(labels_true, labels_pred) -> float:
    """Compute the Hubert-Arabie adjusted Rand index of two labelings.

    labels_true and labels_pred have shape (n_samples,) and may contain integers or
    strings, and only the partitions they induce matter. With ``index`` the number of
    sample pairs that share a class and a cluster, ``a`` and ``b`` the pairs that share
    a class and a cluster respectively, and ``total`` = n_samples choose 2::

        ARI = (index - a * b / total) / ((a + b) / 2 - a * b / total)

    The pair counts and the products are exact Python integers, and the one division
    rounds once. Identical partitions give 1.0, which covers the cases where the formula
    is 0 / 0: both labelings a single cluster, both all singletons, or fewer than two
    samples. This matches scikit-learn's adjusted_rand_score (checked with version 1.9).
    The result is 0.0 in expectation for random labelings and can be negative.
    """
    rows, columns, counts, class_counts, cluster_counts = _encode_pair(labels_true, labels_pred)
    n_samples = int(class_counts.sum())
    index = _count_pairs(counts)
    pairs_true = _count_pairs(class_counts)
    pairs_pred = _count_pairs(cluster_counts)
    if index == pairs_true and index == pairs_pred:
        return 1.0

    # Multiplying numerator and denominator by total keeps both in integers. The
    # denominator a * (total - b) + b * (total - a) is positive unless the partitions
    # are identical, which returned above.
    total = n_samples * (n_samples - 1) // 2
    numerator = 2 * (index * total - pairs_true * pairs_pred)
    denominator = (pairs_true + pairs_pred) * total - 2 * pairs_true * pairs_pred
    return numerator / denominator


def _entropy_from_counts(counts: np.ndarray, n_samples: int) -> float:
    """Return the entropy in nats of the label distribution given by positive ``counts``."""
    probabilities = counts / n_samples
    return float(np.sum(probabilities * np.log(n_samples / counts)))


def normalized_mutual_info(labels_true, labels_pred) -> float:
    """Compute the normalized mutual information of two labelings.

    labels_true and labels_pred have shape (n_samples,) and may contain integers or
    strings. The mutual information I and the entropies H use natural logarithms, and
    NMI = I / ((H_true + H_pred) / 2), the arithmetic-mean normalization.
    Degenerate cases follow scikit-learn's normalized_mutual_info_score with
    average_method="arithmetic" (checked with version 1.9). Empty labelings and two
    single-cluster labelings give 1.0. A mutual information of 0 gives 0.0, which
    includes the case where exactly one of the labelings is a single cluster.
    """
    rows, columns, counts, class_counts, cluster_counts = _encode_pair(labels_true, labels_pred)
    n_samples = int(class_counts.sum())
    n_classes = class_counts.shape[0]
    n_clusters = cluster_counts.shape[0]
    if n_classes == n_clusters and n_classes <= 1:
        return 1.0
    if n_classes == 1 or n_clusters == 1:
        return 0.0

    # Each term is p_ij * log(n * n_ij / (n_i * n_j)). The ratio of integer products is
    # exactly 1.0 for an independent cell, so exactly independent labelings give 0.0
    # instead of a rounding residue. The int64 products are exact below 3 * 10**9 samples.
    expected_counts = class_counts[rows] * cluster_counts[columns]
    ratios = (n_samples * counts) / expected_counts
    mutual_info = float(np.sum((counts / n_samples) * np.log(ratios)))
    mutual_info = max(mutual_info, 0.0)
    if mutual_info == 0.0:
        return 0.0

    entropy_true = _entropy_from_counts(class_counts, n_samples)
    entropy_pred = _entropy_from_counts(cluster_counts, n_samples)
    # I <= min(H_true, H_pred), so a larger value is rounding error.
    return min(mutual_info / ((entropy_true + entropy_pred) / 2.0), 1.0)


# ---------------------------------------------------------------------------
# Centroid index
# ---------------------------------------------------------------------------


def true_centroids_from_labels(X, labels_true, sample_weight=None) -> tuple[np.ndarray, np.ndarray]:
    """Compute the (weighted) mean of each true class.

    X has shape (n_samples, n_features), labels_true (n_samples,) with integers or
    strings, and sample_weight (n_samples,) or None for unit weights. Returns
    ``(classes, centroids)``: the sorted distinct labels, shape (n_classes,), and the
    float64 class means, shape (n_classes, n_features), in the same order. Raises
    OptionError for a class whose sample_weight sums to 0, because its mean is undefined.
    """
    X = _as_matrix("X", X, "(n_samples, n_features)")
    labels_true = _as_labels("labels_true", labels_true)
    n_samples, n_features = X.shape
    _check_one_per_row("labels_true", labels_true.shape[0], n_samples, "row of X")
    weights = _as_sample_weight(sample_weight, n_samples)
    if n_samples == 0:
        raise OptionError("X must contain at least one sample to compute class means, got 0")
    _check_finite("X", X)
    classes, class_index = _encode_labels("labels_true", labels_true)
    n_classes = classes.shape[0]

    if weights is None:
        class_weights = np.bincount(class_index, minlength=n_classes).astype(np.float64)
    else:
        class_weights = np.bincount(class_index, weights=weights, minlength=n_classes)
    zero_weight = np.flatnonzero(class_weights == 0)
    if zero_weight.size:
        raise OptionError(
            f"class {classes[zero_weight[0]].item()!r} of labels_true has a total sample_weight of 0, "
            "so its mean is undefined. Give it a positive weight or drop its samples."
        )

    # One bincount per feature keeps extra memory at O(n_samples) for any n_features.
    sums = np.empty((n_classes, n_features), dtype=np.float64)
    for feature in range(n_features):
        column = X[:, feature].astype(np.float64)
        if weights is not None:
            column = column * weights
        sums[:, feature] = np.bincount(class_index, weights=column, minlength=n_classes)
    return classes, sums / class_weights[:, np.newaxis]


def centroid_index(true_centroids, centroids) -> int:
    """Count the true clusters that no fitted centroid maps to.

    true_centroids has shape (n_true_clusters, n_features) and centroids (n_clusters,
    n_features). Each fitted centroid maps to its nearest true centroid by squared
    Euclidean distance, with ties going to the lowest index. The result is the number
    of true centroids that receive no fitted centroid, so 0 means every true cluster
    was found.
    """
    true_centroids = _as_matrix("true_centroids", true_centroids, "(n_true_clusters, n_features)")
    centroids = _as_matrix("centroids", centroids, "(n_clusters, n_features)")
    n_true, n_features = true_centroids.shape
    if centroids.shape[1] != n_features:
        raise OptionError(
            f"centroids must have as many columns as true_centroids, "
            f"got {centroids.shape[1]} and {n_features}"
        )
    if n_true == 0:
        raise OptionError("true_centroids must contain at least one centroid, got 0")
    if centroids.shape[0] == 0:
        raise OptionError("centroids must contain at least one centroid, got 0")
    _check_finite("true_centroids", true_centroids)
    _check_finite("centroids", centroids)
    true_centroids = true_centroids.astype(np.float64)

    # Explicit differences, not the |x|^2 - 2 x.y + |y|^2 expansion, so that equal
    # distances compare equal and ties resolve to the lowest index as documented.
    nearest = np.empty(centroids.shape[0], dtype=np.intp)
    for rows in _row_chunks(centroids.shape[0], n_true * max(1, n_features)):
        chunk = centroids[rows].astype(np.float64)
        differences = chunk[:, np.newaxis, :] - true_centroids[np.newaxis, :, :]
        squared_distances = np.einsum("ijk,ijk->ij", differences, differences)
        nearest[rows] = np.argmin(squared_distances, axis=1)
    hits = np.bincount(nearest, minlength=n_true)
    return int(np.count_nonzero(hits == 0))


# ---------------------------------------------------------------------------
# Soft assignments and cluster sizes
# ---------------------------------------------------------------------------


def mean_entropy(responsibilities, sample_weight=None) -> float:
    """Compute the (weighted) mean over samples of the assignment entropy in nats.

    responsibilities has shape (n_samples, n_clusters) with non-negative rows that sum
    to 1 within 1e-4. Each row contributes -sum_c p_c * log(p_c), where exact zeros
    contribute 0. sample_weight has shape (n_samples,), or None for the plain mean.
    One-hot rows give 0 and uniform rows give log(n_clusters).
    """
    responsibilities = _as_matrix("responsibilities", responsibilities, "(n_samples, n_clusters)")
    n_samples, n_clusters = responsibilities.shape
    weights = _as_sample_weight(sample_weight, n_samples)
    if n_samples == 0:
        raise OptionError("responsibilities must contain at least one row, got 0")
    if n_clusters == 0:
        raise OptionError("responsibilities must contain at least one column, got 0")
    if weights is not None and weights.sum() == 0:
        raise OptionError("sample_weight must have a positive sum, got 0")

    total = 0.0
    for rows in _row_chunks(n_samples, n_clusters):
        probabilities = responsibilities[rows].astype(np.float64)
        if not np.isfinite(probabilities).all():
            raise OptionError("responsibilities must contain only finite values, found NaN or infinity")
        if probabilities.min() < 0:
            raise OptionError(
                f"responsibilities must be non-negative, got a minimum of {probabilities.min()}"
            )
        row_sums = probabilities.sum(axis=1)
        worst = int(np.argmax(np.abs(row_sums - 1.0)))
        if abs(row_sums[worst] - 1.0) > _ROW_SUM_TOLERANCE:
            raise OptionError(
                f"responsibilities rows must sum to 1, but row {rows.start + worst} "
                f"sums to {row_sums[worst]:.6g}"
            )
        logs = np.zeros_like(probabilities)
        np.log(probabilities, out=logs, where=probabilities > 0)
        row_entropies = -np.einsum("ij,ij->i", probabilities, logs)
        if weights is None:
            total += float(row_entropies.sum())
        else:
            total += float(row_entropies @ weights[rows])

    if weights is None:
        return total / n_samples
    return total / float(weights.sum())


def cluster_sizes(labels, n_clusters, sample_weight=None) -> np.ndarray:
    """Count the samples (or sum their weights) in each cluster, including empty ones.

    labels has shape (n_samples,) with integers in [0, n_clusters). Returns an array of
    shape (n_clusters,): int64 counts without sample_weight, or float64 weight sums with
    sample_weight of shape (n_samples,).
    """
    n_clusters = _check_n_clusters(n_clusters)
    labels = _check_cluster_labels(_as_labels("labels", labels), n_clusters)
    weights = _as_sample_weight(sample_weight, labels.shape[0])
    if weights is None:
        return np.bincount(labels, minlength=n_clusters).astype(np.int64)
    return np.bincount(labels, weights=weights, minlength=n_clusters)


def size_summary(labels, n_clusters) -> dict[str, int]:
    """Summarize cluster sizes as ``{"smallest", "largest", "empty"}``.

    labels has shape (n_samples,) with integers in [0, n_clusters). ``smallest`` and
    ``largest`` are the minimum and maximum sample counts over all n_clusters clusters,
    so ``smallest`` is 0 whenever a cluster is empty. ``empty`` is the number of
    clusters without samples.
    """
    sizes = cluster_sizes(labels, n_clusters)
    return {
        "smallest": int(sizes.min()),
        "largest": int(sizes.max()),
        "empty": int(np.count_nonzero(sizes == 0)),
    }


# ---------------------------------------------------------------------------
# Silhouette
# ---------------------------------------------------------------------------


def _check_int_at_least(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptionError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise OptionError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _silhouette_values(points: np.ndarray, cluster_index: np.ndarray, n_clusters: int) -> np.ndarray:
    """Return the silhouette of each point, given cluster indices in [0, n_clusters).

    ``points`` is float64 of shape (m, n_features) and ``cluster_index`` is sorted, so
    each cluster occupies one contiguous run of columns in a distance row.
    """
    n_points = points.shape[0]
    sizes = np.bincount(cluster_index, minlength=n_clusters)
    run_starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))

    # Centering reduces the cancellation in |x|^2 + |y|^2 - 2 x.y, which loses relative
    # precision for distances much smaller than the norms of the points.
    centered = points - points.mean(axis=0)
    squared_norms = np.einsum("ij,ij->i", centered, centered)
    intra = np.empty(n_points)
    nearest_other = np.empty(n_points)
    for rows in _row_chunks(n_points, n_points):
        chunk_rows = np.arange(rows.stop - rows.start)
        squared = squared_norms[rows, np.newaxis] + squared_norms[np.newaxis, :]
        squared -= 2.0 * (centered[rows] @ centered.T)
        np.maximum(squared, 0.0, out=squared)
        squared[chunk_rows, chunk_rows + rows.start] = 0.0
        distances = np.sqrt(squared, out=squared)

        cluster_sums = np.add.reduceat(distances, run_starts, axis=1)
        own = cluster_index[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            intra[rows] = cluster_sums[chunk_rows, own] / (sizes[own] - 1)
        mean_distances = cluster_sums / sizes
        mean_distances[chunk_rows, own] = np.inf
        nearest_other[rows] = mean_distances.min(axis=1)

    scale = np.maximum(intra, nearest_other)
    # A singleton has no intra-cluster distance and gets 0, as in scikit-learn. So does
    # a point whose intra and nearest-cluster mean distances are both 0.
    defined = (sizes[cluster_index] > 1) & (scale > 0)
    values = np.zeros(n_points)
    values[defined] = (nearest_other[defined] - intra[defined]) / scale[defined]
    return values


def silhouette_score_sampled(X, labels, *, sample_size=2000, seed=0) -> float:
    """Compute the mean silhouette coefficient on a seeded random subsample.

    X has shape (n_samples, n_features) and labels (n_samples,) with integers or
    strings. When n_samples > sample_size, the sample is the rows
    ``np.random.default_rng(seed).choice(n_samples, sample_size, replace=False)``,
    otherwise all rows. Silhouettes use Euclidean distances within the sample only,
    computed in chunks of rows. As in scikit-learn, the distances come from the
    expansion |x|^2 + |y|^2 - 2 x.y (here after centering the sample), so they lose
    relative precision for points much closer together than the spread of the sample.
    A sample point alone in its cluster scores 0, as in scikit-learn's silhouette_score.
    Raises OptionError if the sampled rows contain NaN or infinity, or unless the
    sample contains between 2 and m - 1 distinct labels, where m is its size.
    """
    X = _as_matrix("X", X, "(n_samples, n_features)")
    labels = _as_labels("labels", labels)
    n_samples = X.shape[0]
    _check_one_per_row("labels", labels.shape[0], n_samples, "row of X")
    sample_size = _check_int_at_least("sample_size", sample_size, 2)
    seed = _check_int_at_least("seed", seed, 0)

    if n_samples > sample_size:
        sample = np.random.default_rng(seed).choice(n_samples, sample_size, replace=False)
        sample.sort()
        points = X[sample]
        labels = labels[sample]
    else:
        points = X
    _check_finite("X", points)
    classes, cluster_index = _encode_labels("labels", labels)
    n_points = points.shape[0]
    n_clusters = classes.shape[0]
    if not 2 <= n_clusters <= n_points - 1:
        raise OptionError(
            f"silhouette needs 2 to m - 1 distinct labels among the m = {n_points} sampled "
            f"points, got {n_clusters}"
        )

    order = np.argsort(cluster_index, kind="stable")
    values = _silhouette_values(points[order].astype(np.float64), cluster_index[order], n_clusters)
    return float(values.mean())
