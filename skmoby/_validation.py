"""Input and hyperparameter validation of :class:`~skmoby.MoBYv2Classifier`.

Each function takes the estimator as its first argument; the estimator binds them as
private methods. Validation happens in ``fit`` (scikit-learn's contract: ``__init__`` and
``set_params`` only store), and every error names the argument and what was expected.
"""

from __future__ import annotations

import inspect
import math
import numbers
import secrets
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data
from torch import nn

from .devices import resolve_device
from .threads import check_n_threads

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class UnlabeledData:
    """A holder for unlabelled samples that scikit-learn passes to ``fit`` whole.

    scikit-learn's cross-validation (``GridSearchCV``, ``cross_validate``) slices every
    fit parameter whose length equals ``len(X)`` along with ``X``. Wrapping
    ``X_unlabeled`` in this object (which has no length) keeps it out of that slicing, so
    every fold trains with all of it.

    Parameters
    ----------
    data : array-like or torch.Tensor
        The unlabelled samples, with the same per-sample shape as ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> u = UnlabeledData(np.zeros((5, 8, 8)))
    >>> u.data.shape
    (5, 8, 8)
    """

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data

    def __repr__(self) -> str:
        shape = getattr(self.data, "shape", None)
        return f"UnlabeledData(shape={tuple(shape) if shape is not None else '?'})"


