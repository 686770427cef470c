"""Model files edited by hand: counts and names that disagree with the centroids."""

import json

import numpy as np
import pytest

from softkm import engine
from softkm.errors import ModelError
from softkm.model import Model


@pytest.fixture
def document():
    X = np.random.default_rng(0).normal(size=(60, 2))
    result = engine.fit(X, 3, mode="soft")
    return json.loads(Model.from_result(result, ["a", "b"], {}).to_json())


@pytest.mark.parametrize("n_clusters", [2, 5, True, "3", None])
def test_model_rejects_wrong_n_clusters(document, n_clusters):
    document["n_clusters"] = n_clusters

    with pytest.raises(ModelError, match=f"has n_clusters {n_clusters!r} but 3 centroid rows"):
        Model.from_dict(document)


def test_model_rejects_removed_centroid_row(document):
    del document["centroids"][0]

    with pytest.raises(ModelError, match="has n_clusters 3 but 2 centroid rows"):
        Model.from_dict(document)


def test_model_rejects_duplicate_feature_names(document):
    document["feature_names"] = ["a", "a"]

    with pytest.raises(ModelError, match="lists feature name.s. a more than once"):
        Model.from_dict(document)


def test_model_accepts_unedited(document):
    model = Model.from_dict(document)

    assert model.n_clusters == 3
    assert model.feature_names == ["a", "b"]
