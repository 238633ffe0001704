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

import contextlib
import dataclasses
import functools
import io
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from skorch.callbacks import Callback, EarlyStopping

from ._compat.modal import guard_modal_retry
from ._config import METHODS, PRESETS, ExperimentConfig, is_joint
from ._runstore import (
    RESULT_DTYPES,
    RunFolder,
    RunFolderError,
    RunFolderLockedError,
    atomic_write,
    describe_changes,
    key,
    lock_folder,
    protocol_settings,
)
from .classifier import MoBYv2Classifier
from .datasets import ImageDataset, load_dataset
from .devices import check_device
from .query.coverage import probcover, typiclust
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
    "JobsFailedError",
    "RunFolderError",
    "RunFolderLockedError",
    "load_results",
    "plot_learning_curves",
    "resume_experiment",
    "run_experiment",
    "summarize",
]


class JobsFailedError(RuntimeError):
    """Some (method, trial) jobs of a run failed; the others finished and were saved.

    Attributes
    ----------
    failures : list of (str, int, str)
        ``(method, trial, traceback)`` of each failed job.
    results : pandas.DataFrame
        The rows of the run folder when the run ended.

    Examples
    --------
    >>> err = JobsFailedError([("random", 1, "Traceback ...")], None, "skmoby-results/x")
    >>> err.failures[0][:2]
    ('random', 1)
    """

    def __init__(
        self, failures: list[tuple[str, int, str]], results: Any, out: str | os.PathLike
    ) -> None:
        self.failures = failures
        self.results = results
        names = ", ".join(f"({m}, trial {t})" for m, t, _ in failures)
        super().__init__(
            f"{len(failures)} job(s) failed: {names}. The other jobs finished "
            f"and their cycles are saved; resuming {out} redoes only what is "
            "missing. First traceback:\n" + failures[0][2]
        )


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


def _check_callbacks(callbacks: Any) -> None:
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


def _make_estimator(
    cfg: ExperimentConfig,
    method: str,
    ds: ImageDataset,
    seed: int,
    progress: bool = False,
    *,
    device: str | None = None,
    callbacks: Sequence[Any] = (),
):
    kw = dict(
        backbone=cfg.backbone,
        max_epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        normalize=ds.normalize,
        random_state=seed,
        device=cfg.device if device is None else device,
    )
    cbs = list(callbacks)
    if progress:
        cbs.append(("epoch_progress", _EpochProgress(f"{method} epochs")))
    cbs.append(("fit_guard", _FitGuard()))
    kw["callbacks"] = cbs
    if is_joint(method):
        return MoBYv2Classifier(**kw)
    return MoBYv2Classifier(lambda_c=0.0, **kw)


_STRATEGIES: dict[str, Callable[..., Any]] = {
    "mobyv2al": coreset,
    "coreset": coreset,
    "random": random_sampling,
    "entropy": max_entropy,
    "mobyv2al-typiclust": typiclust,
    "mobyv2al-probcover": probcover,
}
#: Strategies that draw at random: seeded per (trial, cycle) by the runner.
_SEEDED = ("random", "mobyv2al-typiclust", "mobyv2al-probcover")


