"""KeOps is probed in a child process: a crashing, hanging or wrong KeOps never hurts.

Stand-in ``pykeops`` packages, put first on ``sys.path``, play a KeOps whose reductions
kill their own process with SIGSEGV (what pykeops 2.3 does on CUDA 13), never return, or
return a wrong answer. Each records the id of every process that imports it, so the tests
can check that the caller never did.
"""

import json
import os
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from skmoby import k_center_greedy
from skmoby.query import _keops_probe, kcenter, keops_available

REDUCTIONS = {
    "crash": "os.kill(os.getpid(), signal.SIGSEGV)",
    "hang": "time.sleep(3600)",
    "wrong": "return torch.zeros(self.n, 1, dtype=torch.long)",
}


def make_fake_pykeops(root, mode):
    pkg = root / mode / "pykeops"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        textwrap.dedent("""
        import os
        with open(os.environ["FAKE_KEOPS_LOG"], "a") as f:
            f.write(f"{os.getpid()}\\n")

        def set_verbose(flag):
            pass
    """)
    )
    (pkg / "torch.py").write_text(
        textwrap.dedent(f"""
        import os, signal, time
        import torch

        class LazyTensor:
            def __init__(self, t):
                self.n = t.shape[0]
            def __sub__(self, other):
                return self
            def __pow__(self, k):
                return self
            def sum(self, dim):
                return self
            def argmin(self, dim):
                {REDUCTIONS[mode]}
    """)
    )
    return root / mode


@pytest.fixture
def fake_keops(tmp_path, monkeypatch):
    """Install a stand-in pykeops of the given mode; cache and log under tmp_path."""
    log = tmp_path / "imports.log"
    log.write_text("")
    monkeypatch.setenv("FAKE_KEOPS_LOG", str(log))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(kcenter, "_KEOPS_STATE", {})

    def install(mode):
        monkeypatch.syspath_prepend(str(make_fake_pykeops(tmp_path / "fake", mode)))
        return log

    return install


def importers(log):
    return [int(v) for v in log.read_text().split()]


def test_crashing_keops_is_reported_not_fatal(fake_keops, tmp_path):
    log = fake_keops("crash")
    ok, reason = _keops_probe.probe("cpu")
    assert not ok
    assert "SIGSEGV" in reason
    pids = importers(log)
    assert len(pids) == 1 and os.getpid() not in pids  # only the child imported it
    fake = str(tmp_path / "fake")
    assert not getattr(sys.modules.get("pykeops"), "__file__", "").startswith(fake)
    stored = list((tmp_path / "cache" / "skmoby").glob("keops-probe-*.json"))
    assert len(stored) == 1
    data = json.loads(stored[0].read_text())
    assert data["ok"] is False and "SIGSEGV" in data["reason"]
    assert data["key"]["torch"] == torch.__version__ and data["key"]["device"] == "cpu"
    # once per environment: a new process (empty memo) reads the verdict from disk
    assert not keops_available("cpu")
    assert len(importers(log)) == 1
    assert not keops_available("cpu", refresh=True)
    assert len(importers(log)) == 2


def test_auto_falls_back_with_one_warning_and_keops_raises(fake_keops):
    """The issue's case: 20,000 x 4 features, 1,000 centres, SIGSEGV in KeOps."""
    fake_keops("crash")
    rng = np.random.RandomState(0)
    X = rng.randn(20_000, 4).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = k_center_greedy(X, 50, initial_centers=range(1000), backend="auto")
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1
    assert "KeOps" in msgs[0] and "SIGSEGV" in msgs[0] and "torch" in msgs[0]
    want = k_center_greedy(X, 50, initial_centers=range(1000), backend="torch")
    np.testing.assert_array_equal(got[0], want[0])
    with pytest.raises(RuntimeError, match=r"KeOps.*SIGSEGV"):
        k_center_greedy(X, 50, initial_centers=range(1000), backend="keops")


def test_hanging_keops_times_out(fake_keops, monkeypatch):
    fake_keops("hang")
    monkeypatch.setenv("SKMOBY_KEOPS_PROBE_TIMEOUT", "8")
    ok, reason = _keops_probe.probe("cpu")
    assert not ok and "did not finish within 8 s" in reason


def test_wrong_keops_answer_is_refused(fake_keops):
    fake_keops("wrong")
    assert not keops_available("cpu")
    with pytest.raises(RuntimeError, match=r"KeOps.*wrong answer"):
        k_center_greedy(
            np.random.RandomState(1).randn(30, 2), 3, initial_centers=[0], backend="keops"
        )


def test_missing_pykeops_needs_no_child(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_keops_probe.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(_keops_probe, "_run_child", lambda *a: pytest.fail("ran a child"))
    assert _keops_probe.probe("cpu") == (False, "pykeops is not installed")


def test_cuda_without_gpu_needs_no_child(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(_keops_probe, "_run_child", lambda *a: pytest.fail("ran a child"))
    ok, reason = _keops_probe.probe("cuda")
    assert not ok and "no CUDA" in reason


def test_cache_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert _keops_probe.cache_dir() == tmp_path / "x" / "skmoby"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _keops_probe.cache_dir() == tmp_path / "home" / ".cache" / "skmoby"


@pytest.mark.keops
def test_real_keops_passes_the_probe(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(kcenter, "_KEOPS_STATE", {})
    assert _keops_probe.probe("cpu") == (True, "")
