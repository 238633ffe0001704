"""Where the (method, trial) jobs of a run execute: this process, worker processes, or Ray.

A runner receives the jobs and the work: a picklable function
``work(dataset, method, trial, finished, device=..., progress=...)`` that yields the
job's finished cycles. It knows nothing else of the protocol. It yields events in the
order they happen:

:class:`CycleDone`
    A cycle finished (``result`` is what the work yielded). Only the driver (the caller)
    writes it to the run folder.
:class:`JobFailed`
    A job failed; the other jobs go on.

The work gives the same cycles wherever it runs, so the results do not depend on the
runner or on the number of jobs.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .. import devices
from .. import threads as cpu_threads
from .._compat.ray import own_print_kept, workers_use_this_interpreter
from .._streams import ensure_std_streams
from .errors import OptionError, WorkerStartError

RAY_INSTALL = "pip install 'skmoby[ray]' (in a clone: uv sync --extra ray)"


class Job(NamedTuple):
    """One (method, trial) of a run, with its finished cycles (cycle -> selection entry)."""

    method: str
    trial: int
    finished: dict[int, dict[str, Any]]


class CycleDone(NamedTuple):
    """Event: a cycle of ``(method, trial)`` finished; ``result`` is what the work yielded."""

    method: str
    trial: int
    result: Any


class JobFailed(NamedTuple):
    """Event: the job ``(method, trial)`` failed; ``error`` is None when it died elsewhere."""

    method: str
    trial: int
    traceback: str
    error: BaseException | None


class _JobEnd(NamedTuple):
    """Worker message: the job given last ran to its end."""


class _InitFailed(NamedTuple):
    """Worker message: the worker could not set itself up."""

    traceback: str


Work = Callable[..., Iterator[Any]]
Runner = Callable[[list[Job]], Iterator[CycleDone | JobFailed]]


def usable_cpus() -> int:
    """CPUs this process may run on: affinity mask and cgroup quota.

    Examples
    --------
    >>> usable_cpus() >= 1
    True
    """
    return cpu_threads.available_cpus()


def threads_per_job(n_jobs: int) -> int:
    """Torch threads of every job of a run of ``n_jobs`` (method, trial) jobs.

    The CPUs are those this process may use (affinity mask, cgroup quota), capped by a
    lower count the caller chose (``OMP_NUM_THREADS``, ``torch.set_num_threads``), as
    ``n_threads=None`` does for one estimator. The count depends on the run (its
    ``methods x trials`` jobs) and the driver, never on ``jobs`` or the backend: CPU
    kernels add up in an order that depends on the thread count, so a job computes the
    same numbers only with the same count, and ``jobs=1``, ``jobs=N`` and Ray then
    give the same table. With at least as many jobs as CPUs (every preset on a small
    machine) each job gets one thread, and ``jobs`` up to the number of CPUs uses
    them all.
    """
    import torch

    cpus = min(usable_cpus(), torch.get_num_threads())
    return max(1, cpus // n_jobs)


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
        raise OptionError(
            f"{{jobs_per_gpu}} ({jobs_per_gpu}) shares GPUs between jobs, but "
            f"there is no CUDA GPU to share (device {device!r}); leave it out",
            "jobs_per_gpu",
        )


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A quick TCP connect, so that a wrong address fails in seconds with a clear message."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise OptionError(
            f"{{ray_address}} must be 'auto', 'HOST:PORT' or 'ray://HOST:PORT'; got {address!r}",
            "ray_address",
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
            raise OptionError(
                f"{{jobs}}={jobs} on {len(gpus)} GPU(s) puts "
                f"{math.ceil(jobs / len(gpus))} jobs on a GPU, more than "
                f"{{jobs_per_gpu}}={jobs_per_gpu}",
                "jobs",
                "jobs_per_gpu",
            )
    return [gpus[i % len(gpus)] for i in range(jobs)]


def make_runner(
    work: Work,
    ds: Any,
    *,
    device: str,
    threads: int,
    jobs: int,
    jobs_per_gpu: int | None,
    backend: str,
    ray_address: str | None,
    progress: bool,
    order: Callable[[list[Job]], list[Job]] = list,
) -> Runner:
    """The runner for these options. Runners with several workers take the jobs in the
    order ``order`` gives; one worker keeps the given order."""
    if backend == "ray":
        return lambda todo: _ray_runner(
            order(todo),
            ds,
            work,
            jobs=jobs,
            threads=threads,
            device=device,
            jobs_per_gpu=jobs_per_gpu,
            address=ray_address,
        )
    slots = local_devices(device, jobs, jobs_per_gpu)
    if len(slots) == 1:  # one job at a time: the order of the run is kept
        return lambda todo: _serial_runner(todo, ds, work, slots[0], progress, threads)
    return lambda todo: _pool_runner(order(todo), ds, work, slots, threads)


def _job_events(ds, work: Work, job: Job, device: str, progress: bool = False):
    for result in work(ds, job.method, job.trial, job.finished, device=device, progress=progress):
        yield CycleDone(job.method, job.trial, result)


# ---------------------------------------------------------------------------- in process
def _serial_runner(todo: list[Job], ds, work: Work, device: str, progress: bool, threads: int):
    with cpu_threads.limit_threads(threads):  # the caller's count is back when the run ends
        for job in todo:
            try:
                yield from _job_events(ds, work, job, device, progress)
            except Exception as exc:
                yield JobFailed(job.method, job.trial, traceback.format_exc(), exc)


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
    import pickle

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    ensure_std_streams()
    _exit_with_parent(parent)
    try:
        ds, work, device, threads = conn.recv()
        import torch

        work = pickle.loads(work)
        torch.set_num_threads(threads)
    except EOFError:
        return
    except BaseException:
        conn.send(_InitFailed(traceback.format_exc()))
        return
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            for event in _job_events(ds, work, job, device):
                conn.send(event)
            conn.send(_JobEnd())
        except BaseException:
            conn.send(JobFailed(job.method, job.trial, traceback.format_exc(), None))


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

    def setup(self, ds, work: bytes, threads: int) -> None:
        # Sent through the pipe rather than as Process arguments: should the child die
        # early, this send fails instead of blocking forever. The work is already
        # pickled (see _by_value).
        try:
            self.conn.send((ds, work, self.device, threads))
        except OSError:
            pass  # it died; its sentinel tells

    def give(self, job: Job | None) -> None:
        self.job = job
        try:
            self.conn.send(job)
        except OSError:
            pass  # it died; its sentinel tells

    def messages(self) -> Iterator[Any]:
        """What the worker sent for its current job, until the job ends or the pipe is empty."""
        while self.job is not None and _poll(self.conn):
            try:
                yield self.conn.recv()
            except (EOFError, OSError):
                return

    def died(self) -> JobFailed:
        """The current job as failed, the worker having died."""
        self.proc.join()
        method, trial, _ = self.job
        self.job = None
        return JobFailed(
            method,
            trial,
            f"worker process {self.proc.pid} ({self.device}) died with exit code "
            f"{self.proc.exitcode} while running ({method}, trial {trial})\n",
            None,
        )

    def close(self, finished: bool) -> None:
        if finished:
            self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=10)
        self.conn.close()


def _by_value(work: Work) -> bytes:
    """``work`` pickled by cloudpickle.

    The workers do not import the caller's main module (see ``_main_module_hidden``),
    so a callback class or function defined in a script or a notebook cannot be found
    there by name; cloudpickle sends such objects by value, and everything from an
    importable module by reference, as Ray does.
    """
    import cloudpickle

    try:
        return cloudpickle.dumps(work)
    except Exception as exc:  # a lock, an open file, a generator in a callback...
        raise TypeError(
            "jobs > 1 sends the callbacks (and the make_estimator and strategies hooks) "
            f"to worker processes, so they must be picklable: {type(exc).__name__}: {exc}"
        ) from None


def _pool_runner(todo: list[Job], ds, work: Work, slots: list[str], threads: int):
    import multiprocessing as mp
    from multiprocessing.connection import wait

    blob = _by_value(work)  # before any process starts
    ctx = mp.get_context("spawn")
    pending = deque(todo)
    workers: list[_Worker] = []
    finished = False

    def start(slot, device):
        w = _Worker(ctx, slot, device)
        w.setup(ds, blob, threads)
        w.give(pending.popleft())
        return w

    try:
        started = [_Worker(ctx, slot, device) for slot, device in enumerate(slots[: len(todo)])]
        workers.extend(started)
        for w in started:  # all are importing torch meanwhile
            w.setup(ds, blob, threads)
            w.give(pending.popleft())
        while any(w.job is not None for w in workers):
            active = [w for w in workers if w.job is not None]
            ready = set(wait([w.conn for w in active] + [w.proc.sentinel for w in active]))
            for i, w in enumerate(list(workers)):
                if w.job is None or not {w.conn, w.proc.sentinel} & ready:
                    continue
                for msg in w.messages():
                    if isinstance(msg, CycleDone):
                        yield msg
                    elif isinstance(msg, _InitFailed):
                        raise WorkerStartError(
                            f"a worker process ({w.device}) could not start:\n{msg.traceback}"
                        )
                    else:
                        if isinstance(msg, JobFailed):
                            yield msg
                        w.give(pending.popleft() if pending else None)
                if w.job is not None and not w.proc.is_alive():
                    yield w.died()
                    if pending:  # a fresh worker takes its place
                        workers[i] = start(w.slot, w.device)
        finished = True
    finally:
        for w in workers:
            w.close(finished)


def _poll(conn) -> bool:
    try:
        return conn.poll()
    except (EOFError, OSError):
        return False


# ---------------------------------------------------------------------------- Ray
def _ray_job(ds, work: Work, job: Job, device: str, threads: int):
    """One (method, trial) as a Ray generator task: yields each finished cycle."""
    import torch

    ensure_std_streams()
    torch.set_num_threads(threads)
    yield from _job_events(ds, work, job, device)


@contextlib.contextmanager
def _ray_cluster(address: str | None) -> Iterator[Any]:
    """Ray, joined at ``address`` or started here (and stopped after) unless running."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    with own_print_kept():
        if address is not None:
            ray.init(address=address, **kwargs)
        else:
            with workers_use_this_interpreter():
                ray.init(num_cpus=usable_cpus(), **kwargs)
        try:
            yield ray
        finally:
            ray.shutdown()


