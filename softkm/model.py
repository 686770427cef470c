"""The JSON model file: what ``fit`` writes and ``assign`` reads.

A model is plain JSON, never a pickle: it is parsed with ``json`` and every field is
checked (format name and version, shapes, finiteness) before use, so a damaged or
hostile file can only produce a ``ModelError``. Floats are written with Python's
shortest round-trip representation, so the centroids read back bit for bit.

Every field is deterministic for the same input and seed except
``fit.runtime_seconds``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from softkm import __version__
from softkm.errors import ModelError
from softkm.preprocessing import Preprocessing

FORMAT_NAME = "softkm-model"
FORMAT_VERSION = 1


@dataclass
class Model:
    """A fitted model: centroids (n_clusters, n_features) in user units and how to use them.

    ``scale`` is the within-cluster scale s and ``temperature`` the absolute temperature
    ``tau * s`` (both in squared user units, None where they do not apply).
    """

    mode: str
    centroids: np.ndarray
    feature_names: list[str]
    preprocessing: Preprocessing
    dtype: str
    parameters: dict = field(default_factory=dict)
    scale: float | None = None
    temperature: float | None = None
    statistics: dict = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return self.centroids.shape[0]

    @classmethod
    def from_result(cls, result, feature_names: list[str], statistics: dict) -> "Model":
        """Build a model from an ``engine.FitResult`` and the run's fit statistics."""
        return cls(
            mode=result.mode,
            centroids=result.centroids,
            feature_names=list(feature_names),
            preprocessing=result.preprocessing,
            dtype=result.dtype,
            parameters=dict(result.parameters),
            scale=result.scale,
            temperature=result.temperature,
            statistics=statistics,
        )

    def to_dict(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "softkm_version": __version__,
            "mode": self.mode,
            "n_clusters": self.n_clusters,
            "feature_names": self.feature_names,
            "dtype": self.dtype,
            "preprocessing": self.preprocessing.to_dict(),
            "parameters": self.parameters,
            "scale": self.scale,
            "temperature": self.temperature,
            "centroids": [[float(v) for v in row] for row in self.centroids],
            "fit": self.statistics,
        }

    def to_json(self) -> str:
        """Serialise to JSON text; raises ``ModelError`` if a value is not finite."""
        try:
            return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        except ValueError as error:
            raise ModelError(f"model contains a non-finite value ({error}); it was not written") from None

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "Model":
        """Parse and validate model JSON text; raises ``ModelError`` naming ``source``."""
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as error:
            raise ModelError(
                f"{source} is not valid JSON ({error.msg} at line {error.lineno}); "
                "the file may be truncated, refit the model"
            ) from None
        except ValueError as error:
            raise ModelError(f"{source} contains {error}; refit the model") from None
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: object, source: str = "model") -> "Model":
        """Validate a parsed model document and build the model."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ModelError(f"{source} is not a softkm model file (no \"format\": \"{FORMAT_NAME}\")")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelError(
                f"{source} has format version {version!r}, but softkm {__version__} reads version "
                f"{FORMAT_VERSION}; refit the model with this softkm"
            )
        mode = data.get("mode")
        if mode not in ("hard", "soft", "gumbel"):
            raise ModelError(f"{source} has an unknown mode {mode!r}; expected hard, soft or gumbel, so refit the model")
        names = data.get("feature_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ModelError(f"{source} has no valid feature_names list")
        centroids = _read_matrix(data.get("centroids"), source)
        if centroids.shape[1] != len(names):
            raise ModelError(
                f"{source} has centroids with {centroids.shape[1]} columns for {len(names)} feature names; "
                "refit the model"
            )
        n_clusters = data.get("n_clusters")
        if n_clusters != centroids.shape[0] or isinstance(n_clusters, bool):
            raise ModelError(
                f"{source} has n_clusters {n_clusters!r} but {centroids.shape[0]} centroid rows; "
                "the file was edited or damaged, so refit the model"
            )
        if len(set(names)) != len(names):
            duplicated = sorted({name for name in names if names.count(name) > 1})
            raise ModelError(
                f"{source} lists feature name(s) {', '.join(duplicated)} more than once; refit the model"
            )
        dtype = data.get("dtype")
        if dtype not in ("float32", "float64"):
            raise ModelError(f"{source} has an unsupported dtype {dtype!r}; expected float32 or float64, so refit the model")
        preprocessing = Preprocessing.from_dict(data.get("preprocessing") or {}, len(names))
        scale = _optional_positive(data.get("scale"), "scale", source)
        temperature = _optional_positive(data.get("temperature"), "temperature", source)
        if mode != "hard" and temperature is None:
            raise ModelError(f"{source} is a {mode} model without a temperature; refit the model")
        return cls(
            mode=mode,
            centroids=centroids,
            feature_names=names,
            preprocessing=preprocessing,
            dtype=dtype,
            parameters=data.get("parameters") or {},
            scale=scale,
            temperature=temperature,
            statistics=data.get("fit") or {},
        )

    @classmethod
    def load(cls, path: str) -> "Model":
        """Read a model file; raises ``ModelError`` if it is missing or invalid."""
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise ModelError(f"model file '{path}' not found; check the path or run 'softkm fit --model'") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ModelError(f"model file '{path}' cannot be read ({error})") from None
        return cls.from_json(text, f"model file '{path}'")


def _reject_constant(name: str) -> None:
    raise ValueError(f"the non-finite value {name}")


def _read_matrix(value: object, source: str) -> np.ndarray:
    """Return the centroid matrix (n_clusters, n_features) float64, or raise ModelError."""
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelError(f"{source} has centroids that are not a matrix of numbers") from None
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise ModelError(f"{source} has centroids of shape {matrix.shape}, expected (n_clusters, n_features)")
    if not np.all(np.isfinite(matrix)):
        raise ModelError(f"{source} has non-finite centroid values; refit the model")
    return matrix


def _optional_positive(value: object, name: str, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ModelError(f"{source} has an invalid {name} {value!r}; expected a positive number")
    return float(value)
