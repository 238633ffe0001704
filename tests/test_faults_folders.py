"""Fault catalogue of output folders: the demo's folder, the run-folder lock, paths.

Each case once lost or mixed a user's files, or ended in a raw traceback; each test sets
the situation up and checks the behaviour that replaced it.
"""

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from skmoby import cli
from skmoby.experiment import (
    PRESETS,
    ExperimentConfig,
    RunFolderError,
    RunFolderLockedError,
    locks,
    resume_experiment,
    run_experiment,
)

TINY_DEMO = dict(PRESETS["demo"], initial=20, budget=10, cycles=2, trials=1, epochs=1)


def tiny(**kw):
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


@pytest.fixture
def tiny_demo(monkeypatch):
    """The demo at the smallest size, so that a test runs the real command quickly."""
    monkeypatch.setitem(PRESETS, "demo", TINY_DEMO)


def _files(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != locks.LOCK_NAME
    }


def _demo(out, *extra):
    return cli.main(
        ["demo", "--device", "cpu", "--quiet", "--jobs", "1", "--out", str(out), *extra]
    )


# ============================================================================ the demo
def test_the_demo_keeps_an_earlier_run_of_the_demo_preset(tmp_path, tiny_demo, capsys):
    # Once: `skmoby run --preset demo` then `skmoby demo` deleted the first run's results.
    assert (
        cli.main(
            [
                "run",
                "--preset",
                "demo",
                "--cycles",
                "2",
                "--trials",
                "1",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--quiet",
                "--out",
                str(tmp_path / "demo"),
            ]
        )
        == 0
    )
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
def test_an_empty_out_is_refused_and_nothing_is_written_here(
    tmp_path, monkeypatch, capsys, command
):
    # Once: --out "" (an unset shell variable) wrote the run into the current folder.
    monkeypatch.chdir(tmp_path)
    argv = (
        ["run", "--dataset", "digits", "--methods", "random", "--epochs", "1"]
        if command == "run"
        else ["demo"]
    )
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
    from skmoby.experiment import lock_folder
    with lock_folder(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
""")


class _held_elsewhere:
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


@pytest.mark.parametrize("command", ["run", "demo --overwrite"])
def test_out_naming_a_file_is_refused(tmp_path, tiny_demo, capsys, command):
    # Once: a raw FileExistsError traceback.
    target = tmp_path / ("demo" if command.startswith("demo") else "run")
    target.write_text("a file of mine")
    argv = (
        ["run", "--dataset", "digits", "--methods", "random", "--epochs", "1", "--out", str(target)]
        if command == "run"
        else ["demo", "--out", str(tmp_path), "--overwrite"]
    )
    assert cli.main([*argv, "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "Traceback" not in err
    assert target.read_text() == "a file of mine"


# ============================================================================ run folders
def test_a_folder_of_the_old_layout_is_refused_unchanged(tmp_path):
    # Once: without config_hash and stored settings, an edited config.json was accepted,
    # the recomputed row used the new settings and every row was restamped.
    out = tmp_path / "run"
    run_experiment(tiny(trials=2), out, progress=False)
    sel = json.loads((out / "selections.json").read_text())
    (out / "selections.json").write_text(json.dumps(sel["cycles"]))
    lines = (out / "results.csv").read_text().splitlines()
    old = [",".join(line.split(",")[:-1]) for line in lines[:-1]]  # no config_hash
    (out / "results.csv").write_text("\n".join(old) + "\n")
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "epochs": 2}))
    before = _files(out)
    with pytest.raises(RunFolderError, match="layout"):
        resume_experiment(out, progress=False)
    assert _files(out) == before
    (out / "selections.json").write_text(json.dumps(sel))  # only results.csv is old
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunFolderError, match="development version"):
        resume_experiment(out, progress=False)


def test_a_protocol_that_labels_the_whole_pool_finishes(tmp_path):
    # Once: "n must be in 1..0" from lowest_contrastive_subset when no image was left
    # unlabelled; no row saved, every resume failing the same way.
    from skmoby.datasets import load_dataset

    ds = load_dataset("digits")
    small = dataclasses.replace(ds, X_train=ds.X_train[:100], y_train=ds.y_train[:100])
    cfg = tiny(methods=["mobyv2al"], initial=93, budget=7, unlabeled="lowest_loss")
    table = run_experiment(cfg, tmp_path / "run", dataset=small, progress=False)
    assert table["n_labelled"].tolist() == [93, 100]
    sel = json.loads((tmp_path / "run" / "selections.json").read_text())
    assert sel["cycles"]["mobyv2al/0/0"]["next_unlabeled"] == []


def test_an_initial_set_of_one_class_is_refused_before_anything_is_written(tmp_path, capsys):
    # Once: --initial 1 passed validation, failed in the job, and the config.json left
    # behind refused the corrected command.
    out = tmp_path / "run"
    common = [
        "run",
        "--dataset",
        "digits",
        "--methods",
        "random",
        "--trials",
        "1",
        "--cycles",
        "2",
        "--budget",
        "10",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    assert cli.main([*common, "--initial", "1"]) == 2
    err = capsys.readouterr().err
    assert "initial = 1" in err and "single class" in err and "Traceback" not in err
    assert not out.exists()
    assert cli.main([*common, "--initial", "20"]) == 0


def _cli(*argv, **kw):
    return subprocess.run(
        [sys.executable, "-m", "skmoby.cli", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def test_a_run_with_stdout_closed_saves_its_cycles(tmp_path):
    # Once: every fit died in skorch's PrintLog (sys.stdout.flush() on None).
    out = tmp_path / "run"
    argv = [
        "run",
        "--dataset",
        "digits",
        "--methods",
        "random",
        "--initial",
        "20",
        "--budget",
        "10",
        "--cycles",
        "2",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    done = subprocess.run(
        ["bash", "-c", 'exec "$@" >&-', "_", sys.executable, "-m", "skmoby.cli", *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert len((out / "results.csv").read_text().splitlines()) == 3


def test_a_full_disk_is_one_line_and_the_folder_resumes(tmp_path, monkeypatch, capsys):
    # Once: a raw OSError traceback (the folder itself stayed consistent).
    out = tmp_path / "run"
    calls = []
    real = os.fsync

    def fsync(fd):  # config.json, then cycle 0's two files; cycle 1 finds the disk full
        calls.append(fd)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    argv = [
        "run",
        "--dataset",
        "digits",
        "--methods",
        "random",
        "--initial",
        "20",
        "--budget",
        "10",
        "--cycles",
        "2",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "skmoby resume" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert len((out / "results.csv").read_text().splitlines()) == 2  # cycle 0 is saved
    monkeypatch.setattr(os, "fsync", real)
    assert cli.main(["resume", str(out), "--quiet"]) == 0
    assert len((out / "results.csv").read_text().splitlines()) == 3


def test_a_folder_that_cannot_be_created_is_one_line(tmp_path, monkeypatch, capsys):
    # Once: a raw PermissionError traceback for a read-only parent or current folder.
    from pathlib import Path

    def mkdir(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", mkdir)
    code = cli.main(
        [
            "run",
            "--dataset",
            "digits",
            "--methods",
            "random",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(tmp_path / "ro" / "run"),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "Permission denied" in err and "Traceback" not in err


def test_a_results_file_that_is_a_folder_is_named(tmp_path, capsys):
    # Once: a raw IsADirectoryError traceback.
    out = tmp_path / "run"
    run_experiment(tiny(), out, progress=False)
    (out / "results.csv").unlink()
    (out / "results.csv").mkdir()
    assert cli.main(["resume", str(out), "--quiet"]) == 2
    assert cli.main(["plot", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("results.csv is not a regular file") == 2 and "Traceback" not in err


def test_plot_into_a_closed_pipe_ends_quietly(tmp_path):
    # Once: `skmoby plot DIR | head -1` ended with a BrokenPipeError traceback.
    out = tmp_path / "run"
    run_experiment(tiny(), out, progress=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "skmoby.cli", "plot", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read()
    assert proc.wait(timeout=600) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_ctrl_c_while_starting_is_a_clean_exit_130(tmp_path):
    # Once: a KeyboardInterrupt traceback and exit -2 when Ctrl-C came during imports.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skmoby.cli",
            "run",
            "--dataset",
            "digits",
            "--methods",
            "random",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The command names the run, then imports PyTorch and loads the data: interrupt it
    # there, however long the interpreter took to start on a busy machine.
    assert proc.stdout.readline().startswith("running digits:")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err


def test_version_help_and_argument_errors_do_not_import_torch():
    code = (
        "import sys\nfrom skmoby import cli\n"
        "for argv in (['--version'], ['run', '--help'], ['run', '--dataset', 'digits', "
        "'--methods', 'foo'], ['run', '--budget', '0']):\n"
        "    try:\n        cli.main(argv)\n    except SystemExit:\n        pass\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr


@pytest.mark.parametrize("method", ["mobyv2al-typiclust", "mobyv2al-probcover"])
def test_a_run_of_a_low_budget_method_resumes_to_the_same_table(tmp_path, method):
    cfg = tiny(methods=[method], initial=30, budget=20, cycles=3, trials=1, unlabeled="random")
    whole = run_experiment(cfg, tmp_path / "whole", progress=False)
    cut = tmp_path / "cut"
    run_experiment(cfg, cut, progress=False)
    lines = (cut / "results.csv").read_text().splitlines(keepends=True)
    (cut / "results.csv").write_text("".join(lines[:2]))  # as if killed after cycle 0
    again = resume_experiment(cut, progress=False)
    cols = ["method", "trial", "cycle", "n_labelled", "accuracy"]
    assert again[cols].equals(whole[cols])
    sel = [json.loads((d / "selections.json").read_text()) for d in (tmp_path / "whole", cut)]
    assert sel[0] == sel[1]


# ============================================================================ review round
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


def test_the_plan_of_a_run_into_another_protocols_folder_is_a_refusal(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "run",
        "--dataset",
        "digits",
        "--methods",
        "random",
        "--initial",
        "20",
        "--budget",
        "10",
        "--cycles",
        "2",
        "--trials",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    assert cli.main([*args, "--epochs", "1"]) == 0
    capsys.readouterr()
    for extra in (["--dry-run"], []):
        assert cli.main([*args, "--epochs", "2", *extra]) == 2
        text = capsys.readouterr()
        assert "another configuration (epochs 1 -> 2)" in text.err
        assert "nothing left" not in text.out and "measuring" not in text.out


def test_a_locked_folder_is_refused_before_data_and_probe(tmp_path, capsys):
    out = tmp_path / "run"
    run_experiment(tiny(trials=2), out, progress=False)
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:2]))
    with _held_elsewhere(out):
        assert cli.main(["resume", str(out), "--quiet"]) == 2
    text = capsys.readouterr()
    assert "being written by process" in text.err and "measuring" not in text.out


def test_demo_overwrite_of_a_finished_demo_plans_every_fit(tmp_path, tiny_demo, capsys):
    assert _demo(tmp_path) == 0
    capsys.readouterr()
    assert _demo(tmp_path, "--overwrite") == 0
    out = capsys.readouterr().out
    assert "nothing left" not in out and "plan: 4 fits" in out


def test_a_pipe_closed_during_a_run_ends_quietly(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skmoby.cli",
            "run",
            "--dataset",
            "digits",
            "--methods",
            "random",
            "--initial",
            "20",
            "--budget",
            "10",
            "--cycles",
            "2",
            "--trials",
            "1",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=600) == 141
    assert "Traceback" not in err and "Broken pipe" not in err


def test_a_full_disk_before_anything_is_saved_names_the_file(tmp_path, monkeypatch, capsys):
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "run",
                "--dataset",
                "digits",
                "--methods",
                "random",
                "--epochs",
                "1",
                "--initial",
                "20",
                "--budget",
                "10",
                "--cycles",
                "2",
                "--trials",
                "1",
                "--device",
                "cpu",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "No space left on device: " in err and "config.json" in err
    assert "Nothing was written" in err and "skmoby resume" not in err


def test_demo_into_a_file_and_a_dangling_link_are_refused(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--device", "cpu", "--quiet", "--out", str(afile)])
    assert e.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "missing")
    assert (
        cli.main(
            [
                "run",
                "--dataset",
                "digits",
                "--methods",
                "random",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--quiet",
                "--out",
                str(link),
            ]
        )
        == 2
    )
    assert "symbolic link" in capsys.readouterr().err
    assert afile.read_text() == "mine" and not (tmp_path / "missing").exists()


def test_plots_are_replaced_whole_and_a_plot_error_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    run_experiment(tiny(), out, progress=False)
    (out / "learning_curve.png").unlink(missing_ok=True)
    (out / "learning_curve.png").mkdir()
    assert cli.main(["plot", str(out)]) == 1
    err = capsys.readouterr().err
    assert "learning_curve.png" in err and "Traceback" not in err
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_without_record_locks_a_foreign_lock_file_is_taken_over(tmp_path, monkeypatch):
    _no_record_locks(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    (out / locks.LOCK_NAME).write_text("[1, 2, 3]")
    assert len(run_experiment(tiny(), out, progress=False)) == 2


def test_an_experiment_config_pickles_under_its_public_module():
    import pickle

    data = pickle.dumps(tiny())
    assert b"skmoby.experiment" in data and b"skmoby.experiment.config" not in data
    assert pickle.loads(data) == tiny()