def _one_cycle(
    cfg,
    ds,
    method,
    trial,
    cycle,
    labelled,
    unl_train,
    rng,
    progress=False,
    *,
    device=None,
    callbacks=None,
    save_models=False,
):
    """Train, evaluate and select.

    Returns the row, the selection, the next unlabelled set and the pickled estimator
    (``None`` unless ``save_models``). A fit cut short by ``KeyboardInterrupt`` raises
    ``KeyboardInterrupt`` here, so that no half-trained cycle is ever saved.
    """
    from modAL.models import ActiveLearner

    seed = cfg.seed + trial
    n_pool = len(ds.X_train)
    fit_kw = {}
    if is_joint(method) and unl_train is not None and len(unl_train):
        fit_kw["X_unlabeled"] = ds.X_train[unl_train]
    strategy = _STRATEGIES[method]
    if method in _SEEDED:  # random draws (and k-means) seeded by trial and cycle
        strategy = functools.partial(strategy, random_state=seed * 1000 + cycle)
    # Ctrl-C during modAL's query stops it (its bare except would call the strategy again)
    strategy = guard_modal_retry(strategy)
    estimator = _make_estimator(
        cfg,
        method,
        ds,
        seed * 1000 + cycle,
        progress,
        device=device,
        callbacks=_user_callbacks(callbacks, method, trial, cycle),
    )
    t0 = time.perf_counter()
    with _sigint_seen() as interrupted:
        learner = ActiveLearner(
            estimator=estimator,
            query_strategy=strategy,
            X_training=ds.X_train[labelled],
            y_training=ds.y_train[labelled],
            **fit_kw,
        )
    fit_s = time.perf_counter() - t0
    guard = dict(learner.estimator.callbacks_)["fit_guard"]
    if interrupted() or guard.cut_short(learner.estimator):
        raise KeyboardInterrupt(
            f"the fit of {method} trial {trial} cycle {cycle} was interrupted after "
            f"{getattr(guard, 'epochs_', 0)} of {cfg.epochs} epochs; the cycle is not saved"
        )
    acc = float(learner.estimator.score(ds.X_test, ds.y_test))
    row = dict(
        method=method,
        trial=trial,
        cycle=cycle,
        n_labelled=len(labelled),
        accuracy=acc,
        fit_seconds=fit_s,
        query_seconds=0.0,
    )
    model = pickle.dumps(learner.estimator) if save_models else None
    if cycle == cfg.cycles - 1:
        return row, [], None, model
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
    if is_joint(method):
        if cfg.unlabeled != "lowest_loss":
            next_unl = _unlabelled_subset(cfg, np.union1d(labelled, selected), n_pool, rng)
        else:
            is_lab[selected] = True
            cand = np.flatnonzero(~is_lab)
            if cfg.pool_subset is not None and cfg.pool_subset < len(cand):
                cand = np.sort(rng.choice(cand, cfg.pool_subset, replace=False))
            if len(cand):
                sub, _ = lowest_contrastive_subset(
                    learner.estimator,
                    ds.X_train[cand],
                    min(len(labelled) + len(selected), len(cand)),
                )
                next_unl = cand[sub]
            else:  # the whole pool is labelled: nothing unlabelled is left to train on
                next_unl = cand
    return row, selected, next_unl, model


def _unlabelled_subset(cfg, labelled, n_pool, rng):
    """The whole rest of the pool (``"all"``), else as many random rows as labelled."""
    is_lab = np.zeros(n_pool, dtype=bool)
    is_lab[labelled] = True
    rest = np.flatnonzero(~is_lab)
    if cfg.unlabeled == "all":
        return rest
    return np.sort(rng.choice(rest, min(len(labelled), len(rest)), replace=False))


def _job_cycles(
    cfg: ExperimentConfig,
    ds: ImageDataset,
    method: str,
    trial: int,
    done: dict[int, dict[str, Any]],
    *,
    progress: bool = False,
    device: str | None = None,
    callbacks: Any = None,
    save_models: bool = False,
) -> Iterator[tuple[int, dict, dict, bytes | None]]:
    """Run one (method, trial): replay the cycles in ``done``, yield each new one.

    Yields ``(cycle, row, selection entry, pickled model or None)``. Every random draw
    is seeded by (seed, trial, method, cycle), so the same job gives the same cycles in
    any process, in any order of jobs.
    """
    n_pool = len(ds.X_train)
    seed = cfg.seed + trial
    labelled = _initial_labels(cfg, n_pool, trial)
    rng = np.random.RandomState([seed, METHODS.index(method)])
    unl = _unlabelled_subset(cfg, labelled, n_pool, rng) if is_joint(method) else None
    for cycle in range(cfg.cycles):
        if cycle in done:  # replay what the finished cycle chose
            selected = done[cycle]["selected"]
            next_unl = done[cycle].get("next_unlabeled")
        else:
            row, selected, next_unl, model = _one_cycle(
                cfg,
                ds,
                method,
                trial,
                cycle,
                labelled,
                unl,
                rng,
                progress,
                device=device,
                callbacks=callbacks,
                save_models=save_models,
            )
            entry = {
                "selected": [int(i) for i in selected],
                "next_unlabeled": (None if next_unl is None else [int(i) for i in next_unl]),
            }
            yield cycle, row, entry, model
        labelled = np.union1d(labelled, selected)
        if next_unl is not None:
            unl = np.asarray(next_unl, dtype=np.int64)
        rng = np.random.RandomState([seed, METHODS.index(method), cycle + 1])


