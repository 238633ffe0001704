"""Fault and bad-input catalogue of the experiment runner, its run folder and the CLI.

One test per case, grouped by component. Each sets up the situation that once gave a
silently wrong result or a raw traceback and checks the behaviour that replaced it.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from skorch.callbacks import Callback, EarlyStopping

from skmoby import _commands, cli
from skmoby.datasets import load_dataset
from skmoby.experiment import (
    ExperimentConfig,
    JobsFailedError,
    RunFolderError,
    load_results,
    resume_experiment,
    run_experiment,
    runners,
    summarize,
)
from skmoby.experiment.store import RunFolder

VALUES = ["method", "trial", "cycle", "n_labelled", "accuracy"]


def tiny(**kw):
    base = dict(
        dataset="digits",
        methods=["random"],
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


@pytest.fixture(scope="module")
def digits_ds():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, digits_ds):
    """One finished tiny run; tests copy its folder and damage the copy."""
    out = tmp_path_factory.mktemp("reference")
    table = run_experiment(tiny(), out, dataset=digits_ds, progress=False)
    return out, table


@pytest.fixture
def run_copy(tmp_path, reference):
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    return out


def edit_config(out, **changes):
    path = out / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg, indent=2))


def csv_lines(out):
    return (out / "results.csv").read_text().splitlines(keepends=True)


# ============================================================================ run folder
@pytest.mark.parametrize(("setting", "value"), [("initial", 30), ("epochs", 2), ("seed", 5)])
def test_resume_refuses_an_edited_config(run_copy, digits_ds, setting, value):
    # Once: resume used the edited value for the missing trials, mixing two protocols.
    rows = csv_lines(run_copy)
    (run_copy / "results.csv").write_text("".join(rows[:3]))  # trial 1 still to run
    edit_config(run_copy, **{setting: value})
    with pytest.raises(RunFolderError, match=r"config.json was edited") as e:
        resume_experiment(run_copy, dataset=digits_ds, progress=False)
    assert f"{setting} " in str(e.value) and f"-> {value}" in str(e.value)
    assert len(csv_lines(run_copy)) == 3  # nothing written


def test_resume_may_change_device_and_data_root(run_copy, digits_ds, reference):
    edit_config(run_copy, data_root="/elsewhere")
    again = resume_experiment(run_copy, dataset=digits_ds, progress=False, device="cpu")
    pd.testing.assert_frame_equal(again[VALUES], reference[1][VALUES])


@pytest.mark.parametrize(
    "cut",
    ["inside method", "inside trial", "after n_labelled", "inside accuracy", "inside config_hash"],
)
def test_a_last_row_cut_mid_write_is_dropped_and_recomputed(run_copy, digits_ds, reference, cut):
    # Once: a value cut to '0.10' stayed in the table; a row cut after n_labelled gave
    # accuracy NaN; a cut inside method or trial gave pandas' IntCastingNaNError.
    rows = csv_lines(run_copy)
    last = rows[-1]
    fields = last.split(",")
    stop = {
        "inside method": 2,
        "inside trial": len(fields[0]) + 1,
        "after n_labelled": len(",".join(fields[:4])),
        "inside accuracy": len(",".join(fields[:4])) + 5,
        "inside config_hash": len(last) - 5,
    }[cut]
    (run_copy / "results.csv").write_text("".join(rows[:-1]) + last[:stop])
    with pytest.warns(RuntimeWarning, match=r"results.csv, line 5: dropped a row cut"):
        table = resume_experiment(run_copy, dataset=digits_ds, progress=False)
    pd.testing.assert_frame_equal(table[VALUES], reference[1][VALUES])
    assert (run_copy / "results.csv").read_text().endswith("\n")


@pytest.mark.parametrize(
    ("line", "field", "value", "match"),
    [
        (2, 4, "0.1x", "accuracy '0.1x' is not a number"),
        (3, 1, "one", "trial 'one' is not an integer"),
        (2, 3, "25", "n_labelled 25 does not match"),
        (3, 0, "magic", "method 'magic' is not one of"),
        (2, 4, "1.5", "accuracy 1.5 is out of range"),
        (2, 4, "nan", "accuracy nan is out of range"),
    ],
)
def test_a_damaged_row_is_refused_with_file_and_line(
    run_copy, digits_ds, line, field, value, match
):
    rows = csv_lines(run_copy)
    fields = rows[line - 1].rstrip("\n").split(",")
    fields[field] = value
    rows[line - 1] = ",".join(fields) + "\n"
    (run_copy / "results.csv").write_text("".join(rows))
    with pytest.raises(RunFolderError, match=rf"results.csv, line {line}: {match}"):
        resume_experiment(run_copy, dataset=digits_ds, progress=False)


def test_a_duplicated_row_is_refused(run_copy, digits_ds):
    # Once: summarize counted the duplicate as a third trial.
    rows = csv_lines(run_copy)
    (run_copy / "results.csv").write_text("".join([*rows, rows[1]]))
    with pytest.raises(RunFolderError, match=r"line 6: it repeats .* of line 2"):
        resume_experiment(run_copy, dataset=digits_ds, progress=False)
    with pytest.raises(RunFolderError, match="line 6"):
        load_results(run_copy)


def test_summarize_does_not_count_a_duplicate_as_a_trial(reference):
    table = reference[1]
    with pytest.raises(ValueError, match=r"repeat a .method, trial, cycle."):
        summarize(pd.concat([table, table.iloc[[0]]]))
    assert set(summarize(table).xs("trials", axis=1, level=1).to_numpy().ravel()) == {2}


def test_a_missing_cycle_before_a_finished_one_is_refused(run_copy, digits_ds):
    rows = csv_lines(run_copy)
    (run_copy / "results.csv").write_text("".join([rows[0], rows[2]]))  # cycle 1 only
    with pytest.raises(
        RunFolderError,
        match=r"cycle 1 of .random, trial 0. is there but "
        r"cycle 0 is not",
    ):
        resume_experiment(run_copy, dataset=digits_ds, progress=False)


def test_rows_of_another_run_are_refused(run_copy, digits_ds):
    rows = csv_lines(run_copy)
    rows[2] = rows[2].rsplit(",", 1)[0] + ",0123456789abcdef\n"
    (run_copy / "results.csv").write_text("".join(rows))
    with pytest.raises(RunFolderError, match="line 3: the row was computed with other"):
        resume_experiment(run_copy, dataset=digits_ds, progress=False)


def test_an_empty_results_file_is_named(run_copy, digits_ds):
    # Once: pandas' "No columns to parse from file", without the file's name.
    (run_copy / "results.csv").write_text("")
    with pytest.raises(RunFolderError, match=r"results.csv is empty \(0 bytes\)"):
        resume_experiment(run_copy, dataset=digits_ds, progress=False)


def test_a_missing_selections_file_is_named(run_copy, digits_ds):
    # Once: a raw KeyError.
    (run_copy / "selections.json").unlink()
    with pytest.raises(
        RunFolderError,
        match=r"selections.json is missing, but .*results.csv "
        r"has 4 rows",
    ):
        resume_experiment(run_copy, dataset=digits_ds, progress=False)


def test_a_corrupt_selections_file_is_named(run_copy, digits_ds):
    # Once: a raw JSONDecodeError.
    text = (run_copy / "selections.json").read_text()
    (run_copy / "selections.json").write_text(text[: len(text) // 2])
    with pytest.raises(RunFolderError, match=r"selections.json is not valid JSON"):
        resume_experiment(run_copy, dataset=digits_ds, progress=False)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"dataset": "digits",', r"config.json is not valid JSON \(line 1"),
        ("[1, 2]", "config.json must hold a JSON object"),
        ('{"budget": "ten"}', "config.json: budget must be a positive int"),
        ('{"bugdet": 10}', r"config.json: unknown experiment settings: \['bugdet'\]"),
        ('{"lr": "0.1"}', "config.json: lr must be a positive number"),
    ],
)
def test_an_invalid_config_file_is_named(run_copy, digits_ds, text, match):
    (run_copy / "config.json").write_text(text)
    with pytest.raises(RunFolderError, match=match):
        resume_experiment(run_copy, dataset=digits_ds, progress=False)


def _edit_first_selection(out, edit):
    """Apply ``edit`` to the stored selection of random/0/0 and drop the rows after
    that cycle, so that resume replays the edited entry."""
    path = out / "selections.json"
    data = json.loads(path.read_text())
    edit(data["cycles"]["random/0/0"]["selected"], out)
    path.write_text(json.dumps(data))
    (out / "results.csv").write_text("".join(csv_lines(out)[:2]))


def _already_labelled(sel, out):
    cfg = json.loads((out / "config.json").read_text())
    n_pool = len(load_dataset("digits").X_train)
    sel[1] = int(
        np.random.RandomState(cfg["seed"]).choice(n_pool, cfg["initial"], replace=False)[0]
    )


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda sel, out: sel.__setitem__(1, sel[0]), "distinct non-negative integer"),
        (lambda sel, out: sel.__setitem__(1, -1), "distinct non-negative integer"),
        (lambda sel, out: sel.__setitem__(1, True), "distinct non-negative integer"),
        (lambda sel, out: sel.clear(), "holds 0 selected images; the protocol picks 10"),
        (lambda sel, out: sel.__setitem__(1, 99999), "selects image 99999 of a pool"),
        (_already_labelled, "selects images that were already labelled"),
    ],
)
def test_an_edited_selection_is_refused_with_file_and_entry(run_copy, digits_ds, edit, match):
    # Once: a duplicate trained the next cycle on fewer labels and saved a row that made
    # the folder unreadable; -1 and true were taken as indices; 99999 failed in the job.
    _edit_first_selection(run_copy, edit)
    before = (run_copy / "results.csv").read_text()
    with pytest.raises(RunFolderError, match=match) as e:
        resume_experiment(run_copy, dataset=digits_ds, progress=False)
    assert "selections.json" in str(e.value) and "random/0/0" in str(e.value)
    assert (run_copy / "results.csv").read_text() == before


def test_a_missing_config_next_to_results_is_refused_unchanged(run_copy, digits_ds):
    (run_copy / "config.json").unlink()
    with pytest.raises(RunFolderError, match=r"config\.json is missing"):
        run_experiment(tiny(epochs=2), run_copy, dataset=digits_ds, progress=False)
    assert not (run_copy / "config.json").exists()


@pytest.mark.parametrize("damage", ["duplicated row", "replayed selection"])
def test_resume_on_another_device_leaves_a_damaged_folder_unchanged(run_copy, digits_ds, damage):
    if damage == "duplicated row":
        rows = csv_lines(run_copy)
        (run_copy / "results.csv").write_text("".join(rows + rows[-1:]))
    else:  # found only when the stored selections are replayed against the pool
        _edit_first_selection(run_copy, _already_labelled)
    edit_config(run_copy, device="auto")
    before = (run_copy / "config.json").read_text()
    with pytest.raises(RunFolderError):
        resume_experiment(run_copy, dataset=digits_ds, progress=False, device="cpu")
    assert (run_copy / "config.json").read_text() == before


@pytest.mark.parametrize("entry", [[[1, 2]], [2**70], [1.5]])
def test_a_malformed_selection_entry_is_a_run_folder_error(run_copy, digits_ds, entry):
    path = run_copy / "selections.json"
    data = json.loads(path.read_text())
    data["cycles"]["random/0/0"]["selected"] = entry
    path.write_text(json.dumps(data))
    with pytest.raises(RunFolderError, match="random/0/0"):
        resume_experiment(run_copy, dataset=digits_ds, progress=False)


def test_large_seeds_work_where_no_random_method_limits_them(tmp_path, digits_ds):
    cfg = tiny(methods=["coreset"], seed=5_000_000, trials=1)
    table = run_experiment(cfg, tmp_path / "run", dataset=digits_ds, progress=False)
    assert len(table) == cfg.cycles
    with pytest.raises(ValueError, match="with the random method"):
        tiny(methods=["random"], seed=5_000_000).validate()


def test_run_files_are_readable_like_plots(reference):
    # Once: mkstemp's 0600 for the run files, 0644 for the plots.
    umask = os.umask(0)
    os.umask(umask)
    for name in ("results.csv", "selections.json", "config.json"):
        assert (reference[0] / name).stat().st_mode & 0o777 == 0o666 & ~umask


# ============================================================================ runner
class RaiseInterrupt(Callback):
    """Raises KeyboardInterrupt at the end of the first epoch (as Ctrl-C there would)."""

    def on_epoch_end(self, net, **kwargs):
        raise KeyboardInterrupt


def test_an_interrupted_fit_is_not_saved(tmp_path, digits_ds):
    # Once: skorch swallowed the interrupt, the runner scored the half-trained model
    # and saved it as a finished cycle.
    def cbs(method, trial, cycle):
        return [RaiseInterrupt()] if (trial, cycle) == (0, 1) else []

    with pytest.raises(KeyboardInterrupt, match="interrupted after 0 of 2 epochs"):
        run_experiment(tiny(epochs=2), tmp_path, dataset=digits_ds, progress=False, callbacks=cbs)
    assert len(csv_lines(tmp_path)) == 2  # header and cycle 0


def test_early_stopping_is_not_taken_for_an_interrupt(tmp_path, digits_ds):
    stop = EarlyStopping(monitor="train_loss", patience=1, threshold=1e9)
    table = run_experiment(
        tiny(trials=1, epochs=3), tmp_path, dataset=digits_ds, progress=False, callbacks=[stop]
    )
    assert len(table) == 2


CALLBACK_MODULE = """
import os, time
from skorch.callbacks import Callback

