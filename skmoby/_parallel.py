"""Where the (method, trial) jobs of a run execute: this process, worker processes, or Ray.

Every runner is a function ``run(todo)`` that takes a list of jobs ``(method, trial,
finished cycles)`` and yields events, in the order they happen:

``("cycle", method, trial, cycle, row, selection entry, pickled model or None)``
    A cycle finished. Only the driver (the caller) writes it to the run folder.
``("failed", method, trial, traceback text, exception or None)``
    A job failed; the other jobs go on.

A job gives the same cycles wherever it runs (see ``experiment._job_cycles``), so the
results do not depend on the runner or on the number of jobs.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from . import devices
from ._streams import ensure_std_streams

Job = tuple[str, int, dict[int, dict[str, Any]]]
RAY_INSTALL = "pip install 'skmoby[ray]' (in a clone: uv sync --extra ray)"


def usable_cpus() -> int:
    """CPUs this process may run on: affinity mask and cgroup quota."""
    from .threads import available_cpus

    return available_cpus()


def threads_per_job(cfg) -> int:
    """Torch threads of every job of a run: the CPUs it may use, shared by all its jobs.

    The CPUs are those this process may use (affinity mask, cgroup quota), capped by a
    lower count the caller chose (``OMP_NUM_THREADS``, ``torch.set_num_threads``), as
    ``n_threads=None`` does for one estimator. The count depends on the run (its
    ``methods x trials`` jobs) and the driver, never on ``--jobs`` or the backend: CPU
    kernels add up in an order that depends on the thread count, so a job computes the
    same numbers only with the same count, and ``--jobs 1``, ``--jobs N`` and Ray then
    give the same table. With at least as many jobs as CPUs (every preset on a small
    machine) each job gets one thread, and ``--jobs`` up to the number of CPUs uses
    them all.
    """
    import torch

    cpus = min(usable_cpus(), torch.get_num_threads())
    return max(1, cpus // (len(cfg.methods) * cfg.trials))


def check_resources(
    device: str, jobs_per_gpu: int | None, backend: str, ray_address: str | None
) -> None:
    """Refuse what cannot work, before anything is written."""
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError(
                f"backend 'ray' needs Ray, which is not installed: {RAY_INSTALL}"
            ) from None
        if ray_address is not None:
            _check_reachable(ray_address)
        return
    if jobs_per_gpu is not None and not (device != "cpu" and devices.cuda_count() > 0):
        raise ValueError(
            f"jobs_per_gpu ({jobs_per_gpu}) shares GPUs between jobs, but "
            f"there is no CUDA GPU to share (device {device!r}); leave it out"
        )


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A quick TCP connect, so that a wrong address fails in seconds with a clear message."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(
            f"ray_address must be 'auto', 'HOST:PORT' or 'ray://HOST:PORT'; got {address!r}"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConnectionError(
            f"cannot reach the Ray cluster at {address!r} ({exc}); is "
            "`ray start --head` running there, and is the port open?"
        ) from None


def local_devices(device: str, jobs: int, jobs_per_gpu: int | None) -> list[str]:
    """The device of each local worker: GPUs round-robin, else the CPU."""
    n_gpus = devices.cuda_count()
    if (
        device == "cpu"
        or (device == "auto" and n_gpus == 0)
        or not device.startswith(("cuda", "auto"))
    ):
        return [device if device != "auto" else "cpu"] * jobs
    gpus = [device] if ":" in device else [f"cuda:{g}" for g in range(n_gpus)]
    if jobs_per_gpu is not None:
        if jobs == 1:
            jobs = jobs_per_gpu * len(gpus)
        elif math.ceil(jobs / len(gpus)) > jobs_per_gpu:
            raise ValueError(
                f"jobs={jobs} on {len(gpus)} GPU(s) puts "
                f"{math.ceil(jobs / len(gpus))} jobs on a GPU, more than "
                f"jobs_per_gpu={jobs_per_gpu}"
            )
    return [gpus[i % len(gpus)] for i in range(jobs)]


# A contrastive step (two views through both branches) costs about 2.6 times a supervised
# one (CHANGELOG: lambda_c=0 is 2.6x faster per step on the CPU).
_CONTRASTIVE_STEP_COST = 2.6


def longest_first(todo: list[Job], cfg, n_pool: int) -> list[Job]:
    """The jobs ordered by their estimated remaining work, longest first.

    With several workers, a long job started last keeps one worker busy after the others
    have finished; starting the longest first (the classic longest-processing-time rule)
    shortens the run. The estimate is the SGD steps of the job's unfinished cycles
    (:meth:`ExperimentConfig.training_steps`), contrastive steps weighted by their cost.
    Ties keep the given order; the results do not depend on the order.
    """
    steps = cfg.training_steps(n_pool)

    def work(job: Job) -> float:
        method, _, finished = job
        left = [c for c in range(cfg.cycles) if c not in finished]
        factor = _CONTRASTIVE_STEP_COST if method.startswith("mobyv2al") else 1.0
        return float(steps.loc[left, method].sum()) * factor

    return sorted(todo, key=work, reverse=True)


def make_runner(
    cfg,
    ds,
    *,
    jobs: int,
    jobs_per_gpu: int | None,
    backend: str,
    ray_address: str | None,
    callbacks: Any,
    save_models: bool,
    progress: bool,
) -> Callable[[list[Job]], Iterator[tuple]]:
    """The runner for these options (see the module docstring)."""
    settings = dict(config=cfg.to_dict(), callbacks=callbacks, save_models=save_models)
    threads = threads_per_job(cfg)
    if backend == "ray":
        return lambda todo: _ray_runner(
            longest_first(todo, cfg, len(ds.X_train)),
            ds,
            settings,
            jobs=jobs,
            threads=threads,
            jobs_per_gpu=jobs_per_gpu,
            address=ray_address,
        )
    devices = local_devices(cfg.device, jobs, jobs_per_gpu)
    if len(devices) == 1:  # one job at a time: the order of the run is kept
        return lambda todo: _serial_runner(todo, ds, settings, devices[0], progress, threads)
    return lambda todo: _pool_runner(
        longest_first(todo, cfg, len(ds.X_train)), ds, settings, devices, threads
    )


def _job_events(
    ds, settings: dict[str, Any], job: Job, device: str, progress: bool = False
) -> Iterator[tuple]:
    from .experiment import ExperimentConfig, _job_cycles

    cfg = ExperimentConfig.from_dict(settings["config"])
    method, trial, done = job
    for cycle, row, entry, model in _job_cycles(
        cfg,
        ds,
        method,
        trial,
        done,
        progress=progress,
        device=device,
        callbacks=settings["callbacks"],
        save_models=settings["save_models"],
    ):
        yield ("cycle", method, trial, cycle, row, entry, model)


# ---------------------------------------------------------------------------- in process
def _serial_runner(todo: list[Job], ds, settings, device: str, progress: bool, threads: int):
    from .threads import limit_threads

    with limit_threads(threads):  # the caller's count is back when the run ends
        for job in todo:
            try:
                yield from _job_events(ds, settings, job, device, progress)
            except Exception as exc:
                yield ("failed", job[0], job[1], traceback.format_exc(), exc)


# ---------------------------------------------------------------------------- processes
def _exit_with_parent(parent: int) -> None:
    """Worker side: end this process when the driver is gone (even after kill -9)."""

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="skmoby-parent-watch").start()


def _worker_main(conn, parent: int) -> None:
    """A worker process: set up once, then run the jobs the driver sends, one at a time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    ensure_std_streams()
    _exit_with_parent(parent)
    try:
        ds, settings, device, threads = conn.recv()
        import torch

        settings = {**settings, "callbacks": pickle.loads(settings["callbacks"])}
        torch.set_num_threads(threads)
    except EOFError:
        return
    except BaseException:
        conn.send(("init_failed", traceback.format_exc()))
        return
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            for event in _job_events(ds, settings, job, device):
                conn.send(event)
            conn.send(("done",))
        except BaseException:
            conn.send(("failed", job[0], job[1], traceback.format_exc(), None))


