"""Running the protocol into a run folder, and resuming it: the driver of a run.

The driver checks everything before anything is written, holds the folder's lock, hands
the unfinished (method, trial) jobs to a runner and writes each finished cycle to the
folder as it arrives (see :mod:`skmoby.experiment.store`), so a crash loses at most the
cycles in progress and :func:`resume_experiment` carries on from there.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..datasets import ImageDataset
from ..devices import check_device
from .config import ExperimentConfig, is_joint
from .errors import JobsFailedError, OptionError, RunFolderError
from .initial import initial_sets
from .locks import lock_folder
from .protocol import JobProtocol, check_callbacks, check_hooks, checked_dataset
from .runners import CycleDone, Job, JobFailed, check_resources, make_runner, threads_per_job
from .store import (
    RESULT_DTYPES,
    FolderState,
    RunFolder,
    atomic_write,
    check_same_protocol,
    checked_folder,
    key,
    read_config,
)

#: A contrastive step (two views through both branches) costs about 2.6 times a
#: supervised one on the CPU (lambda_c=0 is 2.6x faster per step).
_CONTRASTIVE_STEP_COST = 2.6


@dataclasses.dataclass(frozen=True)
class RunState:
    """A run checked and ready to start: what :func:`run_experiment` and
    :func:`resume_experiment` pass to ``on_start``.

    Attributes
    ----------
    config : ExperimentConfig
        The settings the run uses (a resume's ``device`` and ``data_root`` applied).
    out : Path
        The run folder.
    dataset : ImageDataset
        The loaded, checked data.
    folder : FolderState
        What the folder holds: rows, selections and the finished (method, trial, cycle).

    Examples
    --------
    >>> import tempfile
    >>> cfg = ExperimentConfig(methods=["random"], initial=20, budget=10, cycles=2,
    ...                        trials=1, epochs=1, device="cpu")
    >>> with tempfile.TemporaryDirectory() as out:
    ...     state = check_run(cfg, out)
    >>> sorted(state.folder.done), len(state.dataset.X_train)
    ([], 1257)
    """

    config: ExperimentConfig
    out: Path
    dataset: ImageDataset
    folder: FolderState


def check_run(
    config: ExperimentConfig, out: str | os.PathLike, dataset: ImageDataset | None = None
) -> RunState:
    """Check a run of ``config`` into ``out`` as :func:`run_experiment` does, writing
    nothing: the settings, the device, the folder (another run, damage) and the data.

    Parameters
    ----------
    config : ExperimentConfig
        What to run.
    out : path
        Results folder (need not exist).
    dataset : ImageDataset, optional
        Data to use instead of loading ``config.dataset``.

    Returns
    -------
    RunState

    Examples
    --------
    >>> import tempfile
    >>> cfg = ExperimentConfig(methods=["random"], initial=20, budget=10, cycles=2,
    ...                        trials=1, epochs=1, device="cpu")
    >>> with tempfile.TemporaryDirectory() as out:
    ...     check_run(cfg, out).config == cfg
    True
    """
    if not isinstance(config, ExperimentConfig):
        raise TypeError(f"config must be an ExperimentConfig; got {type(config).__name__}")
    config.validate()
    check_device(config.device)
    return _checked_state(config, _out_path(out), dataset)


def _checked_state(cfg: ExperimentConfig, out: Path, dataset: ImageDataset | None) -> RunState:
    store = RunFolder(out)
    check_same_protocol(store, cfg)  # another run: refused before the data is loaded
    dataset = checked_dataset(cfg, dataset)
    return RunState(cfg, out, dataset, checked_folder(cfg, store, len(dataset.X_train)))


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
    make_estimator: Callable[..., Any] | None = None,
    strategies: Mapping[str, Callable[..., Any]] | None = None,
    on_start: Callable[[RunState], None] | None = None,
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
    make_estimator : callable, optional
        ``make_estimator(config, method, dataset, random_state, device=...)`` builds
        the learner of each cycle instead of :func:`make_estimator` (for ablations:
        other estimator parameters); the runner adds its callbacks to what it returns.
    strategies : dict of str to callable, optional
        Selection strategies (modAL query strategies) that replace those of
        :data:`STRATEGIES` for the methods named; methods of :data:`SEEDED` pass theirs
        ``random_state``. With ``jobs > 1`` both hooks must be picklable.
    on_start : callable, optional
        Called with the checked :class:`RunState` while the folder is locked, before
        anything is written or trained (the ``skmoby`` command prints its plan there).

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
    OptionError
        For run options that cannot work here (``jobs_per_gpu`` without a GPU, ...).
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
    check_run_options(
        jobs, jobs_per_gpu, backend, ray_address, callbacks, save_models, make_estimator, strategies
    )
    check_device(config.device)
    check_resources(config.device, jobs_per_gpu, backend, ray_address)
    out = _out_path(out)
    store = RunFolder(out)
    check_same_protocol(store, config)
    # A missing dataset or a pool too small is refused before the folder is made: a
    # config.json left behind would hold the folder for a run that never started.
    dataset = checked_dataset(config, dataset)
    with lock_folder(out):
        # Checked again under the lock: another process may have written the folder.
        stored = check_same_protocol(store, config)
        folder = checked_folder(config, store, len(dataset.X_train))
        state = RunState(config, out, dataset, folder)
        if on_start is not None:
            on_start(state)
        if stored != config:  # a new folder, or another device or data_root
            store.write_config(config.to_dict())
        return _start(
            state,
            store,
            JobProtocol(config, callbacks, save_models, make_estimator, strategies),
            progress,
            log,
            dict(jobs=jobs, jobs_per_gpu=jobs_per_gpu, backend=backend, ray_address=ray_address),
            new_folder=stored is None,
        )


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
    make_estimator: Callable[..., Any] | None = None,
    strategies: Mapping[str, Callable[..., Any]] | None = None,
    on_start: Callable[[RunState], None] | None = None,
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
    dataset, progress, log, jobs, jobs_per_gpu, backend, ray_address, callbacks
        As in :func:`run_experiment`; ``jobs`` and the backend may differ from those of
        the interrupted run.
    save_models, make_estimator, strategies, on_start
        As in :func:`run_experiment`.
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
    store.check_exists()  # a folder without a run is named before anything else
    check_run_options(
        jobs, jobs_per_gpu, backend, ray_address, callbacks, save_models, make_estimator, strategies
    )
    with lock_folder(out, create=False):
        cfg = read_config(store)
        changes = {k: v for k, v in (("device", device), ("data_root", data_root)) if v is not None}
        if changes:
            cfg = dataclasses.replace(cfg, **changes)
            cfg.validate()
        check_device(cfg.device)
        check_resources(cfg.device, jobs_per_gpu, backend, ray_address)
        # a damaged folder or a data_root without the data: refused unchanged
        dataset = checked_dataset(cfg, dataset)
        state = RunState(cfg, out, dataset, checked_folder(cfg, store, len(dataset.X_train)))
        if on_start is not None:
            on_start(state)
        if changes:
            store.write_config(cfg.to_dict())
        return _start(
            state,
            store,
            JobProtocol(cfg, callbacks, save_models, make_estimator, strategies),
            progress,
            log,
            dict(jobs=jobs, jobs_per_gpu=jobs_per_gpu, backend=backend, ray_address=ray_address),
            new_folder=False,
        )


def _start(
    state: RunState,
    store: RunFolder,
    work: JobProtocol,
    progress: bool,
    log: Callable[[str], None] | None,
    options: dict[str, Any],
    *,
    new_folder: bool,
) -> pd.DataFrame:
    """Choose the trials' missing first labelled sets (``initial_strategy``), then run
    the jobs the folder lacks. A choice that fails in a ``new_folder`` removes the
    ``config.json`` this call wrote there, so that the folder takes a corrected run."""
    log = log or (lambda s: None)
    try:
        first = initial_sets(
            state.config,
            state.dataset,
            store,
            state.folder.initial,
            make_estimator=work.make_estimator,
            log=log,
        )
    except ValueError:
        if new_folder and not store.initial.exists():
            store.config.unlink()
        raise
    return _run_jobs(state, dataclasses.replace(work, initial=first), progress, log, options)


def check_run_options(
    jobs: Any,
    jobs_per_gpu: Any = None,
    backend: Any = "local",
    ray_address: Any = None,
    callbacks: Any = None,
    save_models: Any = False,
    make_estimator: Any = None,
    strategies: Any = None,
) -> None:
    """Refuse run options of the wrong type or value (those of :func:`run_experiment`).

    Examples
    --------
    >>> check_run_options(jobs=0)
    Traceback (most recent call last):
    ...
    skmoby.experiment.OptionError: jobs must be a positive int; got 0
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int | np.integer) or jobs < 1:
        raise OptionError(f"{{jobs}} must be a positive int; got {jobs!r}", "jobs")
    if jobs_per_gpu is not None and (
        isinstance(jobs_per_gpu, bool)
        or not isinstance(jobs_per_gpu, int | np.integer)
        or jobs_per_gpu < 1
    ):
        raise OptionError(
            f"{{jobs_per_gpu}} must be None or a positive int; got {jobs_per_gpu!r}",
            "jobs_per_gpu",
        )
    if backend not in ("local", "ray"):
        raise OptionError(f"{{backend}} must be 'local' or 'ray'; got {backend!r}", "backend")
    if ray_address is not None and backend != "ray":
        raise OptionError("{ray_address} needs {backend}='ray'", "ray_address", "backend")
    if not isinstance(save_models, bool):
        raise TypeError(f"save_models must be a bool; got {save_models!r}")
    check_callbacks(callbacks)
    check_hooks(make_estimator, strategies)


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


