"""Input and hyperparameter validation of :class:`~skmoby.MoBYv2Classifier`.

Each function takes the estimator as its first argument; the estimator binds them as
private methods. Validation happens in ``fit`` (scikit-learn's contract: ``__init__`` and
``set_params`` only store), and every error names the argument and what was expected.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data
from torch import nn

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
    if not (est.batch_size == -1 or (isinstance(est.batch_size, int | np.integer)
                                      and est.batch_size > 1)):
        raise ValueError(f"batch_size must be an int > 1 (or -1 for all); "
                         f"got {est.batch_size!r}")
    positive("temperature")
    positive("lr")
    positive("lambda_c", allow_zero=True)
    positive("optimizer__weight_decay", allow_zero=True)
    positive("optimizer__momentum", allow_zero=True)
    if est.optimizer__momentum >= 1:
        raise ValueError("optimizer__momentum must be in [0, 1) (1 or more makes SGD "
                         f"diverge); got {est.optimizer__momentum!r}")
    if not 0.0 <= float(est.key_momentum) <= 1.0:
        raise ValueError(f"key_momentum must be in [0, 1]; got {est.key_momentum!r}")
    positive("lr_gamma")
    if est.lr_milestones is not None and any(
        not 0.0 <= float(f) <= 1.0 for f in est.lr_milestones
    ):
        raise ValueError(
            f"lr_milestones must hold fractions of max_epochs in [0, 1]; "
            f"got {est.lr_milestones!r}"
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
    if not (isinstance(est.backbone, nn.Module | str)):
        raise TypeError(
            f"backbone must be a name or a torch.nn.Module; got {type(est.backbone)}"
        )

def seed(est) -> int:
    rs = est.random_state
    if rs is None:
        return secrets.randbits(62)
    if isinstance(rs, np.random.RandomState):
        return int(rs.randint(np.iinfo(np.int32).max))
    if isinstance(rs, int | np.integer) and not isinstance(rs, bool):
        return int(rs)
    raise TypeError(
        f"random_state must be None, an int or a numpy RandomState; got {type(rs)}"
    )

def check_X(est, X: Any, name: str, reset: bool) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    check = dict(dtype="numeric", allow_nd=True, ensure_all_finite=True)
    if name == "X" and getattr(X, "ndim", 2) == 2:
        # Tabular data: scikit-learn's bookkeeping of n_features_in_ / feature names.
        X = validate_data(est, X, reset=reset, **check)
    else:
        X = check_array(X, input_name=name, **check)
        if name == "X" and reset:
            est.n_features_in_ = X.shape[1] if X.ndim == 4 else 1
            est.__dict__.pop("feature_names_in_", None)
    if X.ndim > 4:
        raise ValueError(
            f"{name} must have shape (n, d), (n, H, W) or (n, C, H, W); got {X.shape}"
        )
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
        X = X.astype(np.float32, copy=False)
    if not reset or name != "X":
        expected = est.sample_shape_
        if tuple(X.shape[1:]) != tuple(expected):
            ref = "the training data" if name == "X" else "X"
            raise ValueError(
                f"{name} has samples of shape {tuple(X.shape[1:])} but {ref} has "
                f"{tuple(expected)}"
            )
    return X

def unlabeled_mask(est, y: np.ndarray) -> np.ndarray:
    ul = est.unlabeled_label
    if ul is None:
        return np.zeros(len(y), dtype=bool)
    if y.dtype.kind in "US":
        return np.zeros(len(y), dtype=bool)
    if y.dtype == object:
        return np.array([type(v) is not str and v == ul for v in y], dtype=bool)
    return y == ul

def prepare_fit_data(est, X, y, X_unlabeled, reset: bool, classes=None):
    """Validate inputs; return labelled X, encoded y and unlabelled X (or None)."""
    if y is None:
        raise ValueError(
            f"{type(est).__name__} requires y to be passed, but the target y is None "
            "(mark unlabelled rows with unlabeled_label instead)"
        )
    if isinstance(X_unlabeled, UnlabeledData):
        X_unlabeled = X_unlabeled.data
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
    unl = est._unlabeled_mask(y)
    X_l, y_l = X[~unl], y[~unl]
    parts = [X[unl]] if unl.any() else []
    if X_unlabeled is not None:
        if isinstance(X_unlabeled, torch.Tensor):
            X_unlabeled = X_unlabeled.detach().cpu().numpy()
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
                note = (f"; the {int(unl.sum())} rows labelled {est.unlabeled_label!r} "
                        "count as unlabelled (set unlabeled_label=None if that is a "
                        "class)")
            raise ValueError(
                f"{type(est).__name__} needs at least 2 classes in the labelled y; "
                f"got 1 class ({cls[0]!r}){note}"
            )
        est.classes_inferred_ = cls
    cls = est.classes_
    y_enc = np.searchsorted(cls, y_l)
    bad = (y_enc >= len(cls)) | (cls[np.minimum(y_enc, len(cls) - 1)] != y_l)
    if bad.any():
        raise ValueError(f"y has labels {np.unique(y_l[bad])!r} not seen in the first fit "
                         f"(classes_ = {cls!r})")
    if reset:
        est._fit_normalization(X_l if U_all is None else np.concatenate([X_l, U_all]))
    return X_l, y_enc.astype(np.int64), U_all

def fit_normalization(est, X: np.ndarray) -> None:
    axes = (0, 2, 3) if X.ndim == 4 else (0,)
    if isinstance(est.normalize, str) and est.normalize == "auto":
        scale = 255.0 if X.dtype == np.uint8 and X.ndim == 4 else 1.0
        mean = np.zeros(X.shape[1])
        sq = np.zeros(X.shape[1])
        for start in range(0, len(X), 4096):  # chunked: uint8 images stay small
            chunk = X[start:start + 4096].astype(np.float64) / scale
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
                    f"normalize needs 1 or {X.shape[1]} values for mean and std; "
                    f"got {arr.size}"
                )
        if (std <= 0).any():
            raise ValueError("normalize: std must be positive")
        est.mean_ = np.broadcast_to(mean, (X.shape[1],)).copy()
        est.std_ = np.broadcast_to(std, (X.shape[1],)).copy()
