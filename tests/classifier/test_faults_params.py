"""Fault cases of MoBYv2Classifier: parameters and the device, scikit-learn conventions and
``repr`` (``_params.py``, ``_setup.py``, ``_sklearn.py``).

One test per case. Each case was first written against the behaviour it reproduces (a
raw traceback, a silently wrong result or a missing feature) and is now the behaviour
the estimator keeps.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import Checkpoint

from skmoby import MoBYv2Classifier
from skmoby.classifier import classifier as classifier_module
from skmoby.classifier import expected_failed_checks
from tests.conftest import small_clf


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
