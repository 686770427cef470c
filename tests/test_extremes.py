"""Values near the float64 limit: in the data, in starting centroids and in a model.

Each case must end in a result or in a one-line error from the SoftkmError family,
never in an overflow that turns scores into NaN and labels into garbage indices.
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from softkm import engine
from softkm.cli import app
from softkm.errors import ModelError, OptionError
from softkm.preprocessing import weighted_moments


def test_moments_near_float64_limit():
    X = np.array([[1.7e308, 1.0], [-1.7e308, 2.0], [1.6e308, 3.0], [-1.6e308, 4.0]])

    mean, std = weighted_moments(X, None)

    assert np.all(np.isfinite(mean))
    assert np.all(np.isfinite(std))
    assert mean[0] == pytest.approx(0.0, abs=1e293)
    assert std[0] == pytest.approx(1.65e308, rel=1e-3)
    assert mean[1] == pytest.approx(2.5)


def test_fit_standardized_near_float64_limit():
    X = np.array([[1.7e308, 1.0], [-1.7e308, 2.0], [1.6e308, 3.0], [-1.6e308, 4.0]])

    result = engine.fit(X, 2, standardize=True)

    assert np.all(np.isfinite(result.centroids))
    assert np.isfinite(result.inertia)
    assert sorted(np.bincount(result.labels)) == [2, 2]


def test_fit_constant_near_float64_limit():
    X = np.full((4, 1), 1.7e308)

    with pytest.warns(Warning):
        result = engine.fit(X, 2)

    assert np.all(result.labels == 0)
    assert result.inertia == 0.0


def test_fit_rejects_far_initial_centroids():
    X = np.random.default_rng(0).normal(size=(50, 2))
    start = np.array([[1e308, 0.0], [0.0, 0.0]])

    with pytest.raises(OptionError, match="initial centroids lie so far from the data"):
        engine.fit(X, 2, init=start)


def test_predict_rejects_far_model_centroids():
    X = np.random.default_rng(1).normal(size=(50, 2))
    result = engine.fit(X, 2)
    centroids = result.centroids.copy()
    centroids[0, 0] = 1e308

    with pytest.raises(ModelError, match="the model's centroids lie so far from the data"):
        engine.predict(X, centroids, result.preprocessing, "float64")


def test_assign_far_model_one_line_error(tmp_path):
    source = tmp_path / "data.csv"
    source.write_text("a,b\n" + "\n".join(f"{i % 7},{i % 5}" for i in range(40)) + "\n")
    model = tmp_path / "model.json"
    runner = CliRunner()
    fitted = runner.invoke(app, ["fit", str(source), "-k", "2", "--model", str(model), "-o", str(tmp_path / "l.csv")])
    assert fitted.exit_code == 0, fitted.output
    content = json.loads(model.read_text())
    content["centroids"][0][0] = 1e308
    model.write_text(json.dumps(content))

    result = runner.invoke(app, ["assign", str(model), str(source), "-o", str(tmp_path / "a.csv")])

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "the model's centroids lie so far from the data" in result.output
    assert not (tmp_path / "a.csv").exists()