class SignalWhenTraining(Callback):
    def on_epoch_end(self, net, **kwargs):
        # Wait here for the test's Ctrl-C, however late it comes.
        open(os.environ["MARKER"], "w").close()
        time.sleep(120.0)

def during_cycle_1(method, trial, cycle):
    return [SignalWhenTraining()] if cycle == 1 else []
"""


def _sigint_live() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_sigint_during_training_saves_nothing_and_resume_matches(tmp_path, digits_ds):
    # Once: `skmoby resume` exited 0 after a Ctrl-C during training and saved 0.104 where
    # the uninterrupted run gives 0.202.
    cfg = tiny(trials=1, epochs=3)
    ref = run_experiment(cfg, tmp_path / "ref", dataset=digits_ds, progress=False)
    out = tmp_path / "run"
    out.mkdir()
    RunFolder(out).write_config(cfg.to_dict())
    (tmp_path / "slowcb.py").write_text(CALLBACK_MODULE)
    marker = tmp_path / "training"
    env = dict(os.environ, MARKER=str(marker), PYTHONPATH=str(tmp_path))
    # Ctrl-C live in the child, as in a terminal: a test run started in the background by
    # a non-interactive shell (or nohup) ignores SIGINT, and children inherit that.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skmoby.cli",
            "resume",
            str(out),
            "--quiet",
            "--callback",
            "slowcb:during_cycle_1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_live,
    )
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert [line.split(",")[2] for line in csv_lines(out)[1:]] == ["0"]  # cycle 0 only
    again = resume_experiment(out, dataset=digits_ds, progress=False)
    pd.testing.assert_frame_equal(again[VALUES], ref[VALUES])


def test_ctrl_c_during_the_selection_is_not_swallowed_by_modal(tmp_path, digits_ds, monkeypatch):
    # modAL's query calls the strategy in a bare `except:` and calls it again on any
    # exception: a Ctrl-C during the selection was swallowed and the cycle saved.
    from skmoby.query.strategies import coreset

    calls = []

    def strategy(learner, X_pool, n_instances=1):
        calls.append(n_instances)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return coreset(learner, X_pool, n_instances)

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            tiny(methods=["coreset"], trials=1),
            out,
            dataset=digits_ds,
            progress=False,
            strategies={"coreset": strategy},
        )
    assert calls == [10]  # not selected a second time
    # cycle 0 ended in the selection: nothing saved
    assert not (out / "results.csv").exists() or csv_lines(out)[1:] == []


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


def test_a_failing_job_is_reported_and_the_others_finish(tmp_path, digits_ds, reference):
    class Boom(Callback):
        def on_train_begin(self, net, **kwargs):
            raise RuntimeError("boom in the fit")

    def cbs(method, trial, cycle):
        return [Boom()] if (trial, cycle) == (0, 1) else []

    logged = []
    with pytest.raises(JobsFailedError, match=r"\(random, trial 0\)") as e:
        run_experiment(
            tiny(), tmp_path, dataset=digits_ds, progress=False, callbacks=cbs, log=logged.append
        )
    assert "boom in the fit" in str(e.value) and "Traceback" in str(e.value)
    assert any("FAILED" in line and "boom in the fit" in line for line in logged)
    assert len(e.value.results) == 3  # trial 1 finished, trial 0 stopped after cycle 0
    again = resume_experiment(tmp_path, dataset=digits_ds, progress=False, log=logged.append)
    assert logged[-1].startswith("random    trial 0 cycle 1")  # only the missing cycle
    pd.testing.assert_frame_equal(again[VALUES], reference[1][VALUES])


# ============================================================================ device
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_writing(tmp_path, capsys):
    # Once: torch's "Found no NVIDIA driver" after config.json was written, and the
    # folder then refused --device cpu.
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
        "--out",
        str(out),
        "--quiet",
    ]
    assert cli.main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no usable CUDA GPU" in err and "--device cpu" in err
    assert not out.exists()
    assert cli.main([*argv, "--device", "cpu"]) == 0


@pytest.mark.parametrize("device", ["tpu", "cuda:x", 3])
def test_an_unknown_device_is_refused(tmp_path, device):
    with pytest.raises((TypeError, ValueError), match="device"):
        run_experiment(tiny(device=device), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


# ============================================================================ plot
def test_plot_of_a_cut_table_says_what_it_left_out(run_copy, capsys):
    # Once: plot dropped the cut row silently.
    rows = csv_lines(run_copy)
    (run_copy / "results.csv").write_text("".join(rows[:-1]) + rows[-1][:14])
    assert cli.main(["plot", str(run_copy)]) == 0
    captured = capsys.readouterr()
    assert "results.csv, line 5: dropped a row cut mid-write" in captured.err
    assert "the run is incomplete" in captured.out and "Trials per cycle" in captured.out


def test_plot_of_a_single_trial_is_not_called_a_mean(run_copy, capsys):
    # Once: "Test accuracy (mean over trials)" above a single trial.
    rows = csv_lines(run_copy)
    (run_copy / "results.csv").write_text("".join(rows[:3]))
    assert cli.main(["plot", str(run_copy)]) == 0
    out = capsys.readouterr().out
    assert "a single trial" in out and "mean over" not in out


def test_plot_of_a_damaged_table_names_file_and_line(run_copy, capsys):
    rows = csv_lines(run_copy)
    rows[2] = rows[2].replace("random", "rnd")
    (run_copy / "results.csv").write_text("".join(rows))
    assert cli.main(["plot", str(run_copy)]) == 2
    assert "results.csv, line 3" in capsys.readouterr().err


# ============================================================================ options
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"jobs": 0}, "jobs must be a positive int"),
        ({"jobs": -2}, "jobs must be a positive int"),
        ({"jobs": 1.5}, "jobs must be a positive int"),
        ({"jobs_per_gpu": 0}, "jobs_per_gpu must be None or a positive int"),
        ({"backend": "dask"}, "backend must be 'local' or 'ray'"),
        ({"ray_address": "auto"}, "ray_address needs backend='ray'"),
    ],
)
def test_bad_run_options(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        run_experiment(tiny(), tmp_path / "x", progress=False, **kw)
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_jobs_per_gpu_without_a_gpu(tmp_path, capsys):
    with pytest.raises(ValueError, match="no CUDA GPU to share"):
        run_experiment(tiny(), tmp_path / "x", progress=False, jobs_per_gpu=2)
    code = cli.main(
        [
            "run",
            "--dataset",
            "digits",
            "--jobs-per-gpu",
            "2",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "x"),
            "--quiet",
        ]
    )
    assert code == 2 and "--jobs-per-gpu (2)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_cli_bad_jobs(jobs, capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--dataset", "digits", "--jobs", jobs])
    assert "positive integer" in capsys.readouterr().err


def test_ray_backend_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ImportError, match=r"skmoby\[ray\]"):
        run_experiment(tiny(), tmp_path / "x", progress=False, backend="ray")
    code = cli.main(
        [
            "run",
            "--dataset",
            "digits",
            "--backend",
            "ray",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "x"),
            "--quiet",
        ]
    )
    assert code == 2 and "pip install 'skmoby[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_unreachable_ray_address(tmp_path, capsys):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = cli.main(
        [
            "run",
            "--dataset",
            "digits",
            "--backend",
            "ray",
            "--device",
            "cpu",
            "--ray-address",
            f"127.0.0.1:{port}",
            "--out",
            str(tmp_path / "x"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Ray cluster" in err
    assert not (tmp_path / "x").exists()


def _as_if_under_uv_run(monkeypatch, tmp_path, *uv_args):
    """Make Ray's ``uv run`` detection see ``uv run [uv_args] skmoby``, from tmp_path."""
    hook = pytest.importorskip("ray._private.runtime_env.uv_runtime_env_hook")
    from ray._private import ray_constants

    monkeypatch.setattr(hook, "_get_uv_run_cmdline", lambda: ["uv", "run", *uv_args, "skmoby"])
    # Ray's default, whatever the environment of the test run says (conftest.py)
    monkeypatch.delenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", raising=False)
    monkeypatch.setattr(ray_constants, "RAY_ENABLE_UV_RUN_RUNTIME_ENV", True)
    monkeypatch.chdir(tmp_path)


