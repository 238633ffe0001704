"""The pool-based active-learning protocol of MoBYv2AL, with results that survive crashes.

A run compares methods over trials. In each trial all methods start from the same random
labelled set; every cycle trains a fresh learner (modAL ``ActiveLearner``), evaluates it
on the test set and selects the next ``budget`` images to label. After every cycle the
results table (``results.csv``), the selections (``selections.json``) and the
configuration (``config.json``) are written atomically to the run's folder, so a crash
loses at most the cycle in progress, and :func:`resume_experiment` carries on from there.

Methods:

``mobyv2al``
    :class:`~skmoby.MoBYv2Classifier` + :func:`~skmoby.coreset`; trained on the labelled
    set plus as many unlabelled images, those with the lowest contrastive loss under the
    previous cycle's model (random in the first cycle), as in the paper (Section 4.2).
``coreset``
    The same backbone trained supervised-only (``lambda_c=0``, no unlabelled data) +
    CoreSet on its features: the paper's CoreSet baseline.
``random``, ``entropy``
    The supervised learner with random selection or maximum-entropy selection.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from skorch.callbacks import Callback

from ._data import drops_lone_last as _drops_lone_last
from .classifier import MoBYv2Classifier
from .datasets import ImageDataset, load_dataset
from .query.strategies import (
    coreset,
    lowest_contrastive_subset,
    max_entropy,
    random_sampling,
)

__all__ = [
    "METHODS",
    "PRESETS",
    "ExperimentConfig",
    "plot_learning_curves",
    "resume_experiment",
    "run_experiment",
    "summarize",
]

METHODS = ("mobyv2al", "coreset", "random", "entropy")
RESULT_DTYPES = {"method": str, "trial": int, "cycle": int, "n_labelled": int,
                 "accuracy": float, "fit_seconds": float, "query_seconds": float}


@dataclass
class ExperimentConfig:
    """Everything that defines a run; stored as ``config.json`` in the run's folder.

    Parameters
    ----------
    dataset : str
        A name accepted by :func:`~skmoby.datasets.load_dataset`.
    methods : list of str
        Any of ``"mobyv2al"``, ``"coreset"``, ``"random"``, ``"entropy"``.
    backbone : str
        Backbone name for :class:`~skmoby.MoBYv2Classifier`.
    initial : int
        Size of the initial random labelled set.
    budget : int
        Images labelled per cycle.
    cycles : int
        Number of train/evaluate cycles (selection happens between cycles).
    trials : int
        Repetitions with different seeds.
    epochs, batch_size, lr : int, int, float
        Training settings of every learner.
    unlabeled : {"lowest_loss", "random", "all"}
        Unlabelled training data of ``mobyv2al``: as many pool images as labelled ones,
        lowest contrastive loss first (the paper) or at random; or the whole pool.
    pool_subset : int or None
        Size of a random subset of the unlabelled pool scanned per cycle (the authors'
        code uses 10000); None scans the whole pool.
    seed : int
        Seed of trial 0; trial ``t`` uses ``seed + t``.
    device : str
        Torch device for the learners (``"auto"``: CUDA when available).
    data_root : str or None
        Folder of the dataset files; ``download`` fetches missing ones.

    Examples
    --------
    >>> cfg = ExperimentConfig(dataset="digits", methods=["mobyv2al", "random"], cycles=3)
    >>> cfg.validate()
    >>> cfg.initial + cfg.budget * (cfg.cycles - 1)
    300
    """

    dataset: str = "digits"
    methods: list[str] = field(default_factory=lambda: ["mobyv2al", "random"])
    backbone: str = "cnn"
    initial: int = 100
    budget: int = 100
    cycles: int = 5
    trials: int = 3
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    unlabeled: str = "lowest_loss"
    pool_subset: int | None = None
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    download: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting.

        Examples
        --------
        >>> ExperimentConfig(budget=0).validate()
        Traceback (most recent call last):
        ...
        ValueError: budget must be a positive int; got 0
        """
        for name in ("initial", "budget", "cycles", "trials", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2; got {self.batch_size!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr!r}")
        bad = [m for m in self.methods if m not in METHODS]
        if not self.methods or bad:
            raise ValueError(f"methods must be a non-empty list of {list(METHODS)}; "
                             f"got {self.methods!r}")
        if self.unlabeled not in ("lowest_loss", "random", "all"):
            raise ValueError("unlabeled must be 'lowest_loss', 'random' or 'all'; "
                             f"got {self.unlabeled!r}")
        if self.pool_subset is not None and self.pool_subset < self.budget:
            raise ValueError(f"pool_subset must be at least budget ({self.budget}); "
                             f"got {self.pool_subset}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict (what ``config.json`` stores).

        Examples
        --------
        >>> ExperimentConfig(dataset="digits", cycles=2).to_dict()["cycles"]
        2
        """
        return dataclasses.asdict(self)

    def _check_pool(self, n_pool: Any) -> None:
        self.validate()
        if isinstance(n_pool, bool) or not isinstance(n_pool, int | np.integer) \
                or n_pool < self.initial + self.budget * (self.cycles - 1):
            raise ValueError("n_pool must be an int of at least initial + budget * "
                             f"(cycles - 1); got {n_pool!r}")

    def n_labelled(self) -> list[int]:
        """Labelled images in each cycle: ``initial + cycle * budget``.

        Examples
        --------
        >>> ExperimentConfig(initial=100, budget=50, cycles=3).n_labelled()
        [100, 150, 200]
        """
        return [self.initial + c * self.budget for c in range(self.cycles)]

    def n_unlabelled(self, n_pool: int) -> list[int]:
        """Unlabelled training images of ``mobyv2al`` in each cycle, on a pool of ``n_pool``.

        ``"all"``: the rest of the pool; otherwise as many as labelled (at most the rest
        of the pool, and at most ``pool_subset`` from the second cycle on, when the
        lowest-loss subset is chosen among a scanned subset of the pool).

        Examples
        --------
        >>> cfg = ExperimentConfig(initial=100, budget=50, cycles=3, unlabeled="all")
        >>> cfg.n_unlabelled(n_pool=1000)
        [900, 850, 800]
        >>> ExperimentConfig(initial=100, budget=50, cycles=3).n_unlabelled(n_pool=1000)
        [100, 150, 200]
        """
        self._check_pool(n_pool)
        sizes = []
        for c, n_lab in enumerate(self.n_labelled()):
            rest = max(n_pool - n_lab, 0)
            if self.unlabeled == "all":
                sizes.append(rest)
            elif self.unlabeled == "lowest_loss" and c > 0 and self.pool_subset is not None:
                sizes.append(min(n_lab, rest, self.pool_subset))
            else:
                sizes.append(min(n_lab, rest))
        return sizes

    def training_steps(self, n_pool: int) -> pd.DataFrame:
        """SGD steps that one trial of each method takes, cycle by cycle.

        Every cycle trains a fresh learner for ``epochs`` epochs. A supervised epoch is
        one pass over the labelled images; a ``mobyv2al`` epoch alternates labelled and
        unlabelled batches over the larger of the two sets (see
        :class:`~skmoby.MoBYv2Classifier`), so it takes twice as many steps as the
        larger set has batches. Multiplying by the seconds per step of a device (for
        example ``fit_seconds`` of a finished cycle divided by its steps) estimates
        the run time.

        Parameters
        ----------
        n_pool : int
            Number of training images of the dataset (the pool).

        Returns
        -------
        pandas.DataFrame
            Index ``cycle``; column ``n_labelled`` and one column of steps per method.

        Examples
        --------
        >>> cfg = ExperimentConfig(methods=["mobyv2al", "random"], initial=100,
        ...                        budget=100, cycles=2, epochs=10, batch_size=64)
        >>> cfg.training_steps(n_pool=1000)  # doctest: +NORMALIZE_WHITESPACE
               n_labelled  mobyv2al  random
        cycle
        0             100        40      20
        1             200        80      40
        """
        self._check_pool(n_pool)

        def batches(n: int) -> int:
            return -(-n // self.batch_size) - _drops_lone_last(n, self.batch_size)

        labelled = self.n_labelled()
        table = pd.DataFrame({"n_labelled": labelled},
                             index=pd.RangeIndex(self.cycles, name="cycle"))
        for method in self.methods:
            if method == "mobyv2al":
                per_epoch = [2 * max(batches(n), batches(u)) if u else batches(n)
                             for n, u in zip(labelled, self.n_unlabelled(n_pool),
                                             strict=True)]
            else:
                per_epoch = [batches(n) for n in labelled]
            table[method] = [self.epochs * k for k in per_epoch]
        return table

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentConfig:
        """Rebuild a configuration from :meth:`to_dict`; unknown keys raise ``ValueError``.

        Parameters
        ----------
        d : dict
            Settings by name.

        Returns
        -------
        ExperimentConfig

        Examples
        --------
        >>> cfg = ExperimentConfig(dataset="digits", trials=1)
        >>> ExperimentConfig.from_dict(cfg.to_dict()) == cfg
        True
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown experiment settings: {sorted(unknown)}")
        return cls(**d)


#: The paper's protocols (METHOD.md) and CPU-sized ones, selectable by name.
PRESETS: dict[str, dict[str, Any]] = {
    # The digits pool is small, so the demo trains MoBYv2 on all of it ("all"); with the
    # paper's subset rule (as many unlabelled images as labelled ones) 30-120 images are
    # too few for the contrastive loss to help.
    "demo": dict(dataset="digits", methods=["mobyv2al", "random"], backbone="cnn",
                 initial=30, budget=30, cycles=4, trials=2, epochs=20, batch_size=32,
                 lr=0.05, unlabeled="all"),
    "cifar10": dict(dataset="cifar10", methods=["mobyv2al", "coreset", "random"],
                    backbone="vgg16", initial=5000, budget=2500, cycles=7, trials=5,
                    epochs=200, batch_size=128, lr=0.01, pool_subset=10000),
    "cifar100": dict(dataset="cifar100", methods=["mobyv2al", "coreset", "random"],
                     backbone="vgg16", initial=5000, budget=2500, cycles=7, trials=5,
                     epochs=200, batch_size=128, lr=0.01, pool_subset=10000),
    "svhn": dict(dataset="svhn", methods=["mobyv2al", "coreset", "random"],
                 backbone="resnet18", initial=1000, budget=1000, cycles=10, trials=5,
                 epochs=200, batch_size=128, lr=0.01, pool_subset=10000),
    "fashionmnist": dict(dataset="fashionmnist", methods=["mobyv2al", "coreset", "random"],
                         backbone="resnet18", initial=1000, budget=1000, cycles=10,
                         trials=5, epochs=200, batch_size=128, lr=0.01, pool_subset=10000),
    "cifar10-imbalanced": dict(dataset="cifar10-imbalanced",
                               methods=["mobyv2al", "coreset", "random"],
                               backbone="resnet18", initial=1000, budget=1000, cycles=7,
                               trials=5, epochs=200, batch_size=128, lr=0.01,
                               pool_subset=10000),
    # LeNet-5 has no batch norm: at lr 0.05 one MoBYv2 fit in 15 lost all its ReLUs
    # (constant features, 10% accuracy); 0.02 trains all of them.
    "fashionmnist-cpu": dict(dataset="fashionmnist", methods=["mobyv2al", "coreset", "random"],
                             backbone="lenet5", initial=200, budget=200, cycles=5, trials=3,
                             epochs=30, batch_size=64, lr=0.02, pool_subset=5000),
}


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _Store:
    """The run folder: config, results table and selections, each rewritten atomically."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.results = out / "results.csv"
        self.selections = out / "selections.json"
        self.config = out / "config.json"

    def load(self) -> tuple[pd.DataFrame, dict[str, Any]]:
        if self.results.exists():
            rows = pd.read_csv(self.results).astype(RESULT_DTYPES)
        else:
            rows = pd.DataFrame({c: pd.Series(dtype=t) for c, t in RESULT_DTYPES.items()})
        sel = json.loads(self.selections.read_text()) if self.selections.exists() else {}
        return rows, sel

    def save(self, rows: pd.DataFrame, sel: dict[str, Any]) -> None:
        # Selections first: a results row never exists without its selection.
        _atomic_write(self.selections, json.dumps(sel))
        _atomic_write(self.results, rows.to_csv(index=False))


def _key(method: str, trial: int, cycle: int) -> str:
    return f"{method}/{trial}/{cycle}"


class _EpochProgress(Callback):
    """A tqdm bar over the epochs of one fit (nested under the bar over cycles)."""

    def __init__(self, desc: str = "epochs") -> None:
        self.desc = desc

    def on_train_begin(self, net, **kwargs):
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=net.max_epochs, desc=self.desc, unit="epoch", leave=False,
                         position=1)

    def on_epoch_end(self, net, **kwargs):
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()


def _make_estimator(cfg: ExperimentConfig, method: str, ds: ImageDataset, seed: int,
                    progress: bool = False):
    kw = dict(backbone=cfg.backbone, max_epochs=cfg.epochs, batch_size=cfg.batch_size,
              lr=cfg.lr, normalize=ds.normalize, random_state=seed, device=cfg.device)
    if progress:
        kw["callbacks"] = [("epoch_progress", _EpochProgress(f"{method} epochs"))]
    if method == "mobyv2al":
        return MoBYv2Classifier(**kw)
    return MoBYv2Classifier(lambda_c=0.0, **kw)


_STRATEGIES: dict[str, Callable[..., Any]] = {
    "mobyv2al": coreset, "coreset": coreset, "random": random_sampling,
    "entropy": max_entropy,
}


def _one_cycle(cfg, ds, method, trial, cycle, labelled, unl_train, rng, progress=False):
    """Train, evaluate and select; return the row, the selection and next unlabelled set."""
    from modAL.models import ActiveLearner

    seed = cfg.seed + trial
    n_pool = len(ds.X_train)
    fit_kw = {}
    if method == "mobyv2al" and unl_train is not None and len(unl_train):
        fit_kw["X_unlabeled"] = ds.X_train[unl_train]
    strategy = _STRATEGIES[method]
    if method == "random":
        def strategy(learner, X, n_instances=1, _s=seed * 1000 + cycle):
            return random_sampling(learner, X, n_instances, random_state=_s)
    t0 = time.perf_counter()
    learner = ActiveLearner(
        estimator=_make_estimator(cfg, method, ds, seed * 1000 + cycle, progress),
        query_strategy=strategy, X_training=ds.X_train[labelled],
        y_training=ds.y_train[labelled], **fit_kw,
    )
    fit_s = time.perf_counter() - t0
    acc = float(learner.estimator.score(ds.X_test, ds.y_test))
    row = dict(method=method, trial=trial, cycle=cycle, n_labelled=len(labelled),
               accuracy=acc, fit_seconds=fit_s, query_seconds=0.0)
    if cycle == cfg.cycles - 1:
        return row, [], None
    is_lab = np.zeros(n_pool, dtype=bool)
    is_lab[labelled] = True
    pool = np.flatnonzero(~is_lab)
    if cfg.pool_subset is not None and cfg.pool_subset < len(pool):
        pool = np.sort(rng.choice(pool, cfg.pool_subset, replace=False))
    budget = min(cfg.budget, len(pool))
    t0 = time.perf_counter()
    idx, _ = learner.query(ds.X_train[pool], n_instances=budget)
    selected = pool[np.asarray(idx)]
    row["query_seconds"] = time.perf_counter() - t0
    next_unl = None
    if method == "mobyv2al":
        if cfg.unlabeled != "lowest_loss":
            next_unl = _unlabelled_subset(cfg, np.union1d(labelled, selected), n_pool, rng)
        else:
            is_lab[selected] = True
            cand = np.flatnonzero(~is_lab)
            if cfg.pool_subset is not None and cfg.pool_subset < len(cand):
                cand = np.sort(rng.choice(cand, cfg.pool_subset, replace=False))
            sub, _ = lowest_contrastive_subset(learner.estimator, ds.X_train[cand],
                                               min(len(labelled) + len(selected), len(cand)))
            next_unl = cand[sub]
    return row, selected, next_unl


def _unlabelled_subset(cfg, labelled, n_pool, rng):
    """The whole rest of the pool (``"all"``), else as many random rows as labelled."""
    is_lab = np.zeros(n_pool, dtype=bool)
    is_lab[labelled] = True
    rest = np.flatnonzero(~is_lab)
    if cfg.unlabeled == "all":
        return rest
    return np.sort(rng.choice(rest, min(len(labelled), len(rest)), replace=False))


def _run(cfg: ExperimentConfig, out: Path, ds: ImageDataset | None, progress: bool,
         log: Callable[[str], None]) -> pd.DataFrame:
    cfg.validate()
    ds = ds if ds is not None else load_dataset(cfg.dataset, cfg.data_root, cfg.download)
    n_pool = len(ds.X_train)
    need = cfg.initial + cfg.budget * (cfg.cycles - 1)
    if need > n_pool:
        raise ValueError(f"initial + budget * (cycles - 1) = {need} exceeds the pool of "
                         f"{n_pool} {cfg.dataset} training images")
    store = _Store(out)
    rows, sel = store.load()
    done = {(r.method, int(r.trial), int(r.cycle)) for r in rows.itertuples()}
    total = cfg.trials * len(cfg.methods) * cfg.cycles
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=len(done), desc="cycles", unit="cycle")
    try:
        for trial in range(cfg.trials):
            seed = cfg.seed + trial
            init = np.sort(np.random.RandomState(seed).choice(n_pool, cfg.initial,
                                                              replace=False))
            for method in cfg.methods:
                labelled = init.copy()
                rng = np.random.RandomState([seed, METHODS.index(method)])
                unl = (_unlabelled_subset(cfg, labelled, n_pool, rng)
                       if method == "mobyv2al" else None)
                for cycle in range(cfg.cycles):
                    key = _key(method, trial, cycle)
                    if (method, trial, cycle) in done:
                        # Replay what the finished cycle chose.
                        selected = sel[key]["selected"]
                        next_unl = sel[key].get("next_unlabeled")
                    else:
                        row, selected, next_unl = _one_cycle(cfg, ds, method, trial, cycle,
                                                             labelled, unl, rng, progress)
                        sel[key] = {"selected": [int(i) for i in selected],
                                    "next_unlabeled": (None if next_unl is None
                                                       else [int(i) for i in next_unl])}
                        new = pd.DataFrame([row]).astype(RESULT_DTYPES)
                        rows = new if rows.empty else pd.concat([rows, new], ignore_index=True)
                        store.save(rows, sel)
                        log(f"{method:<9} trial {trial} cycle {cycle}: {row['n_labelled']} "
                            f"labels, accuracy {row['accuracy']:.4f}")
                        if bar is not None:
                            bar.update(1)
                    labelled = np.union1d(labelled, selected)
                    if next_unl is not None:
                        unl = np.asarray(next_unl, dtype=np.int64)
                    rng = np.random.RandomState([seed, METHODS.index(method), cycle + 1])
    finally:
        if bar is not None:
            bar.close()
    rows = rows.astype(RESULT_DTYPES)
    return rows.sort_values(["method", "trial", "cycle"]).reset_index(drop=True)


def run_experiment(config: ExperimentConfig, out: str | os.PathLike, *,
                   dataset: ImageDataset | None = None, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run the protocol into the folder ``out`` (created; must not hold another run).

    Parameters
    ----------
    config : ExperimentConfig
        What to run.
    out : path
        Results folder. If it already holds a run with the same configuration, the run
        is resumed; a different configuration raises ``ValueError``.
    dataset : ImageDataset, optional
        Data to use instead of loading ``config.dataset``.
    progress : bool, default=True
        Show tqdm progress bars over cycles and over the epochs of each fit.
    log : callable, optional
        Called with one line per finished cycle.

    Returns
    -------
    pandas.DataFrame
        One row per (method, trial, cycle): ``n_labelled``, ``accuracy``,
        ``fit_seconds``, ``query_seconds``.

    Examples
    --------
    >>> import tempfile
    >>> cfg = ExperimentConfig(methods=["random"], initial=20, budget=10, cycles=2,
    ...                        trials=1, epochs=1, device="cpu")
    >>> with tempfile.TemporaryDirectory() as out:
    ...     results = run_experiment(cfg, out, progress=False)
    >>> results[["method", "cycle", "n_labelled"]].values.tolist()
    [['random', 0, 20], ['random', 1, 30]]
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config.validate()
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = ExperimentConfig.from_dict(json.loads(cfg_path.read_text()))
        if old != config:
            raise ValueError(f"{out} holds a run with another configuration; use "
                             "resume_experiment() or another folder")
    else:
        _atomic_write(cfg_path, json.dumps(config.to_dict(), indent=2))
    return _run(config, out, dataset, progress, log or (lambda s: None))


def resume_experiment(out: str | os.PathLike, *, dataset: ImageDataset | None = None,
                      progress: bool = True,
                      log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Continue the run stored in ``out`` from its last finished cycle.

    Parameters
    ----------
    out : path
        A folder written by :func:`run_experiment`.
    dataset, progress, log
        As in :func:`run_experiment`.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import tempfile
    >>> cfg = ExperimentConfig(methods=["random"], initial=20, budget=10, cycles=2,
    ...                        trials=1, epochs=1, device="cpu")
    >>> with tempfile.TemporaryDirectory() as out:
    ...     _ = run_experiment(cfg, out, progress=False)
    ...     again = resume_experiment(out, progress=False)  # nothing left to run
    >>> len(again)
    2
    """
    out = Path(out)
    cfg_path = out / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{out} holds no experiment (no config.json)")
    cfg = ExperimentConfig.from_dict(json.loads(cfg_path.read_text()))
    return _run(cfg, out, dataset, progress, log or (lambda s: None))


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of test accuracy over trials, per method and cycle.

    Parameters
    ----------
    results : pandas.DataFrame
        The table returned by :func:`run_experiment`.

    Returns
    -------
    pandas.DataFrame
        Index ``(cycle, n_labelled)``, columns ``(method, mean|std|trials)``.

    Examples
    --------
    >>> import pandas as pd
    >>> res = pd.DataFrame({"method": ["a", "a"], "trial": [0, 1], "cycle": [0, 0],
    ...                     "n_labelled": [10, 10], "accuracy": [0.5, 0.7]})
    >>> float(summarize(res).loc[(0, 10), ("a", "mean")])
    0.6
    """
    g = results.groupby(["method", "cycle"])
    table = g.agg(n_labelled=("n_labelled", "first"), mean=("accuracy", "mean"),
                  std=("accuracy", "std"), trials=("accuracy", "size")).reset_index()
    return table.pivot(index=["cycle", "n_labelled"], columns="method",
                       values=["mean", "std", "trials"]).swaplevel(axis=1).sort_index(axis=1)


def plot_learning_curves(results: pd.DataFrame, out: str | os.PathLike,
                         title: str | None = None) -> list[Path]:
    """Plot mean +- std test accuracy against the number of labels, one line per method.

    Parameters
    ----------
    results : pandas.DataFrame
        The table returned by :func:`run_experiment`.
    out : path
        Folder to write ``learning_curve.png`` and ``learning_curve.svg`` into.
    title : str, optional
        Plot title.

    Returns
    -------
    list of Path
        The files written.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> res = pd.DataFrame({"method": ["a", "a"], "trial": [0, 0], "cycle": [0, 1],
    ...                     "n_labelled": [10, 20], "accuracy": [0.5, 0.7]})
    >>> with tempfile.TemporaryDirectory() as out:
    ...     [f.name for f in plot_learning_curves(res, out)]
    ['learning_curve.png', 'learning_curve.svg']
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, df in results.groupby("method"):
        g = df.groupby("n_labelled")["accuracy"]
        mean, std = g.mean(), g.std().fillna(0.0)
        ax.plot(mean.index, 100 * mean.values, marker="o", label=method)
        ax.fill_between(mean.index, 100 * (mean - std).values, 100 * (mean + std).values,
                        alpha=0.2)
    ax.set_xlabel("number of labelled images")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    files = [out / "learning_curve.png", out / "learning_curve.svg"]
    for f in files:
        fig.savefig(f, dpi=150)
    plt.close(fig)
    return files
