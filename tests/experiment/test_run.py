import json
import pickle

import numpy as np
import pandas as pd
import pytest
from skorch.callbacks import Callback

from skmoby.experiment import (
    ExperimentConfig,
    make_estimator,
    plot_learning_curves,
    resume_experiment,
    run_experiment,
    summarize,
)
from skmoby.experiment.protocol import JobProtocol


def tiny(**kw):
    base = dict(
        dataset="digits",
        methods=["mobyv2al", "random"],
        backbone="cnn",
        initial=20,
        budget=10,
        cycles=3,
        trials=2,
        epochs=1,
        batch_size=32,
        lr=0.05,
        device="cpu",
    )
    base.update(kw)
    return ExperimentConfig(**base)


def _labeled_sets(out, cfg, n_pool):
    sel = json.loads((out / "selections.json").read_text())["cycles"]
    sets = {}
    for trial in range(cfg.trials):
        init = np.sort(
            np.random.RandomState(cfg.seed + trial).choice(n_pool, cfg.initial, replace=False)
        )
        for method in cfg.methods:
            labeled = list(init)
            for cycle in range(cfg.cycles):
                entry = sel[f"{method}/{trial}/{cycle}"]
                sets[(method, trial, cycle)] = (list(labeled), entry)
                labeled += entry["selected"]
    return sets


def test_protocol_bookkeeping(tmp_path, digits_ds):
    cfg = tiny(methods=["mobyv2al", "coreset", "random", "entropy"])
    res = run_experiment(cfg, tmp_path, dataset=digits_ds, progress=False)
    assert len(res) == cfg.trials * 4 * cfg.cycles
    assert list(res.columns) == [
        "method",
        "trial",
        "cycle",
        "n_labelled",
        "accuracy",
        "fit_seconds",
        "query_seconds",
    ]
    for _, g in res.groupby(["method", "trial"]):
        assert g.sort_values("cycle")["n_labelled"].tolist() == [20, 30, 40]
    sets = _labeled_sets(tmp_path, cfg, len(digits_ds.X_train))
    for (method, _trial, cycle), (labeled, entry) in sets.items():
        sel = entry["selected"]
        assert len(set(labeled)) == len(labeled)  # no index labelled twice
        if cycle < cfg.cycles - 1:
            assert len(sel) == cfg.budget and not set(sel) & set(labeled)
        else:
            assert sel == []
        unl = entry["next_unlabeled"]
        if method == "mobyv2al" and unl is not None:
            # As many unlabelled as labelled next cycle, disjoint from labelled ones.
            assert len(unl) == len(labeled) + len(sel)
            assert not set(unl) & (set(labeled) | set(sel))
        elif method != "mobyv2al":
            assert unl is None
    # The methods of a trial share the initial labelled set.
    inits = {m: tuple(sets[(m, 0, 0)][0]) for m in cfg.methods}
    assert len(set(inits.values())) == 1
    assert (tmp_path / "config.json").exists()


def test_seeds_reproduce(tmp_path, digits_ds):
    cfg = tiny(trials=1)
    a = run_experiment(cfg, tmp_path / "a", dataset=digits_ds, progress=False)
    b = run_experiment(cfg, tmp_path / "b", dataset=digits_ds, progress=False)
    pd.testing.assert_series_equal(a["accuracy"], b["accuracy"])
    assert (tmp_path / "a" / "selections.json").read_text() == (
        tmp_path / "b" / "selections.json"
    ).read_text()


def test_resume_after_crash_loses_and_duplicates_nothing(tmp_path, digits_ds, monkeypatch):
    cfg = tiny(trials=1)
    full = run_experiment(cfg, tmp_path / "ref", dataset=digits_ds, progress=False)
    calls = {"n": 0}
    real = JobProtocol._one_cycle

    def crashing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # mobyv2al cycles 0-2 and random cycle 0 finish, then boom
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(JobProtocol, "_one_cycle", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path / "run", dataset=digits_ds, progress=False)
    partial = pd.read_csv(tmp_path / "run" / "results.csv")
    assert len(partial) == 3
    monkeypatch.setattr(JobProtocol, "_one_cycle", real)
    done = resume_experiment(tmp_path / "run", dataset=digits_ds, progress=False)
    assert len(done) == len(full)
    assert not done.duplicated(["method", "trial", "cycle"]).any()
    pd.testing.assert_frame_equal(
        done[["method", "trial", "cycle", "n_labelled", "accuracy"]],
        full[["method", "trial", "cycle", "n_labelled", "accuracy"]],
    )
    assert (tmp_path / "run" / "selections.json").read_text() == (
        tmp_path / "ref" / "selections.json"
    ).read_text()


def test_other_config_in_same_folder_is_refused(tmp_path, digits_ds):
    run_experiment(tiny(trials=1, cycles=1), tmp_path, dataset=digits_ds, progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        run_experiment(tiny(trials=1, cycles=2), tmp_path, dataset=digits_ds, progress=False)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"methods": ["magic"]}, "methods"),
        ({"methods": []}, "methods"),
        ({"budget": 0}, "budget"),
        ({"unlabeled": "some"}, "unlabeled"),
        ({"pool_subset": 5}, "pool_subset"),
        ({"initial": 2000}, "exceeds the pool"),
    ],
)
def test_bad_config(tmp_path, digits_ds, kw, match):
    with pytest.raises(ValueError, match=match):
        run_experiment(tiny(**kw), tmp_path, dataset=digits_ds, progress=False)


