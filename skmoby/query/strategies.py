"""Query strategies for modAL's ``ActiveLearner`` (and standalone use).

Every strategy is called as ``strategy(learner, X_pool, n_instances=1, **kwargs)``, where
``learner`` is a modAL learner (its ``estimator`` is used) or any fitted scikit-learn
estimator, and returns ``(indices into X_pool, scores of those indices)``. That is the
contract of modAL 0.4.2.x, whose ``ActiveLearner.query`` then calls the strategy exactly
once and returns ``(indices, X_pool[indices])``. When a learner of modAL 0.4.1 (which
expects indices only) calls, the indices alone are returned, so ``learner.query`` gives
the same answer with either release.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from .._compat.modal import modal_retry_guard, patch_modal, query_returns_metrics
from .kcenter import k_center_greedy

# modAL 0.4.2.1 passes a keyword that scikit-learn >= 1.8 no longer accepts; fix it (only
# where needed) wherever skmoby's estimator or strategies are used, so that
# ActiveLearner.teach works. See skmoby/_compat/modal.py.
patch_modal()

__all__ = [
    "coreset",
    "high_contrastive_loss",
    "lowest_contrastive_subset",
    "max_entropy",
    "random_sampling",
]


def _estimator(learner: Any) -> Any:
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


def _result(learner: Any, indices: np.ndarray, scores: np.ndarray):
    indices = np.asarray(indices, dtype=np.int64)
    if _is_modal_learner(learner) and not query_returns_metrics():
        return indices
    return indices, np.asarray(scores)


def _n_samples(X: Any) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


def _check_n(n: Any, available: int, name: str = "n_instances") -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"{name} must be an int; got {type(n).__name__}")
    if n <= 0 or n > available:
        raise ValueError(f"{name} must be in 1..{available} (the pool size); got {n}")
    return int(n)


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest scores; ties go to the lowest index."""
    return np.argsort(-np.asarray(scores), kind="stable")[:n]


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


def _stacked_features(learner: Any, X_pool: Any, X_labeled: Any) -> tuple[np.ndarray, int]:
    """Features of the labelled samples (``X_labeled``, else the learner's
    ``X_training``) then of the pool, in one array; and the number of labelled rows."""
    if _is_committee(learner):
        # Each member has a feature space of its own and the committee none: picking in
        # raw pixels with no labelled centres (what the attributes would give) is not
        # what a user of a committee asks for.
        raise TypeError(
            "a modAL Committee has one feature space per member and no labelled set of "
            "its own; select with one member (committee.learner_list[0]) as the learner, "
            "or with a fitted estimator and X_labeled="
        )
    est = _estimator(learner)
    if X_labeled is None:
        X_labeled = getattr(learner, "X_training", None)
    F_pool = _features(est, X_pool, "X_pool")
    if X_labeled is None or _n_samples(X_labeled) == 0:
        return F_pool, 0
    F_lab = _features(est, X_labeled, "X_labeled")
    if F_lab.shape[1] != F_pool.shape[1]:
        raise ValueError(
            f"X_labeled has {F_lab.shape[1]} features but X_pool has {F_pool.shape[1]}"
        )
    # the wider dtype of the two: never round one set's features to the other's
    F = np.concatenate([F_lab, F_pool], dtype=np.result_type(F_lab, F_pool))
    return F, len(F_lab)


def coreset(
    learner: Any,
    X_pool: Any,
    n_instances: int = 1,
    *,
    X_labeled: Any = None,
    backend: str = "auto",
    prune: bool | str = "auto",
    random_state: int | np.random.RandomState | None = None,
):
    """CoreSet selection: k-center greedy in the estimator's feature space.

    Features are ``estimator.transform(X)`` when the estimator has ``transform``
    (:class:`~skmoby.MoBYv2Classifier` gives its query-encoder features ``f_q``), else
    the flattened inputs. The labelled samples are the initial centres: the learner's
    ``X_training`` (modAL), or ``X_labeled``.

    Parameters
    ----------
    learner : modAL learner or estimator
        A modAL ``ActiveLearner`` (its ``estimator`` and ``X_training`` are used) or a
        fitted estimator.
    X_pool : array-like
        The unlabelled pool (an array, a tensor, or a list of samples).
    n_instances : int, default=1
        Number of samples to select.
    X_labeled : array-like, optional
        Labelled samples (the initial centres); defaults to ``learner.X_training``.
    backend, prune, random_state
        Passed to :func:`~skmoby.k_center_greedy`.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Indices into ``X_pool``, in the order they were picked.
    distances : ndarray of shape (n_instances,)
        Each pick's distance to its nearest centre when it was picked.

    Raises
    ------
    ValueError
        If ``X_pool`` is empty, ``n_instances`` exceeds the pool, the features of
        ``X_pool`` or ``X_labeled`` are not finite (e.g. from a diverged network), or
        the two have different numbers of features.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [9.0, 9.0]])
    >>> clf = LogisticRegression().fit(X[:2], [0, 1])
    >>> coreset(clf, X[2:], n_instances=1, X_labeled=X[:2])[0].tolist()
    [1]
    """
    with modal_retry_guard():
        n_pool = _n_samples(X_pool)
        if n_pool == 0:
            raise ValueError("X_pool is empty: there is nothing to select")
        n = _check_n(n_instances, n_pool)
        F, m = _stacked_features(learner, X_pool, X_labeled)
        idx, dist = k_center_greedy(
            F,
            n,
            initial_centers=np.arange(m),
            backend=backend,
            prune=prune,
            random_state=random_state,
        )
        return _result(learner, idx - m, dist)


