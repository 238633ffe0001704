"""What every selection strategy shares: the learner's estimator, its features, the
check of the number to select and the result in the caller's modAL convention."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._compat.modal import query_returns_metrics


def check_n(
    n: Any,
    available: int,
    name: str = "n_instances",
    *,
    what: str = "the pool size",
    none_left: str | None = None,
) -> int:
    """``n`` as an int in ``1..available``, else ``TypeError``/``ValueError`` naming it.

    ``what`` says what ``available`` counts; ``none_left``, when given, is the message
    for ``available == 0``.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"{name} must be an int; got {type(n).__name__}")
    if available == 0 and none_left is not None:
        raise ValueError(f"{name}: {none_left}")
    if n <= 0 or n > available:
        raise ValueError(f"{name} must be in 1..{available} ({what}); got {n}")
    return int(n)


def check_pool_n(X_pool: Any, n_instances: Any) -> int:
    """``n_instances`` checked against a non-empty ``X_pool`` (the opening of every
    strategy): ``ValueError`` for an empty pool, then as :func:`check_n`."""
    n_pool = n_samples(X_pool)
    if n_pool == 0:
        raise ValueError("X_pool is empty: there is nothing to select")
    return check_n(n_instances, n_pool)


def base_estimator(learner: Any) -> Any:
    """The estimator of a modAL learner, or ``learner`` itself."""
    return getattr(learner, "estimator", learner)


def _is_modal_learner(obj: Any) -> bool:
    try:
        from modAL.models.base import BaseCommittee, BaseLearner
    except ImportError:  # pragma: no cover - modAL is a dependency
        return False
    return isinstance(obj, BaseLearner | BaseCommittee)


def _is_committee(obj: Any) -> bool:
    try:
        from modAL.models.base import BaseCommittee
    except ImportError:  # pragma: no cover - modAL is a dependency
        return False
    return isinstance(obj, BaseCommittee)


def strategy_result(learner: Any, indices: np.ndarray, scores: np.ndarray):
    """``(indices, scores)``, or the indices alone for a modAL learner that expects them."""
    indices = np.asarray(indices, dtype=np.int64)
    if _is_modal_learner(learner) and not query_returns_metrics():
        return indices
    return indices, np.asarray(scores)


def n_samples(X: Any) -> int:
    """Number of samples of an array, a tensor or a list of samples."""
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


def _is_sparse(A: Any) -> bool:
    return type(A).__module__.startswith("scipy.sparse")


def _features(estimator: Any, X: Any, name: str) -> np.ndarray:
    if isinstance(X, list | tuple):
        # a list of samples is one array of them (estimators may read a list of images
        # as one table with a column per image row)
        X = np.asarray([x.detach().cpu().numpy() if hasattr(x, "detach") else x for x in X])
    if hasattr(estimator, "transform") and callable(estimator.transform):
        F = estimator.transform(X)
        source = f"The features of {name} (from {type(estimator).__name__}.transform) contain"
        if _is_sparse(F):
            F = F.toarray()  # CoreSet's distances need every coordinate anyway
    elif _is_sparse(X):
        raise TypeError(f"{name} must be dense; got a sparse matrix (call .toarray() on it)")
    else:
        F = X.detach().cpu().numpy() if hasattr(X, "detach") else np.asarray(X)
        source = f"{name} contains"
    F = np.asarray(F)
    F = F.reshape(F.shape[0], -1)
    if np.issubdtype(F.dtype, np.number) and not np.isfinite(F).all():
        raise ValueError(f"{source} NaN or infinity; selection needs finite features")
    return F


def stacked_features(learner: Any, X_pool: Any, X_labeled: Any) -> tuple[np.ndarray, int]:
    """Features of the labeled samples (``X_labeled``, else the learner's
    ``X_training``) then of the pool, in one array; and the number of labeled rows."""
    parts = feature_parts(learner, X_pool, X_labeled)
    if len(parts) == 1:
        return parts[0], 0
    # the wider dtype of the two: never round one set's features to the other's
    return np.concatenate(parts, dtype=np.result_type(*parts)), len(parts[0])


def feature_parts(learner: Any, X_pool: Any, X_labeled: Any) -> list[np.ndarray]:
    """As :func:`stacked_features`, but the two sets' features apart (the labeled set's
    first, only when there is one), for a caller that copies them anyway."""
    if _is_committee(learner):
        # Each member has a feature space of its own and the committee none: picking in
        # raw pixels with no labeled centers (what the attributes would give) is not
        # what a user of a committee asks for.
        raise TypeError(
            "a modAL Committee has one feature space per member and no labeled set of "
            "its own; select with one member (committee.learner_list[0]) as the learner, "
            "or with a fitted estimator and X_labeled="
        )
    est = base_estimator(learner)
    if X_labeled is None:
        X_labeled = getattr(learner, "X_training", None)
    F_pool = _features(est, X_pool, "X_pool")
    if X_labeled is None or n_samples(X_labeled) == 0:
        return [F_pool]
    F_lab = _features(est, X_labeled, "X_labeled")
    if F_lab.shape[1] != F_pool.shape[1]:
        raise ValueError(
            f"X_labeled has {F_lab.shape[1]} features but X_pool has {F_pool.shape[1]}"
        )
    return [F_lab, F_pool]
