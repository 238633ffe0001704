"""Fault cases of MoBYv2Classifier: the data given to fit and to inference: arrays, shapes,
value ranges, labels and unlabelled rows (``_inputs.py``, ``_unlabeled.py``).

One test per case. Each case was first written against the behaviour it reproduces (a
raw traceback, a silently wrong result or a missing feature) and is now the behaviour
the estimator keeps.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skmoby import stack_unlabeled
from tests.conftest import small_clf


# ============================================================== input validation
@pytest.mark.parametrize("bad", [5, "abc", 2.5])
def test_scalar_x_unlabeled_is_named(digits, bad):
    X, y = digits
    with pytest.raises((TypeError, ValueError), match="X_unlabeled"):
        small_clf(max_epochs=1).fit(X[:40], y[:40], X_unlabeled=bad)


def test_predict_on_a_list_after_fitting_on_an_array(fitted, digits):
    X, _ = digits
    as_list = [x for x in X[:5]]
    np.testing.assert_array_equal(fitted.predict(as_list), fitted.predict(X[:5]))
    np.testing.assert_array_equal(fitted.transform(as_list), fitted.transform(X[:5]))


def test_predict_on_a_list_of_rows_after_tabular_fit():
    rng = np.random.RandomState(0)
    X = rng.randn(64, 5).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    clf = small_clf(backbone="mlp", max_epochs=1).fit(X, y)
    np.testing.assert_array_equal(clf.predict(X[:4].tolist()), clf.predict(X[:4]))


def test_ragged_list_is_refused_with_the_argument_named(fitted):
    with pytest.raises(ValueError, match="X"):
        fitted.predict([np.zeros((8, 8)), np.zeros((7, 8))])


@pytest.fixture(scope="module")
def tabular():
    """Tabular float64 data and one small MLP classifier fitted on it; read only."""
    rng = np.random.RandomState(0)
    X = rng.randn(64, 5)
    y = (X[:, 0] > 0).astype(int)
    return X, y, small_clf(backbone="mlp", max_epochs=1).fit(X, y)


_OUT_OF_RANGE = [
    pytest.param(1e39, r"X holds 1 value outside float32's finite range", id="1e39"),
    pytest.param(-1e300, r"X holds 1 value outside float32's finite range", id="-1e300"),
    pytest.param(np.inf, r"X contains infinity", id="inf"),
    pytest.param(np.nan, r"X contains NaN", id="nan"),
]


@pytest.mark.parametrize(
    "method", ["predict", "predict_proba", "transform", "contrastive_loss", "score"]
)
@pytest.mark.parametrize(("value", "match"), _OUT_OF_RANGE)
def test_values_float32_cannot_hold_are_refused_at_inference(tabular, method, value, match):
    X, y, clf = tabular
    bad = X[:4].copy()
    bad[1, 2] = value
    args = (bad, y[:4]) if method == "score" else (bad,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy cast warning: an error instead
        with pytest.raises(ValueError, match=match):
            getattr(clf, method)(*args)


@pytest.mark.parametrize(("value", "match"), _OUT_OF_RANGE)
@pytest.mark.parametrize("how", ["fit", "partial_fit", "X_unlabeled"])
def test_values_float32_cannot_hold_are_refused_in_fit(tabular, how, value, match):
    X, y, _ = tabular
    bad = X.copy()
    bad[10, 3] = value
    clf = small_clf(backbone="mlp", max_epochs=1)
    if how == "X_unlabeled":
        with pytest.raises(ValueError, match=match.replace("X ", "X_unlabeled ")):
            clf.fit(X, y, X_unlabeled=bad)
    else:
        with pytest.raises(ValueError, match=match):
            getattr(clf, how)(bad, y)


def test_the_largest_float32_value_is_accepted(tabular):
    X, _, clf = tabular
    edge = X[:4].copy()
    edge[1, 2] = -float(np.finfo(np.float32).max)  # float64 that float32 holds exactly
    assert clf.transform(edge).shape == (4, clf.feature_dim_)


class _RGBNet(torch.nn.Module):
    """A backbone written for 3-channel images."""

    def __init__(self, feature_dim=None):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        if feature_dim is not None:
            self.feature_dim = feature_dim

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


@pytest.mark.parametrize("feature_dim", [None, 4])
def test_backbone_channel_mismatch_is_named(digits, feature_dim):
    X, y = digits
    with pytest.raises(ValueError, match=r"backbone .*3 input channels.* 1"):
        small_clf(backbone=_RGBNet(feature_dim), max_epochs=1).fit(X[:40], y[:40])


class _GreyNet(torch.nn.Module):
    """Maps 8x8 images to 32 features; feature_dim says what the caller declares."""

    def __init__(self, feature_dim):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32))
        self.feature_dim = feature_dim

    def forward(self, x):
        return self.body(x)


def test_a_backbone_whose_feature_dim_is_wrong_is_named(digits):
    # it had failed inside the first step with "mat1 and mat2 shapes cannot be multiplied"
    X, y = digits
    with pytest.raises(
        ValueError,
        match=r"_GreyNet declares feature_dim=16 but maps .* "
        r"features of shape \(32,\)",
    ):
        small_clf(backbone=_GreyNet(16), max_epochs=1).fit(X[:40], y[:40])
    clf = small_clf(backbone=_GreyNet(32), max_epochs=1).fit(X[:40], y[:40])
    assert clf.transform(X[:3]).shape == (3, 32)


def test_partial_fit_refuses_other_classes_after_the_first_call(digits):
    X, y = digits
    keep = y < 4
    clf = small_clf(max_epochs=1).partial_fit(X[keep][:60], y[keep][:60], classes=range(6))
    clf.partial_fit(X[keep][:60], y[keep][:60], classes=[5, 4, 3, 2, 1, 0])  # the same
    with pytest.raises(ValueError, match=r"classes=\[0, 1, 2, 3\] differs"):
        clf.partial_fit(X[keep][:60], y[keep][:60], classes=[0, 1, 2, 3])
    assert list(clf.classes_) == list(range(6))


def test_flat_rows_after_fitting_on_images_name_the_image_shape(fitted, digits):
    # scikit-learn's feature count compared 64 pixels with the image's 1 channel.
    X, _ = digits
    flat = X[:3].reshape(3, -1)
    with pytest.raises(
        ValueError,
        match=r"shape \(64,\) but the training data has images "
        r"of shape \(1, 8, 8\)",
    ):
        fitted.predict(flat)


@pytest.mark.parametrize("how", ["X_unlabeled", "minus_one"])
def test_a_single_unlabeled_sample_is_left_out_with_a_warning(digits, how):
    # Batch norm cannot train on a batch of one: a pool down to one image crashed fit.
    X, y = digits
    if how == "X_unlabeled":
        args, kwargs = (X[:40], y[:40]), {"X_unlabeled": X[40:41]}
    else:
        y_semi = y[:41].copy()
        y_semi[40] = -1
        args, kwargs = (X[:41], y_semi), {}
    with pytest.warns(UserWarning, match="single unlabelled sample is left out"):
        clf = small_clf(max_epochs=1).fit(*args, **kwargs)
    ref = small_clf(max_epochs=1).fit(X[:40], y[:40])  # the same fit without it
    np.testing.assert_array_equal(clf.predict_proba(X[:50]), ref.predict_proba(X[:50]))


def test_data_frames_raise_no_feature_name_warnings(digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    df = pd.DataFrame(X.reshape(len(X), -1)[:200], columns=[f"p{i}" for i in range(64)])
    clf = small_clf(backbone="mlp", max_epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.fit(df[:100], y[:100])
        score = clf.score(df[100:], y[100:200])
        assert score == np.mean(clf.predict(df[100:]) == y[100:200])
    assert list(clf.feature_names_in_) == list(df.columns)


# ============================================= unlabelled data inside a Pipeline
def test_x_unlabeled_behind_a_transformer_is_refused(digits):
    X, y = digits
    Xf = X.reshape(len(X), -1)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", small_clf(backbone="mlp", max_epochs=1))])
    with pytest.raises(ValueError, match="stack_unlabeled"):
        pipe.fit(Xf[:64], y[:64], clf__X_unlabeled=Xf[64:128])


def test_x_unlabeled_behind_passthrough_steps_is_accepted(digits):
    X, y = digits
    Xf = X.reshape(len(X), -1)
    pipe = Pipeline([("nothing", "passthrough"), ("clf", small_clf(backbone="mlp", max_epochs=1))])
    pipe.fit(Xf[:64], y[:64], clf__X_unlabeled=Xf[64:128])
    assert pipe[-1].steps_per_epoch_ == 4


def test_stack_unlabeled_sends_unlabeled_rows_through_the_pipeline(digits):
    X, y = digits
    Xf = X.reshape(len(X), -1)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", small_clf(backbone="mlp", max_epochs=1))])
    X_all, y_all = stack_unlabeled(Xf[:64], y[:64], Xf[64:160])
    assert X_all.shape == (160, 64) and (y_all[64:] == -1).all()
    pipe.fit(X_all, y_all)
    assert pipe[-1].steps_per_epoch_ == 2 * 3  # 2 labelled and 3 unlabelled batches
    np.testing.assert_allclose(pipe[0].mean_, Xf[:160].mean(axis=0), rtol=1e-6)


def test_stack_unlabeled_keeps_string_labels_and_nan_convention(digits):
    X, y = digits
    names = np.array(list("abcdefghij"))[y[:10]]
    _, ys = stack_unlabeled(X[:10], names, X[10:15])
    assert ys.dtype == object and list(ys[10:]) == [-1] * 5
    _, yn = stack_unlabeled(X[:10], y[:10].astype(float), X[10:15], unlabeled_label=np.nan)
    assert np.isnan(yn[10:]).all()


# ================================================================= NaN labels
def test_nan_marks_unlabeled_rows(digits):
    X, y = digits
    y_nan = y[:200].astype(float)
    y_nan[100:] = np.nan
    clf = small_clf(max_epochs=1, unlabeled_label=np.nan).fit(X[:200], y_nan)
    np.testing.assert_array_equal(clf.classes_, np.arange(10.0))
    assert clf.steps_per_epoch_ == 8  # 4 labelled + 4 unlabelled batches
    assert clf.score(X[:200], y_nan) == pytest.approx(clf.score(X[:100], y[:100]))


def test_the_string_minus_one_is_refused_as_ambiguous(digits):
    # With the default unlabeled_label=-1, string labels "-1" became a class of their
    # own, predicted for every sample, without a word.
    X, y = digits
    ys = y[:200].astype(str).astype(object)
    ys[100:] = "-1"
    for labels in (ys, ys.astype(str)):
        with pytest.raises(
            ValueError,
            match=r"y holds the string '-1' in 100 rows; "
            r"unlabelled rows are marked with the "
            r"number -1.*unlabeled_label='-1'",
        ):
            small_clf(max_epochs=1).fit(X[:200], labels)
    clf = small_clf(max_epochs=1).fit(X[:100], ys[:100])
    with pytest.raises(ValueError, match="string '-1'"):
        clf.score(X[:200], ys)
    # the fixes the message names do what it says
    marked = small_clf(max_epochs=1, unlabeled_label="-1").fit(X[:200], ys)
    assert "-1" not in marked.classes_.tolist() and marked.steps_per_epoch_ == 8
    kept = small_clf(max_epochs=1, unlabeled_label=None).fit(X[:200], ys)
    assert "-1" in kept.classes_.tolist()


def test_nan_labels_without_the_nan_convention_are_explained(digits):
    X, y = digits
    y_nan = y[:40].astype(float)
    y_nan[20:] = np.nan
    with pytest.raises(ValueError, match=r"unlabeled_label=np\.nan"):
        small_clf(max_epochs=1).fit(X[:40], y_nan)
