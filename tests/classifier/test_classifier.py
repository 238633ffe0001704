import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skmoby import MoBYv2Classifier, UnlabeledData, stack_unlabeled
from skmoby.classifier._inputs import prepare_fit_data
from tests.conftest import small_clf


def _state(clf):
    return {k: v.detach().clone() for k, v in clf.module_.state_dict().items()}


# ------------------------------------------------------------------ basic API
def test_fit_predict_transform_shapes(fitted, digits):
    X, y = digits
    assert fitted.predict(X[:7]).shape == (7,)
    proba = fitted.predict_proba(X[:7])
    assert proba.shape == (7, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    feats = fitted.transform(X[:7])
    assert feats.shape == (7, 128) and feats.dtype == np.float32
    assert fitted.feature_dim_ == 128 and fitted.sample_shape_ == (1, 8, 8)
    np.testing.assert_array_equal(fitted.classes_, np.arange(10))
    assert 0.0 <= fitted.score(X[600:700], y[600:700]) <= 1.0


def test_paper_defaults():
    clf = MoBYv2Classifier()
    p = clf.get_params()
    assert (p["batch_size"], p["lr"], p["optimizer"], p["max_epochs"]) == (
        128,
        0.01,
        torch.optim.SGD,
        200,
    )
    assert (p["optimizer__momentum"], p["optimizer__weight_decay"]) == (0.9, 5e-4)
    assert (
        p["queue_size"],
        p["temperature"],
        p["key_momentum"],
        p["lambda_c"],
        p["projection_dim"],
    ) == (4096, 0.2, 0.99, 0.5, 128)
    assert p["lr_milestones"] == (0.6, 0.8) and p["lr_gamma"] == 0.1
    assert p["backbone"] == "resnet18" and p["device"] == "auto"


def test_lr_schedule_is_applied_each_epoch(digits):
    X, y = digits
    seen = []
    from skorch.callbacks import Callback

    class Record(Callback):
        def on_epoch_end(self, net, **kw):
            seen.append(net.optimizer_.param_groups[0]["lr"])

    small_clf(max_epochs=5, lr=1.0, callbacks=[Record()]).fit(X[:40], y[:40])
    np.testing.assert_allclose(seen, [1.0, 1.0, 1.0, 0.1, 0.01])


def test_key_branch_and_queues_move_during_fit(digits):
    X, y = digits
    clf = small_clf(max_epochs=1, queue_size=32)
    clf.fit(X[:64], y[:64], X_unlabeled=X[64:128])
    # 2 labelled + 2 unlabelled batches of 32 keys filled the 32-slot queue twice.
    assert clf.key_step_ == 4 and int(clf.module_.queue_ptr) == 0
    q = clf.module_.queue_weak
    torch.testing.assert_close(q.norm(dim=1), torch.ones(32))
    enc = dict(clf.module_.encoder.named_parameters())
    key = dict(clf.module_.key_encoder.named_parameters())
    assert any(not torch.equal(enc[k], key[k]) for k in enc)  # EMA lags behind


def test_optimizer_only_updates_query_branch(fitted):
    opt_params = {id(p) for g in fitted.optimizer_.param_groups for p in g["params"]}
    assert all(id(p) not in opt_params for p in fitted.module_.key_parameters())
    assert id(fitted.module_.head.weight) in opt_params
    assert id(fitted.module_.predictor.layers[0].weight) in opt_params


# ---------------------------------------------------------- unlabelled data
def test_unlabeled_rows_via_minus_one(digits):
    X, y = digits
    y_semi = y[:200].copy()
    y_semi[100:] = -1
    clf = small_clf(max_epochs=1).fit(X[:200], y_semi)
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    # 100 labelled (4 batches of 32) alternate with 100 unlabelled (4 batches).
    assert clf.steps_per_epoch_ == 8
    both = small_clf(max_epochs=1).fit(X[:200], y_semi, X_unlabeled=X[200:400])
    assert both.steps_per_epoch_ == 2 * 10  # 300 unlabelled -> 10 batches
    # Scoring ignores the unlabelled rows.
    acc_all = clf.score(X[:100], y[:100])
    assert clf.score(X[:200], y_semi) == pytest.approx(acc_all)


def test_no_unlabeled_data_still_trains_contrastively(digits):
    X, y = digits
    clf = small_clf(max_epochs=1, queue_size=32).fit(X[:64], y[:64])
    assert clf.steps_per_epoch_ == 2
    assert int(clf.module_.queue_ptr) == 0 and clf.key_step_ == 2
    assert np.isfinite(clf.history[-1, "train_loss"])


def test_unlabeled_batches_carry_only_contrastive_loss(digits):
    X, y = digits
    clf = small_clf(max_epochs=1, lambda_c=0.0)
    clf.fit(X[:32], y[:32], X_unlabeled=X[32:64])
    losses = clf.history[-1, "batches", :, "train_loss"]
    assert losses[0] > 0 and losses[1] == 0.0  # labelled CE, then unlabelled 0 * L_con


def test_supervised_only_skips_the_contrastive_branch(digits, monkeypatch):
    from skmoby.network import MoBYv2Network

    def fail(*args, **kwargs):
        raise AssertionError("the contrastive branch ran with lambda_c=0")

    monkeypatch.setattr(MoBYv2Network, "contrastive_terms", fail)
    monkeypatch.setattr(MoBYv2Network, "update_keys", fail)
    X, y = digits
    clf = small_clf(max_epochs=4, lambda_c=0.0, lr=0.05)
    clf.fit(X[:200], y[:200], X_unlabeled=X[200:400])
    assert clf.key_step_ == 4 * clf.steps_per_epoch_ == 4 * 2 * 7  # both kinds of batch
    assert int(clf.module_.queue_ptr) == 0
    assert clf.score(X[400:800], y[400:800]) > 0.3  # chance is 0.1


def test_string_labels_are_kept(digits):
    X, y = digits
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    clf = small_clf(max_epochs=1).fit(X[:100], names[y[:100]])
    assert clf.classes_.dtype.kind == "U"
    assert set(clf.predict(X[:20])) <= set(names)
    assert clf.score(X[:100], names[y[:100]]) >= 0


def test_object_labels_with_minus_one(digits):
    X, y = digits
    yo = np.array(["a" if v < 5 else "b" for v in y[:80]], dtype=object)
    yo[40:] = -1
    clf = small_clf(max_epochs=1).fit(X[:80], yo)
    assert list(clf.classes_) == ["a", "b"]


@pytest.mark.parametrize("kind", ["uint8", "float64", "tensor", "nchw", "rgb"])
def test_input_kinds(digits, kind):
    X, y = digits
    X, y = X[:64], y[:64]
    if kind == "uint8":
        X = (X * 255).round().astype(np.uint8)
    elif kind == "float64":
        X = X.astype(np.float64)
    elif kind == "tensor":
        X, y = torch.from_numpy(X), torch.from_numpy(y)
    elif kind == "nchw":
        X = X[:, None]
    elif kind == "rgb":
        X = np.repeat(X[:, None], 3, axis=1)
    clf = small_clf(max_epochs=1).fit(X, y, X_unlabeled=X[:10])
    assert clf.predict(X[:5]).shape == (5,)
    assert clf.transform(X[:5]).shape == (5, 128)


def test_unlabeled_pixel_types_are_reconciled(digits):
    X, y = digits
    X = X[:40]
    U8 = (X * 255).round().astype(np.uint8)
    clf = small_clf(max_epochs=1)
    U = prepare_fit_data(clf, X, y[:40], U8, reset=True).U
    np.testing.assert_allclose(U, X[:, None], atol=0.5 / 255)  # onto X's [0, 1] scale
    with pytest.raises(ValueError, match="X_unlabeled holds floats but X holds uint8"):
        small_clf(max_epochs=1).fit(U8, y[:40], X_unlabeled=X)


def test_tabular_data():
    rng = np.random.RandomState(0)
    X = rng.randn(120, 5)
    y = (X[:, 0] > 0).astype(int)
    clf = small_clf(backbone="mlp", max_epochs=30, lr=0.1).fit(X, y, X_unlabeled=rng.randn(50, 5))
    assert clf.sample_shape_ == (5,) and clf.n_features_in_ == 5
    assert clf.score(X, y) > 0.8


def test_custom_backbone_module(digits):
    X, y = digits

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 6, 3)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    backbone = Tiny()
    w0 = backbone.conv.weight.detach().clone()
    clf = small_clf(backbone=backbone, max_epochs=1).fit(X[:64], y[:64])
    assert clf.feature_dim_ == 6 and clf.transform(X[:3]).shape == (3, 6)
    assert torch.equal(backbone.conv.weight, w0)  # the user's module is not trained

    class Spatial(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"features of shape \(n, d\)"):
        small_clf(backbone=Spatial()).fit(X[:64], y[:64])


