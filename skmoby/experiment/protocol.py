"""One (method, trial) job of the protocol: its cycles of training, evaluation and selection.

Every cycle trains a fresh learner (modAL ``ActiveLearner``), evaluates it on the test set
and selects the next ``budget`` images to label. Every random draw is seeded by (seed,
trial, method, cycle), so a job gives the same cycles in any process, in any order of jobs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
from skorch.callbacks import Callback, EarlyStopping

from .._compat.modal import guard_modal_retry
from ..classifier import MoBYv2Classifier
from ..datasets import ImageDataset, load_dataset
from ..query.adaptive import adaptive
from ..query.coverage import probcover, typiclust
from ..query.margin import diverse_margin
from ..query.strategies import coreset, lowest_contrastive_subset, max_entropy, random_sampling
from .config import METHODS, ExperimentConfig, initial_labels, is_joint

#: The selection strategy of each method (``run_experiment(strategies=...)`` overrides).
STRATEGIES: dict[str, Callable[..., Any]] = {
    "mobyv2al": coreset,
    "coreset": coreset,
    "random": random_sampling,
    "entropy": max_entropy,
    "mobyv2al-typiclust": typiclust,
    "mobyv2al-probcover": probcover,
    "mobyv2al-adaptive": adaptive,
    "mobyv2al-margin": diverse_margin,
}
#: Methods whose strategy draws at random: it is given ``random_state``, seeded per
#: (trial, cycle).
SEEDED = (
    "random",
    "mobyv2al-typiclust",
    "mobyv2al-probcover",
    "mobyv2al-adaptive",
    "mobyv2al-margin",
)


class Cycle(NamedTuple):
    """One finished cycle of a job, as the driver saves it."""

    cycle: int
    row: dict[str, Any]
    entry: dict[str, Any]
    model: bytes | None


class _EpochProgress(Callback):
    """A tqdm bar over the epochs of one fit (nested under the bar over cycles).

    skorch's ``ProgressBar`` shows the batches of the current epoch and restarts every
    epoch; a protocol fit is easier to follow as one bar over its epochs.
    """

    def __init__(self, desc: str = "epochs") -> None:
        self.desc = desc

    def on_train_begin(self, net, **kwargs):
        from tqdm.auto import tqdm

        self.bar_ = tqdm(
            total=net.max_epochs, desc=self.desc, unit="epoch", leave=False, position=1
        )

    def on_epoch_end(self, net, **kwargs):
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()


class _FitGuard(Callback):
    """Counts finished epochs, to tell a complete fit from one cut short.

    skorch ends ``fit`` quietly when a ``KeyboardInterrupt`` reaches it (Ctrl-C, or a
    callback raising it), so the runner checks that every epoch ran unless skorch's
    ``EarlyStopping`` ended the fit.
    """

    def on_train_begin(self, net, **kwargs):
        self.epochs_ = 0

    def on_epoch_end(self, net, **kwargs):
        self.epochs_ += 1

    def cut_short(self, net) -> bool:
        if getattr(self, "epochs_", 0) >= net.max_epochs:
            return False
        return not any(
            isinstance(cb, EarlyStopping) and cb.misses_ >= cb.patience
            for _, cb in getattr(net, "callbacks_", [])
        )


@contextlib.contextmanager
def _sigint_seen() -> Iterator[Callable[[], bool]]:
    """Note a SIGINT (Ctrl-C) that arrives inside the block, then let it act as usual."""
    seen = [False]
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield lambda: seen[0]
        return

    def handler(signum, frame):
        seen[0] = True
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: seen[0]
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _user_callbacks(callbacks: Any, method: str, trial: int, cycle: int) -> list[Any]:
    if callbacks is None:
        return []
    got = (
        callbacks(method=method, trial=trial, cycle=cycle)
        if callable(callbacks) and not isinstance(callbacks, Callback | type)
        else callbacks
    )
    if got is None:
        return []
    return list(got) if isinstance(got, list | tuple) else [got]


def check_callbacks(callbacks: Any) -> None:
    """Refuse ``callbacks`` that are neither skorch callbacks nor a function giving them."""
    if callbacks is None or isinstance(callbacks, list | tuple):
        bad = [
            cb
            for cb in callbacks or ()
            if not (
                isinstance(cb, Callback)
                or (isinstance(cb, tuple) and len(cb) == 2 and isinstance(cb[1], Callback))
            )
        ]
        if bad:
            raise TypeError(
                "callbacks must hold skorch Callback instances or (name, "
                f"callback) pairs; got {bad[0]!r}"
            )
        return
    if not callable(callbacks) or isinstance(callbacks, Callback | type):
        raise TypeError(
            "callbacks must be a list of skorch callbacks or a function "
            "f(method, trial, cycle) returning them; got "
            f"{type(callbacks).__name__}"
        )


def make_estimator(
    config: ExperimentConfig,
    method: str,
    dataset: ImageDataset,
    random_state: int,
    *,
    device: str | None = None,
) -> MoBYv2Classifier:
    """The learner the protocol trains for ``method`` in one cycle.

    ``mobyv2al`` methods train :class:`~skmoby.MoBYv2Classifier` on labelled and
    unlabelled images; the others the same network supervised only (``lambda_c=0``).
    ``run_experiment(make_estimator=...)`` takes a function of this signature instead;
    the runner adds its callbacks to what it returns.

    Parameters
    ----------
    config : ExperimentConfig
        The run's settings (backbone, epochs, batch size, learning rate, device).
    method : str
        One of :data:`~skmoby.experiment.METHODS`.
    dataset : ImageDataset
        The data (its ``normalize`` setting is used).
    random_state : int
        Seed of the learner.
    device : str, optional
        Device instead of ``config.device``.

    Returns
    -------
    MoBYv2Classifier

    Examples
    --------
    >>> from skmoby.datasets import load_dataset
    >>> from skmoby.experiment import ExperimentConfig, make_estimator
    >>> est = make_estimator(ExperimentConfig(), "random", load_dataset("digits"), 0)
    >>> est.lambda_c
    0.0
    """
    kw = dict(
        backbone=config.backbone,
        max_epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        normalize=dataset.normalize,
        random_state=random_state,
        device=config.device if device is None else device,
    )
    if is_joint(method):
        return MoBYv2Classifier(**kw)
    return MoBYv2Classifier(lambda_c=0.0, **kw)


def check_hooks(make_estimator: Any, strategies: Any) -> None:
    """Refuse a ``make_estimator`` that is not callable, or ``strategies`` that are not a
    mapping of the runner's methods to callables."""
    if make_estimator is not None and not callable(make_estimator):
        raise TypeError(f"make_estimator must be callable; got {make_estimator!r}")
    if strategies is None:
        return
    if not isinstance(strategies, Mapping):
        raise TypeError(f"strategies must be a dict of method -> strategy; got {strategies!r}")
    for method, strategy in strategies.items():
        if method not in METHODS or not callable(strategy):
            raise TypeError(
                f"strategies must map methods of {list(METHODS)} to callables; "
                f"got {method!r}: {strategy!r}"
            )


