"""Checks of the data :class:`~skmoby.MoBYv2Classifier` is given, at the boundary.

Each check names the argument it refuses and what was expected. :func:`prepare_fit_data`
turns the arguments of ``fit``/``partial_fit`` into a :class:`FitData` record: labelled
samples in the classifier's form, encoded labels, the unlabelled samples, the rows'
weights and what a first fit learns from the data (sample shape, classes, normalization).
"""

from __future__ import annotations

import numbers
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse import issparse
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data
from torch import nn
from torch.utils.data import Dataset

from ._datasets import read_dataset, with_dataset_labels
from ._params import canonical_shape
from ._unlabeled import UnlabeledData, unlabeled_mask

__all__ = [
    "FitData",
    "as_array",
    "check_X",
    "check_backbone",
    "normalization_stats",
    "prepare_fit_data",
    "refuse_new_classes",
    "refuse_unlabeled_behind_pipeline_steps",
]


def as_array(X: Any, name: str) -> Any:
    """``X`` as an array: tensors and sequences (lists, objects with ``__array__``) are
    converted, arrays and data frames kept, a ``Dataset`` read (its samples), a dict of
    one array (skorch's ``SliceDict``) unwrapped; scalars and ragged sequences raise."""
    if isinstance(X, Dataset):
        X = read_dataset(X, name)[0]
    if isinstance(X, Mapping) and not issparse(X):  # (scipy's dok arrays are dicts)
        keys = list(X.keys())  # not len(X): a SliceDict's length is its number of rows
        if len(keys) != 1:
            raise ValueError(
                f"{name} is a dict with keys {keys!r}; the classifier's network takes "
                "one input, so pass a dict of one array (or the array itself)"
            )
        X = dict.__getitem__(X, keys[0]) if isinstance(X, dict) else X[keys[0]]
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


def check_X(
    est: Any, X: Any, name: str, reset: bool, sample_shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """``X`` (or ``X_unlabeled``, by ``name``) checked and in the classifier's form.

    Samples become ``(n, d)`` rows or ``(n, C, H, W)`` images, as float32 (uint8 images
    stay uint8). Values must be finite and within float32's range (magnitude at most
    about 3.4e38), which the network computes in; anything else raises ``ValueError``
    naming ``name``. ``sample_shape`` is the shape samples must have (the fitted one,
    or that of ``X`` for ``X_unlabeled``); with ``reset``, ``X`` sets scikit-learn's
    ``n_features_in_`` (and ``feature_names_in_``) on ``est``.
    """
    X = as_array(X, name)
    check = dict(dtype="numeric", allow_nd=True, ensure_all_finite=True)
    fitted_shape = tuple(sample_shape or ())
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
        expected = sample_shape
        if tuple(X.shape[1:]) != tuple(expected):
            ref = "the training data" if name == "X" else "X"
            raise ValueError(
                f"{name} has samples of shape {tuple(X.shape[1:])} but {ref} has {tuple(expected)}"
            )
    return X


def check_backbone(module: Any, shape: tuple[int, ...]) -> None:
    """Run a module ``backbone`` on two zero samples of the data's shape, in eval mode,
    and turn a failure into a ``ValueError`` that names the backbone and what it
    expected (a wrong channel or feature count, typically)."""
    if not isinstance(module, nn.Module):
        return
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


def normalization_stats(normalize: Any, X: np.ndarray) -> tuple[np.ndarray | None, ...]:
    """``(mean, std)`` per channel or feature for ``normalize`` (a classifier's parameter)
    on the training data ``X``; ``(None, None)`` for ``normalize=None``."""
    axes = (0, 2, 3) if X.ndim == 4 else (0,)
    if isinstance(normalize, str) and normalize == "auto":
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
        return mean, np.where(std > 1e-8, std, 1.0)
    if normalize is None:
        return None, None
    try:
        mean, std = (np.asarray(v, dtype=np.float64).reshape(-1) for v in normalize)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"normalize must be 'auto', None or (mean, std); got {normalize!r}"
        ) from exc
    for arr in (mean, std):
        if arr.size not in (1, X.shape[1]):
            raise ValueError(
                f"normalize needs 1 or {X.shape[1]} values for mean and std; got {arr.size}"
            )
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ValueError(f"normalize must hold finite values; got {normalize!r}")
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
    return (
        np.broadcast_to(mean, (X.shape[1],)).copy(),
        np.broadcast_to(std, (X.shape[1],)).copy(),
    )


@dataclass
class FitData:
    """The arguments of ``fit``/``partial_fit`` in the classifier's form.

    ``X`` holds the labelled samples (float32, or uint8 images), ``y`` their class
    indices (int64), ``U`` the unlabelled samples (``None`` when there are none) and
    ``w`` the labelled rows' weights, averaging 1 (``None`` without ``sample_weight``).
    A first fit (``reset``) also learns ``sample_shape``, ``classes`` and the
    normalization statistics ``mean``/``std`` from the data; a later one leaves them
    ``None``.
    """

    X: np.ndarray
    y: np.ndarray
    U: np.ndarray | None
    w: np.ndarray | None
    sample_shape: tuple[int, ...] | None = None
    classes: np.ndarray | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None


