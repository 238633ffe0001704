"""The device data path and the step loop of MoBYv2Classifier: resident and streaming
data, no host synchronisation per step, precision and capture settings."""

import warnings

import numpy as np
import pytest
import torch

from skmoby.classifier import _batches
from skmoby.classifier._batches import TrainingBatches, n_batches
from tests.conftest import small_clf

SYNCS = ("item", "__bool__", "__int__", "__float__", "tolist")


@pytest.fixture
def count_syncs(monkeypatch):
    """Count tensor-to-Python conversions (each a stream synchronisation on a GPU)."""
    calls = []
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return calls


@pytest.mark.parametrize("lambda_c", [0.5, 0.0])
def test_no_host_sync_per_step(digits, count_syncs, lambda_c):
    X, y = digits
    epochs = 3
    counts = []
    for n in (64, 256):  # 4 and 16 steps per epoch
        count_syncs.clear()
        clf = small_clf(max_epochs=epochs, lambda_c=lambda_c)
        clf.fit(X[:n], y[:n], X_unlabeled=X[n : 2 * n])
        counts.append(len(count_syncs))
    # One read of the losses per epoch and one of the queue pointer per fit, whatever
    # the number of steps.
    assert counts[0] == counts[1] <= epochs + 1, count_syncs


def test_resident_and_streaming_paths_train_the_same_model(digits):
    X, y = digits
    fits = [
        small_clf(resident_data=r).fit(X[:100], y[:100], X_unlabeled=X[100:200])
        for r in (True, False)
    ]
    assert fits[0].resident_data_ and not fits[1].resident_data_
    np.testing.assert_array_equal(fits[0].transform(X[:50]), fits[1].transform(X[:50]))


def test_data_that_does_not_fit_is_streamed_with_a_warning(digits, monkeypatch):
    X, y = digits
    monkeypatch.setattr(_batches, "free_device_memory", lambda device: 1000)  # 1 kB free
    with pytest.warns(RuntimeWarning, match="streamed from host memory"):
        clf = small_clf(max_epochs=1).fit(X[:100], y[:100])
    assert not clf.resident_data_
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = small_clf(max_epochs=1, resident_data=False).fit(X[:100], y[:100])


def test_training_batches_alternate_and_cover_the_data():
    X = np.arange(70, dtype=np.float32).reshape(70, 1)
    y = np.arange(70, dtype=np.int64)
    U = -np.arange(1, 31, dtype=np.float32).reshape(30, 1)
    batches = TrainingBatches(X, y, U, 32, torch.device("cpu"), True, seed=0)
    # 70 labelled -> 3 batches (the lone 70th sample... 70 % 32 = 6, kept), 30 -> 1.
    assert len(batches) == 2 * max(n_batches(70, 32), n_batches(30, 32)) == 6
    items = list(batches)
    assert [yb is None for _, yb in items] == [False, True] * 3
    seen = torch.cat([xb for xb, yb in items if yb is not None]).flatten()
    assert sorted(seen.tolist()) == list(range(70))  # each labelled sample once
    for xb, yb in items:
        if yb is not None:
            np.testing.assert_array_equal(xb.flatten().numpy(), yb.numpy())
        else:
            assert (xb < 0).all()
    # a new epoch, a new order
    again = torch.cat([xb for xb, yb in batches if yb is not None]).flatten()
    assert not torch.equal(seen, again)


def test_lone_last_sample_is_dropped():
    X = np.zeros((33, 1), np.float32)
    batches = TrainingBatches(
        X, np.zeros(33, np.int64), None, 32, torch.device("cpu"), True, seed=0
    )
    assert [len(xb) for xb, _ in batches] == [32]


def test_uint8_images_stay_uint8_on_the_device(digits, monkeypatch):
    from skmoby.classifier import classifier as classifier_module

    X, y = digits
    X8 = (X[:64] * 255).round().astype(np.uint8)
    clf = small_clf(max_epochs=1)
    seen = []
    original = classifier_module.step_loss

    def spy(est, xb, yb, generator):
        seen.append(xb.dtype)
        return original(est, xb, yb, generator)

    monkeypatch.setattr(classifier_module, "step_loss", spy)
    clf.fit(X8, y[:64])
    assert seen and set(seen) == {torch.uint8}


