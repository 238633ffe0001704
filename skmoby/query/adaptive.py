"""A budget-aware default: typical picks while the model knows little, diverse margin
sampling once it can tell where it is unsure.

Which selection wins depends on the budget (Hacohen, Dekel, Weinshall, ICML 2022; Mishal
and Weinshall, DCoM, 2024): while each class has very few labels, the model's
probabilities say little, and the model gains most from *typical* samples of the dense
regions (TypiClust); once it has seen a handful of each class, from samples it is unsure
of, spread over the feature space (:func:`~skmoby.diverse_margin`). :func:`adaptive`
chooses between the two by one number, the labels per class that the model was trained
on; :func:`adaptive_choice` is that rule on its own. The default switch,
``SWITCH_PER_CLASS`` labels per class, and the measurements behind it are on the
"Choosing a strategy" page of the documentation.

The pool's size enters only through the labels it already holds: a fraction of the pool
would depend on how many candidates a caller scans (the runner's ``pool_subset`` scans a
random subset), not on the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._compat.modal import modal_retry_guard
from ._common import base_estimator, check_pool_n, n_samples
from .coverage import typiclust
from .margin import diverse_margin

__all__ = ["adaptive", "adaptive_choice"]

#: Labels per class of the model from which :func:`adaptive` selects by diverse margin.
SWITCH_PER_CLASS = 5


def _positive(value: Any, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    return float(value)


def adaptive_choice(
    n_labeled: int, n_classes: int, *, switch_per_class: float = SWITCH_PER_CLASS
) -> str:
    """The strategy :func:`adaptive` uses for one query: ``"typiclust"`` or
    ``"diverse_margin"``.

    ``"diverse_margin"`` when the labeled set the model was trained on holds at least
    ``switch_per_class`` labels per class, ``n_labeled / n_classes >= switch_per_class``;
    ``"typiclust"`` below.

    Parameters
    ----------
    n_labeled : int
        Labeled samples before the query, ``>= 0``.
    n_classes : int
        Number of classes, ``>= 1``.
    switch_per_class : float, default=5
        Labels per class from which diverse margin sampling is used.

    Returns
    -------
    str

    Examples
    --------
    >>> adaptive_choice(30, n_classes=10)  # 3 labels per class
    'typiclust'
    >>> adaptive_choice(200, n_classes=10)  # 20 labels per class
    'diverse_margin'
    """
    if isinstance(n_labeled, bool) or not isinstance(n_labeled, int | np.integer) or n_labeled < 0:
        raise ValueError(f"n_labeled must be an int >= 0; got {n_labeled!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int; got {n_classes!r}")
    switch = _positive(switch_per_class, "switch_per_class")
    return "diverse_margin" if n_labeled / n_classes >= switch else "typiclust"


def adaptive(
    learner: Any,
    X_pool: Any,
    n_instances: int = 1,
    *,
    X_labeled: Any = None,
    n_classes: int | None = None,
    switch_per_class: float = SWITCH_PER_CLASS,
    random_state: int | np.random.RandomState | None = None,
):
    """TypiClust while the model has few labels per class, diverse margin sampling after.

    The choice is :func:`adaptive_choice` on the number of labeled samples and the
    number of classes; then :func:`~skmoby.typiclust` (on normalized features, with its
    defaults) or :func:`~skmoby.diverse_margin` (with its defaults) selects, with the
    same modAL contract.

    Parameters
    ----------
    learner : modAL learner or estimator
        A modAL learner (its ``estimator`` and ``X_training`` are used) or a fitted
        estimator.
    X_pool : array-like
        The unlabeled pool.
    n_instances : int, default=1
        Number of samples to select.
    X_labeled : array-like, optional
        The labeled samples; defaults to ``learner.X_training``.
    n_classes : int, optional
        Number of classes; defaults to the number of the estimator's ``classes_``.
    switch_per_class : float, default=5
        Labels per class, before the query, from which diverse margin sampling selects.
    random_state : int, RandomState or None, default=None
        Seed of the chosen strategy's k-means.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Indices into ``X_pool``, in the order the strategy gives them.
    scores : ndarray of shape (n_instances,)
        The chosen strategy's: typicality (TypiClust) or margin (diverse margin).

    Raises
    ------
    ValueError
        For an empty pool, ``n_instances`` outside ``1..len(X_pool)``, no
        ``n_classes`` (nor ``classes_``), a non-positive ``switch_per_class``, or what
        the chosen strategy refuses.

    See Also
    --------
    adaptive_choice : the rule alone.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.RandomState(0)
    >>> X = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    >>> clf = LogisticRegression().fit(X[[0, 50]], [0, 1])
    >>> idx, _ = adaptive(clf, X[1:50], 2, X_labeled=X[[0, 50]], random_state=0)
    >>> len(idx)  # 1 label per class so far: TypiClust's picks
    2
    """
    with modal_retry_guard():
        n = check_pool_n(X_pool, n_instances)
        if n_classes is None:
            n_classes = len(getattr(base_estimator(learner), "classes_", ()))
            if n_classes == 0:
                raise ValueError(
                    "adaptive needs n_classes (or an estimator with classes_) to count "
                    "the labels per class"
                )
        labeled = X_labeled if X_labeled is not None else getattr(learner, "X_training", None)
        m = 0 if labeled is None else n_samples(labeled)
        if adaptive_choice(m, n_classes, switch_per_class=switch_per_class) == "typiclust":
            return typiclust(learner, X_pool, n, X_labeled=X_labeled, random_state=random_state)
        return diverse_margin(learner, X_pool, n, random_state=random_state)
