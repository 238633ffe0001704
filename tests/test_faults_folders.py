"""Fault catalogue of output folders: the demo's folder, the run-folder lock, paths.

Each case once lost or mixed a user's files, or ended in a raw traceback; each test sets
the situation up and checks the behaviour that replaced it.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from skmoby import _runstore, cli
from skmoby.experiment import (
    PRESETS,
    ExperimentConfig,
    RunFolderError,
    RunFolderLockedError,
    resume_experiment,
    run_experiment,
)

TINY_DEMO = dict(PRESETS["demo"], initial=20, budget=10, cycles=2, trials=1, epochs=1)


def tiny(**kw):
    base = dict(dataset="digits", methods=["random"], backbone="cnn", initial=20, budget=10,
                cycles=2, trials=1, epochs=1, batch_size=32, lr=0.05, device="cpu")
    base.update(kw)
    return ExperimentConfig(**base)


@pytest.fixture
def tiny_demo(monkeypatch):
    """The demo at the smallest size, so that a test runs the real command quickly."""
    monkeypatch.setitem(PRESETS, "demo", TINY_DEMO)


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != _runstore.LOCK_NAME}


def _demo(out, *extra):
    return cli.main(["demo", "--device", "cpu", "--quiet", "--jobs", "1", "--out", str(out),
                     *extra])


# ============================================================================ the demo
def test_the_demo_keeps_an_earlier_run_of_the_demo_preset(tmp_path, tiny_demo, capsys):
    # Once: `skmoby run --preset demo` then `skmoby demo` deleted the first run's results.
    assert cli.main(["run", "--preset", "demo", "--cycles", "2", "--trials", "1",
                     "--epochs", "1", "--device", "cpu", "--quiet",
                     "--out", str(tmp_path / "demo")]) == 0
    before = _files(tmp_path / "demo")
    assert _demo(tmp_path) == 0
    assert _files(tmp_path / "demo") == before
    assert (tmp_path / "demo-2" / "results.csv").exists()
    assert "holds an earlier run (kept)" in capsys.readouterr().out


def test_the_demo_never_deletes_a_users_folder(tmp_path, tiny_demo):
    # Once: a user's X/demo/ with a config.json beside notes and code was removed whole.
    mine = tmp_path / "demo"
    (mine / "src").mkdir(parents=True)
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "notes.txt").write_text("notes")
    (mine / "src" / "main.py").write_text("print('hi')")
    before = _files(mine)
    assert _demo(tmp_path) == 0
    assert _demo(tmp_path) == 0
    assert _files(mine) == before
    assert (tmp_path / "demo-2" / "results.csv").exists()
    assert (tmp_path / "demo-3" / "results.csv").exists()


def test_demo_overwrite_replaces_only_the_run_files(tmp_path, tiny_demo):
    mine = tmp_path / "demo"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "notes.txt").write_text("notes")
    assert _demo(tmp_path, "--overwrite") == 0
    assert (mine / "notes.txt").read_text() == "notes"
    assert json.loads((mine / "config.json").read_text())["dataset"] == "digits"
    assert (mine / "results.csv").exists() and not (tmp_path / "demo-2").exists()


def test_demo_overwrite_refuses_a_folder_another_process_writes(tmp_path, tiny_demo, capsys):
    mine = tmp_path / "demo"
    mine.mkdir()
    (mine / "results.csv").write_text("kept")
    with _held_elsewhere(mine):
        code = _demo(tmp_path, "--overwrite")
    assert code == 2
    err = capsys.readouterr().err
    assert "being written by process" in err and "Traceback" not in err
    assert (mine / "results.csv").read_text() == "kept"


@pytest.mark.parametrize("command", ["run", "demo"])
def test_an_empty_out_is_refused_and_nothing_is_written_here(tmp_path, monkeypatch, capsys,
                                                             command):
    # Once: --out "" (an unset shell variable) wrote the run into the current folder.
    monkeypatch.chdir(tmp_path)
    argv = (["run", "--dataset", "digits", "--methods", "random", "--epochs", "1"]
            if command == "run" else ["demo"])
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--device", "cpu", "--quiet", "--out", ""])
    assert e.value.code == 2
    assert "--out must name a folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_run_experiment_refuses_an_empty_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="out must name a folder"):
        run_experiment(tiny(), "", progress=False)
    assert list(tmp_path.iterdir()) == []


# ============================================================================ the lock
_HOLD = textwrap.dedent("""
    import sys, time
    from skmoby._runstore import lock_folder
    with lock_folder(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
""")


class _held_elsewhere:
    """Another process holding the lock of a folder, as a running `skmoby run` does."""

    def __init__(self, folder):
        self.folder = folder

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(self.folder)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"
        return self.proc

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_a_second_run_into_a_folder_being_written_is_refused_at_once(tmp_path):
    # Once: two runs into one new folder both exited 0 and one run's results were lost.
    out = tmp_path / "run"
    with _held_elsewhere(out) as holder:
        with pytest.raises(RunFolderLockedError, match=f"process {holder.pid} on "):
            run_experiment(tiny(), out, progress=False)
    assert not (out / "config.json").exists()


def test_a_second_resume_is_refused_while_the_first_runs(tmp_path, capsys):
    out = tmp_path / "run"
    run_experiment(tiny(trials=2), out, progress=False)
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:2]))  # trial 1 left to run
    before = _files(out)
    with _held_elsewhere(out):
        assert cli.main(["resume", str(out), "--quiet"]) == 2
    assert "is being written by process" in capsys.readouterr().err
    assert _files(out) == before


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "run"
    with _held_elsewhere(out) as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert (out / _runstore.LOCK_NAME).exists()  # kill -9 left the file behind
        table = run_experiment(tiny(), out, progress=False)
    assert len(table) == 2
    assert not (out / _runstore.LOCK_NAME).exists()  # released with the run


def test_the_lock_is_released_after_an_error(tmp_path):
    out = tmp_path / "run"
    run_experiment(tiny(), out, progress=False)
    (out / "results.csv").write_text("garbage\n")
    with pytest.raises(RunFolderError, match="header"):
        resume_experiment(out, progress=False)
    assert not (out / _runstore.LOCK_NAME).exists()
    with _runstore.lock_folder(out):  # free again
        pass


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    out = tmp_path / "run"
    with _runstore.lock_folder(out):
        with _runstore.lock_folder(out):
            pass
        assert (out / _runstore.LOCK_NAME).exists()  # the outer hold goes on
        assert run_experiment(tiny(), out, progress=False)["cycle"].tolist() == [0, 1]
    assert not (out / _runstore.LOCK_NAME).exists()


def _no_record_locks(monkeypatch):
    import fcntl

    def lockf(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", lockf)


def test_without_record_locks_a_live_holder_on_this_host_is_refused(tmp_path, monkeypatch):
    _no_record_locks(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    (out / _runstore.LOCK_NAME).write_text(json.dumps(dict(
        pid=os.getppid(), host=os.uname().nodename, command="skmoby run", since="now")))
    with pytest.raises(RunFolderLockedError, match=f"process {os.getppid()}"):
        run_experiment(tiny(), out, progress=False)


def test_without_record_locks_a_dead_holder_is_taken_over(tmp_path, monkeypatch):
    _no_record_locks(monkeypatch)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / _runstore.LOCK_NAME).write_text(json.dumps(dict(
        pid=gone.pid, host=os.uname().nodename, command="skmoby run", since="then")))
    assert len(run_experiment(tiny(), out, progress=False)) == 2


@pytest.mark.parametrize("command", ["run", "demo --overwrite"])
def test_out_naming_a_file_is_refused(tmp_path, tiny_demo, capsys, command):
    # Once: a raw FileExistsError traceback.
    target = tmp_path / ("demo" if command.startswith("demo") else "run")
    target.write_text("a file of mine")
    argv = (["run", "--dataset", "digits", "--methods", "random", "--epochs", "1",
             "--out", str(target)] if command == "run"
            else ["demo", "--out", str(tmp_path), "--overwrite"])
    assert cli.main([*argv, "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "Traceback" not in err
    assert target.read_text() == "a file of mine"
