"""Parallel runs: worker processes (``jobs``) and Ray give the table of a serial run."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import torch
from skorch.callbacks import Callback

from skmoby import devices
from skmoby.experiment import (
    ExperimentConfig,
    JobsFailedError,
    resume_experiment,
    run_experiment,
    runners,
)
from skmoby.experiment.run import longest_first
from skmoby.experiment.runners import Job

VALUES = ["method", "trial", "cycle", "n_labelled", "accuracy"]
ARGV = [
    "--dataset",
    "digits",
    "--methods",
    "mobyv2al,random",
    "--backbone",
    "cnn",
    "--initial",
    "20",
    "--budget",
    "10",
    "--cycles",
    "2",
    "--trials",
    "2",
    "--epochs",
    "1",
    "--batch-size",
    "32",
    "--lr",
    "0.05",
    "--device",
    "cpu",
]


def tiny(**kw):
    base = dict(
        dataset="digits",
        methods=["mobyv2al", "random"],
        backbone="cnn",
        initial=20,
        budget=10,
        cycles=2,
        trials=2,
        epochs=1,
        batch_size=32,
        lr=0.05,
        device="cpu",
    )
    base.update(kw)
    return ExperimentConfig(**base)


def jobs_of(cfg):
    """The (method, trial) jobs of a run."""
    return len(cfg.methods) * cfg.trials


@pytest.fixture(scope="module")
def serial(tmp_path_factory, digits_ds):
    out = tmp_path_factory.mktemp("serial")
    table = run_experiment(tiny(), out, dataset=digits_ds, progress=False)
    return table, json.loads((out / "selections.json").read_text())


def same_run(out, serial):
    table = pd.read_csv(out / "results.csv")
    assert not table.duplicated(["method", "trial", "cycle"]).any()
    pd.testing.assert_frame_equal(table[VALUES], serial[0][VALUES])
    assert json.loads((out / "selections.json").read_text()) == serial[1]


class RecordThreads(Callback):
    """Writes the torch thread count of the process that fits (a worker) to a file."""

    def __init__(self, folder):
        self.folder = folder

    def on_train_begin(self, net, **kwargs):
        import torch

        with open(os.path.join(self.folder, f"{os.getpid()}.threads"), "w") as f:
            f.write(str(torch.get_num_threads()))


def test_two_worker_processes_give_the_serial_table(tmp_path, digits_ds, serial, capsys):
    out = tmp_path / "run"
    lines = []
    run_experiment(
        tiny(),
        out,
        dataset=digits_ds,
        progress=True,
        jobs=2,
        log=lines.append,
        callbacks=[RecordThreads(str(tmp_path))],
    )
    same_run(out, serial)
    # one line per finished cycle, naming method, trial and cycle; one bar over all 8
    assert sorted(lines) == sorted(
        f"{m:<9} trial {t} cycle {c}: {20 + 10 * c} labels, accuracy {a:.4f}"
        for m, t, c, a in serial[0][["method", "trial", "cycle", "accuracy"]].values
    )
    err = capsys.readouterr().err
    assert "cycles: 100%" in err and "8/8" in err
    threads = [int(p.read_text()) for p in tmp_path.glob("*.threads")]
    assert len(threads) == 2  # two worker processes did all the fits
    # the count is the run's, not --jobs': a serial run uses the same (see below)
    assert set(threads) == {runners.threads_per_job(jobs_of(tiny()))}


def test_threads_per_job_do_not_depend_on_jobs(tmp_path, digits_ds, monkeypatch):
    # CPU kernels sum in an order that depends on the thread count; a job computes the
    # same numbers under --jobs 1 and --jobs N only with the same count.
    from skmoby import threads as skmoby_threads

    monkeypatch.setattr(skmoby_threads, "available_cpus", lambda: 8)
    with skmoby_threads.limit_threads(8):  # torch's default on an 8-core machine
        assert runners.threads_per_job(jobs_of(tiny())) == 2  # 8 CPUs, 2 methods x 2 trials
        assert runners.threads_per_job(jobs_of(tiny(trials=8))) == 1
        run_experiment(
            tiny(trials=1, methods=["random"], cycles=2),
            tmp_path / "run",
            dataset=digits_ds,
            callbacks=[RecordThreads(str(tmp_path))],
        )
        assert torch.get_num_threads() == 8  # the caller's count is back
    threads = {int(p.read_text()) for p in tmp_path.glob("*.threads")}
    assert threads == {8}  # 8 CPUs for the run's one job, in this process


def test_a_thread_count_the_caller_chose_caps_the_jobs(tmp_path, digits_ds, monkeypatch):
    # OMP_NUM_THREADS=1 (or torch.set_num_threads(1)) on a shared server: the runner had
    # given each job all the CPUs anyway.
    from skmoby import threads as skmoby_threads

    monkeypatch.setattr(skmoby_threads, "available_cpus", lambda: 8)
    with skmoby_threads.limit_threads(1):
        assert runners.threads_per_job(jobs_of(tiny(trials=1, methods=["random"]))) == 1
        run_experiment(
            tiny(trials=1, methods=["random"], cycles=2),
            tmp_path / "run",
            dataset=digits_ds,
            callbacks=[RecordThreads(str(tmp_path))],
            progress=False,
        )
    assert {int(p.read_text()) for p in tmp_path.glob("*.threads")} == {1}


class FailFor(Callback):
    def __init__(self, how):
        self.how = how

    def on_train_begin(self, net, **kwargs):
        if self.how == "raise":
            raise RuntimeError("this job fails")
        os._exit(3)  # the worker process dies


def failing(method, trial, cycle):
    if (method, trial, cycle) == ("random", 0, 1):
        return [FailFor("raise")]
    if (method, trial, cycle) == ("mobyv2al", 1, 1):
        return [FailFor("die")]
    return []


@pytest.mark.slow
def test_failing_jobs_are_reported_and_the_others_finish(tmp_path, digits_ds, serial):
    out = tmp_path / "run"
    lines = []
    with pytest.raises(JobsFailedError) as e:
        run_experiment(
            tiny(),
            out,
            dataset=digits_ds,
            progress=False,
            jobs=2,
            callbacks=failing,
            log=lines.append,
        )
    assert sorted((m, t) for m, t, _ in e.value.failures) == [("mobyv2al", 1), ("random", 0)]
    tracebacks = dict(((m, t), tb) for m, t, tb in e.value.failures)
    assert "RuntimeError: this job fails" in tracebacks[("random", 0)]
    assert "died with exit code 3" in tracebacks[("mobyv2al", 1)]
    assert len(e.value.results) == 6  # everything but the two failed cycles
    lines.clear()
    resume_experiment(out, dataset=digits_ds, progress=False, jobs=2, log=lines.append)
    assert sorted(line.split(":")[0] for line in lines) == [
        "mobyv2al  trial 1 cycle 1",
        "random    trial 0 cycle 1",
    ]
    same_run(out, serial)


@pytest.mark.slow
def test_kill_9_of_driver_and_workers_then_resume(tmp_path, digits_ds, serial):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skmoby.cli",
            "run",
            *ARGV,
            "--out",
            str(out),
            "--quiet",
            "--jobs",
            "2",
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    results = out / "results.csv"
    while (
        proc.poll() is None
        and time.monotonic() < deadline
        and not (results.exists() and results.read_text().count("\n") >= 2)
    ):
        time.sleep(0.02)
    time.sleep(random.uniform(0, 1.5))  # a random moment after the first saved cycle
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = pd.read_csv(results)
    assert 1 <= len(saved) <= 8
    resume_experiment(out, dataset=digits_ds, progress=False, jobs=2)
    same_run(out, serial)


def test_resume_with_other_jobs_and_nothing_left(tmp_path, digits_ds, serial):
    out = tmp_path / "run"
    run_experiment(tiny(), out, dataset=digits_ds, progress=False, jobs=1)
    lines = []
    resume_experiment(out, dataset=digits_ds, progress=False, jobs=3, log=lines.append)
    assert lines == []  # nothing to do: no worker started, nothing rewritten
    same_run(out, serial)


@pytest.mark.parametrize(
    ("device", "jobs", "per_gpu", "gpus", "expected"),
    [
        ("cpu", 3, None, 2, ["cpu"] * 3),
        ("auto", 2, None, 0, ["cpu"] * 2),
        ("auto", 5, None, 2, ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]),
        ("cuda", 1, 2, 2, ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]),
        ("cuda:1", 2, None, 2, ["cuda:1", "cuda:1"]),
    ],
)
def test_gpus_are_assigned_round_robin(monkeypatch, device, jobs, per_gpu, gpus, expected):
    monkeypatch.setattr(devices, "cuda_count", lambda: gpus)
    assert runners.local_devices(device, jobs, per_gpu) == expected


def test_jobs_per_gpu_caps_the_jobs_on_a_gpu(monkeypatch):
    monkeypatch.setattr(devices, "cuda_count", lambda: 2)
    with pytest.raises(ValueError, match="puts 3 jobs on a GPU, more than jobs_per_gpu=2"):
        runners.local_devices("cuda", 5, 2)


_SCRIPT = """
import os, sys, uuid
from skorch.callbacks import Callback
from skmoby.experiment import ExperimentConfig, run_experiment

