"""Fault catalogue of one job's cycles (:mod:`skmoby.experiment.protocol`): interrupted
fits and selections, seeds, pools labelled to the end.

Each case once gave a silently wrong result or a raw traceback; each test sets the
situation up and checks the behaviour that replaced it.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from skorch.callbacks import Callback, EarlyStopping

from skmoby.datasets import load_dataset
from skmoby.experiment import (
    resume_experiment,
    run_experiment,
)
from skmoby.experiment.store import RunFolder
from tests.experiment.conftest import (
    VALUES,
    csv_lines,
    sigint_live,
    tiny,
)


def test_large_seeds_work_where_no_random_method_limits_them(tmp_path, digits_ds):
    cfg = tiny(methods=["coreset"], seed=5_000_000, trials=1)
    table = run_experiment(cfg, tmp_path / "run", dataset=digits_ds, progress=False)
    assert len(table) == cfg.cycles
    with pytest.raises(ValueError, match="with the random method"):
        tiny(trials=2, methods=["random"], seed=5_000_000).validate()


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
        run_experiment(
            tiny(trials=2, epochs=2), tmp_path, dataset=digits_ds, progress=False, callbacks=cbs
        )
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
        preexec_fn=sigint_live,
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


def test_a_protocol_that_labels_the_whole_pool_finishes(tmp_path):
    # Once: "n must be in 1..0" from lowest_contrastive_subset when no image was left
    # unlabelled; no row saved, every resume failing the same way.

    ds = load_dataset("digits")
    small = dataclasses.replace(ds, X_train=ds.X_train[:100], y_train=ds.y_train[:100])
    cfg = tiny(methods=["mobyv2al"], initial=93, budget=7, unlabeled="lowest_loss")
    table = run_experiment(cfg, tmp_path / "run", dataset=small, progress=False)
    assert table["n_labelled"].tolist() == [93, 100]
    sel = json.loads((tmp_path / "run" / "selections.json").read_text())
    assert sel["cycles"]["mobyv2al/0/0"]["next_unlabeled"] == []


@pytest.mark.parametrize(
    "method",
    ["mobyv2al-typiclust", "mobyv2al-probcover", "mobyv2al-adaptive", "mobyv2al-margin"],
)
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