# ------------------------------------------------------- contrastive_loss
def test_contrastive_loss_is_pure_and_repeatable(fitted, digits):
    X, _ = digits
    before = _state(fitted)
    a = fitted.contrastive_loss(X[:50])
    b = fitted.contrastive_loss(X[:50])
    assert a.shape == (50,) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    after = _state(fitted)
    for k in before:
        assert torch.equal(before[k], after[k]), k
    # Its scale is that of two InfoNCE terms against a 64-key queue.
    assert 0 < a.mean() < 2 * np.log(65) + 5


# ------------------------------------------------ reproducibility, sklearn
def test_same_seed_same_predictions(digits):
    X, y = digits
    p1 = small_clf(random_state=3).fit(X[:96], y[:96], X_unlabeled=X[96:160]).predict_proba(X[:50])
    p2 = small_clf(random_state=3).fit(X[:96], y[:96], X_unlabeled=X[96:160]).predict_proba(X[:50])
    p3 = small_clf(random_state=4).fit(X[:96], y[:96], X_unlabeled=X[96:160]).predict_proba(X[:50])
    np.testing.assert_array_equal(p1, p2)
    assert not np.array_equal(p1, p3)


def test_fit_does_not_touch_global_rng(digits):
    X, y = digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small_clf(max_epochs=1).fit(X[:64], y[:64])
    torch.testing.assert_close(torch.rand(3), expected)