def longest_first(todo: list[Job], cfg: ExperimentConfig, n_pool: int) -> list[Job]:
    """The jobs ordered by their estimated remaining work, longest first.

    With several workers, a long job started last keeps one worker busy after the others
    have finished; starting the longest first (the classic longest-processing-time rule)
    shortens the run. The estimate is the SGD steps of the job's unfinished cycles
    (:meth:`ExperimentConfig.training_steps`), contrastive steps weighted by their cost.
    Ties keep the given order; the results do not depend on the order.
    """
    steps = cfg.training_steps(n_pool)

    def work(job: Job) -> float:
        left = [c for c in range(cfg.cycles) if c not in job.finished]
        factor = _CONTRASTIVE_STEP_COST if is_joint(job.method) else 1.0
        return float(steps.loc[left, job.method].sum()) * factor

    return sorted(todo, key=work, reverse=True)


def _todo(cfg: ExperimentConfig, folder: FolderState) -> list[Job]:
    """The unfinished jobs, in the order of the run: trial by trial, method by method."""
    todo = []
    for trial in range(cfg.trials):
        for method in cfg.methods:
            finished = {
                c: folder.selections[key(method, trial, c)]
                for c in range(cfg.cycles)
                if (method, trial, c) in folder.done
            }
            if len(finished) < cfg.cycles:
                todo.append(Job(method, trial, finished))
    return todo


