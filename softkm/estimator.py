"""``SoftKMeans``: the engine behind scikit-learn's estimator interface.

The class follows scikit-learn's conventions without depending on it. ``__init__`` only
stores its parameters, and ``get_params`` and ``set_params`` expose them, so
``sklearn.base.clone``, pipelines and grid searches work. ``fit`` returns the estimator,
and the fitted state is in attributes whose names end with an underscore.
"""

from __future__ import annotations

import inspect

import numpy as np

from softkm import engine
from softkm.errors import NotFittedError, OptionError
from softkm.kernels import chunk_slices

try:
    # With scikit-learn installed, its mixins give the estimator type, the tags that
    # GridSearchCV and cross_val_score read, and the default scorer.
    from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin

    _BASES: tuple[type, ...] = (ClusterMixin, TransformerMixin, BaseEstimator)
except ImportError:
    _BASES = ()


class SoftKMeans(*_BASES):
    """k-means clustering with hard, soft or Gumbel-softmax assignment.

    The parameters are those of ``softkm.engine.fit``. ``seed`` plays the part of
    scikit-learn's ``random_state`` and must be an integer.

    Fitted attributes:

    - ``cluster_centers_`` (n_clusters, n_features) and ``labels_`` (n_samples,);
    - ``inertia_``, the weighted sum of squared distances to the nearest centroid, and
      ``objective_``, the mode's objective per unit weight;
    - ``n_iter_``, ``converged_`` and ``temperature_`` (``tau * s``, None in hard mode);
    - ``n_features_in_``, and ``feature_names_in_`` when X has string column names;
    - ``result_``, the whole ``engine.FitResult``.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        mode: str = "hard",
        init: str | np.ndarray = "k-means++",
        n_init: int = 1,
        max_iter: int = 300,
        tol: float = 1e-4,
        seed: int = 0,
        tau: float = engine.DEFAULT_TAU,
        tau_start: float | None = None,
        anneal_rate: float = engine.DEFAULT_ANNEAL_RATE,
        optimizer: str = "adam",
        learning_rate: float | None = None,
        straight_through: bool = False,
        batch_size: int | None = None,
        standardize: bool = False,
        dtype: str = "float64",
        algorithm: str = "hamerly",
    ) -> None:
        self.n_clusters = n_clusters
        self.mode = mode
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.tau = tau
        self.tau_start = tau_start
        self.anneal_rate = anneal_rate
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.straight_through = straight_through
        self.batch_size = batch_size
        self.standardize = standardize
        self.dtype = dtype
        self.algorithm = algorithm

    @classmethod
    def _parameter_names(cls) -> list[str]:
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """Return the parameters by name, as ``__init__`` takes them."""
        return {name: getattr(self, name) for name in self._parameter_names()}

    def set_params(self, **params) -> SoftKMeans:
        """Set parameters by name and return the estimator."""
        valid = self._parameter_names()
        for name, value in params.items():
            if name not in valid:
                raise OptionError(f"invalid parameter {name!r} for SoftKMeans; valid parameters are {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {name: parameter.default for name, parameter in inspect.signature(type(self).__init__).parameters.items()}
        arguments = []
        for name, value in self.get_params().items():
            if isinstance(value, (str, int, float, bool, type(None))):
                if value != defaults[name] or type(value) is not type(defaults[name]):
                    arguments.append(f"{name}={value!r}")
            else:
                arguments.append(f"{name}=<{type(value).__name__} of shape {np.shape(value)}>")
        return f"SoftKMeans({', '.join(arguments)})"

    def fit(self, X, y=None, sample_weight=None) -> SoftKMeans:
        """Fit the centroids to X (n_samples, n_features); ``y`` is ignored."""
        names = _feature_names(X)
        result = engine.fit(np.asarray(X, dtype=np.float64), self.n_clusters, sample_weight=sample_weight,
                            **{name: value for name, value in self.get_params().items() if name != "n_clusters"})
        self.result_ = result
        self.cluster_centers_ = result.centroids
        self.labels_ = result.labels
        self.inertia_ = result.inertia
        self.objective_ = result.objective
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.temperature_ = result.temperature
        self.n_features_in_ = result.n_features
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit to X and return its labels (n_samples,)."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def predict(self, X) -> np.ndarray:
        """Return the index of the nearest centroid of each row of X, (n_samples,) int64."""
        labels, _ = engine.predict(self._checked(X), self.cluster_centers_, self.result_.preprocessing, self.dtype)
        return labels

    def transform(self, X) -> np.ndarray:
        """Return the Euclidean distance of each row of X to each centroid, (n_samples, n_clusters).

        The distances are in the units of the fit, as the inertia is: the user's units, or
        z-scores with ``standardize``. They are computed as ``|x - c|`` in float64, rows at
        a time, so they keep full precision for data far from the origin.
        """
        X = self._checked(X)
        preprocessing = self.result_.preprocessing
        working = preprocessing.transform(X, np.dtype(np.float64))
        centroids = preprocessing.transform_centroids(self.cluster_centers_)
        distances = np.empty((X.shape[0], centroids.shape[0]))
        rows_per_block = max(1, _TRANSFORM_BLOCK_ENTRIES // max(1, centroids.size))
        for rows in chunk_slices(X.shape[0], rows_per_block):
            differences = working[rows, None, :] - centroids[None, :, :]  # (m, k, d), block-sized
            np.sqrt(np.einsum("mkd,mkd->mk", differences, differences), out=distances[rows])
        distances *= np.sqrt(preprocessing.squared_unit)
        return distances

    def fit_transform(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit to X and return its distances to the centroids, (n_samples, n_clusters)."""
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def predict_proba(self, X) -> np.ndarray:
        """Return the soft memberships ``softmax(-d / (tau * s))`` of X, (n_samples, n_clusters).

        Soft and gumbel fits use their own temperature. A hard fit uses ``tau`` times
        its within-cluster scale s.
        """
        X = self._checked(X)
        temperature = self.temperature_ if self.temperature_ is not None else self.tau * self.result_.scale
        return engine.predict_proba(X, self.cluster_centers_, self.result_.preprocessing, self.dtype, temperature)

    def score(self, X, y=None, sample_weight=None) -> float:
        """Return minus the (weighted) inertia of X against the centroids: higher is better."""
        if sample_weight is None:
            _, inertia = engine.predict(self._checked(X), self.cluster_centers_, self.result_.preprocessing, self.dtype)
            return -inertia
        nearest = self.transform(X).min(axis=1)
        weights = engine._check_sample_weight(sample_weight, len(nearest))
        return -float(np.dot(weights, nearest * nearest))

    def _checked(self, X) -> np.ndarray:
        """Return X as a float64 array after checking that the estimator is fitted and X fits it."""
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("this SoftKMeans instance is not fitted yet; call fit first")
        names = _feature_names(X)
        fitted_names = getattr(self, "feature_names_in_", None)
        if names is not None and fitted_names is not None and list(names) != list(fitted_names):
            raise OptionError(
                f"X has the columns {', '.join(names)}, but the estimator was fitted on "
                f"{', '.join(fitted_names)}; pass the same columns in the same order"
            )
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise OptionError(
                f"X has shape {X.shape}, but the estimator was fitted on {self.n_features_in_} features; "
                f"pass an array of shape (n_samples, {self.n_features_in_})"
            )
        if not np.isfinite(X).all():
            raise OptionError("X contains NaN or infinite values; drop or fill those rows first")
        return X


# ``transform`` keeps at most this many float64 differences at a time (32 MiB).
_TRANSFORM_BLOCK_ENTRIES = 1 << 22


def _feature_names(X) -> np.ndarray | None:
    """Return the column names of a table-like X when they are all strings, else None."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = [str(name) for name in columns] if all(isinstance(name, str) for name in columns) else None
    return None if names is None else np.asarray(names, dtype=object)