def test_cpu_defaults_resolve_to_fp32_eager(fitted):
    assert fitted.precision_ == "fp32" and fitted.channels_last_ is False
    assert fitted.capture_ is False


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"precision": "fp16"}, ValueError, "precision='fp16' needs a CUDA device"),
        ({"capture": True}, ValueError, "capture=True cannot capture"),
        ({"capture": "yes"}, TypeError, "capture must be 'auto', True or False"),
        ({"resident_data": 1}, TypeError, "resident_data must be"),
        ({"optimizer__momentum": 1.5}, ValueError, "optimizer__momentum"),
    ],
)
def test_bad_settings(digits, params, error, match):
    X, y = digits
    with pytest.raises(error, match=match):
        small_clf(max_epochs=1, **params).fit(X[:64], y[:64])


def test_divergence_raises_with_the_epoch(digits):
    X, y = digits
    msg = r"diverged: the loss became (nan|inf) in epoch [12]\. Try a lower lr"
    with pytest.raises(ValueError, match=msg):
        small_clf(max_epochs=3, lr=1e6).fit(X[:64], y[:64])


def test_bf16_autocast_on_cpu_trains(digits):
    X, y = digits
    clf = small_clf(max_epochs=1, precision="bf16").fit(X[:64], y[:64])
    assert clf.precision_ == "bf16"
    assert np.isfinite(clf.history[-1, "train_loss"])


# ---------------------------------------------------------------------- GPU
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("lambda_c", [0.5, 0.0])
def test_gpu_captured_steps_match_eager_steps(digits, lambda_c):
    X, y = digits
    X = np.repeat(X[:, None], 3, axis=1)
    kw = dict(device="cuda", precision="fp32", max_epochs=3, lambda_c=lambda_c)
    eager = small_clf(capture=False, **kw).fit(X[:256], y[:256], X_unlabeled=X[256:512])
    captured = small_clf(capture=True, **kw).fit(X[:256], y[:256], X_unlabeled=X[256:512])
    assert captured.capture_ and not eager.capture_
    a = np.array(eager.history[:, "batches", :, "train_loss"], dtype=float)
    b = np.array(captured.history[:, "batches", :, "train_loss"], dtype=float)
    np.testing.assert_allclose(b, a, rtol=2e-2, atol=2e-3)
    assert int(captured.module_.queue_ptr) == int(eager.module_.queue_ptr)
    np.testing.assert_allclose(
        captured.transform(X[:64]), eager.transform(X[:64]), rtol=5e-2, atol=5e-2
    )


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("capture", [True, False])
def test_gpu_no_sync_in_steady_state_steps(digits, capture):
    from skorch.callbacks import Callback

    class SyncDebug(Callback):
        """Error on any synchronising CUDA call from the 2nd to the last step of epoch 2
        (captured steps are replayed there; the last step's end reads the losses)."""

        def on_batch_begin(self, net, **kw):
            if len(net.history) == 2 and len(net.history[-1]["batches"]) == 2:
                torch.cuda.set_sync_debug_mode("error")

        def on_batch_end(self, net, **kw):
            if len(net.history[-1]["batches"]) == net.steps_per_epoch_:
                torch.cuda.set_sync_debug_mode("default")

    X, y = digits
    X = np.repeat(X[:, None], 3, axis=1)
    try:
        clf = small_clf(device="cuda", max_epochs=3, capture=capture, callbacks=[SyncDebug()])
        clf.fit(X[:512], y[:512], X_unlabeled=X[512:1024])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert clf.capture_ is capture


def test_bf16_on_a_gpu_without_bf16_names_the_parameter(monkeypatch):
    from skmoby.classifier._views import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **kw: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    cuda = torch.device("cuda")
    with pytest.raises(ValueError, match="precision='bf16' needs a GPU with bfloat16"):
        resolve_precision("bf16", cuda)
    assert resolve_precision("auto", cuda) == "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **kw: True)
    assert resolve_precision("auto", cuda) == "bf16"


def test_capture_rules():
    from types import SimpleNamespace

    from skorch.callbacks import Callback, EpochTimer

    from skmoby.classifier._step import resolve_capture

    class ReadsGradients(Callback):
        def on_grad_computed(self, net, named_parameters, **kw):
            pass

    def est(**kw):
        base = dict(
            capture="auto",
            device_="cuda",
            optimizer=torch.optim.SGD,
            precision_="bf16",
            callbacks_=[("timer", EpochTimer())],
        )
        return SimpleNamespace(**{**base, **kw})

    assert resolve_capture(est()) is True
    assert resolve_capture(est(capture=False)) is False
    for change in [
        dict(device_="cpu"),
        dict(optimizer=torch.optim.Adam),
        dict(precision_="fp16"),
        dict(callbacks_=[("g", ReadsGradients())]),
    ]:
        assert resolve_capture(est(**change)) is False
        with pytest.raises(ValueError, match="capture=True cannot capture"):
            resolve_capture(est(capture=True, **change))