def test_clone_get_set_params():
    clf = small_clf(temperature=0.3, queue_size=128)
    c = clone(clf)
    assert c.get_params()["temperature"] == 0.3 and c is not clf
    c.set_params(temperature=0.5, lambda_c=1.0, optimizer__momentum=0.5)
    assert (c.temperature, c.lambda_c, c.optimizer__momentum) == (0.5, 1.0, 0.5)
    assert clf.temperature == 0.3
    assert not any(k.startswith("_") for k in clf.get_params())


def test_pickle_round_trip(fitted, digits):
    X, _ = digits
    clone_ = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(clone_.predict_proba(X[:40]), fitted.predict_proba(X[:40]))
    np.testing.assert_array_equal(clone_.transform(X[:40]), fitted.transform(X[:40]))


def test_partial_fit_continues_training(digits):
    X, y = digits
    clf = small_clf(max_epochs=1)
    clf.partial_fit(X[:64], y[:64], classes=np.arange(10))
    steps = clf.key_step_
    w = clf.module_.head.weight.detach().clone()
    clf.partial_fit(X[64:128], y[64:128])
    assert clf.key_step_ == steps  # a new training run: the schedules start again
    assert sum(clf.history[:, "train_batch_count"]) == 2 * steps
    assert not torch.equal(w, clf.module_.head.weight)
    with pytest.raises(ValueError, match="not seen"):
        clf.partial_fit(X[:4], np.array([11, 11, 12, 12]))


def test_pipeline_with_unlabeled_rows(digits):
    X, y = digits
    flat = FunctionTransformer(lambda a: a.reshape(len(a), -1))
    pipe = make_pipeline(flat, small_clf(backbone="mlp", max_epochs=1))
    pipe.fit(*stack_unlabeled(X[:100], y[:100], X[100:200]))
    assert pipe[-1].steps_per_epoch_ == 2 * 4  # 100 labelled and 100 unlabelled
    assert pipe.predict(X[:5]).shape == (5,)


class _RecordingClf(MoBYv2Classifier):
    seen: list = []  # noqa: RUF012

    def fit(self, X, y, X_unlabeled=None):
        data = X_unlabeled.data if isinstance(X_unlabeled, UnlabeledData) else X_unlabeled
        type(self).seen.append(None if data is None else len(data))
        return super().fit(X, y, X_unlabeled=X_unlabeled)


def test_gridsearch_passes_wrapped_unlabeled_data_whole(digits):
    X, y = digits
    _RecordingClf.seen = []
    base = _RecordingClf(
        backbone="cnn", max_epochs=1, batch_size=32, queue_size=32, random_state=0, device="cpu"
    )
    gs = GridSearchCV(base, {"lambda_c": [0.5, 1.0]}, cv=KFold(2))
    U = X[100:200]  # same length as X: a raw array would be sliced per fold
    gs.fit(X[:100], y[:100], X_unlabeled=UnlabeledData(U))
    assert _RecordingClf.seen and all(n == 100 for n in _RecordingClf.seen)
    assert gs.best_params_["lambda_c"] in (0.5, 1.0)