def is_scalar_nan(value: Any) -> bool:
    """Whether ``value`` is a float NaN (``np.nan``, ``float("nan")``)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isnan(value)


def stack_unlabeled(
    X: Any, y: Any, X_unlabeled: Any, unlabeled_label: Any = -1
) -> tuple[np.ndarray, np.ndarray]:
    """Append unlabelled samples to ``X`` and mark them in ``y`` with ``unlabeled_label``.

    The form of unlabelled data that every step of a scikit-learn ``Pipeline`` sees:
    ``pipe.fit(*stack_unlabeled(X, y, U))`` sends the unlabelled rows through the
    steps before the classifier (a scaler is fitted on them too), where
    ``pipe.fit(X, y, clf__X_unlabeled=U)`` would hand them to the classifier
    untransformed (the classifier refuses that). ``GridSearchCV`` then splits labelled
    and unlabelled rows alike into folds; the unlabelled rows of a test fold are not
    scored.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n, ...)
        Labelled samples.
    y : array-like of shape (n,)
        Their labels.
    X_unlabeled : array-like or torch.Tensor of shape (m, ...)
        Unlabelled samples, with the per-sample shape of ``X``.
    unlabeled_label : int, float, str or None, default=-1
        The classifier's ``unlabeled_label``: ``-1`` or ``np.nan`` (then ``y`` becomes
        float). String labels get an object array, so that ``-1`` stays an int.

    Returns
    -------
    X_all : ndarray of shape (n + m, ...)
    y_all : ndarray of shape (n + m,)

    Raises
    ------
    ValueError
        When ``X_unlabeled`` has another per-sample shape than ``X``, when ``X`` and
        ``y`` differ in length, or when ``unlabeled_label`` is None.

    Examples
    --------
    >>> import numpy as np
    >>> X_all, y_all = stack_unlabeled(np.zeros((3, 2)), np.array([0, 1, 0]),
    ...                                np.ones((2, 2)))
    >>> X_all.shape, y_all.tolist()
    ((5, 2), [0, 1, 0, -1, -1])
    """
    X, U = (
        np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a) for a in (X, X_unlabeled)
    )
    y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if unlabeled_label is None:
        raise ValueError("unlabeled_label must mark unlabelled rows; got None")
    if X.ndim < 1 or U.ndim != X.ndim or U.shape[1:] != X.shape[1:]:
        raise ValueError(
            f"X_unlabeled must have the per-sample shape of X {X.shape[1:]}; "
            f"got {U.shape[1:] if U.ndim else U.shape}"
        )
    if len(X) != len(y):
        raise ValueError(f"X and y have different lengths: {len(X)} and {len(y)}")
    if is_scalar_nan(unlabeled_label):
        y = y.astype(np.float64)
        marks = np.full(len(U), np.nan)
    elif y.dtype.kind in "USO" or isinstance(unlabeled_label, str):
        y = y.astype(object)
        marks = np.full(len(U), unlabeled_label, dtype=object)
    else:
        marks = np.full(len(U), unlabeled_label)
    return np.concatenate([X, U]), np.concatenate([y, marks])


#: ``optimizer__momentum``'s default: SGD's momentum in the paper. Passed only to
#: optimizers that take a ``momentum`` argument (Adam and AdamW take none).
DEFAULT_MOMENTUM = 0.9


def takes_argument(fn: Any, name: str) -> bool:
    """Whether the callable ``fn`` accepts the keyword argument ``name``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to read: assume it does
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def check_hyperparameters(est) -> None:
    def positive_int(name):
        v = getattr(est, name)
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0:
            raise ValueError(f"{name} must be a positive int; got {v!r}")

    def positive(name, allow_zero=False):
        v = getattr(est, name)
        ok = isinstance(v, int | float | np.number) and not isinstance(v, bool)
        if not ok or not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            what = "a non-negative" if allow_zero else "a positive"
            raise ValueError(f"{name} must be {what} number; got {v!r}")

    for name in ("projection_dim", "queue_size", "max_epochs"):
        positive_int(name)
    if not (
        est.batch_size == -1
        or (isinstance(est.batch_size, int | np.integer) and est.batch_size > 1)
    ):
        raise ValueError(f"batch_size must be an int > 1 (or -1 for all); got {est.batch_size!r}")
    positive("temperature")
    positive("lr")
    positive("lambda_c", allow_zero=True)
    positive("optimizer__weight_decay", allow_zero=True)
    if est.optimizer__momentum is not None:
        positive("optimizer__momentum", allow_zero=True)
        if est.optimizer__momentum >= 1:
            raise ValueError(
                "optimizer__momentum must be in [0, 1) (1 or more makes SGD "
                f"diverge); got {est.optimizer__momentum!r}"
            )
        if est.optimizer__momentum != DEFAULT_MOMENTUM and not takes_argument(
            est.optimizer, "momentum"
        ):
            name = getattr(est.optimizer, "__name__", repr(est.optimizer))
            raise ValueError(
                f"optimizer__momentum={est.optimizer__momentum!r} but the optimizer {name} "
                "takes no momentum argument; set optimizer__momentum=None"
            )
    positive("key_momentum", allow_zero=True)
    if not est.key_momentum <= 1.0:
        raise ValueError(f"key_momentum must be in [0, 1]; got {est.key_momentum!r}")
    positive("lr_gamma")
    ms = est.lr_milestones
    if ms is not None and not (
        isinstance(ms, list | tuple | np.ndarray)
        and all(
            isinstance(f, numbers.Real) and not isinstance(f, bool) and 0.0 <= f <= 1.0 for f in ms
        )
    ):
        raise ValueError(
            f"lr_milestones must be None or a sequence of fractions of max_epochs in "
            f"[0, 1]; got {ms!r}"
        )
    if est.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {est.precision!r}")
    for name in ("channels_last", "resident_data", "capture"):
        v = getattr(est, name)
        if not (v == "auto" if isinstance(v, str) else isinstance(v, bool | np.bool_)):
            raise TypeError(f"{name} must be 'auto', True or False; got {v!r}")
    for name in ("weak_augment", "strong_augment"):
        v = getattr(est, name)
        if not (v == "auto" if isinstance(v, str) else callable(v)):
            raise TypeError(f"{name} must be 'auto' or a callable; got {v!r}")
        if not isinstance(v, str):
            check_augment_signature(name, v)
    if not (isinstance(est.backbone, nn.Module | str)):
        raise TypeError(f"backbone must be a name or a torch.nn.Module; got {type(est.backbone)}")
    check_n_threads(est.n_threads)
    if est.input_shape is not None:
        canonical_shape(est.input_shape)
    ul = est.unlabeled_label
    if not (
        ul is None
        or isinstance(ul, str)
        or (isinstance(ul, numbers.Number) and not isinstance(ul, bool))
    ):
        raise TypeError(
            f"unlabeled_label must be None, a number (e.g. -1 or np.nan) or a string; got {ul!r}"
        )
    cbs = est.callbacks
    if not (
        cbs is None or isinstance(cbs, list | tuple) or (isinstance(cbs, str) and cbs == "disable")
    ):
        raise TypeError(
            "callbacks must be None, 'disable' or a list of skorch callbacks "
            f"(or (name, callback) pairs); got {cbs!r}"
        )
    resolve_device(est.device)


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


