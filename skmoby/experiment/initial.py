"""The first labelled set of each trial, chosen instead of drawn (``initial_strategy``).

A learner of the run's settings is trained on the unlabelled pool alone (MoBYv2AL's
contrastive loss, no label read), and :func:`~skmoby.typiclust` or
:func:`~skmoby.probcover` picks the ``initial`` images to label in its feature space.
The sets are computed in the run's own process before its jobs start, one trial after
another, and each is written to ``initial.json`` as soon as it is chosen, so that a
resumed run (also after ``kill -9``) starts every method of a trial from the same set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..datasets import ImageDataset
from ..query import probcover, typiclust
from .config import ExperimentConfig
from .protocol import make_estimator as default_estimator
from .store import RunFolder

__all__ = ["choose_initial_labels", "initial_sets"]

_STRATEGIES = {"typiclust": typiclust, "probcover": probcover}


def _seed(cfg: ExperimentConfig, trial: int) -> int:
    """The seed of trial ``trial``'s choice: its own stream, apart from the cycles'."""
    return int(np.random.SeedSequence([cfg.seed + trial, 2**20]).generate_state(1)[0])


def _release(est: Any) -> None:
    """Free the choosing learner's device memory before the run's jobs start (they may
    share this GPU, and measure its free memory for their data)."""
    device = str(getattr(est, "device_", "cpu"))
    del est
    if device.startswith("cuda"):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


def choose_initial_labels(
    cfg: ExperimentConfig,
    dataset: ImageDataset,
    trial: int,
    *,
    device: str | None = None,
    make_estimator: Callable[..., Any] | None = None,
) -> np.ndarray:
    """The sorted pool indices that trial ``trial`` starts with, chosen by
    ``cfg.initial_strategy`` (``"typiclust"`` or ``"probcover"``).

    The learner (``make_estimator(cfg, "mobyv2al", dataset, seed, device=...)``, the
    runner's by default) is fitted with every row unlabelled, on the pool or on a
    random ``cfg.pool_subset`` of it, which is then also where the picks come from.
    Only the list of classes is read from the labels (the classifier head needs it).

    Parameters
    ----------
    cfg : ExperimentConfig
        The run's settings.
    dataset : ImageDataset
        The data; its training images are the pool.
    trial : int
        The trial (it seeds the subset, the learner and the strategy).
    device : str, optional
        Device instead of ``cfg.device``.
    make_estimator : callable, optional
        Builds the learner instead of :func:`~skmoby.experiment.make_estimator`.

    Returns
    -------
    ndarray of int64, shape (cfg.initial,)

    Raises
    ------
    ValueError
        When ``cfg.initial_strategy`` is ``"random"`` (see
        ``skmoby.experiment.config.initial_labels``), or the chosen images hold a
        single class.

    Examples
    --------
    >>> from skmoby.datasets import load_dataset
    >>> cfg = ExperimentConfig(initial=20, epochs=1, initial_strategy="typiclust",
    ...                        pool_subset=300, device="cpu")
    >>> first = choose_initial_labels(cfg, load_dataset("digits"), trial=0)
    >>> len(first), len(set(first.tolist()))
    (20, 20)
    """
    if cfg.initial_strategy not in _STRATEGIES:
        raise ValueError(
            f"initial_strategy must be one of {list(_STRATEGIES)} to choose labels; got "
            f"{cfg.initial_strategy!r}"
        )
    seed = _seed(cfg, trial)
    X, y = dataset.X_train, np.asarray(dataset.y_train)
    pool = np.arange(len(X))
    if cfg.pool_subset is not None and cfg.pool_subset < len(X):
        pool = np.sort(np.random.RandomState(seed).choice(len(X), cfg.pool_subset, replace=False))
    factory = make_estimator or default_estimator
    est = factory(cfg, "mobyv2al", dataset, seed, device=device)
    est.set_params(classes=np.unique(y))  # the head's classes; no label is read
    mark = est.get_params().get("unlabeled_label", -1)
    if mark is None:
        raise ValueError(
            "initial_strategy needs a learner that takes unlabelled rows; the one built "
            "here has unlabeled_label=None"
        )
    est.fit(X[pool], np.full(len(pool), mark, dtype=np.asarray(mark).dtype))
    if getattr(est, "interrupted_", False):  # skorch caught Ctrl-C: choose nothing
        raise KeyboardInterrupt
    strategy = _STRATEGIES[cfg.initial_strategy]
    picks, _ = strategy(est, X[pool], n_instances=cfg.initial, random_state=seed)
    chosen = np.sort(pool[np.asarray(picks)])
    _release(est)
    classes = np.unique(y[chosen])
    if len(classes) < 2:
        raise ValueError(
            f"the {cfg.initial} images {cfg.initial_strategy} chose for trial {trial} hold "
            f"a single class ({classes[0]}), and a classifier needs at least 2; raise initial"
        )
    return chosen


def initial_sets(
    cfg: ExperimentConfig,
    dataset: ImageDataset,
    store: RunFolder,
    stored: dict[int, np.ndarray],
    *,
    device: str | None = None,
    make_estimator: Callable[..., Any] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[int, np.ndarray] | None:
    """Every trial's chosen first labelled set: those ``stored`` in the folder, and
    the others chosen now, each written to ``initial.json`` once chosen. ``None``
    where ``cfg.initial_strategy`` is ``"random"`` (the sets are drawn by seed).

    Examples
    --------
    >>> import tempfile
    >>> from skmoby.datasets import load_dataset
    >>> cfg = ExperimentConfig(initial=20, trials=2, epochs=1, pool_subset=300,
    ...                        initial_strategy="probcover", device="cpu")
    >>> with tempfile.TemporaryDirectory() as out:
    ...     store = RunFolder(out)
    ...     sets = initial_sets(cfg, load_dataset("digits"), store, {})
    ...     stored = store.read_initial(cfg, n_pool=1257)
    >>> sorted(sets), all((sets[t] == stored[t]).all() for t in sets)
    ([0, 1], True)
    """
    if cfg.initial_strategy == "random":
        return None
    sets = dict(stored)
    for trial in range(cfg.trials):
        if trial in sets:
            continue
        start = time.perf_counter()
        sets[trial] = choose_initial_labels(
            cfg, dataset, trial, device=device, make_estimator=make_estimator
        )
        store.save_initial(sets, cfg.to_dict())
        log(
            f"trial {trial}: {cfg.initial} first labels chosen by {cfg.initial_strategy} "
            f"({time.perf_counter() - start:.0f} s)"
        )
    return sets
