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

from .._compat.modal import modal_retry_guard, patch_modal
from ._common import (
    base_estimator,
    check_n,
    check_pool_n,
    n_samples,
    stacked_features,
    strategy_result,
)
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


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest scores; ties go to the lowest index."""
    return np.argsort(-np.asarray(scores), kind="stable")[:n]


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
    the flattened inputs. The labeled samples are the initial centers: the learner's
    ``X_training`` (modAL), or ``X_labeled``.

    Parameters
    ----------
    learner : modAL learner or estimator
        A modAL ``ActiveLearner`` (its ``estimator`` and ``X_training`` are used) or a
        fitted estimator.
    X_pool : array-like
        The unlabeled pool (an array, a tensor, or a list of samples).
    n_instances : int, default=1
        Number of samples to select.
    X_labeled : array-like, optional
        Labeled samples (the initial centers); defaults to ``learner.X_training``.
    backend, prune, random_state
        Passed to :func:`~skmoby.k_center_greedy`.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Indices into ``X_pool``, in the order they were picked.
    distances : ndarray of shape (n_instances,)
        Each pick's distance to its nearest center when it was picked.

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
        n = check_pool_n(X_pool, n_instances)
        F, m = stacked_features(learner, X_pool, X_labeled)
        idx, dist = k_center_greedy(
            F,
            n,
            initial_centers=np.arange(m),
            backend=backend,
            prune=prune,
            random_state=random_state,
        )
        return strategy_result(learner, idx - m, dist)


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
        The unlabeled pool.
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
        n = check_n(n_instances, n_samples(X_pool))
        u = check_random_state(random_state).random_sample(n_samples(X_pool))
        idx = _top(u, n)
        return strategy_result(learner, idx, u[idx])


def max_entropy(learner: Any, X_pool: Any, n_instances: int = 1):
    """Select the samples whose predicted class distribution has the largest entropy.

    Parameters
    ----------
    learner : modAL learner or estimator
        Its estimator must have ``predict_proba``.
    X_pool : array-like
        The unlabeled pool.
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
        n = check_n(n_instances, n_samples(X_pool))
        est = base_estimator(learner)
        if not hasattr(est, "predict_proba"):
            raise TypeError(f"max_entropy needs an estimator with predict_proba; got {est!r}")
        P = np.asarray(est.predict_proba(X_pool), dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            H = -np.where(P > 0, P * np.log(P), 0.0).sum(axis=1)
        idx = _top(H, n)
        return strategy_result(learner, idx, H[idx])


def _contrastive(learner: Any, X_pool: Any, who: str) -> np.ndarray:
    est = base_estimator(learner)
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
        The unlabeled pool.
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
        n = check_n(n_instances, n_samples(X_pool))
        L = _contrastive(learner, X_pool, "high_contrastive_loss")
        idx = _top(L, n)
        return strategy_result(learner, idx, L[idx])


def lowest_contrastive_subset(estimator: Any, X_pool: Any, n: int):
    """The ``n`` unlabeled samples with the lowest contrastive loss (paper, Section 4.2).

    MoBYv2AL trains each cycle on as many unlabeled images as there are labeled ones,
    chosen as those the current model finds easiest (lowest contrastive loss); this
    softens the distribution shift between cycles.

    Parameters
    ----------
    estimator : MoBYv2Classifier or modAL learner
        Must have ``contrastive_loss`` (a learner's ``estimator`` is used).
    X_pool : array-like
        The unlabeled pool.
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
    n = check_n(n, n_samples(X_pool), name="n")
    L = _contrastive(estimator, X_pool, "lowest_contrastive_subset")
    idx = np.argsort(L, kind="stable")[:n]
    return idx.astype(np.int64), L[idx]