def test_gridsearch_with_minus_one_scores_labeled_rows_only(digits):
    X, y = digits
    y_semi = y[:120].copy()
    y_semi[::2] = -1
    gs = GridSearchCV(small_clf(max_epochs=1), {"temperature": [0.2, 0.5]}, cv=KFold(2))
    gs.fit(X[:120], y_semi)
    scores = gs.cv_results_["mean_test_score"]
    assert np.all((scores >= 0) & (scores <= 1))
    # Unlabelled rows in the test folds would count as errors if they were scored.
    est = gs.best_estimator_
    assert est.score(X[:120], y_semi) == pytest.approx(est.score(X[1:120:2], y[1:120:2]))


def test_callbacks_keep_working(digits, tmp_path):
    from skorch.callbacks import Checkpoint, ProgressBar

    X, y = digits
    cp = Checkpoint(dirname=str(tmp_path), monitor=None)
    small_clf(max_epochs=1, callbacks=[ProgressBar(), cp]).fit(X[:64], y[:64])
    state = torch.load(tmp_path / "params.pt", weights_only=True)
    assert "queue_weak" in state and any(k.startswith("key_encoder.") for k in state)


def test_unfitted_raises(digits):
    X, _ = digits
    for method in ("predict", "predict_proba", "transform", "contrastive_loss"):
        with pytest.raises(NotFittedError):
            getattr(MoBYv2Classifier(), method)(X[:2])


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("mutate", "err", "match"),
    [
        (
            lambda X, y, U: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y, U),
            ValueError,
            "NaN",
        ),
        (lambda X, y, U: (X, y, np.full_like(U, np.inf)), ValueError, "X_unlabeled.*infinity"),
        (lambda X, y, U: (X, y[:-1], U), ValueError, "different lengths"),
        (
            lambda X, y, U: (X, y, np.zeros((5, 10, 10))),
            ValueError,
            r"X_unlabeled has samples of shape \(1, 10, 10\) but X has \(1, 8, 8\)",
        ),
        (lambda X, y, U: (X, np.zeros_like(y), U), ValueError, "at least 2 classes"),
        (lambda X, y, U: (X[:0], y[:0], U), ValueError, "0 sample"),
        (lambda X, y, U: (X * 3, y, U), ValueError, r"floats in \[0, 1\]"),
        (
            lambda X, y, U: (np.moveaxis(np.repeat(X[:, None], 3, 1), 1, -1), y, U[:, None]),
            ValueError,
            "channels-last",
        ),
        (lambda X, y, U: (X[:, :4, :4], y, None), ValueError, "at least 8x8"),
        (lambda X, y, U: (X, None, U), ValueError, "requires y"),
        (lambda X, y, U: (X, y.astype(float) + 0.5, U), ValueError, "Unknown label type"),
    ],
)
def test_bad_data(digits, mutate, err, match):
    X, y = digits
    X, y, U = mutate(X[:40].copy(), y[:40].copy(), X[40:60].copy())
    with pytest.raises(err, match=match):
        small_clf(max_epochs=1).fit(X, y, X_unlabeled=U)


def test_minus_one_as_a_real_class_is_explained(digits):
    X, _ = digits
    y = np.where(np.arange(40) % 2, 1, -1)
    with pytest.raises(ValueError, match="unlabeled_label=None"):
        small_clf(max_epochs=1).fit(X[:40], y)
    clf = small_clf(max_epochs=1, unlabeled_label=None).fit(X[:40], y)
    assert list(clf.classes_) == [-1, 1]


@pytest.mark.parametrize(
    ("params", "err", "match"),
    [
        ({"backbone": "resnet1000"}, ValueError, "backbone must be one of"),
        ({"backbone": 3}, TypeError, "backbone"),
        ({"lr": -0.1}, ValueError, "lr must be a positive"),
        ({"queue_size": 0}, ValueError, "queue_size must be a positive int"),
        ({"queue_size": 2.5}, ValueError, "queue_size must be a positive int"),
        ({"temperature": 0}, ValueError, "temperature"),
        ({"key_momentum": 1.5}, ValueError, "key_momentum"),
        ({"lambda_c": -1}, ValueError, "lambda_c"),
        ({"batch_size": 1}, ValueError, "batch_size"),
        ({"max_epochs": 0}, ValueError, "max_epochs"),
        ({"precision": "fp8"}, ValueError, "precision"),
        ({"lr_milestones": (0.5, 2)}, ValueError, "lr_milestones"),
        ({"normalize": (0.5, -1)}, ValueError, "std must be positive"),
        ({"normalize": ((48.5,), (61.2,))}, ValueError, "0-255 scale: divide them by 255"),
        ({"normalize": (0.5, 2.0)}, ValueError, r"std in \(0, 1\]"),
        ({"normalize": (np.nan, 0.2)}, ValueError, "normalize must hold finite values"),
        ({"weak_augment": 3}, TypeError, "weak_augment"),
        ({"random_state": "x"}, TypeError, "random_state"),
        ({"random_state": -1}, ValueError, "random_state must be an int in"),
        ({"random_state": 2**64}, ValueError, "random_state must be an int in"),
        ({"key_momentum": "a"}, ValueError, "key_momentum must be"),
        ({"lr_milestones": 0.5}, ValueError, "lr_milestones must be None or a sequence"),
        ({"lr_milestones": "ab"}, ValueError, "lr_milestones must be None or a sequence"),
        ({"optimizer__momentum": 1.0}, ValueError, "optimizer__momentum must be in"),
        (
            {"optimizer": torch.optim.AdamW, "optimizer__momentum": 0.5},
            ValueError,
            "optimizer__momentum=0.5 but the optimizer AdamW takes no momentum",
        ),
    ],
)
def test_bad_hyperparameters(digits, params, err, match):
    X, y = digits
    with pytest.raises(err, match=match):
        small_clf(**params).fit(X[:40], y[:40])


