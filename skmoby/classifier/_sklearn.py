"""scikit-learn conventions of the estimator: its ``repr`` (the parameters that differ
from their defaults) and the estimator checks it is expected to fail."""

from __future__ import annotations

import inspect
from typing import Any

from ._unlabeled import is_scalar_nan

__all__ = ["changed_params", "estimator_repr", "expected_failed_checks"]


def _same_value(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if is_scalar_nan(a) and is_scalar_nan(b):
        return True
    return type(a) is type(b) and repr(a) == repr(b)


def _value_repr(value: Any) -> str:
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        inner = ", ".join(_value_repr(v) for v in value)
        return (
            f"[{inner}]"
            if isinstance(value, list)
            else (f"({inner}{',' if len(value) == 1 else ''})")
        )
    text = repr(value)
    if "\n" in text or len(text) > 60:
        return f"{type(value).__name__}(...)"
    return text


def estimator_repr(est: Any) -> str:
    """scikit-learn's style of ``repr``: the class and the parameters that differ from
    their defaults, wrapped at 79 characters."""
    name = type(est).__name__
    items = [f"{k}={_value_repr(v)}" for k, v in changed_params(est).items()]
    text = f"{name}({', '.join(items)})"
    if len(text) <= 79:
        return text
    lines, line = [], name + "("
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else ")")
        if not line.endswith("(") and len(line) + 1 + len(piece) > 79:
            lines.append(line)
            line = " " * (len(name) + 1) + piece
        else:
            line += ("" if line.endswith("(") else " ") + piece
    return "\n".join([*lines, line])


def changed_params(est: Any) -> dict[str, Any]:
    """Parameters of ``est`` whose value differs from the constructor's (or a base
    class's) default, in the constructor's order."""
    defaults: dict[str, Any] = {}
    for cls in reversed(type(est).__mro__):  # a subclass's default wins
        init = cls.__dict__.get("__init__")
        if init is None or init is object.__init__:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.default is not inspect.Parameter.empty:
                defaults[p.name] = p.default
    order = list(inspect.signature(type(est).__init__).parameters)
    params = est.get_params(deep=False)
    keys = sorted(params, key=lambda k: (order.index(k) if k in order else len(order), k))
    return {
        k: params[k] for k in keys if k not in defaults or not _same_value(params[k], defaults[k])
    }


_EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": (
        "sample_weight scales each labelled row's cross-entropy in minibatch SGD; a row "
        "of weight 2 is not the same as that row twice (other batches, augmentations "
        "and contrastive terms), so the two fits differ"
    ),
    "check_methods_subset_invariance": (
        "may fail: float32 matrix products round differently for different batch "
        "sizes, and features near zero then differ by more than the check's 1e-7 "
        "absolute tolerance"
    ),
}


def expected_failed_checks(estimator: Any) -> dict[str, str]:
    """scikit-learn estimator checks that ``estimator`` is expected to fail, with reasons.

    Hand it to scikit-learn's check runners:
    ``parametrize_with_checks([est], expected_failed_checks=expected_failed_checks)`` or
    ``check_estimator(est, expected_failed_checks=expected_failed_checks(est))``.

    Parameters
    ----------
    estimator : MoBYv2Classifier
        The configuration to be checked.

    Returns
    -------
    dict of str to str
        Check name to the reason it fails.

    Examples
    --------
    >>> from skmoby import MoBYv2Classifier
    >>> sorted(expected_failed_checks(MoBYv2Classifier("mlp")))[:1]
    ['check_classifiers_classes']
    >>> "check_classifiers_classes" in expected_failed_checks(
    ...     MoBYv2Classifier("mlp", unlabeled_label=None))
    False
    """
    failures = dict(_EXPECTED_FAILURES)
    if estimator.unlabeled_label is not None and not is_scalar_nan(estimator.unlabeled_label):
        failures["check_classifiers_classes"] = (
            f"the check trains on the labels {{-1, 1}}; with unlabeled_label="
            f"{estimator.unlabeled_label!r} (the semi-supervised convention) rows labelled "
            f"{estimator.unlabeled_label!r} are unlabelled data, which leaves one class. "
            "Pass unlabeled_label=None (or np.nan) where that label is a class."
        )
    return failures