@contextlib.contextmanager
def _main_module_hidden():
    """Start workers without re-running the caller's script in them.

    ``spawn`` makes each child import the parent's ``__main__`` module again, which
    starts the whole run anew in a script without an ``if __name__ == "__main__":``
    guard. The workers only need skmoby, so the main module is not passed on.
    """
    main = sys.modules.get("__main__")
    saved = {
        k: main.__dict__[k]
        for k in ("__file__", "__spec__")
        if main is not None and k in main.__dict__
    }
    for k in saved:
        setattr(main, k, None) if k == "__spec__" else delattr(main, k)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


class _Worker:
    def __init__(self, ctx, slot: int, device: str) -> None:
        self.slot, self.device, self.job = slot, device, None
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main,
            name=f"skmoby-worker-{slot}",
            args=(child, os.getpid()),
            daemon=True,
        )
        with _main_module_hidden():
            self.proc.start()
        child.close()

    def setup(self, ds, settings, threads: int) -> None:
        # Sent through the pipe rather than as Process arguments: should the child die
        # early, this send fails instead of blocking forever. settings["callbacks"] is
        # already pickled (see _callbacks_by_value).
        try:
            self.conn.send((ds, settings, self.device, threads))
        except OSError:
            pass  # it died; its sentinel tells

    def give(self, job: Job | None) -> None:
        self.job = job
        try:
            self.conn.send(job)
        except OSError:
            pass  # it died; its sentinel tells