@pytest.mark.parametrize(
    ("optimizer", "momentum", "want"),
    [
        (torch.optim.Adam, 0.9, None),
        (torch.optim.AdamW, None, None),
        (torch.optim.SGD, None, 0),
        (torch.optim.RMSprop, 0.5, 0.5),
        (torch.optim.SGD, 0.9, 0.9),
    ],
)
def test_optimizers_with_and_without_momentum(digits, optimizer, momentum, want):
    # The default momentum reaches only optimizers that take one; None passes none.
    X, y = digits
    clf = small_clf(max_epochs=1, optimizer=optimizer, optimizer__momentum=momentum)
    clf.fit(X[:40], y[:40])
    assert type(clf.optimizer_) is optimizer
    assert clf.optimizer_.defaults.get("momentum") == want
    assert np.isfinite(clf.history[-1, "train_loss"])


def test_tabular_normalize_takes_statistics_on_any_scale(digits):
    # only image pixels are on a fixed [0, 1] scale
    X, y = digits
    rows = X[:60].reshape(60, -1) * 100.0
    clf = small_clf(max_epochs=1, backbone="mlp", normalize=(50.0, 30.0)).fit(rows, y[:60])
    assert clf.mean_[0] == 50.0 and clf.std_[0] == 30.0


def test_unsupported_fit_parameter(digits):
    X, y = digits
    with pytest.raises(TypeError, match="X_unlabelled"):
        small_clf().fit(X[:40], y[:40], X_unlabelled=X[40:80])


def test_predict_checks_shape(fitted, digits):
    _X, _ = digits
    with pytest.raises(ValueError, match="samples of shape"):
        fitted.predict(np.zeros((2, 3, 8, 8), np.float32))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_fit_bf16_channels_last(digits):
    X, y = digits
    X = np.repeat(X[:, None], 3, axis=1)
    clf = small_clf(device="auto", precision="bf16", channels_last=True, max_epochs=2)
    clf.fit(X[:256], y[:256], X_unlabeled=X[256:512])
    assert str(clf.device_).startswith("cuda")
    assert next(clf.module_.parameters()).is_cuda
    assert clf.predict(X[:10]).shape == (10,)
    assert clf.transform(X[:10]).dtype == np.float32


def test_collapsed_training_is_reported(digits):
    from sklearn.exceptions import ConvergenceWarning

    class Dead(torch.nn.Module):
        """An encoder whose ReLU output is always zero, like one whose units all died."""

        feature_dim = 8

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(64, 8)

        def forward(self, x):
            return torch.relu(self.linear(x.flatten(1)) * 0.0 - 1.0)

    X, y = digits
    with pytest.warns(ConvergenceWarning, match="collapsed"):
        small_clf(backbone=Dead(), max_epochs=1).fit(X[:64], y[:64])


def test_healthy_training_is_not_reported_as_collapsed(digits):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        small_clf(max_epochs=1).fit(X[:64], y[:64])


def test_verbose_zero_prints_nothing_after_print_was_replaced(digits, monkeypatch, capsys):
    # Ray replaces builtins.print once its runtime starts in a process; skorch's own
    # PrintLog then prints every epoch whatever `verbose` says.
    import builtins

    original = builtins.print
    monkeypatch.setattr(builtins, "print", lambda *a, **k: original(*a, **k))
    X, y = digits
    small_clf(max_epochs=1, verbose=0).fit(X[:64], y[:64])
    assert capsys.readouterr().out == ""
    small_clf(max_epochs=1, verbose=1).fit(X[:64], y[:64])
    assert "train_loss" in capsys.readouterr().out