def checked_dataset(cfg: ExperimentConfig, ds: ImageDataset | None) -> ImageDataset:
    """``ds``, or the configured dataset loaded, once its pool is large enough and every
    trial's initial labels hold two classes."""
    ds = ds if ds is not None else load_dataset(cfg.dataset, cfg.data_root, cfg.download)
    n_pool = len(ds.X_train)
    need = cfg.initial + cfg.budget * (cfg.cycles - 1)
    if need > n_pool:
        raise ValueError(
            f"initial + budget * (cycles - 1) = {need} exceeds the pool of "
            f"{n_pool} {cfg.dataset} training images"
        )
    for trial in range(cfg.trials if cfg.initial_strategy == "random" else 0):
        classes = np.unique(np.asarray(ds.y_train)[initial_labels(cfg, n_pool, trial)])
        if len(classes) < 2:
            raise ValueError(
                f"initial = {cfg.initial}: the initial labels of trial {trial} hold a single "
                f"class ({classes[0]}), and a classifier needs at least 2; raise initial"
            )
    return ds


@dataclasses.dataclass(frozen=True)
class JobProtocol:
    """The work of one (method, trial) job, as the runners receive it: picklable, and
    called as ``work(dataset, method, trial, finished, device=..., progress=...)``.

    Calling it replays the cycles in ``finished`` (cycle -> selection entry) and yields
    each new one as a :class:`Cycle`.
    """

    config: ExperimentConfig
    callbacks: Any = None
    save_models: bool = False
    make_estimator: Callable[..., Any] | None = None
    strategies: Mapping[str, Callable[..., Any]] | None = None
    #: each trial's chosen first labelled set (``initial_strategy``); None: drawn by seed
    initial: Mapping[int, Any] | None = None

    def first_labels(self, n_pool: int, trial: int) -> np.ndarray:
        """The sorted pool indices trial ``trial`` starts with labelled."""
        if self.initial is None:
            return initial_labels(self.config, n_pool, trial)
        return np.sort(np.asarray(self.initial[trial], dtype=np.int64))

    def __call__(
        self,
        ds: ImageDataset,
        method: str,
        trial: int,
        finished: dict[int, dict[str, Any]],
        *,
        device: str | None = None,
        progress: bool = False,
    ) -> Iterator[Cycle]:
        cfg = self.config
        n_pool = len(ds.X_train)
        seed = cfg.seed + trial
        labeled = self.first_labels(n_pool, trial)
        rng = np.random.RandomState([seed, METHODS.index(method)])
        unl = _unlabeled_subset(cfg, labeled, n_pool, rng) if is_joint(method) else None
        for cycle in range(cfg.cycles):
            if cycle in finished:  # replay what the finished cycle chose
                selected = finished[cycle]["selected"]
                next_unl = finished[cycle].get("next_unlabeled")
            else:
                state = _CycleState(method, trial, cycle, labeled, unl, rng)
                done = self._one_cycle(ds, state, device=device, progress=progress)
                selected, next_unl = done.entry["selected"], done.entry["next_unlabeled"]
                yield done
            labeled = np.union1d(labeled, selected)
            if next_unl is not None:
                unl = np.asarray(next_unl, dtype=np.int64)
            rng = np.random.RandomState([seed, METHODS.index(method), cycle + 1])

    def _estimator(self, ds, state, *, device, progress) -> Any:
        """The cycle's learner, with the user's callbacks, a progress bar and the guard."""
        seed = (self.config.seed + state.trial) * 1000 + state.cycle
        factory = self.make_estimator or make_estimator
        est = factory(self.config, state.method, ds, seed, device=device)
        cbs = list(est.callbacks or [])
        cbs += _user_callbacks(self.callbacks, state.method, state.trial, state.cycle)
        if progress:
            cbs.append(("epoch_progress", _EpochProgress(f"{state.method} epochs")))
        cbs.append(("fit_guard", _FitGuard()))
        return est.set_params(callbacks=cbs)

    def _strategy(self, state) -> Callable[..., Any]:
        strategy = {**STRATEGIES, **(self.strategies or {})}[state.method]
        if state.method in SEEDED:  # random draws (and k-means) seeded by trial and cycle
            seed = (self.config.seed + state.trial) * 1000 + state.cycle
            strategy = functools.partial(strategy, random_state=seed)
        # Ctrl-C during modAL's query stops it (its bare except would call the strategy again)
        return guard_modal_retry(strategy)

    def _one_cycle(self, ds, state, *, device, progress) -> Cycle:
        """Train, evaluate and select. A fit cut short by ``KeyboardInterrupt`` raises
        ``KeyboardInterrupt`` here, so that no half-trained cycle is ever saved."""
        learner, fit_s = self._fit(ds, state, device=device, progress=progress)
        cfg = self.config
        row = dict(
            method=state.method,
            trial=state.trial,
            cycle=state.cycle,
            n_labelled=len(state.labeled),
            accuracy=float(learner.estimator.score(ds.X_test, ds.y_test)),
            fit_seconds=fit_s,
            query_seconds=0.0,
        )
        model = pickle.dumps(learner.estimator) if self.save_models else None
        if state.cycle == cfg.cycles - 1:
            return Cycle(state.cycle, row, {"selected": [], "next_unlabeled": None}, model)
        t0 = time.perf_counter()
        selected = _select(cfg, ds, learner, state)
        row["query_seconds"] = time.perf_counter() - t0
        next_unl = _next_unlabeled(cfg, ds, learner, state, selected)
        entry = {
            "selected": [int(i) for i in selected],
            "next_unlabeled": None if next_unl is None else [int(i) for i in next_unl],
        }
        return Cycle(state.cycle, row, entry, model)

    def _fit(self, ds, state, *, device, progress) -> tuple[Any, float]:
        from modAL.models import ActiveLearner

        fit_kw = {}
        if is_joint(state.method) and state.unlabeled is not None and len(state.unlabeled):
            fit_kw["X_unlabeled"] = ds.X_train[state.unlabeled]
        estimator = self._estimator(ds, state, device=device, progress=progress)
        t0 = time.perf_counter()
        with _sigint_seen() as interrupted:
            learner = ActiveLearner(
                estimator=estimator,
                query_strategy=self._strategy(state),
                X_training=ds.X_train[state.labeled],
                y_training=ds.y_train[state.labeled],
                **fit_kw,
            )
        fit_s = time.perf_counter() - t0
        guard = dict(learner.estimator.callbacks_)["fit_guard"]
        if interrupted() or guard.cut_short(learner.estimator):
            raise KeyboardInterrupt(
                f"the fit of {state.method} trial {state.trial} cycle {state.cycle} was "
                f"interrupted after {getattr(guard, 'epochs_', 0)} of {self.config.epochs} "
                "epochs; the cycle is not saved"
            )
        return learner, fit_s