def random_sampling(
    learner: Any,
    X_pool: Any,
    n_instances: int = 1,
    *,
    random_state: int | np.random.RandomState | None = None,
):
    """Uniformly random selection (the paper's Random baseline).

    Parameters
    ----------
    learner : modAL learner or estimator
        Unused, for the common calling convention.
    X_pool : array-like
        The unlabelled pool.
    n_instances : int, default=1
        Number of samples to select.
    random_state : int, RandomState or None, default=None
        Seed of the draw.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
    scores : ndarray of shape (n_instances,)
        The uniform random priorities that ranked the picks.

    Examples
    --------
    >>> import numpy as np
    >>> random_sampling(None, np.zeros((10, 2)), 3, random_state=0)[0].shape
    (3,)
    """
    with modal_retry_guard():
        n = _check_n(n_instances, _n_samples(X_pool))
        u = check_random_state(random_state).random_sample(_n_samples(X_pool))
        idx = _top(u, n)
        return _result(learner, idx, u[idx])


def max_entropy(learner: Any, X_pool: Any, n_instances: int = 1):
    """Select the samples whose predicted class distribution has the largest entropy.

    Parameters
    ----------
    learner : modAL learner or estimator
        Its estimator must have ``predict_proba``.
    X_pool : array-like
        The unlabelled pool.
    n_instances : int, default=1
        Number of samples to select.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
    entropy : ndarray of shape (n_instances,)
        Entropy (nats) of the picks' predicted distributions.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    >>> clf = LogisticRegression().fit(X, [0, 0, 1, 1])
    >>> max_entropy(clf, np.array([[5.0], [0.01], [-4.0]]), 1)[0].tolist()
    [1]
    """
    with modal_retry_guard():
        n = _check_n(n_instances, _n_samples(X_pool))
        est = _estimator(learner)
        if not hasattr(est, "predict_proba"):
            raise TypeError(f"max_entropy needs an estimator with predict_proba; got {est!r}")
        P = np.asarray(est.predict_proba(X_pool), dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            H = -np.where(P > 0, P * np.log(P), 0.0).sum(axis=1)
        idx = _top(H, n)
        return _result(learner, idx, H[idx])


def _contrastive(learner: Any, X_pool: Any, who: str) -> np.ndarray:
    est = _estimator(learner)
    if not callable(getattr(est, "contrastive_loss", None)):
        raise TypeError(
            f"{who} needs an estimator with contrastive_loss (MoBYv2Classifier); got "
            f"{type(est).__name__}"
        )
    return np.asarray(est.contrastive_loss(X_pool))


def high_contrastive_loss(learner: Any, X_pool: Any, n_instances: int = 1):
    """Select the samples with the highest MoBYv2 contrastive loss (paper, Appendix B).

    Parameters
    ----------
    learner : modAL learner or MoBYv2Classifier
        Its estimator must have ``contrastive_loss``.
    X_pool : array-like
        The unlabelled pool.
    n_instances : int, default=1
        Number of samples to select.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
    losses : ndarray of shape (n_instances,)

    Examples
    --------
    >>> import numpy as np
    >>> class Stub:
    ...     def contrastive_loss(self, X):
    ...         return np.asarray(X, dtype=float).ravel()
    >>> high_contrastive_loss(Stub(), [[0.5], [3.0], [1.0]], 2)[0].tolist()
    [1, 2]
    """
    with modal_retry_guard():
        n = _check_n(n_instances, _n_samples(X_pool))
        L = _contrastive(learner, X_pool, "high_contrastive_loss")
        idx = _top(L, n)
        return _result(learner, idx, L[idx])


def lowest_contrastive_subset(estimator: Any, X_pool: Any, n: int):
    """The ``n`` unlabelled samples with the lowest contrastive loss (paper, Section 4.2).

    MoBYv2AL trains each cycle on as many unlabelled images as there are labelled ones,
    chosen as those the current model finds easiest (lowest contrastive loss); this
    softens the distribution shift between cycles.

    Parameters
    ----------
    estimator : MoBYv2Classifier or modAL learner
        Must have ``contrastive_loss`` (a learner's ``estimator`` is used).
    X_pool : array-like
        The unlabelled pool.
    n : int
        Subset size; at most the pool size.

    Returns
    -------
    indices : ndarray of shape (n,)
        Indices into ``X_pool``, lowest loss first.
    losses : ndarray of shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> class Stub:
    ...     def contrastive_loss(self, X):
    ...         return np.asarray(X, dtype=float).ravel()
    >>> lowest_contrastive_subset(Stub(), [[0.5], [3.0], [0.1]], 2)[0].tolist()
    [2, 0]
    """
    n = _check_n(n, _n_samples(X_pool), name="n")
    L = _contrastive(estimator, X_pool, "lowest_contrastive_subset")
    idx = np.argsort(L, kind="stable")[:n]
    return idx.astype(np.int64), L[idx]
