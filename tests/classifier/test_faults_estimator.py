"""Catalogue of bad-input, fault and interoperability cases of MoBYv2Classifier.

One test per case, grouped by component. Each case was first written against the
behaviour it reproduces (a raw traceback, a silently wrong result or a missing feature)
and is now the behaviour the estimator keeps.
"""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback, Checkpoint, LoadInitState, TrainEndCheckpoint

from skmoby import MoBYv2Classifier, stack_unlabeled
from skmoby.classifier import classifier as classifier_module
from skmoby.classifier import expected_failed_checks
from skmoby.classifier._step import FitState
from skmoby.network import MoBYv2Network
from tests.conftest import small_clf


class _Interrupt(Callback):
    """Raise KeyboardInterrupt (as Ctrl-C does) once, at the start of an epoch."""

    def __init__(self, at_epoch):
        self.at_epoch = at_epoch
        self.fired = False

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.at_epoch and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


class _RecordLR(Callback):
    def __init__(self, seen):
        self.seen = seen

    def on_epoch_end(self, net, **kwargs):
        self.seen.append(net.optimizer_.param_groups[0]["lr"])


@pytest.fixture
def momenta(monkeypatch):
    """Every key-branch momentum used by eager steps, in order."""
    seen = []
    original = MoBYv2Network.update_keys

    def spy(self, momentum):
        seen.append(momentum)
        return original(self, momentum)

    monkeypatch.setattr(MoBYv2Network, "update_keys", spy)
    return seen


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
def test_a_single_unlabelled_sample_is_left_out_with_a_warning(digits, how):
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


# ================================================================== device
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_gpu_is_refused_before_any_work(digits, device, monkeypatch):
    X, y = digits
    clf = small_clf(device=device)

    def no_work(*args, **kwargs):
        raise AssertionError("fit validated data before checking the device")

    monkeypatch.setattr(classifier_module, "prepare_fit_data", no_work)
    with pytest.raises(ValueError, match="device"):
        clf.fit(X[:40], y[:40])


@pytest.mark.parametrize("device", ["tpu", "cuda:x", 3, None])
def test_unknown_device_is_named(digits, device):
    X, y = digits
    with pytest.raises(ValueError, match="device"):
        small_clf(device=device).fit(X[:40], y[:40])


def test_gpu_index_out_of_range_is_named(digits):
    X, y = digits
    with pytest.raises(ValueError, match="device"):
        small_clf(device=f"cuda:{torch.cuda.device_count() + 3}").fit(X[:40], y[:40])


# ========================================================= scikit-learn checks
def test_init_only_stores_parameters():
    from sklearn.utils.estimator_checks import check_no_attributes_set_in_init

    check_no_attributes_set_in_init("MoBYv2Classifier", small_clf())


def test_set_params_stores_without_validating():
    from sklearn.utils.estimator_checks import check_set_params

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_set_params("MoBYv2Classifier", small_clf())


def test_invalid_values_set_by_set_params_fail_in_fit(digits):
    X, y = digits
    clf = small_clf().set_params(lr=-1.0, callbacks=np.inf)
    assert clf.lr == -1.0
    with pytest.raises(ValueError, match="lr must be"):
        clf.fit(X[:40], y[:40])


def test_invalid_callbacks_set_by_set_params_are_named_in_fit(digits):
    X, y = digits
    with pytest.raises(TypeError, match="callbacks must be"):
        small_clf().set_params(callbacks=np.inf).fit(X[:40], y[:40])


def test_minus_one_convention_has_an_exported_expected_failure():
    from sklearn.utils.estimator_checks import check_classifiers_classes

    default = small_clf(backbone="mlp")
    reasons = expected_failed_checks(default)
    assert "check_classifiers_classes" in reasons
    assert "unlabeled_label" in reasons["check_classifiers_classes"]
    with pytest.raises(ValueError, match="unlabeled_label=None"):
        check_classifiers_classes("MoBYv2Classifier", default)
    # Without the convention the check passes, and nothing about it is expected to fail.
    plain = small_clf(backbone="mlp", unlabeled_label=None, max_epochs=20, lr=0.1)
    assert "check_classifiers_classes" not in expected_failed_checks(plain)
    check_classifiers_classes("MoBYv2Classifier", plain)


