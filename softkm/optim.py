"""Gradient-based optimisers for the centroids of the relaxed modes.

Each optimiser turns a gradient (n_clusters, n_features) into a step to subtract from
the centroids. Both keep float64 state.
"""

from __future__ import annotations

import numpy as np

OPTIMIZERS = ("adam", "gd", "scaled-gd")


class Adam:
    """Adam with bias correction (Kingma & Ba, 2015).

    ``learning_rate`` is in the units of the centroids: Adam's normalised step moves
    each coordinate by at most about that much per iteration.
    """

    def __init__(
        self, shape: tuple[int, int], learning_rate: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-12
    ) -> None:
        self.learning_rate = learning_rate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.first_moment = np.zeros(shape)
        self.second_moment = np.zeros(shape)
        self.steps = 0

    def step(self, gradient: np.ndarray, mass: np.ndarray | None = None) -> np.ndarray:
        """Return the update for this gradient; the caller subtracts it."""
        self.steps += 1
        self.first_moment = self.beta1 * self.first_moment + (1 - self.beta1) * gradient
        self.second_moment = self.beta2 * self.second_moment + (1 - self.beta2) * gradient**2
        corrected_first = self.first_moment / (1 - self.beta1**self.steps)
        corrected_second = self.second_moment / (1 - self.beta2**self.steps)
        return self.learning_rate * corrected_first / (np.sqrt(corrected_second) + self.eps)

    def reset(self, rows: np.ndarray) -> None:
        """Forget the moments of some centroids, after they were relocated."""
        self.first_moment[rows] = 0.0
        self.second_moment[rows] = 0.0


class GradientDescent:
    """Plain gradient descent: the update is ``learning_rate * gradient``.

    The gradient of the relaxed objective has the units of the data, so this
    ``learning_rate`` is dimensionless. Near hard memberships the curvature of the
    objective in centroid j is twice its membership fraction, at most 2, so a rate of at
    most 0.5 does not overshoot.
    """

    def __init__(self, shape: tuple[int, int], learning_rate: float) -> None:
        self.learning_rate = learning_rate

    def step(self, gradient: np.ndarray, mass: np.ndarray | None = None) -> np.ndarray:
        return self.learning_rate * gradient

    def reset(self, rows: np.ndarray) -> None:
        """Plain gradient descent keeps no state."""


class ScaledGradientDescent:
    """Gradient descent with a step per centroid of ``learning_rate / (2 m_j)``.

    ``m_j`` is centroid j's membership fraction (its total membership over the total
    weight), so ``2 m_j`` is the curvature of the objective's direct term in that centroid.
    With rate 1 and hard memberships, the step moves each centroid exactly to the mean
    of its points: this is Lloyd's update, reached by gradient descent.
    """

    def __init__(self, shape: tuple[int, int], learning_rate: float) -> None:
        self.learning_rate = learning_rate

    def step(self, gradient: np.ndarray, mass: np.ndarray | None = None) -> np.ndarray:
        curvature = 2.0 * np.maximum(mass, np.finfo(np.float64).tiny)
        return self.learning_rate * gradient / curvature[:, None]

    def reset(self, rows: np.ndarray) -> None:
        """This optimiser keeps no state."""


def make_optimizer(name: str, shape: tuple[int, int], learning_rate: float) -> Adam | GradientDescent | ScaledGradientDescent:
    """Build the optimiser called ``name`` (one of OPTIMIZERS; validated before)."""
    if name == "adam":
        return Adam(shape, learning_rate)
    if name == "gd":
        return GradientDescent(shape, learning_rate)
    return ScaledGradientDescent(shape, learning_rate)
