import numpy as np
import pytest
import torch

from skmoby import threads
from skmoby.threads import available_cpus, limit_threads


@pytest.fixture
def fake_system(tmp_path, monkeypatch):
    """A process with 8 CPUs in its affinity mask and a cgroup tree under tmp_path."""
    proc = tmp_path / "proc_self_cgroup"
    root = tmp_path / "cgroup"
    root.mkdir()
    monkeypatch.setattr(threads, "_PROC_CGROUP", proc)
    monkeypatch.setattr(threads, "_CGROUP_ROOT", root)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    return proc, root


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_no_cgroup_files_means_the_affinity_mask(fake_system):
    assert available_cpus() == 8


def test_affinity_mask_is_counted(fake_system, monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert available_cpus() == 3


@pytest.mark.parametrize(
    "cpu_max, expected",
    [
        ("max 100000\n", 8),  # no limit
        ("200000 100000\n", 2),
        ("150000 100000\n", 2),  # fractional quotas round up
        ("50000 100000\n", 1),  # never below one
        ("1600000 100000\n", 8),  # a quota above the mask: the mask wins
    ],
)
def test_cgroup_v2_quota_at_the_namespace_root(fake_system, cpu_max, expected):
    proc, root = fake_system
    _write(proc, "0::/\n")
    _write(root / "cpu.max", cpu_max)
    assert available_cpus() == expected


def test_cgroup_v2_quota_of_the_own_group_and_its_parents(fake_system):
    proc, root = fake_system
    _write(proc, "0::/user.slice/job-7\n")
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "user.slice" / "cpu.max", "300000 100000\n")
    _write(root / "user.slice" / "job-7" / "cpu.max", "max 100000\n")
    assert available_cpus() == 3  # the parent's quota applies
    _write(root / "user.slice" / "job-7" / "cpu.max", "100000 50000\n")
    assert available_cpus() == 2  # the tightest one wins
    # a sibling group's quota does not apply
    _write(root / "other.slice" / "cpu.max", "100000 100000\n")
    assert available_cpus() == 2


@pytest.mark.parametrize("mount", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_quota(fake_system, mount):
    proc, root = fake_system
    _write(proc, "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    group = root / mount / "docker" / "abc"
    _write(group / "cpu.cfs_quota_us", "250000\n")
    _write(group / "cpu.cfs_period_us", "100000\n")
    assert available_cpus() == 3
    _write(group / "cpu.cfs_quota_us", "-1\n")  # unlimited
    assert available_cpus() == 8


def test_unreadable_or_malformed_files_are_ignored(fake_system):
    proc, root = fake_system
    _write(proc, "garbage\n0::/\n")
    _write(root / "cpu.max", "nonsense\n")
    _write(root / "cpu" / "cpu.cfs_quota_us", "x\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert available_cpus() == 8


def test_the_real_system_gives_a_positive_count_within_the_machine():
    import os

    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


def test_limit_threads_sets_and_restores():
    before = torch.get_num_threads()
    with limit_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_limit_threads_restores_after_an_exception():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"), limit_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


@pytest.mark.usefixtures("fake_system")
def test_limit_threads_defaults_to_available_cpus(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0})
    before = torch.get_num_threads()
    with limit_threads() as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_limit_threads_keeps_a_lower_count_the_program_chose():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with limit_threads() as n:
            assert n == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.usefixtures("fake_system")
def test_fit_and_k_center_greedy_cap_threads_at_the_cpus_allowed(monkeypatch, digits):
    from skmoby import k_center_greedy
    from tests.conftest import small_clf

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0})
    seen = []
    monkeypatch.setattr(
        torch, "set_num_threads", lambda k, _set=torch.set_num_threads: (seen.append(k), _set(k))
    )
    before = torch.get_num_threads()
    X, y = digits
    clf = small_clf(max_epochs=1).fit(X[:64], y[:64])
    assert seen and seen[0] == 1 and torch.get_num_threads() == before
    seen.clear()
    clf.transform(X[:8])
    k_center_greedy(X[:50].reshape(50, -1), 3, initial_centers=[0])
    assert seen.count(1) == 2 and torch.get_num_threads() == before
    seen.clear()
    small_clf(max_epochs=1, n_threads=3).fit(X[:64], y[:64])
    assert seen[0] == 3 and torch.get_num_threads() == before


@pytest.mark.parametrize("bad, err", [(0, ValueError), (1.5, TypeError)])
def test_estimator_and_k_center_greedy_name_a_bad_n_threads(bad, err, digits):
    from skmoby import k_center_greedy
    from tests.conftest import small_clf

    X, y = digits
    with pytest.raises(err, match="n_threads must be"):
        small_clf(n_threads=bad).fit(X[:64], y[:64])
    with pytest.raises(err, match="n_threads must be"):
        k_center_greedy(X[:50].reshape(50, -1), 3, n_threads=bad)


def test_limit_threads_accepts_numpy_ints_and_nests():
    before = torch.get_num_threads()
    with limit_threads(np.int64(2)) as outer:
        with limit_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == outer == 2
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    "bad, err",
    [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError)],
)
def test_limit_threads_rejects_bad_counts(bad, err):
    before = torch.get_num_threads()
    with pytest.raises(err, match="n must be"), limit_threads(bad):
        pass
    assert torch.get_num_threads() == before


def test_threads_module_does_not_load_torch_itself():
    import subprocess
    import sys

    code = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location("
        f"'t', {threads.__file__!r}); m = importlib.util.module_from_spec(spec); "
        "spec.loader.exec_module(m); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