# ========================================================== Ctrl-C during fit
def test_interrupted_fit_returns_a_usable_estimator(digits, tmp_path):
    X, y = digits
    end = TrainEndCheckpoint(dirname=str(tmp_path))
    clf = small_clf(max_epochs=5, callbacks=[_Interrupt(at_epoch=3), end])
    clf.fit(X[:64], y[:64])
    assert clf.interrupted_
    assert len(clf.history) == 2  # the interrupted epoch had not trained a batch
    assert all(isinstance(v, float) for v in clf.history[:, "train_loss"])
    assert clf.predict(X[:5]).shape == (5,)
    assert (tmp_path / "train_end_params.pt").exists()  # on_train_end still ran
    clf.set_params(callbacks=[]).fit(X[:64], y[:64])
    assert not clf.interrupted_


def test_interrupt_inside_an_epoch_leaves_float_losses(digits):
    X, y = digits

    class Stop(Callback):
        def on_batch_begin(self, net, training=False, **kwargs):
            # the row of the third batch exists already when it begins
            if training and len(net.history) == 2 and len(net.history[-1]["batches"]) == 3:
                raise KeyboardInterrupt

    clf = small_clf(max_epochs=3, callbacks=[Stop()]).fit(X[:128], y[:128])
    assert clf.interrupted_
    row = clf.history[-1]
    assert "train_batch_count" not in row
    assert [type(b["train_loss"]) for b in row["batches"] if "train_loss" in b] == [float] * 2


# ===================================================== schedules across calls
def _schedule(kind, digits, momenta, **kwargs):
    """Learning rates per epoch and key momenta per step over two calls."""
    X, y = digits
    lrs = []
    clf = small_clf(max_epochs=5, lr=1.0, callbacks=[_RecordLR(lrs)], **kwargs)
    calls = []
    for _ in range(2):
        momenta.clear()
        lrs.clear()
        if kind == "partial_fit":
            clf.partial_fit(X[:64], y[:64], classes=np.arange(10))
        else:
            clf.fit(X[:64], y[:64])
        calls.append((list(lrs), list(momenta), clf.key_step_))
    return calls


@pytest.mark.parametrize("kind", ["partial_fit", "warm_start"])
def test_each_call_runs_both_schedules_again(digits, momenta, kind):
    extra = {"warm_start": True} if kind == "warm_start" else {}
    (lr1, m1, steps1), (lr2, m2, steps2) = _schedule(kind, digits, momenta, **extra)
    np.testing.assert_allclose(lr1, [1.0, 1.0, 1.0, 0.1, 0.01])
    np.testing.assert_allclose(lr2, lr1)  # not stuck at the decayed rate
    assert steps1 == steps2 == 10
    np.testing.assert_allclose(m2, m1)  # the key momentum rises from 0.99 again
    assert m2[0] == pytest.approx(0.99) and max(m2) < 1.0


def test_an_interrupted_fit_continues_where_it_stopped(digits, momenta):
    X, y = digits
    lrs = []
    full = small_clf(max_epochs=5, lr=1.0, callbacks=[_RecordLR(lrs)]).fit(X[:64], y[:64])
    full_lrs, full_momenta = list(lrs), list(momenta)
    lrs.clear()
    momenta.clear()
    clf = small_clf(max_epochs=5, lr=1.0, callbacks=[_RecordLR(lrs), _Interrupt(3)])
    clf.fit(X[:64], y[:64])
    assert clf.interrupted_
    clf.partial_fit(X[:64], y[:64])  # continues the run: epochs 3 to 5
    assert len(clf.history) == len(full.history) == 5
    np.testing.assert_allclose(lrs, full_lrs)
    np.testing.assert_allclose(momenta, full_momenta)
    assert clf.key_step_ == full.key_step_


# =========================================================== pickle and clone
def _states(digits):
    X, y = digits
    return {
        "unfitted-auto": lambda: MoBYv2Classifier("cnn"),
        "unfitted-cpu": lambda: small_clf(),
        "fitted-auto": lambda: small_clf(device="auto", max_epochs=1).fit(X[:64], y[:64]),
        "fitted-cpu": lambda: small_clf(max_epochs=1).fit(X[:64], y[:64]),
    }


