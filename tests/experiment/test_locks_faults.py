"""Fault catalogue of the run-folder lock (:mod:`skmoby.experiment.locks`).

Each case once lost or mixed a user's files; each test sets the situation up and checks
the behaviour that replaced it.
"""

import errno
import json
import os
import signal
import subprocess
import sys

import pytest

from skmoby import cli
from skmoby.experiment import (
    RunFolderError,
    RunFolderLockedError,
    locks,
    resume_experiment,
    run_experiment,
)
from tests.experiment.conftest import (
    files_of,
    held_elsewhere,
    tiny,
)


def test_a_second_run_into_a_folder_being_written_is_refused_at_once(tmp_path):
    # Once: two runs into one new folder both exited 0 and one run's results were lost.
    out = tmp_path / "run"
    with held_elsewhere(out) as holder:
        with pytest.raises(RunFolderLockedError, match=f"process {holder.pid} on "):
            run_experiment(tiny(), out, progress=False)
    assert not (out / "config.json").exists()


def test_a_second_resume_is_refused_while_the_first_runs(tmp_path, capsys):
    out = tmp_path / "run"
    run_experiment(tiny(trials=2), out, progress=False)
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:2]))  # trial 1 left to run
    before = files_of(out)
    with held_elsewhere(out):
        assert cli.main(["resume", str(out), "--quiet"]) == 2
    assert "is being written by process" in capsys.readouterr().err
    assert files_of(out) == before


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "run"
    with held_elsewhere(out) as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert (out / locks.LOCK_NAME).exists()  # kill -9 left the file behind
        table = run_experiment(tiny(), out, progress=False)
    assert len(table) == 2
    assert not (out / locks.LOCK_NAME).exists()  # released with the run


def test_the_lock_is_released_after_an_error(tmp_path):
    out = tmp_path / "run"
    run_experiment(tiny(), out, progress=False)
    (out / "results.csv").write_text("garbage\n")
    with pytest.raises(RunFolderError, match="header"):
        resume_experiment(out, progress=False)
    assert not (out / locks.LOCK_NAME).exists()
    with locks.lock_folder(out):  # free again
        pass


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    out = tmp_path / "run"
    with locks.lock_folder(out):
        with locks.lock_folder(out):
            pass
        assert (out / locks.LOCK_NAME).exists()  # the outer hold goes on
        assert run_experiment(tiny(), out, progress=False)["cycle"].tolist() == [0, 1]
    assert not (out / locks.LOCK_NAME).exists()


def _no_record_locks(monkeypatch):
    import fcntl

    def lockf(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", lockf)


def test_without_record_locks_a_live_holder_on_this_host_is_refused(tmp_path, monkeypatch):
    _no_record_locks(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    (out / locks.LOCK_NAME).write_text(
        json.dumps(
            dict(pid=os.getppid(), host=os.uname().nodename, command="skmoby run", since="now")
        )
    )
    with pytest.raises(RunFolderLockedError, match=f"process {os.getppid()}"):
        run_experiment(tiny(), out, progress=False)


def test_without_record_locks_a_dead_holder_is_taken_over(tmp_path, monkeypatch):
    _no_record_locks(monkeypatch)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / locks.LOCK_NAME).write_text(
        json.dumps(dict(pid=gone.pid, host=os.uname().nodename, command="skmoby run", since="then"))
    )
    assert len(run_experiment(tiny(), out, progress=False)) == 2


def test_without_record_locks_a_foreign_lock_file_is_taken_over(tmp_path, monkeypatch):
    _no_record_locks(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    (out / locks.LOCK_NAME).write_text("[1, 2, 3]")
    assert len(run_experiment(tiny(), out, progress=False)) == 2


def test_another_thread_of_the_holder_is_refused(tmp_path):
    import threading

    out = tmp_path / "run"
    seen = []

    def other():
        try:
            with locks.lock_folder(out):
                seen.append("entered")
        except RunFolderLockedError as exc:
            seen.append(str(exc))

    with locks.lock_folder(out):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert (out / locks.LOCK_NAME).exists()  # still held by this thread
    assert "another thread of this process" in seen[0]


def test_a_forked_copy_of_the_holder_is_refused(tmp_path):
    out = tmp_path / "run"
    with locks.lock_folder(out):
        pid = os.fork()
        if pid == 0:  # the child: must not think it holds the folder
            try:
                with locks.lock_folder(out):
                    os._exit(1)
            except RunFolderLockedError:
                os._exit(0)
            os._exit(2)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_locked_folder_is_refused_before_data_and_probe(tmp_path, capsys):
    out = tmp_path / "run"
    run_experiment(tiny(trials=2), out, progress=False)
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:2]))
    with held_elsewhere(out):
        assert cli.main(["resume", str(out), "--quiet"]) == 2
    text = capsys.readouterr()
    assert "being written by process" in text.err and "measuring" not in text.out
