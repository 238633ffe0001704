"""The constructor parameters of :class:`~skmoby.MoBYv2Classifier` and their constraints.

``__init__`` and ``set_params`` only store (scikit-learn's contract); :func:`validate_params`
checks every parameter against :data:`PARAMETER_CONSTRAINTS` when ``fit`` (or
``initialize``) starts. Each constraint raises an error that names the parameter and what
it accepts; the table's order is the order in which parameters are checked.
"""

from __future__ import annotations

import inspect
import numbers
import secrets
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import DataLoader

from ..devices import resolve_device
from ..threads import check_n_threads

__all__ = [
    "DEFAULT_MOMENTUM",
    "PARAMETER_CONSTRAINTS",
    "PRECISIONS",
    "canonical_shape",
    "check_augment_signature",
    "check_epochs",
    "seed_from",
    "takes_argument",
    "validate_params",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: ``optimizer__momentum``'s default: SGD's momentum in the paper. Passed only to
#: optimizers that take a ``momentum`` argument (Adam and AdamW take none).
DEFAULT_MOMENTUM = 0.9

Constraint = Callable[[str, Any, Any], None]


def takes_argument(fn: Any, name: str) -> bool:
    """Whether the callable ``fn`` accepts the keyword argument ``name``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to read: assume it does
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def canonical_shape(input_shape: Any) -> tuple[int, ...]:
    """``input_shape`` as the classifier stores sample shapes: ``(d,)`` or ``(C, H, W)``."""
    try:
        shape = tuple(int(s) for s in input_shape)
        ok = all(s > 0 and s == v for s, v in zip(shape, input_shape, strict=True))
    except (TypeError, ValueError):
        ok = False
    if not ok or len(shape) not in (1, 2, 3):
        raise ValueError(
            "input_shape must be the shape of one sample: (d,), (H, W) or "
            f"(C, H, W) with positive ints; got {input_shape!r}"
        )
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) == 3 and (shape[0] not in (1, 3) or min(shape[1:]) < 8):
        raise ValueError(
            "input_shape of images must be (C, H, W) with C = 1 or 3 and "
            f"H, W >= 8; got {input_shape!r}"
        )
    return shape


AUGMENT_HINT = (
    "an augmentation is called as fn(batch, generator) and returns the batch "
    "augmented, a tensor of the same shape; to use a function of the batch "
    "alone, such as a torchvision transform, wrap it: lambda x, g: t(x) (it "
    "then draws from torch's global generator instead of random_state)"
)


def check_augment_signature(name: str, fn: Any) -> None:
    """Refuse an augmentation that cannot be called as ``fn(batch, generator)``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: the call will tell
        return
    try:
        sig.bind(None, None)
    except TypeError:
        raise TypeError(f"{name}={fn!r} takes {sig}; {AUGMENT_HINT}") from None


# ------------------------------------------------------------------ constraints
def _positive_int(name: str, v: Any, est: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0:
        raise ValueError(f"{name} must be a positive int; got {v!r}")


def _number(allow_zero: bool) -> Constraint:
    def check(name: str, v: Any, est: Any) -> None:
        ok = isinstance(v, int | float | np.number) and not isinstance(v, bool)
        if not ok or not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            what = "a non-negative" if allow_zero else "a positive"
            raise ValueError(f"{name} must be {what} number; got {v!r}")

    return check


_positive = _number(allow_zero=False)
_non_negative = _number(allow_zero=True)


def _batch_size(name: str, v: Any, est: Any) -> None:
    if not (v == -1 or (isinstance(v, int | np.integer) and v > 1)):
        raise ValueError(f"{name} must be an int > 1 (or -1 for all); got {v!r}")


def _sgd_momentum(name: str, v: Any, est: Any) -> None:
    if v is None:
        return
    _non_negative(name, v, est)
    if v >= 1:
        raise ValueError(f"{name} must be in [0, 1) (1 or more makes SGD diverge); got {v!r}")
    if v != DEFAULT_MOMENTUM and not takes_argument(est.optimizer, "momentum"):
        optimizer = getattr(est.optimizer, "__name__", repr(est.optimizer))
        raise ValueError(
            f"{name}={v!r} but the optimizer {optimizer} takes no momentum argument; "
            f"set {name}=None"
        )


def _at_most_one(name: str, v: Any, est: Any) -> None:
    if not v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {v!r}")


def _fractions(name: str, v: Any, est: Any) -> None:
    if v is not None and not (
        isinstance(v, list | tuple | np.ndarray)
        and all(
            isinstance(f, numbers.Real) and not isinstance(f, bool) and 0.0 <= f <= 1.0 for f in v
        )
    ):
        raise ValueError(
            f"{name} must be None or a sequence of fractions of max_epochs in [0, 1]; got {v!r}"
        )


def _one_of(options: tuple[str, ...]) -> Constraint:
    def check(name: str, v: Any, est: Any) -> None:
        if v not in options:
            raise ValueError(f"{name} must be one of {options}; got {v!r}")

    return check


def _auto_or_bool(name: str, v: Any, est: Any) -> None:
    if not (v == "auto" if isinstance(v, str) else isinstance(v, bool | np.bool_)):
        raise TypeError(f"{name} must be 'auto', True or False; got {v!r}")


def _auto_or_augment(name: str, v: Any, est: Any) -> None:
    if not (v == "auto" if isinstance(v, str) else callable(v)):
        raise TypeError(f"{name} must be 'auto' or a callable; got {v!r}")
    if not isinstance(v, str):
        check_augment_signature(name, v)


def _name_or_module(name: str, v: Any, est: Any) -> None:
    if not isinstance(v, nn.Module | str):
        raise TypeError(f"{name} must be a name or a torch.nn.Module; got {type(v)}")


def _n_threads(name: str, v: Any, est: Any) -> None:
    check_n_threads(v)


def _sample_shape(name: str, v: Any, est: Any) -> None:
    if v is not None:
        canonical_shape(v)


def _label_mark(name: str, v: Any, est: Any) -> None:
    if not (
        v is None
        or isinstance(v, str)
        or (isinstance(v, numbers.Number) and not isinstance(v, bool))
    ):
        raise TypeError(f"{name} must be None, a number (e.g. -1 or np.nan) or a string; got {v!r}")


def _callbacks(name: str, v: Any, est: Any) -> None:
    if not (v is None or isinstance(v, list | tuple) or (isinstance(v, str) and v == "disable")):
        raise TypeError(
            f"{name} must be None, 'disable' or a list of skorch callbacks "
            f"(or (name, callback) pairs); got {v!r}"
        )


def _device(name: str, v: Any, est: Any) -> None:
    resolve_device(v)


#: Each parameter's constraints, checked in this order by :func:`validate_params`; a
#: constraint is called as ``check(name, value, estimator)`` and raises on a bad value.
PARAMETER_CONSTRAINTS: dict[str, tuple[Constraint, ...]] = {
    "projection_dim": (_positive_int,),
    "queue_size": (_positive_int,),
    "max_epochs": (_positive_int,),
    "batch_size": (_batch_size,),
    "temperature": (_positive,),
    "lr": (_positive,),
    "lambda_c": (_non_negative,),
    "optimizer__weight_decay": (_non_negative,),
    "optimizer__momentum": (_sgd_momentum,),
    "key_momentum": (_non_negative, _at_most_one),
    "lr_gamma": (_positive,),
    "lr_milestones": (_fractions,),
    "precision": (_one_of(PRECISIONS),),
    "channels_last": (_auto_or_bool,),
    "resident_data": (_auto_or_bool,),
    "capture": (_auto_or_bool,),
    "weak_augment": (_auto_or_augment,),
    "strong_augment": (_auto_or_augment,),
    "backbone": (_name_or_module,),
    "n_threads": (_n_threads,),
    "input_shape": (_sample_shape,),
    "unlabeled_label": (_label_mark,),
    "callbacks": (_callbacks,),
    "device": (_device,),
}


def validate_params(est: Any) -> None:
    """Check the estimator's parameters against :data:`PARAMETER_CONSTRAINTS`.

    Raises
    ------
    ValueError, TypeError
        For the first parameter that breaks a constraint, naming it.
    """
    for name, constraints in PARAMETER_CONSTRAINTS.items():
        value = getattr(est, name)
        for check in constraints:
            check(name, value, est)
    _refuse_training_loader_arguments(est)


def check_epochs(epochs: Any) -> None:
    """Refuse a training call's ``epochs`` unless it is ``None`` or a positive int."""
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs <= 0
    ):
        raise ValueError(f"epochs must be a positive int or None; got {epochs!r}")


def _refuse_training_loader_arguments(est: Any) -> None:
    """skorch's ``iterator_train`` and its arguments would be ignored (training batches
    are drawn on the device, see ``resident_data``): refuse them rather than drop them."""
    names = sorted(k for k in vars(est) if k.startswith("iterator_train__"))
    if est.iterator_train is not DataLoader:
        names.insert(0, "iterator_train")
    if names:
        raise ValueError(
            f"{names[0]} has no effect on {type(est).__name__}: training batches are "
            "drawn on the training device from the data held there (see resident_data), "
            "not by a DataLoader. Remove it (iterator_valid__* still applies to skorch's "
            "forward and validation-loss paths)"
        )


def seed_from(random_state: Any) -> int:
    """The fit's base seed from ``random_state`` (a fresh one for ``None``)."""
    rs = random_state
    if rs is None:
        return secrets.randbits(62)
    if isinstance(rs, np.random.RandomState):
        return int(rs.randint(np.iinfo(np.int32).max))
    if isinstance(rs, int | np.integer) and not isinstance(rs, bool):
        if not 0 <= rs < 2**63:
            raise ValueError(f"random_state must be an int in [0, 2**63); got {rs!r}")
        return int(rs)
    raise TypeError(f"random_state must be None, an int or a numpy RandomState; got {type(rs)}")
