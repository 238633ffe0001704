"""Fixtures and helpers of the experiment tests (and of the command's fault catalogue)."""

import json
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from skmoby.datasets import load_dataset
from skmoby.experiment import ExperimentConfig, run_experiment
from skmoby.experiment.locks import LOCK_NAME

#: The columns two runs of one protocol agree on (timings differ).
VALUES = ["method", "trial", "cycle", "n_labelled", "accuracy"]


def tiny(**kw):
    """A run of the random method on digits that takes seconds."""
    base = dict(
        dataset="digits",
        methods=["random"],
        backbone="cnn",
        initial=20,
        budget=10,
        cycles=2,
        trials=1,
        epochs=1,
        batch_size=32,
        lr=0.05,
        device="cpu",
    )
    base.update(kw)
    return ExperimentConfig(**base)


def tiny_run_args(out=None, *extra, **settings):
    """``skmoby run`` of :func:`tiny`'s protocol into ``out``, as command-line arguments.

    ``settings`` override the flags (``methods="mobyv2al,random"``, ``trials=2``); a
    setting of None leaves its flag out. ``extra`` arguments come last.
    """
    flags = dict(
        dataset="digits",
        methods="random",
        initial=20,
        budget=10,
        cycles=2,
        trials=1,
        epochs=1,
        device="cpu",
    )
    flags.update(settings)
    argv = ["run"]
    for name, value in flags.items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    argv.append("--quiet")
    if out is not None:
        argv += ["--out", str(out)]
    return [*argv, *extra]


def sigint_live() -> None:
    """``preexec_fn`` of a child that a test interrupts: Ctrl-C live in it, as in a
    terminal. A test run started in the background by a non-interactive shell (or
    nohup) ignores SIGINT, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def files_of(folder):
    """The files of ``folder`` (but the lock file) and their bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


def edit_config(out, **changes):
    path = out / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg, indent=2))


def csv_lines(out):
    return (out / "results.csv").read_text().splitlines(keepends=True)


_HOLD = textwrap.dedent("""
    import sys, time
    from skmoby.experiment import lock_folder
    with lock_folder(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
""")


class held_elsewhere:
    """Another process holding the lock of a folder, as a running `skmoby run` does."""

    def __init__(self, folder):
        self.folder = folder

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(self.folder)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout.readline().strip() == "locked"
        return self.proc

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="session")
def digits_ds():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, digits_ds):
    """One finished tiny run of two trials; tests copy its folder and damage the copy."""
    out = tmp_path_factory.mktemp("reference")
    table = run_experiment(tiny(trials=2), out, dataset=digits_ds, progress=False)
    return out, table


@pytest.fixture
def run_copy(tmp_path, reference):
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    return out
