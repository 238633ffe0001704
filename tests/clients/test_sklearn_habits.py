"""scikit-learn's habits with MoBYv2Classifier: cloning and parameters, pipelines,
model selection, the estimator as a transformer (feature names, ``set_output``)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler

from skmoby import MoBYv2Classifier
from tests.clients.conftest import make


@pytest.fixture(scope="module")
def table(digits):
    X, y = digits
    columns = [f"px{i}" for i in range(64)]
    return pd.DataFrame(X.reshape(len(X), -1), columns=columns), y


def test_clone_get_and_set_params():
    clf = make(lr=0.05)
    twin = clone(clf)
    assert twin.get_params(deep=False) == clf.get_params(deep=False)
    assert twin.set_params(lr=0.1).lr == 0.1 and clf.lr == 0.05
    with pytest.raises(ValueError, match="Invalid parameter 'lrate'"):
        clf.set_params(lrate=1)


def test_default_constructor_params_round_trip():
    clf = MoBYv2Classifier()
    assert clone(clf).get_params(deep=False) == clf.get_params(deep=False)
    assert clf.device == "auto" and clf.backbone == "resnet18"


def test_feature_names_out(fitted_hw):
    names = fitted_hw.get_feature_names_out()
    assert names.tolist() == [f"mobyv2classifier{i}" for i in range(fitted_hw.feature_dim_)]


def test_set_output_pandas(table):
    X, y = table
    clf = make(backbone="mlp").set_output(transform="pandas")
    out = clf.fit(X[:200], y[:200]).transform(X[200:210])
    assert isinstance(out, pd.DataFrame)
    assert out.index.tolist() == list(range(200, 210))
    assert out.columns.tolist() == clf.get_feature_names_out().tolist()
    np.testing.assert_array_equal(
        out.to_numpy(), clf.set_output(transform="default").transform(X[200:210])
    )
    assert isinstance(
        clf.set_output(transform="pandas").fit_transform(X[:200], y[:200]), pd.DataFrame
    )


def test_set_output_survives_clone(table):
    X, y = table
    clf = clone(make(backbone="mlp").set_output(transform="pandas"))
    assert isinstance(clf.fit(X[:100], y[:100]).transform(X[:5]), pd.DataFrame)


def test_features_feed_another_estimator_in_a_pipeline(table):
    X, y = table
    pipe = make_pipeline(MinMaxScaler(), make(backbone="mlp"), LogisticRegression(max_iter=200))
    pipe.fit(X[:200], y[:200])
    assert pipe.predict(X[200:220]).shape == (20,)
    assert pipe[:-1].get_feature_names_out()[0] == "mobyv2classifier0"


def test_pipeline_to_images(digits):
    X, y = digits
    to_images = FunctionTransformer(lambda Z: Z.reshape(len(Z), 8, 8))
    pipe = make_pipeline(to_images, make())
    pipe.fit(X.reshape(len(X), -1)[:200], y[:200])
    assert pipe.score(X.reshape(len(X), -1)[200:300], y[200:300]) >= 0.0


def test_cross_val_score_and_grid_search(digits):
    X, y = digits
    scores = cross_val_score(make(), X[:150], y[:150], cv=3)
    assert scores.shape == (3,) and np.all((0 <= scores) & (scores <= 1))
    grid = GridSearchCV(make(), {"lambda_c": [0.0, 0.5]}, cv=2).fit(X[:120], y[:120])
    assert grid.best_params_["lambda_c"] in (0.0, 0.5)


def test_estimator_type_and_classes(fitted_hw):
    assert fitted_hw.__sklearn_tags__().estimator_type == "classifier"
    assert fitted_hw.classes_.tolist() == list(range(10))
