"""Fault cases of MoBYv2Classifier: pickles, clones, checkpoints and loading on another
machine (``_persistence.py``).

One test per case. Each case was first written against the behaviour it reproduces (a
raw traceback, a silently wrong result or a missing feature) and is now the behaviour
the estimator keeps.
"""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from skorch.callbacks import Checkpoint, LoadInitState, TrainEndCheckpoint

from skmoby import MoBYv2Classifier
from tests.classifier.conftest import Interrupt, RecordLR
from tests.conftest import small_clf


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
    full = small_clf(max_epochs=5, lr=1.0, callbacks=[RecordLR(lrs_full)])
    full.fit(X[:64], y[:64])

    cp = Checkpoint(dirname=str(tmp_path), monitor=None)
    first = small_clf(max_epochs=5, lr=1.0, callbacks=[cp, Interrupt(at_epoch=3)])
    first.fit(X[:64], y[:64])
    assert first.interrupted_ and len(first.history) == 2

    lrs = []
    cp2 = Checkpoint(dirname=str(tmp_path), monitor=None)
    resumed = small_clf(max_epochs=5, lr=1.0, callbacks=[cp2, LoadInitState(cp2), RecordLR(lrs)])
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


# ======================================================================== GPU
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


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