def _save_model(out: Path, method: str, trial: int, cycle: int, model: bytes) -> None:
    folder = out / "models"
    folder.mkdir(exist_ok=True)
    atomic_write(folder / f"{method}_trial{trial}_cycle{cycle}.pkl", model)


def _checked_dataset(cfg: ExperimentConfig, ds: ImageDataset | None) -> ImageDataset:
    """``ds``, or the configured dataset loaded, once its pool is large enough."""
    ds = ds if ds is not None else load_dataset(cfg.dataset, cfg.data_root, cfg.download)
    n_pool = len(ds.X_train)
    need = cfg.initial + cfg.budget * (cfg.cycles - 1)
    if need > n_pool:
        raise ValueError(
            f"initial + budget * (cycles - 1) = {need} exceeds the pool of "
            f"{n_pool} {cfg.dataset} training images"
        )
    for trial in range(cfg.trials):
        classes = np.unique(np.asarray(ds.y_train)[_initial_labels(cfg, n_pool, trial)])
        if len(classes) < 2:
            raise ValueError(
                f"initial = {cfg.initial}: the initial labels of trial {trial} hold a single "
                f"class ({classes[0]}), and a classifier needs at least 2; raise initial"
            )
    return ds


def _initial_labels(cfg: ExperimentConfig, n_pool: int, trial: int) -> np.ndarray:
    """The sorted indices trial ``trial`` starts with labelled (seeded by the trial)."""
    return np.sort(
        np.random.RandomState(cfg.seed + trial).choice(n_pool, cfg.initial, replace=False)
    )


def _checked_folder(
    cfg: ExperimentConfig, store: RunFolder, ds: ImageDataset
) -> tuple[pd.DataFrame, dict[str, Any], set[tuple[str, int, int]]]:
    """The folder's rows, selections and finished cycles, once every check passed."""
    rows, sel = store.load(cfg.to_dict(), cfg.n_labelled())
    done = {(r.method, int(r.trial), int(r.cycle)) for r in rows.itertuples()}
    _check_replay(cfg, len(ds.X_train), sel, done, store)
    return rows, sel, done


def _check_replay(
    cfg: ExperimentConfig,
    n_pool: int,
    sel: dict[str, Any],
    done: set[tuple[str, int, int]],
    store: RunFolder,
) -> None:
    """Refuse stored selections that a resumed run could not replay as they were made:
    indices outside the pool, images already labelled, or another count than the
    protocol picks (``budget`` per cycle, none after the last)."""
    for method, trial in sorted({(m, t) for m, t, _ in done}):
        labelled = _initial_labels(cfg, n_pool, trial)
        for cycle in range(cfg.cycles):
            if (method, trial, cycle) not in done:
                break
            k = key(method, trial, cycle)
            chosen = np.asarray(sel[k]["selected"], dtype=np.int64)
            nxt = sel[k].get("next_unlabeled")
            want = 0 if cycle == cfg.cycles - 1 else cfg.budget
            what = None
            if len(chosen) != want:
                what = f"holds {len(chosen)} selected images; the protocol picks {want}"
            elif chosen.size and chosen.max() >= n_pool:
                what = f"selects image {int(chosen.max())} of a pool of {n_pool}"
            elif np.isin(chosen, labelled).any():
                what = "selects images that were already labelled"
            elif nxt is not None and len(nxt) and max(nxt) >= n_pool:
                what = f"lists unlabelled image {max(nxt)} of a pool of {n_pool}"
            if what:
                raise RunFolderError(
                    f"{store.selections}: the entry {k!r} {what}; the "
                    "file was changed after the run wrote it"
                )
            labelled = np.union1d(labelled, chosen)


