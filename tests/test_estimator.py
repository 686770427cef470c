"""The scikit-learn style estimator ``softkm.SoftKMeans``."""

import numpy as np
import pandas as pd
import pytest

from softkm import SoftKMeans, engine
from softkm.errors import NotFittedError, OptionError


def blobs(n_per_blob=100, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    return np.concatenate([centre + rng.normal(size=(n_per_blob, 2)) for centre in centres])


@pytest.mark.parametrize("mode", ["hard", "soft", "gumbel"])
def test_fit_matches_engine(mode):
    X = blobs()
    model = SoftKMeans(3, mode=mode, seed=2).fit(X)
    result = engine.fit(X, 3, mode=mode, seed=2)

    np.testing.assert_array_equal(model.cluster_centers_, result.centroids)
    np.testing.assert_array_equal(model.labels_, result.labels)
    assert model.inertia_ == result.inertia
    assert model.n_iter_ == result.n_iter
    assert model.n_features_in_ == 2


def test_predict_repeats_fit_labels():
    X = blobs(seed=1)
    model = SoftKMeans(3, seed=0)

    labels = model.fit_predict(X)

    np.testing.assert_array_equal(model.predict(X), labels)
    np.testing.assert_array_equal(model.predict(X[::-1]), labels[::-1])


def test_transform_gives_euclidean_distances():
    X = blobs(seed=3)
    model = SoftKMeans(3, seed=0).fit(X)

    distances = model.transform(X)

    expected = np.sqrt(((X[:, None, :] - model.cluster_centers_[None]) ** 2).sum(axis=2))
    np.testing.assert_allclose(distances, expected, rtol=1e-12)
    np.testing.assert_array_equal(distances.argmin(axis=1), model.labels_)
    assert -model.score(X) == pytest.approx((distances.min(axis=1) ** 2).sum(), rel=1e-9)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_predict_proba_rows_are_distributions(mode):
    X = blobs(seed=4)
    model = SoftKMeans(3, mode=mode, tau=0.5, seed=0).fit(X)

    memberships = model.predict_proba(X)

    assert memberships.shape == (len(X), 3)
    np.testing.assert_allclose(memberships.sum(axis=1), 1.0)
    np.testing.assert_array_equal(memberships.argmax(axis=1), model.predict(X))


def test_weighted_score_counts_weights():
    X = blobs(seed=5)
    model = SoftKMeans(3, seed=0).fit(X)

    assert model.score(X, sample_weight=np.full(len(X), 2.0)) == pytest.approx(2 * model.score(X), rel=1e-9)


def test_params_round_trip_and_clone():
    sklearn_base = pytest.importorskip("sklearn.base")
    model = SoftKMeans(4, mode="soft", tau=0.2)

    copy = sklearn_base.clone(model).set_params(n_clusters=3)

    assert model.get_params()["tau"] == 0.2
    assert copy.get_params()["n_clusters"] == 3
    assert copy.get_params()["mode"] == "soft"
    assert repr(model) == "SoftKMeans(n_clusters=4, mode='soft', tau=0.2)"


def test_pipeline_with_scaler():
    pipeline = pytest.importorskip("sklearn.pipeline")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    X = blobs(seed=6) * [1.0, 100.0]

    labels = pipeline.make_pipeline(preprocessing.StandardScaler(), SoftKMeans(3, seed=0)).fit_predict(X)

    assert len(np.unique(labels)) == 3


def test_dataframe_feature_names():
    frame = pd.DataFrame(blobs(seed=7), columns=["width", "height"])

    model = SoftKMeans(3, seed=0).fit(frame)

    assert list(model.feature_names_in_) == ["width", "height"]
    np.testing.assert_array_equal(model.predict(frame), model.labels_)


def test_unfitted_and_wrong_shape_rejected():
    model = SoftKMeans(3)
    with pytest.raises(NotFittedError, match="not fitted yet; call fit first"):
        model.predict(blobs())

    model.fit(blobs())
    with pytest.raises(OptionError, match=r"fitted on 2 features; pass an array of shape \(n_samples, 2\)"):
        model.predict(np.zeros((5, 3)))
    with pytest.raises(OptionError, match="invalid parameter 'n_cluster'"):
        model.set_params(n_cluster=4)


def test_import_softkm_does_not_load_numpy():
    import subprocess
    import sys

    code = "import sys, softkm; print('numpy' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert completed.stdout.strip() == "False", completed.stderr


def test_grid_search_and_cross_validation():
    model_selection = pytest.importorskip("sklearn.model_selection")
    pipeline = pytest.importorskip("sklearn.pipeline")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    X = blobs(seed=8)
    steps = pipeline.make_pipeline(preprocessing.StandardScaler(), SoftKMeans(seed=0))

    search = model_selection.GridSearchCV(steps, {"softkmeans__n_clusters": [2, 3]}, cv=3).fit(X)
    scores = model_selection.cross_val_score(SoftKMeans(3, seed=0), X, cv=3)

    # The default score is minus the inertia, so more clusters score higher.
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_params_ == {"softkmeans__n_clusters": 3}
    assert np.all(np.isfinite(scores))
    assert np.all(scores < 0)


def test_standardized_units_agree():
    X = blobs(seed=9) * [1.0, 100.0]
    model = SoftKMeans(3, standardize=True, seed=0).fit(X)

    distances = model.transform(X)

    np.testing.assert_array_equal(distances.argmin(axis=1), model.predict(X))
    assert model.score(X, sample_weight=np.ones(len(X))) == pytest.approx(model.score(X), rel=1e-9)
    assert -model.score(X) == pytest.approx(model.inertia_, rel=1e-9)


def test_other_columns_or_values_rejected():
    frame = pd.DataFrame(blobs(seed=10), columns=["width", "height"])
    model = SoftKMeans(3, seed=0).fit(frame)

    with pytest.raises(OptionError, match="fitted on width, height; pass the same columns in the same order"):
        model.predict(frame[["height", "width"]])
    with pytest.raises(OptionError, match="NaN or infinite"):
        model.transform(np.array([[0.0, np.nan]]))
    with pytest.raises(OptionError, match="sample_weight must be finite and non-negative"):
        model.score(frame, sample_weight=-np.ones(len(frame)))


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        SoftKMeans(3).predict(blobs())
    with pytest.raises(ValueError):
        SoftKMeans(0).fit(blobs())
