"""Fault cases of MoBYv2Classifier: training calls: Ctrl-C, the schedules of a training
run, sample weights and the learning-rate callback (``classifier.py``, ``_step.py``,
``callbacks.py``).

One test per case. Each case was first written against the behaviour it reproduces (a
raw traceback, a silently wrong result or a missing feature) and is now the behaviour
the estimator keeps.
"""

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback, TrainEndCheckpoint

from skmoby import MoBYv2Classifier
from skmoby.classifier._step import FitState
from tests.classifier.conftest import Interrupt, RecordLR
from tests.conftest import small_clf


# ========================================================== Ctrl-C during fit
def test_interrupted_fit_returns_a_usable_estimator(digits, tmp_path):
    X, y = digits
    end = TrainEndCheckpoint(dirname=str(tmp_path))
    clf = small_clf(max_epochs=5, callbacks=[Interrupt(at_epoch=3), end])
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
    clf = small_clf(max_epochs=5, lr=1.0, callbacks=[RecordLR(lrs)], **kwargs)
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
    full = small_clf(max_epochs=5, lr=1.0, callbacks=[RecordLR(lrs)]).fit(X[:64], y[:64])
    full_lrs, full_momenta = list(lrs), list(momenta)
    lrs.clear()
    momenta.clear()
    clf = small_clf(max_epochs=5, lr=1.0, callbacks=[RecordLR(lrs), Interrupt(3)])
    clf.fit(X[:64], y[:64])
    assert clf.interrupted_
    clf.partial_fit(X[:64], y[:64])  # continues the run: epochs 3 to 5
    assert len(clf.history) == len(full.history) == 5
    np.testing.assert_allclose(lrs, full_lrs)
    np.testing.assert_allclose(momenta, full_momenta)
    assert clf.key_step_ == full.key_step_


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


def test_weights_of_unlabeled_rows_are_ignored(digits):
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