@pytest.mark.parametrize("state", ["unfitted-auto", "unfitted-cpu", "fitted-auto", "fitted-cpu"])
@pytest.mark.parametrize("how", ["pickle", "deepcopy", "clone"])
def test_round_trips_in_every_state(digits, state, how):
    X, y = digits
    est = _states(digits)[state]()
    copy_ = {
        "pickle": lambda e: pickle.loads(pickle.dumps(e)),
        "deepcopy": copy.deepcopy,
        "clone": clone,
    }[how](est)
    assert copy_.get_params()["device"] == est.get_params()["device"]
    assert repr(copy_) == repr(est)
    if state.startswith("fitted") and how != "clone":
        np.testing.assert_array_equal(copy_.predict_proba(X[:20]), est.predict_proba(X[:20]))
    else:
        assert not getattr(copy_, "initialized_", False)
        copy_.set_params(max_epochs=1).fit(X[:64], y[:64])
        assert copy_.predict(X[:3]).shape == (3,)


def test_check_estimators_pickle_with_the_default_device():
    from sklearn.utils.estimator_checks import check_estimators_pickle

    est = MoBYv2Classifier("mlp", max_epochs=2, batch_size=16, queue_size=32, random_state=0)
    assert est.device == "auto"
    check_estimators_pickle("MoBYv2Classifier", est)


@pytest.mark.slow
def test_parallel_grid_search_and_cross_validate_with_loky(digits):
    X, y = digits
    est = MoBYv2Classifier(
        "cnn", max_epochs=1, batch_size=32, queue_size=32, random_state=0
    )  # device="auto"
    gs = GridSearchCV(est, {"lambda_c": [0.0, 0.5]}, cv=KFold(2), n_jobs=2)
    gs.fit(X[:96], y[:96])
    assert gs.best_params_["lambda_c"] in (0.0, 0.5)
    out = cross_validate(est, X[:96], y[:96], cv=KFold(2), n_jobs=2)
    assert len(out["test_score"]) == 2 and np.isfinite(out["test_score"]).all()


def test_grid_search_with_rays_joblib_backend(digits, monkeypatch):
    import builtins

    ray = pytest.importorskip("ray")
    from joblib import parallel_backend
    from ray.util.joblib import register_ray

    # Ray may replace builtins.print in the driver; skorch's PrintLog holds the original,
    # which later tests pickle by name: restore it afterwards.
    monkeypatch.setattr(builtins, "print", builtins.print)
    X, y = digits
    register_ray()
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        with parallel_backend("ray"):
            gs = GridSearchCV(
                small_clf(device="auto", max_epochs=1),
                {"lambda_c": [0.0, 0.5]},
                cv=KFold(2),
                n_jobs=2,
            )
            gs.fit(X[:96], y[:96])
    finally:
        ray.shutdown()
    assert gs.best_params_["lambda_c"] in (0.0, 0.5)


# ================================================================ checkpoints
def test_save_and_load_params_into_a_new_estimator(fitted, digits, tmp_path):
    X, _ = digits
    files = {k: str(tmp_path / f"{k}.pt") for k in ("f_params", "f_optimizer")}
    files["f_history"] = str(tmp_path / "history.json")
    fitted.save_params(**files)
    new = small_clf(input_shape=(8, 8), classes=np.arange(10)).initialize()
    new.load_params(**files)
    np.testing.assert_array_equal(new.predict_proba(X[:50]), fitted.predict_proba(X[:50]))
    np.testing.assert_array_equal(new.transform(X[:50]), fitted.transform(X[:50]))
    # the queues and the key branch come along
    np.testing.assert_array_equal(new.contrastive_loss(X[:20]), fitted.contrastive_loss(X[:20]))
    np.testing.assert_allclose(new.mean_, fitted.mean_, rtol=1e-6)
    assert len(new.history) == len(fitted.history)


def test_initialize_without_data_names_what_it_needs():
    with pytest.raises(ValueError, match="input_shape"):
        small_clf().initialize()
    with pytest.raises(ValueError, match="classes"):
        small_clf(input_shape=(1, 8, 8)).initialize()


def test_input_shape_is_checked_against_the_data(digits):
    X, y = digits
    with pytest.raises(ValueError, match="input_shape"):
        small_clf(input_shape=(3, 8, 8)).fit(X[:40], y[:40])
    clf = small_clf(input_shape=(1, 8, 8), max_epochs=1).fit(X[:40], y[:40])
    assert clf.sample_shape_ == (1, 8, 8)