class Noted(Callback):  # defined in the script: module __main__
    def __init__(self, folder):
        self.folder = folder

    def on_train_begin(self, net, **kwargs):
        # a fresh name per fit: id(net) repeats once a finished net is freed
        open(os.path.join(self.folder, f"fit-{os.getpid()}-{uuid.uuid4().hex}"), "w").close()

def main():
    cfg = ExperimentConfig(dataset="digits", methods=["random"], initial=20, budget=10,
                           cycles=2, trials=2, epochs=1, batch_size=32, device="cpu")
    run_experiment(cfg, os.path.join(sys.argv[1], "run"), progress=False, jobs=2,
                   callbacks=[Noted(sys.argv[1])])
"""


@pytest.mark.slow
@pytest.mark.parametrize("guarded", [True, False])
def test_jobs_take_callbacks_defined_in_the_callers_script(tmp_path, guarded):
    # A guarded script's classes were looked up by name in workers that do not import
    # the script: "Can't get attribute 'Noted' on <module '__main__'>".
    script = tmp_path / "experiment.py"
    script.write_text(
        _SCRIPT + ('if __name__ == "__main__":\n    main()\n' if guarded else "main()\n")
    )
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    fits = list(tmp_path.glob("fit-*"))
    assert len(fits) == 4  # 2 trials x 2 cycles, each fitted once
    assert {p.name.split("-")[1] for p in fits} != {str(os.getpid())}
    assert len(pd.read_csv(tmp_path / "run" / "results.csv")) == 4


class _HoldsALock(Callback):
    def __init__(self):
        self.lock = threading.Lock()


def test_jobs_refuse_an_unpicklable_callback_before_any_job(tmp_path, digits_ds):
    with pytest.raises(TypeError, match="must be picklable: TypeError: cannot pickle"):
        run_experiment(
            tiny(),
            tmp_path / "run",
            dataset=digits_ds,
            progress=False,
            jobs=2,
            callbacks=[_HoldsALock()],
        )
    assert not (tmp_path / "run" / "results.csv").exists()


# ---------------------------------------------------------------------------------- Ray
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    import builtins

    own_print = builtins.print  # Ray's init replaces it in the driver: later tests pickle it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()
    builtins.print = own_print


@pytest.mark.slow
def test_ray_gives_the_serial_table(tmp_path, digits_ds, serial, local_ray):
    out = tmp_path / "run"
    lines = []
    run_experiment(
        tiny(), out, dataset=digits_ds, progress=False, jobs=2, backend="ray", log=lines.append
    )
    same_run(out, serial)
    assert len(lines) == 8
    assert ray.is_initialized()  # a cluster the caller started stays up


class DieOnce(Callback):
    """Kills its Ray worker in cycle 1 of the first attempt, as a lost node would."""

    def __init__(self, marker):
        self.marker = marker

    def on_train_begin(self, net, **kwargs):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)


@pytest.mark.slow
def test_a_job_ray_retries_after_a_lost_worker_adds_no_duplicate(
    tmp_path, digits_ds, serial, local_ray
):
    marker = str(tmp_path / "died")

    def cbs(method, trial, cycle):
        return [DieOnce(marker)] if (method, trial, cycle) == ("random", 1, 1) else []

    out = tmp_path / "run"
    run_experiment(
        tiny(), out, dataset=digits_ds, progress=False, jobs=2, backend="ray", callbacks=cbs
    )
    assert os.path.exists(marker)  # the worker did die once
    same_run(out, serial)


def test_parallel_runs_start_the_longest_jobs_first():
    cfg = tiny(methods=["random", "mobyv2al"], trials=2, cycles=3)
    todo = [
        Job("random", 0, {}),
        Job("mobyv2al", 0, {0: [], 1: []}),
        Job("random", 1, {}),
        Job("mobyv2al", 1, {}),
    ]
    order = longest_first(todo, cfg, n_pool=1000)
    # a whole mobyv2al job, then the one with a cycle left, then the random ones in order
    assert [(m, t) for m, t, _ in order] == [
        ("mobyv2al", 1),
        ("mobyv2al", 0),
        ("random", 0),
        ("random", 1),
    ]