def _run(
    cfg: ExperimentConfig,
    out: Path,
    ds: ImageDataset | None,
    progress: bool,
    log: Callable[[str], None],
    *,
    jobs: int = 1,
    jobs_per_gpu: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    callbacks: Any = None,
    save_models: bool = False,
    folder: tuple | None = None,
) -> pd.DataFrame:
    """Run what the folder lacks; ``folder``: its ``_checked_folder`` state, if the
    caller has already checked it."""
    from . import _parallel

    ds = _checked_dataset(cfg, ds)
    store = RunFolder(out)
    config = cfg.to_dict()
    rows, sel, done = folder if folder is not None else _checked_folder(cfg, store, ds)
    todo = []
    for trial in range(cfg.trials):
        for method in cfg.methods:
            finished = {
                c: sel[key(method, trial, c)]
                for c in range(cfg.cycles)
                if (method, trial, c) in done
            }
            if len(finished) < cfg.cycles:
                todo.append((method, trial, finished))
    if todo:
        runner = _parallel.make_runner(
            cfg,
            ds,
            jobs=jobs,
            jobs_per_gpu=jobs_per_gpu,
            backend=backend,
            ray_address=ray_address,
            callbacks=callbacks,
            save_models=save_models,
            progress=progress,
        )
    else:  # nothing left: start no worker, no Ray

        def runner(todo):
            yield from ()

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.trials * len(cfg.methods) * cfg.cycles,
            initial=len(done),
            desc="cycles",
            unit="cycle",
            position=0,
        )
    records = [rows] if len(rows) else []
    failures: list[tuple[str, int, str]] = []
    errors: list[BaseException] = []
    events = runner(todo)
    try:
        for event in events:
            if event[0] == "failed":
                _, method, trial, tb, exc = event
                failures.append((method, trial, tb))
                if exc is not None:
                    errors.append(exc)
                log(f"{method:<9} trial {trial} FAILED:\n{tb.rstrip()}")
                continue
            _, method, trial, cycle, row, entry, model = event
            if (method, trial, cycle) in done:
                continue  # a retried job reports again what was already saved
            if model is not None:
                _save_model(out, method, trial, cycle, model)
            sel[key(method, trial, cycle)] = entry
            records.append(pd.DataFrame([row]).astype(RESULT_DTYPES))
            rows = pd.concat(records, ignore_index=True)
            records = [rows]
            store.save(rows, sel, config)
            done.add((method, trial, cycle))
            log(
                f"{method:<9} trial {trial} cycle {cycle}: {row['n_labelled']} labels, "
                f"accuracy {row['accuracy']:.4f}"
            )
            if bar is not None:
                bar.update(1)
    finally:
        events.close()
        if bar is not None:
            bar.close()
    rows = rows.astype(RESULT_DTYPES).sort_values(["method", "trial", "cycle"])
    rows = rows.reset_index(drop=True)
    if failures:
        raise JobsFailedError(failures, rows, out) from (errors[0] if errors else None)
    return rows


def _check_run_options(
    jobs: Any, jobs_per_gpu: Any, backend: Any, ray_address: Any, callbacks: Any, save_models: Any
) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, int | np.integer) or jobs < 1:
        raise ValueError(f"jobs must be a positive int; got {jobs!r}")
    if jobs_per_gpu is not None and (
        isinstance(jobs_per_gpu, bool)
        or not isinstance(jobs_per_gpu, int | np.integer)
        or jobs_per_gpu < 1
    ):
        raise ValueError(f"jobs_per_gpu must be None or a positive int; got {jobs_per_gpu!r}")
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray'; got {backend!r}")
    if ray_address is not None and backend != "ray":
        raise ValueError("ray_address needs backend='ray'")
    if not isinstance(save_models, bool):
        raise TypeError(f"save_models must be a bool; got {save_models!r}")
    _check_callbacks(callbacks)


