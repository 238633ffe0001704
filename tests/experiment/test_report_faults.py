"""Fault catalogue of the report of a run (:mod:`skmoby.experiment.report`, ``skmoby
plot``): duplicated rows, cut and damaged tables, single trials.

Each case once gave a misleading table or a raw traceback; each test sets the situation
up and checks the behaviour that replaced it.
"""

import pandas as pd
import pytest

from skmoby import cli
from skmoby.experiment import summarize
from tests.experiment.conftest import csv_lines


def test_summarize_does_not_count_a_duplicate_as_a_trial(reference):
    table = reference[1]
    with pytest.raises(ValueError, match=r"repeat a .method, trial, cycle."):
        summarize(pd.concat([table, table.iloc[[0]]]))
    assert set(summarize(table).xs("trials", axis=1, level=1).to_numpy().ravel()) == {2}


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
