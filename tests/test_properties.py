"""Property-based tests of fit and assign on random small data sets (hypothesis).

The data sets include duplicate rows, constant columns and values far from 1 in both
directions. For every mode the outputs must be finite and consistent with each other.
Each test runs a fixed set of examples (derandomized), so the file takes well under a minute.
"""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from softkm import engine
from softkm.cli import app
from softkm.errors import SoftkmWarning
from softkm.metrics import inertia as inertia_of

MODES = ["hard", "soft", "gumbel"]

runner = CliRunner(env={"SOFTKM_DEBUG": None})

PROPERTY_SETTINGS = settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@st.composite
def data_sets(draw):
    """Draw (X, n_clusters): 2 to 40 rows, 1 to 4 columns, with repeats, constants and extreme scales."""
    n_distinct = draw(st.integers(1, 20))
    n_features = draw(st.integers(1, 4))
    # Values on a grid of 1e-3 up to 1e3 keep the spread within 1e-6 of the magnitude
    # chosen below. Data spread below about 1e-154 or above 1e154 is rejected by design.
    values = st.integers(-10**6, 10**6).map(lambda value: value / 1000)
    distinct = np.array(draw(st.lists(st.lists(values, min_size=n_features, max_size=n_features),
                                      min_size=n_distinct, max_size=n_distinct)))
    repeats = draw(st.lists(st.integers(0, n_distinct - 1), min_size=1, max_size=20))
    X = np.concatenate([distinct, distinct[repeats]])
    for column in draw(st.sets(st.integers(0, n_features - 1), max_size=n_features)):
        X[:, column] = X[0, column]
    X *= 10.0 ** draw(st.sampled_from([-150, -20, 0, 20, 150]))
    X += draw(st.sampled_from([0.0, 1e6]))
    n_clusters = draw(st.integers(1, min(5, X.shape[0])))
    return np.ascontiguousarray(X), n_clusters


def rounding_tolerance(X: np.ndarray) -> float:
    """Return an absolute inertia tolerance: rounding of the data's squared spread, n * max|x - mean|^2.

    Centroids pass through working units and back, so a centroid that equals a data point
    can differ from it in the last bit, which adds that point's rounding to the inertia.
    """
    deviation = float(np.max(np.abs(X - X.mean(axis=0))))
    return 1e-9 * X.shape[0] * deviation**2 + 1e-300


def fit_quietly(X, n_clusters, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SoftkmWarning)
        return engine.fit(X, n_clusters, max_iter=50, seed=0, **options)


@pytest.mark.parametrize("mode", MODES)
@PROPERTY_SETTINGS
@given(case=data_sets(), standardize=st.booleans())
def test_fit_outputs_finite_and_consistent(mode, case, standardize):
    X, n_clusters = case
    result = fit_quietly(X, n_clusters, mode=mode, standardize=standardize)

    assert np.isfinite(result.centroids).all()
    assert result.centroids.shape == (n_clusters, X.shape[1])
    assert result.labels.shape == (X.shape[0],)
    assert result.labels.min() >= 0
    assert result.labels.max() < n_clusters
    assert np.isfinite(result.inertia)
    assert result.inertia >= 0

    # assign on the training data reproduces the labels of fit.
    labels, inertia = engine.predict(X, result.centroids, result.preprocessing, "float64")
    assert np.array_equal(labels, result.labels)
    assert inertia == pytest.approx(result.inertia, rel=1e-9, abs=rounding_tolerance(X))

    # The reported inertia equals the one recomputed from the written centroids and labels,
    # in z-scored units with standardize.
    if not standardize:
        recomputed = inertia_of(X, result.centroids, result.labels)
        assert result.inertia == pytest.approx(recomputed, rel=1e-6, abs=rounding_tolerance(X))


@pytest.mark.parametrize("mode", ["soft", "gumbel"])
@PROPERTY_SETTINGS
@given(case=data_sets(), tau=st.sampled_from([1e-3, 0.5, 10.0]))
def test_probabilities_are_distributions(mode, case, tau):
    X, n_clusters = case
    result = fit_quietly(X, n_clusters, mode=mode, tau=tau)
    probabilities = engine.predict_proba(X, result.centroids, result.preprocessing, "float64", result.temperature)

    assert probabilities.shape == (X.shape[0], n_clusters)
    assert np.isfinite(probabilities).all()
    assert (probabilities >= 0).all()
    assert np.allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-9)


@PROPERTY_SETTINGS
@given(case=data_sets())
def test_hard_inertia_never_increases(case):
    X, n_clusters = case
    result = fit_quietly(X, n_clusters, mode="hard")
    inertias = [record.objective for record in result.history]
    for before, after in zip(inertias, inertias[1:]):
        assert after <= before * (1 + 1e-12) + 1e-300


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(case=data_sets())
def test_written_outputs_consistent(tmp_path, mode, case):
    """Check through the files: written inertia, centroids and labels agree, and assign repeats fit."""
    X, n_clusters = case
    data = tmp_path / "data.csv"
    pd.DataFrame(X, columns=[f"f{index}" for index in range(X.shape[1])]).to_csv(data, index=False)
    labels_path, centroids_path, model_path = tmp_path / "labels.csv", tmp_path / "centroids.csv", tmp_path / "model.json"
    result = runner.invoke(app, ["fit", str(data), "-k", str(n_clusters), "--mode", mode, "-q", "--force",
                                 "--max-iter", "50", "-o", str(labels_path), "--centroids", str(centroids_path),
                                 "--model", str(model_path)])
    assert result.exit_code == 0, result.output

    labels = pd.read_csv(labels_path)["cluster"].to_numpy()
    centroids = pd.read_csv(centroids_path).drop(columns="cluster").to_numpy()
    written_inertia = json.loads(model_path.read_text())["fit"]["inertia"]
    assert np.isfinite(centroids).all()
    assert labels.min() >= 0
    assert labels.max() < n_clusters
    assert written_inertia == pytest.approx(inertia_of(X, centroids, labels), rel=1e-6, abs=rounding_tolerance(X))

    assigned = runner.invoke(app, ["assign", str(model_path), str(data), "-q"])
    assert assigned.exit_code == 0, assigned.output
    assert pd.read_csv(io.StringIO(assigned.stdout))["cluster"].tolist() == labels.tolist()