def test_summary_and_plot(tmp_path):
    res = pd.DataFrame(
        {
            "method": ["a", "a", "a", "a", "b", "b", "b", "b"],
            "trial": [0, 0, 1, 1, 0, 0, 1, 1],
            "cycle": [0, 1] * 4,
            "n_labelled": [10, 20] * 4,
            "accuracy": [0.5, 0.6, 0.7, 0.8, 0.1, 0.2, 0.3, 0.4],
            "fit_seconds": 1.0,
            "query_seconds": 0.1,
        }
    )
    table = summarize(res)
    assert table.loc[(1, 20), ("a", "mean")] == pytest.approx(0.7)
    assert table.loc[(0, 10), ("b", "trials")] == 2
    files = plot_learning_curves(res, tmp_path, title="t")
    assert all(f.exists() and f.stat().st_size > 1000 for f in files)
    assert files[1].read_text().lstrip().startswith("<?xml")


def test_progress_bars_over_cycles_and_epochs(tmp_path, digits_ds, capsys):
    cfg = tiny(methods=["random"], trials=1, cycles=2, epochs=2)
    run_experiment(cfg, tmp_path, dataset=digits_ds, progress=True)
    err = capsys.readouterr().err
    assert "cycles" in err and "random epochs" in err and "2/2" in err


@pytest.mark.parametrize(
    "unlabeled, pool_subset",
    [("lowest_loss", None), ("lowest_loss", 40), ("random", None), ("all", None)],
)
def test_training_steps_match_the_fits_of_a_run(
    tmp_path, digits_ds, monkeypatch, unlabeled, pool_subset
):
    # initial=33 with batch 32 leaves a lone last sample, which the loader drops.
    cfg = tiny(
        methods=["mobyv2al", "coreset"],
        initial=33,
        budget=32,
        cycles=3,
        trials=1,
        unlabeled=unlabeled,
        pool_subset=pool_subset,
    )
    made = []

    def recording(*args, **kwargs):
        est = make_estimator(*args, **kwargs)
        made.append(est)
        return est

    run_experiment(cfg, tmp_path, dataset=digits_ds, progress=False, make_estimator=recording)
    actual = [est.steps_per_epoch_ * est.max_epochs for est in made]  # method, then cycle
    expected = cfg.training_steps(len(digits_ds.X_train))
    assert actual == expected["mobyv2al"].tolist() + expected["coreset"].tolist()
    assert expected["n_labelled"].tolist() == [33, 65, 97]
    sel = json.loads((tmp_path / "selections.json").read_text())["cycles"]
    stored = [len(sel[f"mobyv2al/0/{c}"]["next_unlabeled"]) for c in range(cfg.cycles - 1)]
    assert stored == cfg.n_unlabelled(len(digits_ds.X_train))[1:]


@pytest.mark.parametrize("n_pool", [30, -5, 2.5e3, "1000", True])
@pytest.mark.parametrize("method", ["training_steps", "n_unlabelled"])
def test_pool_sizing_rejects_a_bad_pool(method, n_pool):
    with pytest.raises(ValueError, match="n_pool"):
        getattr(tiny(), method)(n_pool=n_pool)


class CountFits(Callback):
    def __init__(self):
        self.fits = 0

    def on_train_begin(self, net, **kwargs):
        self.fits += 1


def test_callbacks_reach_every_estimator(tmp_path, digits_ds):
    counter = CountFits()
    seen = []

    def per_cycle(method, trial, cycle):
        seen.append((method, trial, cycle))
        return [("count_" + method, CountFits())]

    cfg = tiny(trials=1, cycles=2)
    run_experiment(cfg, tmp_path / "a", dataset=digits_ds, progress=False, callbacks=[counter])
    assert counter.fits == 4  # 2 methods x 2 cycles
    run_experiment(cfg, tmp_path / "b", dataset=digits_ds, progress=False, callbacks=per_cycle)
    assert sorted(seen) == [(m, 0, c) for m in ("mobyv2al", "random") for c in (0, 1)]
    with pytest.raises(TypeError, match="callbacks"):
        run_experiment(
            cfg, tmp_path / "c", dataset=digits_ds, progress=False, callbacks=["not a callback"]
        )


def test_models_of_every_cycle_are_saved(tmp_path, digits_ds):
    cfg = tiny(methods=["random"], trials=1, cycles=2)
    res = run_experiment(cfg, tmp_path, dataset=digits_ds, progress=False, save_models=True)
    for cycle, acc in enumerate(res["accuracy"]):
        path = tmp_path / "models" / f"random_trial0_cycle{cycle}.pkl"
        with open(path, "rb") as f:
            model = pickle.load(f)
        assert model.score(digits_ds.X_test, digits_ds.y_test) == pytest.approx(acc)
