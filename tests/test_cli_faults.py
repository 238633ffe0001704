"""Fault catalogue of the ``skmoby`` command: the demo's folder, closed pipes and
streams, full disks, Ctrl-C, devices and options named by their flags.

Each case once lost or mixed a user's files, or ended in a raw traceback; each test sets
the situation up and checks the behaviour that replaced it.
"""

import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from skmoby import _commands, cli
from skmoby.experiment import (
    PRESETS,
    run_experiment,
)
from tests.experiment.conftest import (
    files_of,
    held_elsewhere,
    sigint_live,
    tiny,
    tiny_run_args,
)

TINY_DEMO = dict(PRESETS["demo"], initial=20, budget=10, cycles=2, trials=1, epochs=1)


@pytest.fixture
def tiny_demo(monkeypatch):
    """The demo at the smallest size, so that a test runs the real command quickly."""
    monkeypatch.setitem(PRESETS, "demo", TINY_DEMO)


def _demo(out, *extra):
    return cli.main(
        ["demo", "--device", "cpu", "--quiet", "--jobs", "1", "--out", str(out), *extra]
    )


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
    before = files_of(tmp_path / "demo")
    assert _demo(tmp_path) == 0
    assert files_of(tmp_path / "demo") == before
    assert (tmp_path / "demo-2" / "results.csv").exists()
    assert "holds an earlier run (kept)" in capsys.readouterr().out


def test_the_demo_never_deletes_a_users_folder(tmp_path, tiny_demo):
    # Once: a user's X/demo/ with a config.json beside notes and code was removed whole.
    mine = tmp_path / "demo"
    (mine / "src").mkdir(parents=True)
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "notes.txt").write_text("notes")
    (mine / "src" / "main.py").write_text("print('hi')")
    before = files_of(mine)
    assert _demo(tmp_path) == 0
    assert _demo(tmp_path) == 0
    assert files_of(mine) == before
    assert (tmp_path / "demo-2" / "results.csv").exists()
    assert (tmp_path / "demo-3" / "results.csv").exists()


def test_demo_overwrite_replaces_only_the_runfiles_of(tmp_path, tiny_demo):
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
    with held_elsewhere(mine):
        code = _demo(tmp_path, "--overwrite")
    assert code == 2
    err = capsys.readouterr().err
    assert "being written by process" in err and "Traceback" not in err
    assert (mine / "results.csv").read_text() == "kept"


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


def test_an_initial_set_of_one_class_is_refused_before_anything_is_written(tmp_path, capsys):
    # Once: --initial 1 passed validation, failed in the job, and the config.json left
    # behind refused the corrected command.
    out = tmp_path / "run"
    common = tiny_run_args(out, initial=None)
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
    argv = tiny_run_args(out)
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
    argv = tiny_run_args(out)
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
        preexec_fn=sigint_live,
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


def test_the_plan_of_a_run_into_another_protocols_folder_is_a_refusal(tmp_path, capsys):
    out = tmp_path / "run"
    args = tiny_run_args(out, epochs=None)
    assert cli.main([*args, "--epochs", "1"]) == 0
    capsys.readouterr()
    for extra in (["--dry-run"], []):
        assert cli.main([*args, "--epochs", "2", *extra]) == 2
        text = capsys.readouterr()
        assert "another configuration (epochs 1 -> 2)" in text.err
        assert "nothing left" not in text.out and "measuring" not in text.out


def test_demo_overwrite_of_a_finished_demo_plans_every_fit(tmp_path, tiny_demo, capsys):
    assert _demo(tmp_path) == 0
    capsys.readouterr()
    assert _demo(tmp_path, "--overwrite") == 0
    out = capsys.readouterr().out
    fits = len(TINY_DEMO["methods"]) * TINY_DEMO["cycles"] * TINY_DEMO["trials"]
    assert "nothing left" not in out and f"plan: {fits} fits" in out


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
    assert cli.main(tiny_run_args(out)) == 1
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


def test_tqdm_lock_interrupted_while_built(monkeypatch, capsys):
    # Once: a Ctrl-C while tqdm built its write lock (on the first log line) surfaced as
    # "AttributeError: type object 'tqdm' has no attribute '_lock'".
    import tqdm.std
    from tqdm.auto import tqdm as auto_tqdm

    def interrupted(self):
        raise KeyboardInterrupt

    # Delete the lock where a class holds it itself: tqdm.auto's class inherits tqdm's
    # (deleting an inherited attribute raises AttributeError).
    for cls in (tqdm.std.tqdm, auto_tqdm):
        if "_lock" in vars(cls):
            monkeypatch.delattr(cls, "_lock")
    monkeypatch.setattr(tqdm.std.TqdmDefaultWriteLock, "__init__", interrupted)
    _commands._prepare_output(quiet=True)
    _commands._print_cycle("random    trial 0 cycle 0: 20 labels")  # no tqdm involved
    assert "trial 0 cycle 0" in capsys.readouterr().out
    with pytest.raises(KeyboardInterrupt):  # not AttributeError
        _commands._prepare_output(quiet=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_writing(tmp_path, capsys):
    # Once: torch's "Found no NVIDIA driver" after config.json was written, and the
    # folder then refused --device cpu.
    out = tmp_path / "run"
    argv = tiny_run_args(out, device=None)
    assert cli.main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no usable CUDA GPU" in err and "--device cpu" in err
    assert not out.exists()
    assert cli.main([*argv, "--device", "cpu"]) == 0


@pytest.mark.parametrize("device", ["tpu", "cuda:x", 3])
def test_an_unknown_device_is_refused(tmp_path, device):
    with pytest.raises((TypeError, ValueError), match="device"):
        run_experiment(tiny(trials=2, device=device), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_cli_bad_jobs(jobs, capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--dataset", "digits", "--jobs", jobs])
    assert "positive integer" in capsys.readouterr().err


def test_cli_errors_name_cli_flags(tmp_path, capsys):
    # Once: "pass download=True" and "use resume_experiment()" on the command line.
    assert (
        cli.main(
            [
                "run",
                "--dataset",
                "cifar10",
                "--data-root",
                str(tmp_path),
                "--out",
                str(tmp_path / "a"),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--download" in err and "download=True" not in err
    assert "Put them here" in err and "or add --download (needs internet) to fetch them." in err
    base = tiny_run_args(tmp_path / "b", cycles=None)
    assert cli.main([*base, "--cycles", "1"]) == 0
    assert cli.main([*base, "--cycles", "2"]) == 2
    err = capsys.readouterr().err
    assert f"skmoby resume {tmp_path / 'b'}" in err and "resume_experiment" not in err
    assert "cycles 1 -> 2" in err


def test_cli_names_its_flag_for_a_damaged_dataset_file(tmp_path, capsys):
    for stem in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        (tmp_path / f"{stem}-ubyte").write_bytes(b"not an IDX file")
    args = ["run", "--dataset", "fashionmnist", "--data-root", str(tmp_path)]
    code = cli.main([*args, "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte does not match the official release" in err
    assert "Replace it, or delete it and add --download." in err and "download=True" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("skmoby 0.")
