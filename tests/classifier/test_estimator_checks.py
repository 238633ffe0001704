"""scikit-learn's estimator-check suite on a tiny tabular configuration.

The estimator keeps its default semi-supervised convention (``y == -1`` marks unlabelled
rows); the checks it is expected to fail come from ``skmoby.classifier.
expected_failed_checks``, the mapping users hand to ``parametrize_with_checks``. The
checks that fit many times are marked slow.
"""

import pytest
from _pytest.mark import ParameterSet
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmoby import MoBYv2Classifier
from skmoby.classifier import expected_failed_checks

ESTIMATOR = MoBYv2Classifier(
    "mlp",
    max_epochs=3,
    batch_size=16,
    queue_size=32,
    device="cpu",
    random_state=0,
)

# Several fits each, most of the suite's time.
SLOW = {
    "check_classifiers_train",
    "check_fit_idempotent",
    "check_estimators_dtypes",
    "check_positive_only_tag_during_fit",
    "check_fit_score_takes_y",
}


def _check_name(check):
    return getattr(check, "func", check).__name__


def _params():
    mark = parametrize_with_checks([ESTIMATOR], expected_failed_checks=expected_failed_checks)
    ids = mark.kwargs["ids"]
    for item in mark.args[1]:
        values, marks = (
            (item.values, list(item.marks)) if isinstance(item, ParameterSet) else (item, [])
        )
        if _check_name(values[1]) in SLOW:
            marks.append(pytest.mark.slow)
        yield pytest.param(*values, marks=marks, id=f"{ids(values[0])}-{ids(values[1])}")


@pytest.mark.parametrize("estimator, check", list(_params()))
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_the_default_convention_is_the_only_class_check_expected_to_fail():
    reasons = expected_failed_checks(ESTIMATOR)
    assert "check_classifiers_classes" in reasons
    assert set(reasons) - {"check_classifiers_classes"} == set(
        expected_failed_checks(MoBYv2Classifier("mlp", unlabeled_label=None))
    )
