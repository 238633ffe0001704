"""The plan the command prints before a run: its steps, a measured time, a CPU warning."""

import pytest

from skmoby import cli
from skmoby.datasets import load_dataset
from skmoby.experiment import PRESETS, ExperimentConfig
from skmoby.experiment.plan import RunPlan, plan_run, steps_left
from tests.experiment.conftest import tiny_run_args

ARGS = tiny_run_args(methods="mobyv2al,random", trials=2)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*ARGS, "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    cfg = ExperimentConfig(
        dataset="digits",
        methods=["mobyv2al", "random"],
        initial=20,
        budget=10,
        cycles=2,
        trials=2,
        epochs=1,
    )
    table = cfg.training_steps(n_pool=len(load_dataset("digits").X_train))
    total = 2 * int(table[["mobyv2al", "random"]].to_numpy().sum())
    assert f"plan: 8 fits, {total:,} training steps" in text
    assert "per step: mobyv2al" in text and "of training in all" in text
    assert not out.exists()


def test_resume_of_a_finished_run_says_there_is_nothing_to_train(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*ARGS, "--methods", "random", "--trials", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["resume", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "nothing left to run" in text and "rewritten from the saved rows" in text


def test_steps_left_leave_out_the_saved_cycles():
    cfg = ExperimentConfig(
        methods=["mobyv2al", "random"],
        initial=100,
        budget=100,
        cycles=3,
        trials=2,
        epochs=2,
        batch_size=64,
    )
    table = cfg.training_steps(n_pool=1000)
    fits, steps = steps_left(cfg, 1000, done={("random", 0, 0), ("random", 0, 1)})
    assert fits == 10
    assert steps["mobyv2al"] == 2 * int(table["mobyv2al"].sum())
    assert steps["random"] == 2 * int(table["random"].sum()) - int(table["random"][:2].sum())


def test_the_plan_measures_each_kind_of_learner_once(monkeypatch):
    from skmoby.experiment import plan as _plan

    calls = []
    monkeypatch.setattr(
        _plan, "seconds_per_step", lambda cfg, ds, m: calls.append(m) or (0.5, "cpu")
    )
    cfg = ExperimentConfig(
        methods=["mobyv2al", "coreset", "random"],
        initial=20,
        budget=10,
        cycles=2,
        trials=1,
        epochs=1,
        device="cpu",
    )
    plan = plan_run(cfg, load_dataset("digits"))
    assert calls == ["mobyv2al", "coreset"]  # the supervised learners share one figure
    assert plan.seconds == pytest.approx(0.5 * plan.total_steps)


@pytest.mark.parametrize(
    ("device", "per_step", "warned"),
    [("cpu", 17.0, True), ("cuda:0", 17.0, False), ("cpu", 0.001, False)],
)
def test_a_gpu_sized_protocol_on_a_cpu_is_named(device, per_step, warned):
    cfg = ExperimentConfig(**PRESETS["fashionmnist"])
    fits, steps = steps_left(cfg, 60000)
    plan = RunPlan(
        fits=fits, steps=steps, seconds_per_step=dict.fromkeys(steps, per_step), device=device
    )
    text = "\n".join(plan.lines())
    assert ("sized for a GPU" in text) == warned
    if warned:
        assert "days" in text and "--preset fashionmnist-cpu" in text
