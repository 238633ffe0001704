"""Fault catalogue of starting a run (:mod:`skmoby.experiment.run`): output paths and
runs refused before anything is written.

Each case once lost a user's files or left a folder that refused the corrected run;
each test sets the situation up and checks the behaviour that replaced it.
"""

import pytest

from skmoby.experiment import run_experiment
from tests.experiment.conftest import tiny


def test_run_experiment_refuses_an_empty_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="out must name a folder"):
        run_experiment(tiny(), "", progress=False)
    assert list(tmp_path.iterdir()) == []


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
        run_experiment(tiny(trials=2, methods=["random"], **settings), out, progress=False)
    assert not out.exists()


def test_an_experiment_config_pickles_under_its_public_module():
    import pickle

    data = pickle.dumps(tiny())
    assert b"skmoby.experiment" in data and b"skmoby.experiment.config" not in data
    assert pickle.loads(data) == tiny()