class WorkerStartError(RuntimeError):
    """A worker process could not set itself up (its traceback is in the message)."""


def _callbacks_by_value(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with its callbacks pickled by cloudpickle.

    The workers do not import the caller's main module (see ``_main_module_hidden``),
    so a callback class or function defined in a script or a notebook cannot be found
    there by name; cloudpickle sends such objects by value, and everything from an
    importable module by reference, as Ray does.
    """
    import cloudpickle

    try:
        blob = cloudpickle.dumps(settings["callbacks"])
    except Exception as exc:  # a lock, an open file, a generator in a callback...
        raise TypeError(
            "jobs > 1 sends the callbacks to worker processes, so they must "
            f"be picklable: {type(exc).__name__}: {exc}"
        ) from None
    return {**settings, "callbacks": blob}


def _pool_runner(todo: list[Job], ds, settings, devices: list[str], threads: int):
    import multiprocessing as mp
    from multiprocessing.connection import wait

    settings = _callbacks_by_value(settings)  # before any process starts
    ctx = mp.get_context("spawn")
    pending = deque(todo)
    workers: list[_Worker] = []
    finished = False

    def start(slot, device):
        w = _Worker(ctx, slot, device)
        w.setup(ds, settings, threads)
        w.give(pending.popleft())
        return w

    try:
        started = [_Worker(ctx, slot, device) for slot, device in enumerate(devices[: len(todo)])]
        workers.extend(started)
        for w in started:  # all are importing torch meanwhile
            w.setup(ds, settings, threads)
            w.give(pending.popleft())
        while any(w.job is not None for w in workers):
            active = [w for w in workers if w.job is not None]
            ready = wait([w.conn for w in active] + [w.proc.sentinel for w in active])
            for i, w in enumerate(list(workers)):
                if w.job is None or (w.conn not in ready and w.proc.sentinel not in ready):
                    continue
                while w.job is not None and _poll(w.conn):
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        break
                    if msg[0] == "cycle":
                        yield msg
                    elif msg[0] == "init_failed":
                        raise WorkerStartError(
                            f"a worker process ({w.device}) could not start:\n{msg[1]}"
                        )
                    else:
                        if msg[0] == "failed":
                            yield msg
                        w.give(pending.popleft() if pending else None)
                if w.job is not None and not w.proc.is_alive():
                    w.proc.join()
                    method, trial, _ = w.job
                    yield (
                        "failed",
                        method,
                        trial,
                        f"worker process {w.proc.pid} ({w.device}) died with exit code "
                        f"{w.proc.exitcode} while running ({method}, trial {trial})\n",
                        None,
                    )
                    w.job = None
                    if pending:  # a fresh worker takes its place
                        workers[i] = start(w.slot, w.device)
        finished = True
    finally:
        for w in workers:
            if finished:
                w.proc.join(timeout=30)
            if w.proc.is_alive():
                w.proc.terminate()
                w.proc.join(timeout=10)
            w.conn.close()


def _poll(conn) -> bool:
    try:
        return conn.poll()
    except (EOFError, OSError):
        return False


# ---------------------------------------------------------------------------- Ray
def _ray_job(ds, settings, job: Job, device: str, threads: int):
    """One (method, trial) as a Ray generator task: yields each finished cycle."""
    import torch

    ensure_std_streams()
    torch.set_num_threads(threads)
    yield from _job_events(ds, settings, job, device)


@contextlib.contextmanager
def _workers_use_this_interpreter():
    """Keep Ray from rebuilding the driver's ``uv run`` environment for a local cluster.

    Under ``uv run``, recent Ray releases start every worker with ``uv run`` inside a
    copy of the current folder, uploaded zipped through its object store: the
    upload is refused past 512 MiB (a dataset, ``skmoby-results/``), Ray
    raises when ``pyproject.toml`` lies outside it (``uv run --project DIR``), and each
    worker environment is synced anew. A local cluster shares this machine, so its
    workers can run this interpreter as they are. Users who set
    ``RAY_ENABLE_UV_RUN_RUNTIME_ENV`` themselves keep their choice.
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # a Ray whose layout differs: nothing to switch off
        yield
        return
    name = "RAY_ENABLE_UV_RUN_RUNTIME_ENV"
    if name in os.environ or not hasattr(ray_constants, name):
        yield
        return
    saved = getattr(ray_constants, name)
    setattr(ray_constants, name, False)
    try:
        yield
    finally:
        setattr(ray_constants, name, saved)


def _ray_runner(
    todo: list[Job],
    ds,
    settings,
    *,
    jobs: int,
    threads: int,
    jobs_per_gpu: int | None,
    address: str | None,
):
    import builtins

    import ray

    started = not ray.is_initialized()
    own_print = builtins.print  # Ray's progress-bar support replaces it in the driver
    if started:
        kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        if address is not None:
            ray.init(address=address, **kwargs)
        else:
            with _workers_use_this_interpreter():
                ray.init(num_cpus=usable_cpus(), **kwargs)
    try:
        device = settings["config"]["device"]
        gpus = ray.cluster_resources().get("GPU", 0)
        use_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
        if use_gpu and gpus == 0:
            raise ValueError(f"device {device!r} was asked for, but the Ray cluster has no GPU")
        if jobs_per_gpu is not None and not use_gpu:
            raise ValueError(
                f"jobs_per_gpu ({jobs_per_gpu}) shares GPUs between jobs, but "
                f"the run does not use GPUs (device {device!r})"
            )
        cpus = int(ray.cluster_resources().get("CPU", 1))
        options = dict(
            num_cpus=min(threads, cpus),
            max_retries=3,
            num_gpus=(1 / (jobs_per_gpu or 1)) if use_gpu else 0,
        )
        task = ray.remote(_ray_job).options(**options)
        ds_ref = ray.put(ds)
        pending, running = deque(todo), {}
        while pending or running:
            while pending and len(running) < jobs:
                job = pending.popleft()
                gen = task.remote(ds_ref, settings, job, "cuda" if use_gpu else "cpu", threads)
                running[gen] = job
            ready, _ = ray.wait(list(running), num_returns=1)
            for gen in ready:
                method, trial, _ = running[gen]
                try:
                    ref = next(gen)
                except StopIteration:
                    del running[gen]
                    continue
                try:
                    yield ray.get(ref)
                except Exception as exc:
                    del running[gen]
                    yield ("failed", method, trial, str(exc), exc)
    finally:
        if started:
            ray.shutdown()
            builtins.print = own_print