def test_checkpoint_and_load_init_state_resume_an_interrupted_fit(digits, tmp_path):
    X, y = digits
    lrs_full = []
    full = small_clf(max_epochs=5, lr=1.0, callbacks=[_RecordLR(lrs_full)])
    full.fit(X[:64], y[:64])

    cp = Checkpoint(dirname=str(tmp_path), monitor=None)
    first = small_clf(max_epochs=5, lr=1.0, callbacks=[cp, _Interrupt(at_epoch=3)])
    first.fit(X[:64], y[:64])
    assert first.interrupted_ and len(first.history) == 2

    lrs = []
    cp2 = Checkpoint(dirname=str(tmp_path), monitor=None)
    resumed = small_clf(max_epochs=5, lr=1.0, callbacks=[cp2, LoadInitState(cp2), _RecordLR(lrs)])
    resumed.fit(X[:64], y[:64])
    assert not resumed.interrupted_
    assert len(resumed.history) == 5  # 2 epochs restored + the 3 left of the run
    np.testing.assert_allclose(lrs, lrs_full[2:])
    assert resumed.key_step_ == full.key_step_


def test_train_end_checkpoint_then_load_init_state_trains_another_run(digits, tmp_path):
    X, y = digits
    end = TrainEndCheckpoint(dirname=str(tmp_path))
    small_clf(max_epochs=2, callbacks=[end]).fit(X[:64], y[:64])
    end2 = TrainEndCheckpoint(dirname=str(tmp_path))
    again = small_clf(max_epochs=2, callbacks=[end2, LoadInitState(end2)])
    again.fit(X[:64], y[:64])
    assert len(again.history) == 4  # the restored run was complete: a new one follows


# ============================================================== sample weights
def test_unit_sample_weights_change_nothing(digits):
    X, y = digits
    a = small_clf(max_epochs=2).fit(X[:64], y[:64]).predict_proba(X[100:150])
    b = small_clf(max_epochs=2).fit(X[:64], y[:64], sample_weight=np.full(64, 3.0))
    np.testing.assert_allclose(b.predict_proba(X[100:150]), a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [1e300, 1e308])
def test_only_the_ratios_of_huge_sample_weights_matter(digits, scale):
    # The mean of 64 weights of 1e308 overflowed to inf, every weight became 0 and the
    # cross-entropy vanished from training.
    X, y = digits
    ratios = np.linspace(0.25, 1.0, 64)
    a = small_clf(max_epochs=2).fit(X[:64], y[:64], sample_weight=ratios)
    b = small_clf(max_epochs=2).fit(X[:64], y[:64], sample_weight=ratios * scale)
    np.testing.assert_allclose(
        b.predict_proba(X[100:150]), a.predict_proba(X[100:150]), rtol=1e-5, atol=1e-6
    )


def test_weighted_loss_matches_the_definition():
    clf = small_clf(input_shape=(8, 8), classes=np.arange(3)).initialize()
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    w = torch.tensor([0.0, 1.0, 2.0, 0.5, 1.5, 1.0])
    clf._fit_state = FitState(batch_weight=w)
    expected = (torch.nn.functional.cross_entropy(logits, target, reduction="none") * w).mean()
    torch.testing.assert_close(clf.get_loss(logits, target), expected)


def test_zero_weight_rows_do_not_teach_their_class(digits):
    X, y = digits
    w = np.where(y[:300] == 0, 0.0, 1.0)
    kw = dict(max_epochs=8, lambda_c=0.0, lr=0.05)
    plain = small_clf(**kw).fit(X[:300], y[:300])
    weighted = small_clf(**kw).fit(X[:300], y[:300], sample_weight=w)
    zeros = X[300:800][y[300:800] == 0]
    assert (plain.predict(zeros) == 0).mean() > 0.5
    assert (weighted.predict(zeros) == 0).mean() < 0.1


def test_weights_of_unlabelled_rows_are_ignored(digits):
    X, y = digits
    y_semi = y[:96].copy()
    y_semi[64:] = -1
    w = np.ones(96)
    a = small_clf(max_epochs=1).fit(X[:96], y_semi, sample_weight=w)
    w[64:] = 100.0
    b = small_clf(max_epochs=1).fit(X[:96], y_semi, sample_weight=w)
    np.testing.assert_allclose(a.predict_proba(X[:20]), b.predict_proba(X[:20]), rtol=1e-5)