def _labels(est: Any, y: Any) -> np.ndarray:
    if y is None:
        raise ValueError(
            f"{type(est).__name__} requires y to be passed, but the target y is None "
            "(mark unlabelled rows with unlabeled_label instead)"
        )
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    return column_or_1d(y, warn=True)


def _labeled_weights(sample_weight: Any, n: int, unl: np.ndarray) -> np.ndarray | None:
    """The labelled rows' weights, rescaled to average 1."""
    if sample_weight is None or unl.all():  # no labelled row to weigh
        return None
    if isinstance(sample_weight, numbers.Real):  # one weight for every row
        sample_weight = np.full(n, sample_weight, dtype=np.float64)
    w = check_array(sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight")
    if w.shape != (n,):
        raise ValueError(
            f"sample_weight must have shape ({n},), one weight per row of X; got {w.shape}"
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
    return (w_l * (len(w_l) / w_l.sum())).astype(np.float32)


def _unlabeled_samples(est: Any, X: np.ndarray, marked: np.ndarray, X_unlabeled: Any):
    """The rows of ``X`` marked unlabelled and ``X_unlabeled``, together (or ``None``)."""
    parts = [marked] if len(marked) else []
    if X_unlabeled is not None and len(X_unlabeled):
        U = check_X(est, X_unlabeled, "X_unlabeled", reset=False, sample_shape=X.shape[1:])
        # After check_X only images stay uint8 (0-255); float images are in [0, 1].
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
        # (more samples only ever drop a lone last batch: see _batches.drops_lone_last)
        warnings.warn(
            "a single unlabelled sample is left out of this fit: batch norm in training "
            "mode needs at least 2 samples per batch, so it cannot make an unlabelled "
            "batch of its own",
            UserWarning,
            stacklevel=5,
        )
        U_all = None
    return U_all


def _check_unlabeled_only(est: Any, U: np.ndarray | None, reset: bool, classes: Any) -> None:
    """Allow a training call without labels (contrastive training only, e.g. before
    the first labels are chosen) where there are unlabelled samples to train on, the
    contrastive loss is on, and the classes are known (the classifier head needs them)."""
    name = type(est).__name__
    if U is None:
        raise ValueError("y has no labelled rows and there is no unlabelled data to train on")
    if est.lambda_c == 0:
        raise ValueError(
            "y has no labelled rows and lambda_c=0 trains on labels only (the "
            "contrastive loss is off): there is nothing to train on"
        )
    if reset and classes is None and est.classes is None:
        raise ValueError(
            "y has no labelled rows: training on unlabelled data only (contrastive "
            "training, e.g. to choose the first labels) needs the class labels the "
            f"classifier head will predict, {name}(..., classes=[...]) (or "
            "partial_fit(..., classes=[...]))"
        )


def _first_fit_classes(est: Any, y_l: np.ndarray, unl: np.ndarray, classes: Any) -> np.ndarray:
    if classes is None and est.classes is not None:
        classes = est.classes
    found = np.unique(y_l)
    cls = found if classes is None else np.asarray(classes)
    if classes is not None and not np.isin(found, cls).all():
        raise ValueError(f"y has labels {found[~np.isin(found, cls)]!r} outside classes {cls!r}")
    if len(cls) < 2 and not len(y_l):
        raise ValueError(f"classes must hold at least 2 class labels; got {cls.tolist()!r}")
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
            f"got 1 class ({cls[0]!r}){note}. To fit labels of one class (a modAL "
            f"teach(..., only_new=True), a bootstrap sample), name every class up "
            f"front: {type(est).__name__}(..., classes=[...])"
        )
    return cls


def _encoded(y_l: np.ndarray, cls: np.ndarray, fix: str = "") -> np.ndarray:
    y_enc = np.searchsorted(cls, y_l)
    bad = (y_enc >= len(cls)) | (cls[np.minimum(y_enc, len(cls) - 1)] != y_l)
    if bad.any():
        raise ValueError(
            f"y has labels {np.unique(y_l[bad])!r} not seen in the first fit "
            f"(classes_ = {cls!r}){fix}"
        )
    return y_enc.astype(np.int64)


def _later_labels(est: Any, y_l: np.ndarray) -> np.ndarray:
    """Class indices of a later training call's labels (``warm_start``, ``partial_fit``,
    modAL's ``teach(only_new=True)``)."""
    fix = ""
    if est.classes is None:
        fix = (
            f". A network's classes are fixed by its first fit: when the first labels "
            f"lack some classes, name them all up front, {type(est).__name__}(..., "
            "classes=[...]) (or partial_fit(..., classes=[...]) on the first call)"
        )
    return _encoded(y_l, est.classes_, fix)


def prepare_fit_data(
    est: Any,
    X: Any,
    y: Any,
    X_unlabeled: Any,
    reset: bool,
    classes: Any = None,
    sample_weight: Any = None,
) -> FitData:
    """Check the arguments of a fit of ``est``; return them as a :class:`FitData`.

    With ``reset`` (a first fit) the sample shape, the classes and the normalization
    come from the data; otherwise the data must match the fitted ones. Only
    scikit-learn's ``n_features_in_``/``feature_names_in_`` are set on ``est`` here.
    """
    X, y = with_dataset_labels(X, y)
    y = _labels(est, y)
    if isinstance(X_unlabeled, UnlabeledData):
        X_unlabeled = X_unlabeled.data
    if X_unlabeled is not None:
        X_unlabeled = as_array(X_unlabeled, "X_unlabeled")
    fitted_shape = None if reset else est.sample_shape_
    X = check_X(est, X, "X", reset=reset, sample_shape=fitted_shape)
    if X.shape[0] != len(y):
        raise ValueError(f"X and y have different lengths: {X.shape[0]} and {len(y)}")
    shape = tuple(int(s) for s in X.shape[1:])
    if reset and est.input_shape is not None and canonical_shape(est.input_shape) != shape:
        raise ValueError(f"X has samples of shape {shape} but input_shape is {est.input_shape!r}")
    unl = unlabeled_mask(y, est.unlabeled_label)
    X_l, y_l = X[~unl], y[~unl]
    if y_l.dtype.kind == "f" and np.isnan(y_l).any():
        raise ValueError(
            f"y has {int(np.isnan(y_l).sum())} NaN labels; to mark unlabelled rows with "
            "NaN (scikit-activeml's convention), pass unlabeled_label=np.nan"
        )
    w_l = _labeled_weights(sample_weight, len(y), unl)
    U = _unlabeled_samples(est, X, X[unl], X_unlabeled)
    if len(y_l) == 0:
        _check_unlabeled_only(est, U, reset, classes)
    elif len(y_l) == 1:
        raise ValueError(
            "y labels 1 sample; a training call needs at least 2 labelled (batch norm in "
            "training mode normalises over a batch). With modAL, teach the new rows "
            "together with the labelled set (teach(..., only_new=False), the default) "
            "or several rows at once"
        )
    if len(y_l):
        check_classification_targets(y_l)
    if not reset:
        return FitData(X_l, _later_labels(est, y_l), U, w_l)
    inferred = _first_fit_classes(est, y_l, unl, classes)
    # skorch's classes_: the parameter `classes` when set, else the inferred ones
    cls = np.asarray(est.classes) if est.classes is not None else inferred
    mean, std = normalization_stats(est.normalize, X_l if U is None else np.concatenate([X_l, U]))
    return FitData(X_l, _encoded(y_l, cls), U, w_l, shape, inferred, mean, std)


def data_free_state(est: Any) -> FitData:
    """What ``initialize()`` needs when there is no data yet, from the constructor
    parameters ``input_shape`` and ``classes`` (a fit takes both from the data).

    Normalization statistics are those of an explicit ``normalize=(mean, std)``; with
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
    mean = std = None
    if not (isinstance(est.normalize, str) or est.normalize is None):
        mean, std = normalization_stats(est.normalize, np.zeros((1, *shape), np.float32))
    empty = np.zeros((0, *shape), np.float32)
    return FitData(
        empty, np.zeros(0, np.int64), None, None, shape, np.asarray(est.classes), mean, std
    )


def refuse_new_classes(classes: Any, fitted: np.ndarray) -> None:
    """Refuse a later training call's ``classes`` that differ from the ``fitted`` ones."""
    if not np.array_equal(np.unique(np.asarray(classes)), fitted):
        raise ValueError(
            f"classes={np.asarray(classes).tolist()!r} differs from the "
            f"fitted classes {fitted.tolist()!r}; a fitted network's "
            "classes cannot change (call fit to start afresh)"
        )


def refuse_unlabeled_behind_pipeline_steps(est: Any) -> None:
    """Refuse ``X_unlabeled`` handed over by a ``Pipeline`` whose earlier steps
    transform ``X``: they would not transform ``X_unlabeled``. Detected from the
    caller's frame (the first one that is not a method of ``est``)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_locals.get("self") is est:
        frame = frame.f_back
    owner = frame.f_locals.get("self") if frame is not None else None
    if not isinstance(owner, Pipeline) or owner.steps[-1][1] is not est:
        return
    before = [
        name
        for name, step in owner.steps[:-1]
        if step is not None and not (isinstance(step, str) and step == "passthrough")
    ]
    if before:
        raise ValueError(
            f"X_unlabeled reached {type(est).__name__} through a Pipeline without "
            f"passing its steps {before}, which transform X only. Pass the unlabelled "
            "rows in X, marked in y with unlabeled_label, so that every step sees "
            "them: pipe.fit(*skmoby.stack_unlabeled(X, y, X_unlabeled))."
        )