def _runtime_env_of_local_ray(monkeypatch):
    """The runtime environment Ray would give the workers of the local cluster we start."""
    import ray
    from ray._private.worker import _maybe_modify_runtime_env

    seen = []

    class Stop(Exception):
        pass

    def init(*args, **kwargs):
        seen.append(_maybe_modify_runtime_env(kwargs.get("runtime_env"), False))
        raise Stop

    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(Stop):
        next(
            runners._ray_runner(
                [runners.Job("random", 0, {})],
                None,
                None,
                jobs=1,
                threads=1,
                device="cpu",
                jobs_per_gpu=None,
                address=None,
            )
        )
    return seen[0]


def test_a_local_ray_under_uv_run_gives_workers_this_interpreter(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from ray._private.worker import _maybe_modify_runtime_env

    _as_if_under_uv_run(monkeypatch, tmp_path)
    # Ray's own default here: workers under "uv run" in an uploaded copy of the folder.
    assert "py_executable" in _maybe_modify_runtime_env(None, False)
    assert "py_executable" not in (_runtime_env_of_local_ray(monkeypatch) or {})
    # the switch is put back after the start
    assert "py_executable" in _maybe_modify_runtime_env(None, False)


def test_a_users_own_ray_uv_setting_is_kept(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    _as_if_under_uv_run(monkeypatch, tmp_path)
    monkeypatch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "1")
    assert "py_executable" in _runtime_env_of_local_ray(monkeypatch)


@pytest.mark.slow
def test_ray_run_under_uv_run_with_the_project_elsewhere(tmp_path, monkeypatch, capsys):
    # "uv run --project DIR skmoby run --backend ray" from another folder: Ray's uv
    # support refused it (pyproject.toml outside the uploaded folder) after config.json
    # had been written.
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _as_if_under_uv_run(monkeypatch, tmp_path, "--project", repo)
    code = cli.main(
        [
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
            "1",
            "--trials",
            "1",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--backend",
            "ray",
            "--out",
            "r",
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "r" / "results.csv")) == 1  # cycle 0 of trial 0
    assert not ray.is_initialized()  # the cluster the run started is stopped


# ============================================================================ CLI words
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
    base = [
        "run",
        "--dataset",
        "digits",
        "--methods",
        "random",
        "--initial",
        "20",
        "--budget",
        "10",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "b"),
        "--quiet",
    ]
    assert cli.main([*base, "--cycles", "1"]) == 0
    assert cli.main([*base, "--cycles", "2"]) == 2
    err = capsys.readouterr().err
    assert f"skmoby resume {tmp_path / 'b'}" in err and "resume_experiment" not in err
    assert "cycles 1 -> 2" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("skmoby 0.")


@pytest.mark.parametrize(
    ("settings", "err"),
    [
        (dict(dataset="no-such-dataset"), ValueError),
        (dict(dataset="cifar10", data_root="MISSING"), FileNotFoundError),
        (dict(initial=1000, budget=1000, cycles=3), ValueError),
    ],
)
def test_a_run_refused_before_it_starts_writes_nothing(tmp_path, settings, err):
    # A config.json left behind held the folder: neither rerun (another configuration)
    # nor resume (the same refusal) could use it.
    if settings.get("data_root") == "MISSING":
        settings = {**settings, "data_root": str(tmp_path / "empty")}
    out = tmp_path / "run"
    with pytest.raises(err):
        run_experiment(tiny(methods=["random"], **settings), out, progress=False)
    assert not out.exists()