def run_experiment(
    config: ExperimentConfig,
    out: str | os.PathLike,
    *,
    dataset: ImageDataset | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
    jobs_per_gpu: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    callbacks: Any = None,
    save_models: bool = False,
) -> pd.DataFrame:
    """Run the protocol into the folder ``out`` (created; must not hold another run).

    Parameters
    ----------
    config : ExperimentConfig
        What to run.
    out : path
        Results folder. If it already holds a run with the same protocol settings, the
        run is resumed (``device``, ``data_root`` and ``download`` may differ: they say
        where the run executes, not what it computes); other settings raise
        :class:`RunFolderError`.
    dataset : ImageDataset, optional
        Data to use instead of loading ``config.dataset``.
    progress : bool, default=True
        Show a tqdm bar over all cycles of the run (and, with ``jobs=1``, one over the
        epochs of each fit).
    log : callable, optional
        Called with one line per finished cycle (naming method, trial and cycle) and
        with the traceback of a failed job.
    jobs : int, default=1
        (method, trial) jobs run at once. With 1 (and the local backend) they run one
        after another in this process; with more, in ``jobs`` worker processes (started
        once, each fed many jobs), GPUs assigned round-robin, CPU threads split between
        them. The results do not depend on ``jobs``.
    jobs_per_gpu : int, optional
        Jobs that may share one GPU. Local backend: with ``jobs`` left at 1, runs
        ``jobs_per_gpu`` jobs on every visible GPU; otherwise it caps the jobs per GPU.
        Ray backend: each job asks for ``1 / jobs_per_gpu`` of a GPU. Needs a CUDA GPU.
    backend : {"local", "ray"}, default="local"
        ``"ray"`` runs each (method, trial) as a Ray task (``pip install 'skmoby[ray]'``);
        only this process writes the run folder, and a job Ray retries after losing a
        worker never duplicates a row.
    ray_address : str, optional
        Address of a running Ray cluster to join (``"auto"``, ``"HOST:6379"`` or
        ``"ray://HOST:10001"``); by default a local Ray is started for the run and
        stopped after it.
    callbacks : list of skorch callbacks, or callable, optional
        Added to every estimator the runner builds (loggers such as skorch's
        ``TensorBoard``, ``WandbLogger``, ``MlflowLogger``). A function
        ``f(method=..., trial=..., cycle=...)`` returning a callback or a list of them is
        called for each estimator instead. Worker processes receive pickled copies.
    save_models : bool, default=False
        Also write the fitted estimator of every cycle to
        ``out/models/METHOD_trialT_cycleC.pkl`` (``pickle.load`` restores it).

    Returns
    -------
    pandas.DataFrame
        One row per (method, trial, cycle): ``n_labelled``, ``accuracy``,
        ``fit_seconds``, ``query_seconds``.

    Raises
    ------
    ValueError
        On invalid settings, a device this machine lacks, a pool too small for the
        protocol (all checked before anything is written) or a run folder holding
        another protocol.
    FileNotFoundError
        When the dataset's files are missing (before anything is written).
    RunFolderError
        When the run folder is damaged or its ``config.json`` was edited; the message
        names the file and line.
    JobsFailedError
        When some jobs failed: the others ran to the end and were saved.
    KeyboardInterrupt
        On Ctrl-C, also when skorch's fit caught it: the cycle in progress is not saved.

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
    if not isinstance(config, ExperimentConfig):
        raise TypeError(f"config must be an ExperimentConfig; got {type(config).__name__}")
    config.validate()
    _check_run_options(jobs, jobs_per_gpu, backend, ray_address, callbacks, save_models)
    check_device(config.device)
    from . import _parallel

    _parallel.check_resources(config.device, jobs_per_gpu, backend, ray_address)
    out = _out_path(out)
    store = RunFolder(out)
    _check_same_protocol(store, config)
    # A missing dataset or a pool too small is refused before anything is written: a
    # config.json left behind would hold the folder for a run that never started.
    dataset = _checked_dataset(config, dataset)
    with lock_folder(out):
        # Checked again under the lock: another process may have written the folder.
        _check_same_protocol(store, config)
        # a damaged folder: refused unchanged
        folder = _checked_folder(config, store, dataset) if store.config.exists() else None
        if not store.config.exists() or _read_config(store) != config:
            store.write_config(config.to_dict())
        return _run(
            config,
            out,
            dataset,
            progress,
            log or (lambda s: None),
            jobs=jobs,
            jobs_per_gpu=jobs_per_gpu,
            backend=backend,
            ray_address=ray_address,
            callbacks=callbacks,
            save_models=save_models,
            folder=folder,
        )


def _out_path(out: Any) -> Path:
    """``out`` as a folder path; an empty string (an unset variable) is refused."""
    if not isinstance(out, str | os.PathLike):
        raise TypeError(f"out must be a path (str or os.PathLike); got {type(out).__name__}")
    if not os.fspath(out).strip():
        raise ValueError(f"out must name a folder; got {os.fspath(out)!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} is a file, not a folder; choose another output folder")
    return out


def _check_same_protocol(store: RunFolder, config: ExperimentConfig) -> None:
    """Refuse a folder that holds another run, or results without their config.json."""
    store.check_kinds()
    if not store.config.exists() and (store.results.exists() or store.selections.exists()):
        raise RunFolderError(
            f"{store.config} is missing, but {store.out} holds results of a "
            "run; restore config.json, or use another folder"
        )
    if store.config.exists():
        old = _read_config(store)
        if protocol_settings(old.to_dict()) != protocol_settings(config.to_dict()):
            changed = describe_changes(
                protocol_settings(old.to_dict()), protocol_settings(config.to_dict())
            )
            raise RunFolderError(
                f"{store.out} holds a run with another configuration "
                f"({changed}); resume it with resume_experiment() or use "
                "another folder"
            )


def _read_config(store: RunFolder) -> ExperimentConfig:
    d = store.read_config_dict()
    try:
        cfg = ExperimentConfig.from_dict(d)
        cfg.validate()
    except (ValueError, TypeError) as exc:
        raise RunFolderError(f"{store.config}: {exc}") from None
    return cfg


def resume_experiment(
    out: str | os.PathLike,
    *,
    dataset: ImageDataset | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
    jobs_per_gpu: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    callbacks: Any = None,
    save_models: bool = False,
    device: str | None = None,
    data_root: str | None = None,
) -> pd.DataFrame:
    """Continue the run stored in ``out`` from its last finished cycles.

    The folder is checked first: a ``config.json`` edited since the first row was saved
    is refused (the message names what changed), and so is a damaged table, except
    for a last row cut mid-write, which is dropped (with a warning) and recomputed.

    Parameters
    ----------
    out : path
        A folder written by :func:`run_experiment`.
    dataset, progress, log, jobs, jobs_per_gpu, backend, ray_address, callbacks, save_models
        As in :func:`run_experiment`; ``jobs`` and the backend may differ from those of
        the interrupted run.
    device, data_root : str, optional
        Run on another device, or read the data from another folder, than
        ``config.json`` says (it is updated).

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
    out = _out_path(out)
    store = RunFolder(out)
    _read_config(store)  # a folder without a run is named before anything else
    _check_run_options(jobs, jobs_per_gpu, backend, ray_address, callbacks, save_models)
    with lock_folder(out, create=False):
        cfg = _read_config(store)
        changes = {k: v for k, v in (("device", device), ("data_root", data_root)) if v is not None}
        if changes:
            cfg = dataclasses.replace(cfg, **changes)
            cfg.validate()
        check_device(cfg.device)
        from . import _parallel

        _parallel.check_resources(cfg.device, jobs_per_gpu, backend, ray_address)
        folder = None
        if changes:
            # a damaged folder or a data_root without the data: refused unchanged
            dataset = _checked_dataset(cfg, dataset)
            folder = _checked_folder(cfg, store, dataset)
            store.write_config(cfg.to_dict())
        return _run(
            cfg,
            out,
            dataset,
            progress,
            log or (lambda s: None),
            jobs=jobs,
            jobs_per_gpu=jobs_per_gpu,
            backend=backend,
            ray_address=ray_address,
            callbacks=callbacks,
            save_models=save_models,
            folder=folder,
        )