class _CycleState(NamedTuple):
    method: str
    trial: int
    cycle: int
    labeled: np.ndarray
    unlabeled: np.ndarray | None
    rng: np.random.RandomState


def _scanned(cfg: ExperimentConfig, candidates: np.ndarray, rng) -> np.ndarray:
    """``candidates``, or a random ``pool_subset`` of them when that is set and smaller."""
    if cfg.pool_subset is not None and cfg.pool_subset < len(candidates):
        return np.sort(rng.choice(candidates, cfg.pool_subset, replace=False))
    return candidates


def _select(cfg: ExperimentConfig, ds: ImageDataset, learner, state: _CycleState) -> np.ndarray:
    """The ``budget`` pool images the learner's strategy selects for labelling."""
    is_lab = np.zeros(len(ds.X_train), dtype=bool)
    is_lab[state.labeled] = True
    pool = _scanned(cfg, np.flatnonzero(~is_lab), state.rng)
    idx, _ = learner.query(ds.X_train[pool], n_instances=min(cfg.budget, len(pool)))
    return pool[np.asarray(idx)]


def _next_unlabeled(
    cfg: ExperimentConfig, ds: ImageDataset, learner, state: _CycleState, selected: np.ndarray
) -> np.ndarray | None:
    """The unlabelled images the next cycle's ``mobyv2al`` learner trains on: the lowest
    contrastive loss under this cycle's model (the paper), else as ``unlabeled`` says."""
    if not is_joint(state.method):
        return None
    n_pool = len(ds.X_train)
    if cfg.unlabeled != "lowest_loss":
        return _unlabeled_subset(cfg, np.union1d(state.labeled, selected), n_pool, state.rng)
    is_lab = np.zeros(n_pool, dtype=bool)
    is_lab[state.labeled] = True
    is_lab[selected] = True
    cand = _scanned(cfg, np.flatnonzero(~is_lab), state.rng)
    if not len(cand):  # the whole pool is labelled: nothing unlabelled is left to train on
        return cand
    n = min(len(state.labeled) + len(selected), len(cand))
    sub, _ = lowest_contrastive_subset(learner.estimator, ds.X_train[cand], n)
    return cand[sub]


def _unlabeled_subset(cfg: ExperimentConfig, labeled, n_pool: int, rng) -> np.ndarray:
    """The whole rest of the pool (``"all"``), else as many random rows as labelled."""
    is_lab = np.zeros(n_pool, dtype=bool)
    is_lab[labeled] = True
    rest = np.flatnonzero(~is_lab)
    if cfg.unlabeled == "all":
        return rest
    return np.sort(rng.choice(rest, min(len(labeled), len(rest)), replace=False))