class _Recorder:
    """Writes each finished cycle to the run folder, in the order the events come."""

    def __init__(self, state: RunState, log: Callable[[str], None], bar: Any) -> None:
        self.out, self.log, self.bar = state.out, log, bar
        self.store = RunFolder(state.out)
        self.config = state.config.to_dict()
        self.rows, self.sel = state.folder.rows, state.folder.selections
        self.done = set(state.folder.done)
        self.failures: list[tuple[str, int, str]] = []
        self.errors: list[BaseException] = []

    def failed(self, event: JobFailed) -> None:
        self.failures.append((event.method, event.trial, event.traceback))
        if event.error is not None:
            self.errors.append(event.error)
        self.log(f"{event.method:<9} trial {event.trial} FAILED:\n{event.traceback.rstrip()}")

    def cycle(self, event: CycleDone) -> None:
        method, trial, (cycle, row, entry, model) = event.method, event.trial, event.result
        if (method, trial, cycle) in self.done:
            return  # a retried job reports again what was already saved
        if model is not None:
            _save_model(self.out, method, trial, cycle, model)
        self.sel[key(method, trial, cycle)] = entry
        new = pd.DataFrame([row]).astype(RESULT_DTYPES)
        self.rows = pd.concat([self.rows, new], ignore_index=True) if len(self.rows) else new
        self.store.save(self.rows, self.sel, self.config)
        self.done.add((method, trial, cycle))
        self.log(
            f"{method:<9} trial {trial} cycle {cycle}: {row['n_labelled']} labels, "
            f"accuracy {row['accuracy']:.4f}"
        )
        if self.bar is not None:
            self.bar.update(1)

    def table(self) -> pd.DataFrame:
        rows = self.rows.astype(RESULT_DTYPES).sort_values(["method", "trial", "cycle"])
        return rows.reset_index(drop=True)


def _run_jobs(
    state: RunState,
    work: JobProtocol,
    progress: bool,
    log: Callable[[str], None],
    options: dict[str, Any],
) -> pd.DataFrame:
    """Run the jobs the folder lacks and save each finished cycle."""
    cfg, ds = state.config, state.dataset
    todo = _todo(cfg, state.folder)
    events = iter(())
    if todo:  # nothing left: start no worker, no Ray
        runner = make_runner(
            work,
            ds,
            device=cfg.device,
            threads=threads_per_job(len(cfg.methods) * cfg.trials),
            progress=progress,
            order=lambda jobs: longest_first(jobs, cfg, len(ds.X_train)),
            **options,
        )
        events = runner(todo)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.trials * len(cfg.methods) * cfg.cycles,
            initial=len(state.folder.done),
            desc="cycles",
            unit="cycle",
            position=0,
        )
    recorder = _Recorder(state, log, bar)
    try:
        for event in events:
            if isinstance(event, JobFailed):
                recorder.failed(event)
            else:
                recorder.cycle(event)
    finally:
        if hasattr(events, "close"):
            events.close()
        if bar is not None:
            bar.close()
    if recorder.failures:
        raise JobsFailedError(recorder.failures, recorder.table(), state.out) from (
            recorder.errors[0] if recorder.errors else None
        )
    return recorder.table()


def _save_model(out: Path, method: str, trial: int, cycle: int, model: bytes) -> None:
    folder = out / "models"
    folder.mkdir(exist_ok=True)
    atomic_write(folder / f"{method}_trial{trial}_cycle{cycle}.pkl", model)
