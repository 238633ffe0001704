"""The estimator's scikit-learn and skorch parts that need no network: its callbacks
(learning-rate schedule, print log, validation accuracy), its scikit-learn style
``repr`` and the estimator checks it is expected to fail."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import numpy as np
from skorch.callbacks import LRScheduler, PrintLog
from skorch.utils import to_numpy
from torch.optim.lr_scheduler import MultiStepLR

from . import _validation

if TYPE_CHECKING:
    from .classifier import MoBYv2Classifier

__all__ = [
    "MilestoneLR",
    "QuietPrintLog",
    "estimator_repr",
    "expected_failed_checks",
    "valid_accuracy",
]

# The sink skorch's PrintLog binds by default: builtins.print as it was when skorch was
# imported.
_SKORCH_PRINT = inspect.signature(PrintLog).parameters["sink"].default


class MilestoneLR(LRScheduler):
    """skorch's ``LRScheduler`` with PyTorch's ``MultiStepLR``: the learning rate is
    multiplied by ``net.lr_gamma`` at fractions ``net.lr_milestones`` of
    ``net.max_epochs`` (the paper: x0.1 at 60% and 80% of training).

    The milestones count the epochs of the current training run (see
    :meth:`MoBYv2Classifier.partial_fit`): a call that starts a new run starts again from
    the initial rate, one that continues an unfinished run (after an interrupt, or from
    a checkpoint restored by ``LoadInitState``) continues the schedule where it stopped.
    The estimator places this callback after the user's callbacks, so that it reads the
    run's position once ``LoadInitState`` has restored the history, and so that user
    callbacks see an epoch's own rate at its end (the rate steps after them).

    Parameters
    ----------
    event_name : str or None, default="event_lr"
        History key of each epoch's learning rate; ``None`` records none.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmoby import MoBYv2Classifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MoBYv2Classifier("mlp", max_epochs=5, lr_milestones=(0.4,), batch_size=64,
    ...                        queue_size=64, random_state=0, device="cpu")
    >>> clf.fit(X[:200] / 16, y[:200]).history[:, "event_lr"]  # x0.1 after epoch 2
    [0.01, 0.01, 0.001, 0.001, 0.001]
    """

    def __init__(self, event_name: str | None = "event_lr") -> None:
        super().__init__(
            policy=MultiStepLR, monitor=None, event_name=event_name, step_every="epoch"
        )

    def on_train_begin(self, net, **kwargs):
        done, _ = net._run_position()
        self.milestones = [round(f * net.max_epochs) for f in net.lr_milestones or ()]
        self.gamma = net.lr_gamma
        # MultiStepLR steps from the rate of the last finished epoch of the run.
        passed = sum(m <= done - 1 for m in self.milestones)
        for group in net.optimizer_.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * self.gamma**passed
        self.last_epoch = done - 1
        super().on_train_begin(net, **kwargs)


def valid_accuracy(net, X, y):
    """Validation accuracy where ``y`` holds the encoded class indices of the valid split."""
    return float(np.mean(net.predict(X) == net.classes_[to_numpy(y).astype(int)]))


class QuietPrintLog(PrintLog):
    """skorch's ``PrintLog`` that stays silent at ``verbose=0`` whatever ``print`` is now.

    skorch decides whether its default sink is ``print`` by identity with the current
    ``builtins.print``. Libraries that replace ``builtins.print`` (Ray does, for its
    progress bars, once a Ray runtime has started in the process) make every later fit
    print its epoch table even at ``verbose=0``. Here the default sink is recognised as
    either the current ``print`` or the one skorch bound; any other sink receives every
    line, as in skorch.
    """

    def _sink(self, text, verbose):
        if verbose or (self.sink is not print and self.sink is not _SKORCH_PRINT):
            self.sink(text)


def _same_value(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if _validation.is_scalar_nan(a) and _validation.is_scalar_nan(b):
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


def expected_failed_checks(estimator: MoBYv2Classifier) -> dict[str, str]:
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
    if estimator.unlabeled_label is not None and not _validation.is_scalar_nan(
        estimator.unlabeled_label
    ):
        failures["check_classifiers_classes"] = (
            f"the check trains on the labels {{-1, 1}}; with unlabeled_label="
            f"{estimator.unlabeled_label!r} (the semi-supervised convention) rows labelled "
            f"{estimator.unlabeled_label!r} are unlabelled data, which leaves one class. "
            "Pass unlabeled_label=None (or np.nan) where that label is a class."
        )
    return failures