def _ray_options(ray, device: str, jobs_per_gpu: int | None, threads: int) -> dict[str, Any]:
    gpus = ray.cluster_resources().get("GPU", 0)
    use_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    if use_gpu and gpus == 0:
        raise ValueError(f"device {device!r} was asked for, but the Ray cluster has no GPU")
    if jobs_per_gpu is not None and not use_gpu:
        raise OptionError(
            f"{{jobs_per_gpu}} ({jobs_per_gpu}) shares GPUs between jobs, but "
            f"the run does not use GPUs (device {device!r})",
            "jobs_per_gpu",
        )
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return dict(
        num_cpus=min(threads, cpus),
        max_retries=3,
        num_gpus=(1 / (jobs_per_gpu or 1)) if use_gpu else 0,
    )


def _ray_runner(
    todo: list[Job],
    ds,
    work: Work,
    *,
    jobs: int,
    threads: int,
    device: str,
    jobs_per_gpu: int | None,
    address: str | None,
):
    with _ray_cluster(address) as ray:
        options = _ray_options(ray, device, jobs_per_gpu, threads)
        task = ray.remote(_ray_job).options(**options)
        where = "cuda" if options["num_gpus"] else "cpu"
        ds_ref = ray.put(ds)
        pending, running = deque(todo), {}
        while pending or running:
            while pending and len(running) < jobs:
                job = pending.popleft()
                running[task.remote(ds_ref, work, job, where, threads)] = job
            ready, _ = ray.wait(list(running), num_returns=1)
            for gen in ready:
                job = running[gen]
                try:
                    ref = next(gen)
                except StopIteration:
                    del running[gen]
                    continue
                try:
                    yield ray.get(ref)
                except Exception as exc:
                    del running[gen]
                    yield JobFailed(job.method, job.trial, str(exc), exc)
