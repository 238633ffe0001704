"""A chosen first labelled set (``initial_strategy``): chosen once per trial, stored in
``initial.json``, shared by the trial's methods, and resumed as it was."""

import json

import numpy as np
import pytest
from skorch.callbacks import Callback

from skmoby.cli import main
from skmoby.experiment import (
    ExperimentConfig,
    RunFolderError,
    choose_initial_labels,
    make_estimator,
    run_experiment,
)
from skmoby.experiment.config import initial_labels
from skmoby.experiment.store import config_hash
from tests.experiment.conftest import VALUES, tiny, tiny_run_args


def chosen(strategy="typiclust", **kw):
    return tiny(methods=["random", "coreset"], initial_strategy=strategy, pool_subset=300, **kw)


@pytest.fixture(scope="module")
def chosen_run(tmp_path_factory, digits_ds):
    out = tmp_path_factory.mktemp("chosen")
    cfg = chosen(trials=2)
    return cfg, out, run_experiment(cfg, out, dataset=digits_ds, progress=False)


def test_bad_initial_strategy_is_refused():
    with pytest.raises(ValueError, match=r"initial_strategy must be one of \['random'"):
        tiny(initial_strategy="kmeans").validate()


def test_folders_from_before_the_setting_keep_their_hash():
    d = tiny().to_dict()
    old = {k: v for k, v in d.items() if k != "initial_strategy"}
    assert config_hash(d) == config_hash(old)
    assert config_hash(chosen().to_dict()) != config_hash(chosen("random").to_dict())


def test_every_method_of_a_trial_starts_from_its_stored_chosen_set(chosen_run, digits_ds):
    cfg, out, results = chosen_run
    stored = json.loads((out / "initial.json").read_text())["trials"]
    assert sorted(stored) == ["0", "1"]
    sel = json.loads((out / "selections.json").read_text())["cycles"]
    for trial in (0, 1):
        first = np.asarray(stored[str(trial)])
        assert len(np.unique(first)) == cfg.initial
        np.testing.assert_array_equal(first, choose_initial_labels(cfg, digits_ds, trial))
        for method in cfg.methods:
            picked = sel[f"{method}/{trial}/0"]["selected"]
            assert len(picked) == cfg.budget and not np.isin(picked, first).any()
    assert (results[results.cycle == 0].n_labelled == cfg.initial).all()
    # not the seeded random draw of the paper's protocol
    drawn = initial_labels(chosen("random"), len(digits_ds.X_train), 0)
    assert not np.array_equal(drawn, np.asarray(stored["0"]))


def test_resume_after_a_kill_between_two_trials_choices(chosen_run, tmp_path, digits_ds):
    cfg, out, results = chosen_run
    # as a kill -9 during trial 1's choice leaves the folder: trial 0's set stored only
    folder = tmp_path / "killed"
    folder.mkdir()
    (folder / "config.json").write_text((out / "config.json").read_text())
    d = json.loads((out / "initial.json").read_text())
    del d["trials"]["1"]
    (folder / "initial.json").write_text(json.dumps(d))
    again = run_experiment(cfg, folder, dataset=digits_ds, progress=False)
    assert again[VALUES].equals(results[VALUES])
    assert (folder / "initial.json").read_text() == (out / "initial.json").read_text()