def load_results(out: str | os.PathLike) -> pd.DataFrame:
    """The checked results table of a run folder, without changing the folder.

    A last row cut mid-write is left out with a warning; any other damage raises
    :class:`RunFolderError` naming the file and line.

    Parameters
    ----------
    out : path
        A folder written by :func:`run_experiment`.

    Returns
    -------
    pandas.DataFrame
        As returned by :func:`run_experiment`.

    Examples
    --------
    >>> import tempfile
    >>> cfg = ExperimentConfig(methods=["random"], initial=20, budget=10, cycles=2,
    ...                        trials=1, epochs=1, device="cpu")
    >>> with tempfile.TemporaryDirectory() as out:
    ...     _ = run_experiment(cfg, out, progress=False)
    ...     table = load_results(out)
    >>> table["n_labelled"].tolist()
    [20, 30]
    """
    store = RunFolder(out)
    cfg = _read_config(store)
    rows, _ = store.load(cfg.to_dict(), cfg.n_labelled())
    return rows.sort_values(["method", "trial", "cycle"]).reset_index(drop=True)


def _check_unique_rows(results: pd.DataFrame) -> None:
    if "trial" not in results or "accuracy" not in results:
        raise ValueError(
            "results must have the columns method, trial, cycle, n_labelled "
            f"and accuracy; got {list(results.columns)}"
        )
    dup = results.duplicated(["method", "trial", "cycle"], keep=False)
    if dup.any():
        first = results[dup].iloc[0]
        raise ValueError(
            f"results has {int(dup.sum())} rows that repeat a (method, trial, cycle), "
            f"e.g. ({first['method']}, {first['trial']}, {first['cycle']}); a repeated row "
            "is not another trial. Drop them first, e.g. "
            "results.drop_duplicates(['method', 'trial', 'cycle'])"
        )
    if results["accuracy"].isna().any():
        raise ValueError("results has rows without an accuracy")


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
    _check_unique_rows(results)
    g = results.groupby(["method", "cycle"])
    table = g.agg(
        n_labelled=("n_labelled", "first"),
        mean=("accuracy", "mean"),
        std=("accuracy", "std"),
        trials=("trial", "nunique"),
    ).reset_index()
    return (
        table.pivot(
            index=["cycle", "n_labelled"], columns="method", values=["mean", "std", "trials"]
        )
        .swaplevel(axis=1)
        .sort_index(axis=1)
    )


