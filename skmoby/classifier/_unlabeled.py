"""Unlabelled data: the ``X_unlabeled`` holder, rows of ``y`` marked as unlabelled, and
:func:`stack_unlabeled`, which turns the one form into the other."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

__all__ = ["UnlabeledData", "is_scalar_nan", "stack_unlabeled", "unlabeled_mask"]


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


def unlabeled_mask(y: np.ndarray, ul: Any) -> np.ndarray:
    """Which rows of ``y`` are unlabelled: equal to ``ul``, a classifier's
    ``unlabeled_label``.

    Raises ``ValueError`` when ``y`` holds strings and one spells a numeric
    ``unlabeled_label`` (``"-1"`` for ``-1``): whether it is a class or a mark is the
    caller's to say.
    """
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
