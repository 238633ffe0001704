"""Fault catalogue of the runners (:mod:`skmoby.experiment.runners`): failing jobs,
GPUs to share that are not there, Ray missing, unreachable or under ``uv run``.

Each case once gave a silently wrong result or a raw traceback; each test sets the
situation up and checks the behaviour that replaced it.
"""

import os
import sys

import pandas as pd
import pytest
import torch
from skorch.callbacks import Callback

from skmoby import cli
from skmoby.experiment import JobsFailedError, resume_experiment, run_experiment, runners
from tests.experiment.conftest import VALUES, tiny, tiny_run_args


def test_a_failing_job_is_reported_and_the_others_finish(tmp_path, digits_ds, reference):
    class Boom(Callback):
        def on_train_begin(self, net, **kwargs):
            raise RuntimeError("boom in the fit")

    def cbs(method, trial, cycle):
        return [Boom()] if (trial, cycle) == (0, 1) else []

    logged = []
    with pytest.raises(JobsFailedError, match=r"\(random, trial 0\)") as e:
        run_experiment(
            tiny(trials=2),
            tmp_path,
            dataset=digits_ds,
            progress=False,
            callbacks=cbs,
            log=logged.append,
        )
    assert "boom in the fit" in str(e.value) and "Traceback" in str(e.value)
    assert any("FAILED" in line and "boom in the fit" in line for line in logged)
    assert len(e.value.results) == 3  # trial 1 finished, trial 0 stopped after cycle 0
    again = resume_experiment(tmp_path, dataset=digits_ds, progress=False, log=logged.append)
    assert logged[-1].startswith("random    trial 0 cycle 1")  # only the missing cycle
    pd.testing.assert_frame_equal(again[VALUES], reference[1][VALUES])


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
        run_experiment(tiny(trials=2), tmp_path / "x", progress=False, **kw)
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_jobs_per_gpu_without_a_gpu(tmp_path, capsys):
    with pytest.raises(ValueError, match="no CUDA GPU to share"):
        run_experiment(tiny(trials=2), tmp_path / "x", progress=False, jobs_per_gpu=2)
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


def test_ray_backend_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ImportError, match=r"skmoby\[ray\]"):
        run_experiment(tiny(trials=2), tmp_path / "x", progress=False, backend="ray")
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
    code = cli.main(tiny_run_args("r", "--backend", "ray", cycles=1))
    assert code == 0, capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "r" / "results.csv")) == 1  # cycle 0 of trial 0
    assert not ray.is_initialized()  # the cluster the run started is stopped