def test_resume_replays_the_stored_set_without_choosing_again(chosen_run, tmp_path, digits_ds):
    cfg, out, results = chosen_run
    folder = tmp_path / "resumed"
    folder.mkdir()
    for name in ("config.json", "initial.json", "selections.json", "results.csv"):
        (folder / name).write_bytes((out / name).read_bytes())
    lines = (folder / "results.csv").read_text().splitlines(keepends=True)
    (folder / "results.csv").write_text("".join(lines[:-1]))  # the last cycle lost

    def no_choice(config, method, dataset, random_state, *, device=None):
        assert method != "mobyv2al", "the stored first labels were chosen again"
        return make_estimator(config, method, dataset, random_state, device=device)

    again = run_experiment(cfg, folder, dataset=digits_ds, progress=False, make_estimator=no_choice)
    assert again[VALUES].equals(results[VALUES])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["trials"]["0"].pop(), "does not hold 20 distinct images"),
        (lambda d: d["trials"]["0"].__setitem__(0, 10**6), "does not hold 20 distinct"),
        (lambda d: d["trials"].pop("0"), "lacks the first labelled set of trial 0"),
        (lambda d: d["config"].__setitem__("initial", 30), "written by a run of other"),
    ],
)
def test_an_edited_initial_json_is_refused_naming_it(chosen_run, tmp_path, digits_ds, edit, match):
    cfg, out, _ = chosen_run
    folder = tmp_path / "edited"
    folder.mkdir()
    for name in ("config.json", "initial.json", "selections.json", "results.csv"):
        (folder / name).write_bytes((out / name).read_bytes())
    d = json.loads((folder / "initial.json").read_text())
    edit(d)
    (folder / "initial.json").write_text(json.dumps(d))
    with pytest.raises(RunFolderError, match=rf"initial\.json.*{match}|{match}"):
        run_experiment(cfg, folder, dataset=digits_ds, progress=False)


class Interrupt(Callback):
    def on_epoch_begin(self, net, **kwargs):
        raise KeyboardInterrupt


def test_ctrl_c_while_choosing_stores_nothing(tmp_path, digits_ds):
    def interrupted(config, method, dataset, random_state, *, device=None):
        est = make_estimator(config, method, dataset, random_state, device=device)
        return est.set_params(callbacks=[("stop", Interrupt())])

    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            chosen(),
            tmp_path / "run",
            dataset=digits_ds,
            progress=False,
            make_estimator=interrupted,
        )
    assert not (tmp_path / "run" / "initial.json").exists()


def test_command_line_flag(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = tiny_run_args(out, initial_strategy="probcover", pool_subset=300)
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["initial_strategy"] == "probcover"
    assert len(json.loads((out / "initial.json").read_text())["trials"]["0"]) == 20


def test_config_round_trip():
    cfg = ExperimentConfig(initial_strategy="probcover")
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


def test_a_pool_subset_smaller_than_initial_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match=r"pool_subset must be at least initial \(20\)"):
        tiny(initial_strategy="typiclust", pool_subset=10).validate()


def test_a_failed_choice_leaves_a_new_folder_free(tmp_path, digits_ds):
    def marks_nothing(config, method, dataset, random_state, *, device=None):
        est = make_estimator(config, method, dataset, random_state, device=device)
        return est.set_params(unlabeled_label=None)

    out = tmp_path / "run"
    with pytest.raises(ValueError, match="unlabeled_label=None"):
        run_experiment(
            chosen(), out, dataset=digits_ds, progress=False, make_estimator=marks_nothing
        )
    assert not (out / "config.json").exists() and not (out / "initial.json").exists()
    # the folder takes the corrected run, even with other settings
    table = run_experiment(chosen(initial=30), out, dataset=digits_ds, progress=False)
    assert (table[table.cycle == 0].n_labelled == 30).all()


def test_the_learners_own_unlabelled_mark_is_used(tmp_path, digits_ds):
    def nan_marks(config, method, dataset, random_state, *, device=None):
        est = make_estimator(config, method, dataset, random_state, device=device)
        return est.set_params(unlabeled_label=np.nan)

    cfg = chosen()
    first = choose_initial_labels(cfg, digits_ds, 0, make_estimator=nan_marks)
    assert len(np.unique(first)) == cfg.initial


def test_a_default_config_json_stays_readable_by_earlier_releases(tmp_path, digits_ds):
    run_experiment(tiny(), tmp_path / "run", dataset=digits_ds, progress=False)
    assert "initial_strategy" not in json.loads((tmp_path / "run" / "config.json").read_text())