@pytest.mark.parametrize(
    ("w", "match"),
    [
        (np.ones(39), "sample_weight"),
        (-np.ones(40), "sample_weight"),
        (np.full(40, np.nan), "sample_weight"),
        (np.full(40, np.inf), "sample_weight"),
        (np.r_[np.ones(39), -1e-300], "sample_weight must be non-negative"),
        (np.zeros(40), "sample_weight"),
    ],
)
def test_bad_sample_weights_are_named(digits, w, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        small_clf(max_epochs=1).fit(X[:40], y[:40], sample_weight=w)


def test_sample_weight_through_pipeline_and_grid_search_routing(digits):
    from sklearn import config_context

    X, y = digits
    Xf = X.reshape(len(X), -1)
    seen = []

    class Spy(MoBYv2Classifier):
        def fit(self, X, y, X_unlabeled=None, sample_weight=None):
            seen.append(None if sample_weight is None else len(sample_weight))
            return super().fit(X, y, X_unlabeled=X_unlabeled, sample_weight=sample_weight)

    w = np.linspace(0.5, 1.5, 96)
    with config_context(enable_metadata_routing=True):
        clf = Spy(
            "mlp", max_epochs=1, batch_size=32, queue_size=32, random_state=0, device="cpu"
        ).set_fit_request(sample_weight=True)
        clf.set_score_request(sample_weight=True)
        scale = StandardScaler().set_fit_request(sample_weight=False)
        pipe = Pipeline([("scale", scale), ("clf", clf)])
        pipe.fit(Xf[:96], y[:96], sample_weight=w)
        assert seen == [96]
        gs = GridSearchCV(pipe, {"clf__lambda_c": [0.0, 0.5]}, cv=KFold(2))
        gs.fit(Xf[:96], y[:96], sample_weight=w)
    assert seen[1:] == [48] * 4 + [96]


def test_sample_weight_through_pipeline_without_routing(digits):
    X, y = digits
    Xf = X.reshape(len(X), -1)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", small_clf(backbone="mlp", max_epochs=1))])
    pipe.fit(Xf[:64], y[:64], clf__sample_weight=np.ones(64))
    assert pipe.predict(Xf[:3]).shape == (3,)


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


def test_stack_unlabeled_sends_unlabelled_rows_through_the_pipeline(digits):
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


# ======================================================================= repr
def test_repr_shows_only_changed_parameters():
    assert repr(MoBYv2Classifier()) == "MoBYv2Classifier()"
    assert repr(MoBYv2Classifier("cnn", lr=0.1)) == "MoBYv2Classifier(backbone='cnn', lr=0.1)"
    assert repr(MoBYv2Classifier(warm_start=True)) == "MoBYv2Classifier(warm_start=True)"
    assert repr(MoBYv2Classifier(callbacks=[Checkpoint()])) == (
        "MoBYv2Classifier(callbacks=[Checkpoint(...)])"
    )
    assert repr(MoBYv2Classifier(unlabeled_label=np.nan)) == (
        "MoBYv2Classifier(unlabeled_label=nan)"
    )
    long = repr(small_clf(temperature=0.3, lambda_c=1.0, lr_milestones=(0.5,)))
    assert long.startswith("MoBYv2Classifier(backbone='cnn'") and "temperature=0.3" in long
    assert max(len(line) for line in long.splitlines()) <= 80


def test_repr_of_a_fitted_estimator(fitted):
    assert repr(fitted) == repr(clone(fitted))


# ================================================================= NaN labels
def test_nan_marks_unlabelled_rows(digits):
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


# ================================================================= lr schedule
def test_lr_schedule_is_skorchs_lr_scheduler_with_multisteplr(digits):
    from skorch.callbacks import LRScheduler
    from torch.optim.lr_scheduler import MultiStepLR

    X, y = digits
    clf = small_clf(max_epochs=5, lr=1.0).fit(X[:40], y[:40])
    cb = dict(clf.callbacks_)["lr_scheduler"]
    assert isinstance(cb, LRScheduler) and cb.policy is MultiStepLR
    np.testing.assert_allclose(clf.history[:, "event_lr"], [1.0, 1.0, 1.0, 0.1, 0.01])


# ======================================================================== GPU
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
def test_gpu_sample_weights_with_captured_steps(digits):
    X, y = digits
    X = np.repeat(X[:, None], 3, axis=1)
    kw = dict(device="cuda", precision="fp32", capture=True, max_epochs=3)
    args = (X[:256], y[:256])
    plain = small_clf(**kw).fit(*args, X_unlabeled=X[256:512])
    weighted = small_clf(**kw).fit(*args, X_unlabeled=X[256:512], sample_weight=np.ones(256))
    assert plain.capture_ and weighted.capture_  # unlabelled steps stay captured
    a = np.array(plain.history[:, "batches", :, "train_loss"], dtype=float)
    b = np.array(weighted.history[:, "batches", :, "train_loss"], dtype=float)
    np.testing.assert_allclose(b, a, rtol=2e-2, atol=2e-3)


@pytest.mark.gpu
@needs_cuda
def test_gpu_fitted_auto_estimator_unpickles_on_a_machine_without_gpu(digits, tmp_path):
    import subprocess
    import sys

    X, y = digits
    clf = small_clf(device="auto", max_epochs=1).fit(X[:64], y[:64])
    assert str(clf.device_).startswith("cuda")
    (tmp_path / "clf.pkl").write_bytes(pickle.dumps(clf))
    np.save(tmp_path / "X.npy", X[:20])
    np.save(tmp_path / "p.npy", clf.predict_proba(X[:20]))
    code = (
        "import pickle, numpy as np, sys; d = sys.argv[1]; "
        "clf = pickle.load(open(d + '/clf.pkl', 'rb')); "
        "assert clf.device == 'auto' and clf.device_ == 'cpu', (clf.device, clf.device_); "
        "assert clf.precision_ == 'fp32' and not clf.channels_last_; "
        "p = clf.predict_proba(np.load(d + '/X.npy')); "
        "np.testing.assert_allclose(p, np.load(d + '/p.npy'), atol=0.05)"  # bf16 vs fp32
    )
    env = {**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]


def _as_if_fitted_on_a_bf16_gpu(clf):
    """What initialize() resolves on a GPU with bfloat16, on a model fitted on the CPU."""
    clf.precision_, clf.channels_last_ = "bf16", True
    clf.module_ = clf.module_.to(memory_format=torch.channels_last)
    return clf


def test_an_auto_model_loaded_on_a_cpu_drops_the_gpus_bf16_and_layout(digits):
    # Loaded on a CPU, a GPU-fitted model had kept bf16 autocast: ~30x slower predictions
    # (ResNet-18) and labels that differ from the fp32 ones.
    X, y = digits
    clf = small_clf(device="auto", max_epochs=1).fit(X[:64], y[:64])
    want = clf.predict_proba(X[:20])
    loaded = pickle.loads(pickle.dumps(_as_if_fitted_on_a_bf16_gpu(clf)))
    assert loaded.device == "auto" and loaded.device_ == "cpu"
    assert loaded.precision_ == "fp32" and loaded.channels_last_ is False
    conv = next(m for m in loaded.module_.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()
    np.testing.assert_array_equal(loaded.predict_proba(X[:20]), want)


def test_an_explicit_fp16_model_loaded_without_a_gpu_computes_in_fp32(digits):
    X, y = digits
    clf = small_clf(max_epochs=1).fit(X[:64], y[:64])
    want = clf.predict_proba(X[:20])
    clf.precision, clf.precision_ = "fp16", "fp16"  # as fitted with precision="fp16"
    with pytest.warns(UserWarning, match="fp16.*computes in fp32 instead"):
        loaded = pickle.loads(pickle.dumps(clf))
    assert loaded.precision_ == "fp32" and loaded.precision == "fp16"
    np.testing.assert_array_equal(loaded.predict_proba(X[:20]), want)


def test_a_users_lr_scheduler_replaces_the_built_in_schedule(digits):
    # Once: the built-in schedule was named lr_schedule, so skorch's documented name
    # stacked a second scheduler on it (lrs 0.1, 0.05, 0.00025).
    from skorch.callbacks import LRScheduler

    X, y = digits
    sched = LRScheduler("StepLR", step_size=1, gamma=0.5)
    clf = small_clf(max_epochs=3, lr=0.1, callbacks=[("lr_scheduler", sched)])
    clf.fit(X[:40], y[:40])
    np.testing.assert_allclose(clf.history[:, "event_lr"], [0.1, 0.05, 0.025])
    assert [n for n, _ in clf.callbacks_].count("lr_scheduler") == 1
