"""Fault catalogue of the run folder (:mod:`skmoby.experiment.store`): edited settings,
damaged tables and selections, old layouts.

Each case once gave a silently wrong result or a raw traceback; each test sets the
situation up and checks the behaviour that replaced it.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest

from skmoby.datasets import load_dataset
from skmoby.experiment import RunFolderError, load_results, resume_experiment, run_experiment
from tests.experiment.conftest import VALUES, csv_lines, edit_config, files_of, tiny


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


def _already_labeled(sel, out):
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
        (_already_labeled, "selects images that were already labelled"),
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
        run_experiment(tiny(trials=2, epochs=2), run_copy, dataset=digits_ds, progress=False)
    assert not (run_copy / "config.json").exists()


@pytest.mark.parametrize("damage", ["duplicated row", "replayed selection"])
def test_resume_on_another_device_leaves_a_damaged_folder_unchanged(run_copy, digits_ds, damage):
    if damage == "duplicated row":
        rows = csv_lines(run_copy)
        (run_copy / "results.csv").write_text("".join(rows + rows[-1:]))
    else:  # found only when the stored selections are replayed against the pool
        _edit_first_selection(run_copy, _already_labeled)
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


def test_run_files_are_readable_like_plots(reference):
    # Once: mkstemp's 0600 for the run files, 0644 for the plots.
    umask = os.umask(0)
    os.umask(umask)
    for name in ("results.csv", "selections.json", "config.json"):
        assert (reference[0] / name).stat().st_mode & 0o777 == 0o666 & ~umask


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
    before = files_of(out)
    with pytest.raises(RunFolderError, match="layout"):
        resume_experiment(out, progress=False)
    assert files_of(out) == before
    (out / "selections.json").write_text(json.dumps(sel))  # only results.csv is old
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunFolderError, match="development version"):
        resume_experiment(out, progress=False)