def init_without_data(est) -> None:
    """Set the data-derived state ``initialize()`` needs from the constructor
    parameters ``input_shape`` and ``classes`` (a fit sets it from the data instead).

    Normalisation statistics are those of an explicit ``normalize=(mean, std)``; with
    ``"auto"`` they stay unset until :meth:`load_params` restores them with the weights.
    """
    name = type(est).__name__
    if est.input_shape is None:
        raise ValueError(
            f"{name}.initialize() without data needs input_shape, the shape of one "
            "sample ((C, H, W), (H, W) or (d,)), and classes, the class labels; or call "
            "fit(X, y), which takes both from the data"
        )
    if est.classes is None or len(est.classes) < 2:
        raise ValueError(
            f"{name}.initialize() without data needs classes, the class "
            f"labels (at least 2); got classes={est.classes!r}"
        )
    shape = canonical_shape(est.input_shape)
    est.sample_shape_ = shape
    est.n_features_in_ = shape[0]
    est.classes_inferred_ = np.asarray(est.classes)
    if isinstance(est.normalize, str) or est.normalize is None:
        est.mean_ = est.std_ = None
    else:
        fit_normalization(est, np.zeros((1, *shape), np.float32))


def check_backbone(est) -> None:
    """Run a module ``backbone`` on two zero samples of the data's shape, in eval mode,
    and turn a failure into a ``ValueError`` that names the backbone and what it
    expected (a wrong channel or feature count, typically)."""
    module = est.backbone
    if not isinstance(module, nn.Module):
        return
    shape = est.sample_shape_
    first = next(module.parameters(), None)
    probe = torch.zeros((2, *shape), device=first.device if first is not None else "cpu")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as exc:
        name = type(module).__name__
        layer = next(
            (
                m
                for m in module.modules()
                if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)
            ),
            None,
        )
        if isinstance(layer, nn.Conv2d) and len(shape) == 3 and layer.in_channels != shape[0]:
            what = (
                f"expects {layer.in_channels} input channels (its first convolution), "
                f"but the data has {shape[0]}"
            )
        elif isinstance(layer, nn.Linear) and len(shape) == 1 and layer.in_features != shape[0]:
            what = (
                f"expects {layer.in_features} input features (its first linear "
                f"layer), but the data has {shape[0]}"
            )
        else:
            what = "fails on them"
        raise ValueError(
            f"backbone {name} {what}: samples of shape {shape} (the training data's) "
            f"raise {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        module.train(was_training)
    dim = getattr(module, "feature_dim", None)
    if (
        isinstance(out, torch.Tensor)
        and out.ndim == 2
        and isinstance(dim, numbers.Integral)
        and not isinstance(dim, bool)
        and out.shape[1] != dim
    ):
        raise ValueError(
            f"backbone {type(module).__name__} declares feature_dim={dim} but maps samples "
            f"of shape {shape} to features of shape {tuple(out.shape[1:])}; correct "
            "feature_dim or delete it (the output's width is then used)"
        )


def seed(est) -> int:
    rs = est.random_state
    if rs is None:
        return secrets.randbits(62)
    if isinstance(rs, np.random.RandomState):
        return int(rs.randint(np.iinfo(np.int32).max))
    if isinstance(rs, int | np.integer) and not isinstance(rs, bool):
        if not 0 <= rs < 2**63:
            raise ValueError(f"random_state must be an int in [0, 2**63); got {rs!r}")
        return int(rs)
    raise TypeError(f"random_state must be None, an int or a numpy RandomState; got {type(rs)}")


def as_array(X: Any, name: str) -> Any:
    """``X`` as an array: tensors and sequences (lists, objects with ``__array__``) are
    converted, arrays and data frames kept; scalars and ragged sequences raise."""
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    if isinstance(X, str | bytes | numbers.Number) or not (
        hasattr(X, "__len__") or hasattr(X, "__array__")
    ):
        raise TypeError(
            f"{name} must be an array-like of samples (n, ...); got {type(X).__name__} {X!r:.40}"
        )
    if not hasattr(X, "shape"):  # a list: its nesting decides the sample shape
        try:
            X = np.asarray(X)
        except ValueError as exc:
            raise ValueError(
                f"{name} must hold samples of one shape; got a ragged sequence ({exc})"
            ) from exc
    if np.ndim(X) == 0:
        raise TypeError(f"{name} must be an array-like of samples (n, ...); got a scalar")
    return X


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def as_float32(X: np.ndarray, name: str) -> np.ndarray:
    """The finite array ``X`` as float32, refusing values that float32 cannot hold.

    The network computes in float32, where a value beyond about 3.4e38 becomes
    infinity and every prediction from it NaN. The cast itself reports the overflow
    (numpy's floating-point error state), so no pass over the data is added; only the
    error message looks for the offending value.
    """
    try:
        with np.errstate(over="raise"):
            return X.astype(np.float32, copy=False)
    except FloatingPointError:
        pass
    big = np.abs(X) > _FLOAT32_MAX
    n_big = int(big.sum())
    where = np.unravel_index(int(np.argmax(big)), X.shape)
    raise ValueError(
        f"{name} holds {n_big} value{'s' if n_big != 1 else ''} outside float32's "
        "finite range "
        f"(magnitude at most {_FLOAT32_MAX:.4g}), e.g. {float(X[where]):.4g} at index "
        f"{tuple(int(i) for i in where)}; the classifier computes in float32, so pass "
        f"finite values within that range (rescale {name}, e.g. with StandardScaler)"
    )


def check_X(est, X: Any, name: str, reset: bool) -> np.ndarray:
    """``X`` (or ``X_unlabeled``, by ``name``) checked and in the classifier's form.

    Samples become ``(n, d)`` rows or ``(n, C, H, W)`` images, as float32 (uint8 images
    stay uint8). Values must be finite and within float32's range (magnitude at most
    about 3.4e38), which the network computes in; anything else raises ``ValueError``
    naming ``name``.
    """
    X = as_array(X, name)
    check = dict(dtype="numeric", allow_nd=True, ensure_all_finite=True)
    fitted_shape = tuple(getattr(est, "sample_shape_", None) or ())
    if not reset and getattr(X, "ndim", 2) == 2 and len(fitted_shape) == 3:
        # before scikit-learn's feature count, which counts image channels here
        raise ValueError(
            f"{name} has samples of shape {tuple(np.shape(X)[1:])} but the training data "
            f"has images of shape {fitted_shape}; pass (n, H, W) or (n, C, H, W) images"
        )
    if name == "X" and getattr(X, "ndim", 2) == 2:
        # Tabular data: scikit-learn's bookkeeping of n_features_in_ / feature names.
        X = validate_data(est, X, reset=reset, **check)
    else:
        X = check_array(X, input_name=name, **check)
        if name == "X" and reset:
            est.n_features_in_ = X.shape[1] if X.ndim == 4 else 1
            est.__dict__.pop("feature_names_in_", None)
    if X.ndim > 4:
        raise ValueError(f"{name} must have shape (n, d), (n, H, W) or (n, C, H, W); got {X.shape}")
    if X.ndim == 3:
        X = X[:, None]
    if X.ndim == 4:
        if X.shape[1] not in (1, 3):
            hint = ""
            if X.shape[-1] in (1, 3):
                hint = " It looks channels-last: pass np.moveaxis(X, -1, 1)."
            raise ValueError(
                f"{name} must hold images of shape (n, C, H, W) with C = 1 or 3; got "
                f"{X.shape}.{hint}"
            )
        if min(X.shape[2:]) < 8:
            raise ValueError(f"{name} must hold images of at least 8x8; got {X.shape}")
        if X.dtype != np.uint8:
            lo, hi = (float(X.min()), float(X.max())) if X.size else (0.0, 0.0)
            if lo < 0.0 or hi > 1.0:
                raise ValueError(
                    f"{name} holds images with values in [{lo:.3g}, {hi:.3g}]; "
                    "pass floats in [0, 1] or uint8 in [0, 255] (normalisation is "
                    "done by the classifier, see `normalize`)"
                )
    if X.dtype != np.uint8 or X.ndim == 2:
        X = as_float32(X, name)
    if not reset or name != "X":
        expected = est.sample_shape_
        if tuple(X.shape[1:]) != tuple(expected):
            ref = "the training data" if name == "X" else "X"
            raise ValueError(
                f"{name} has samples of shape {tuple(X.shape[1:])} but {ref} has {tuple(expected)}"
            )
    return X


def refuse_text_mark(y: np.ndarray, ul: Any) -> None:
    """Refuse string labels that spell the number ``ul`` marking unlabelled rows.

    ``"-1"`` in a string ``y`` is no ``-1``: taken as it is, it would silently become a
    class (and be predicted); taken as unlabelled, the integer convention would be
    guessed from text. Either could be meant, so the caller says which.
    """
    text = str(ul)
    decode = ""
    if y.dtype == object:
        hits = int(sum(isinstance(v, str) and v == text for v in y))
    elif y.dtype.kind == "U":
        hits = int((y == text).sum())
    else:  # bytes: unlabeled_label cannot be bytes
        hits, decode = int((y == text.encode()).sum()), "decode y to str and "
    if hits:
        raise ValueError(
            f"y holds the string {text!r} in {hits} row{'s' if hits != 1 else ''}; "
            f"unlabelled rows are marked with the number {ul!r} (unlabeled_label="
            f"{ul!r}), not its text. Mark them with {ul!r} in an object array, "
            f"{decode}set unlabeled_label={text!r} to treat the string as unlabelled, "
            f"or unlabeled_label=None to keep {text!r} as a class"
        )


def unlabeled_mask(est, y: np.ndarray) -> np.ndarray:
    """Which rows of ``y`` are unlabelled (equal to ``est.unlabeled_label``).

    Raises ``ValueError`` when ``y`` holds strings and one spells a numeric
    ``unlabeled_label`` (``"-1"`` for ``-1``): whether it is a class or a mark is the
    caller's to say.
    """
    ul = est.unlabeled_label
    if ul is None:
        return np.zeros(len(y), dtype=bool)
    if is_scalar_nan(ul):  # scikit-activeml's convention: NaN marks missing labels
        if y.dtype.kind == "f":
            return np.isnan(y)
        if y.dtype == object:
            return np.array([is_scalar_nan(v) for v in y], dtype=bool)
        return np.zeros(len(y), dtype=bool)
    if y.dtype.kind in "USO":  # compare like with like: the string "-1" is no -1
        if not isinstance(ul, str):
            refuse_text_mark(y, ul)
        return np.array(
            [isinstance(v, str) == isinstance(ul, str) and v == ul for v in y], dtype=bool
        )
    if isinstance(ul, str):
        return np.zeros(len(y), dtype=bool)
    return y == ul


def prepare_fit_data(est, X, y, X_unlabeled, reset: bool, classes=None, sample_weight=None):
    """Validate inputs; return labelled X, encoded y, unlabelled X (or None) and the
    weights of the labelled rows (or None), rescaled to average 1."""
    if y is None:
        raise ValueError(
            f"{type(est).__name__} requires y to be passed, but the target y is None "
            "(mark unlabelled rows with unlabeled_label instead)"
        )
    if isinstance(X_unlabeled, UnlabeledData):
        X_unlabeled = X_unlabeled.data
    if X_unlabeled is not None:
        X_unlabeled = as_array(X_unlabeled, "X_unlabeled")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = column_or_1d(y, warn=True)
    if reset:
        for attr in ("sample_shape_", "classes_inferred_"):
            est.__dict__.pop(attr, None)
    X = est._check_X(X, "X", reset=reset)
    if X.shape[0] != len(y):
        raise ValueError(f"X and y have different lengths: {X.shape[0]} and {len(y)}")
    if reset:
        est.sample_shape_ = tuple(int(s) for s in X.shape[1:])
        if est.input_shape is not None and canonical_shape(est.input_shape) != est.sample_shape_:
            raise ValueError(
                f"X has samples of shape {est.sample_shape_} but input_shape is {est.input_shape!r}"
            )
    unl = est._unlabeled_mask(y)
    X_l, y_l = X[~unl], y[~unl]
    if y_l.dtype.kind == "f" and np.isnan(y_l).any():
        raise ValueError(
            f"y has {int(np.isnan(y_l).sum())} NaN labels; to mark unlabelled rows with "
            "NaN (scikit-activeml's convention), pass unlabeled_label=np.nan"
        )
    w_l = None
    if sample_weight is not None:
        if isinstance(sample_weight, numbers.Real):  # one weight for every row
            sample_weight = np.full(len(y), sample_weight, dtype=np.float64)
        w = check_array(
            sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight"
        )
        if w.shape != (len(y),):
            raise ValueError(
                f"sample_weight must have shape ({len(y)},), one weight per row of X; got {w.shape}"
            )
        if (w < 0).any():
            raise ValueError(
                f"sample_weight must be non-negative; got {int((w < 0).sum())} negative weights"
            )
        w_l = w[~unl]
        top = w_l.max(initial=0.0)
        if not top > 0:
            raise ValueError(
                "sample_weight is zero for every labelled row; at least one "
                "labelled row needs a positive weight"
            )
        # Average 1: weights set the rows' relative influence, not the step size. Divided
        # by the largest first, the sum cannot overflow (1e308 each would: inf, then 0).
        w_l = w_l / top
        w_l = (w_l * (len(w_l) / w_l.sum())).astype(np.float32)
    parts = [X[unl]] if unl.any() else []
    if X_unlabeled is not None:
        if len(X_unlabeled):
            U = est._check_X(X_unlabeled, "X_unlabeled", reset=False)
            # After _check_X only images stay uint8 (0-255); float images are in [0, 1].
            if U.dtype != X.dtype:
                if X.dtype == np.uint8:
                    raise ValueError(
                        "X_unlabeled holds floats but X holds uint8 images; pass both as "
                        "uint8 or both as floats in [0, 1]"
                    )
                U = U.astype(np.float32) / np.float32(255.0)
            parts.append(U)
    U_all = np.concatenate(parts) if parts else None
    if U_all is not None and len(U_all) == 1:
        # (more samples only ever drop a lone last batch: see _data.drops_lone_last)
        warnings.warn(
            "a single unlabelled sample is left out of this fit: batch norm in training "
            "mode needs at least 2 samples per batch, so it cannot make an unlabelled "
            "batch of its own",
            UserWarning,
            stacklevel=4,
        )
        U_all = None
    if len(y_l) == 0:
        raise ValueError("y has no labelled rows; at least 2 classes are needed")
    check_classification_targets(y_l)
    if reset:
        if classes is None and est.classes is not None:
            classes = est.classes
        found = np.unique(y_l)
        cls = found if classes is None else np.asarray(classes)
        if classes is not None and not np.isin(found, cls).all():
            raise ValueError(
                f"y has labels {found[~np.isin(found, cls)]!r} outside classes {cls!r}"
            )
        if len(cls) < 2:
            note = ""
            if unl.any():
                note = (
                    f"; the {int(unl.sum())} rows labelled {est.unlabeled_label!r} "
                    "count as unlabelled (set unlabeled_label=None if that is a "
                    "class)"
                )
            raise ValueError(
                f"{type(est).__name__} needs at least 2 classes in the labelled y; "
                f"got 1 class ({cls[0]!r}){note}"
            )
        est.classes_inferred_ = cls
    cls = est.classes_
    y_enc = np.searchsorted(cls, y_l)
    bad = (y_enc >= len(cls)) | (cls[np.minimum(y_enc, len(cls) - 1)] != y_l)
    if bad.any():
        raise ValueError(
            f"y has labels {np.unique(y_l[bad])!r} not seen in the first fit (classes_ = {cls!r})"
        )
    if reset:
        est._fit_normalization(X_l if U_all is None else np.concatenate([X_l, U_all]))
    return X_l, y_enc.astype(np.int64), U_all, w_l


_AUGMENT_HINT = (
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
        raise TypeError(f"{name}={fn!r} takes {sig}; {_AUGMENT_HINT}") from None


def check_augment_output(name: str, x: torch.Tensor, out: Any) -> torch.Tensor:
    """The augmented batch, once it is a tensor of the batch's shape (no device sync)."""
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = (
            f"a tensor of shape {tuple(out.shape)}"
            if isinstance(out, torch.Tensor)
            else f"a {type(out).__name__}"
        )
        raise TypeError(
            f"{name} returned {got} for a batch of shape {tuple(x.shape)}; {_AUGMENT_HINT}"
        )
    return out


def fit_normalization(est, X: np.ndarray) -> None:
    axes = (0, 2, 3) if X.ndim == 4 else (0,)
    if isinstance(est.normalize, str) and est.normalize == "auto":
        scale = 255.0 if X.dtype == np.uint8 and X.ndim == 4 else 1.0
        mean = np.zeros(X.shape[1])
        sq = np.zeros(X.shape[1])
        for start in range(0, len(X), 4096):  # chunked: uint8 images stay small
            chunk = X[start : start + 4096].astype(np.float64) / scale
            mean += chunk.sum(axis=axes)
            sq += (chunk**2).sum(axis=axes)
        count = len(X) * (int(np.prod(X.shape[2:])) if X.ndim == 4 else 1)
        mean /= count
        std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
        est.mean_, est.std_ = mean, np.where(std > 1e-8, std, 1.0)
    elif est.normalize is None:
        est.mean_ = est.std_ = None
    else:
        try:
            mean, std = (np.asarray(v, dtype=np.float64).reshape(-1) for v in est.normalize)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"normalize must be 'auto', None or (mean, std); got {est.normalize!r}"
            ) from exc
        for arr in (mean, std):
            if arr.size not in (1, X.shape[1]):
                raise ValueError(
                    f"normalize needs 1 or {X.shape[1]} values for mean and std; got {arr.size}"
                )
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise ValueError(f"normalize must hold finite values; got {est.normalize!r}")
        if (std <= 0).any():
            raise ValueError("normalize: std must be positive")
        if X.ndim == 4 and ((mean < 0).any() or (mean > 1).any() or (std > 1).any()):
            # pixels reach the normalisation on the [0, 1] scale (uint8 divided by 255):
            # statistics on the 0-255 scale would leave the inputs near -mean/std
            raise ValueError(
                "normalize is applied to image pixels on the [0, 1] scale, so each mean "
                f"must lie in [0, 1] and each std in (0, 1]; got mean {mean.tolist()} and "
                f"std {std.tolist()} (statistics on the 0-255 scale: divide them by 255)"
            )
        est.mean_ = np.broadcast_to(mean, (X.shape[1],)).copy()
        est.std_ = np.broadcast_to(std, (X.shape[1],)).copy()