def plot_learning_curves(
    results: pd.DataFrame, out: str | os.PathLike, title: str | None = None
) -> list[Path]:
    """Plot mean +- std test accuracy against the number of labels, one line per method.

    The legend gives the number of trials behind each line (a range while a run is
    incomplete); a single trial is drawn without a band.

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

    _check_unique_rows(results)
    out = Path(out)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, df in results.groupby("method"):
        g = df.groupby("n_labelled")["accuracy"]
        mean, std = g.mean(), g.std().fillna(0.0)
        counts = sorted(set(df.groupby("n_labelled")["trial"].nunique()))
        n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        label = f"{method} ({n} trial{'s' if counts[-1] > 1 else ''})"
        ax.plot(mean.index, 100 * mean.values, marker="o", label=label)
        if counts[-1] > 1:  # one trial has no spread to show
            ax.fill_between(
                mean.index, 100 * (mean - std).values, 100 * (mean + std).values, alpha=0.2
            )
    ax.set_xlabel("number of labelled images")
    banded = results.groupby("method")["trial"].nunique().max() > 1
    ax.set_ylabel("test accuracy (%)" + (", mean ± 1 std over trials" if banded else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    files = [out / "learning_curve.png", out / "learning_curve.svg"]
    try:
        for f in files:  # each replaced whole, like the run's other files
            buffer = io.BytesIO()
            fig.savefig(buffer, dpi=150, format=f.suffix[1:])
            atomic_write(f, buffer.getvalue())
    finally:
        plt.close(fig)
    return files
