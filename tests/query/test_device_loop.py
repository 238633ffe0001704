"""The greedy loop that runs on the device without host synchronisation.

Its torch step runs on the CPU as well, and its Triton kernels run on the CPU under
Triton's interpreter, so both are checked against the NumPy float64 reference here; the
CUDA-only parts (CUDA graphs, the sync-free check) are marked ``gpu``.
"""

import importlib.util
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from skmoby import k_center_greedy
from skmoby.query import _device_loop, kcenter
from tests.query.test_kcenter import clustered, reference

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def start(F, init, device="cpu"):
    """min_d as k_center_greedy hands it to the loop: exact, -1 for centres."""
    x = torch.from_numpy(F).to(device)
    min_d = torch.full((len(F),), float("inf"), dtype=x.dtype, device=device)
    if len(init):
        c = torch.as_tensor(np.asarray(init), device=device)
        diff = x[:, None, :] - x[c][None, :, :]
        min_d = torch.linalg.vector_norm(diff, dim=2).min(dim=1).values
        min_d[c] = -1.0
    return x, min_d


def data(kind, n=300, d=7, seed=0):
    rng = np.random.RandomState(seed)
    if kind == "ties":
        F = rng.randint(-2, 3, size=(n, d)).astype(np.float64)
    else:
        F = clustered(rng, n, d)
    F[10] = F[20]
    return F, rng.choice(n, 30, replace=False)


_INTERPRETED = """
import os, sys, warnings
os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported, or it has no effect
warnings.simplefilter("error", RuntimeWarning)  # a fallback to the torch step fails
import numpy as np, torch
from skmoby.query import _device_loop
d = sys.argv[1]
args = dict(np.load(os.path.join(d, "args.npz")))
for name in ("_BLOCK_N", "_BLOCK_P"):
    if int(args[name]):
        setattr(_device_loop, name, int(args[name]))
x, min_d = torch.from_numpy(args["x"]), torch.from_numpy(args["min_d"])
picks, dists = _device_loop.greedy(x, min_d, int(args["n"]), impl="triton", graph_steps=0)
np.savez(os.path.join(d, "out.npz"), picks=picks.numpy(), dists=dists.numpy())
"""


def triton_interpreted(tmp_path, x, min_d, n, block_n=0, block_p=0):
    """Picks and distances of the Triton step under Triton's CPU interpreter.

    Run in a fresh process: the interpreter works only when ``TRITON_INTERPRET=1`` is set
    before triton is first imported, and in a test session something has usually
    imported it already (torchvision's datasets do), after which the step falls back to
    torch and such a test could not fail.
    """
    np.savez(
        tmp_path / "args.npz",
        x=x.numpy(),
        min_d=min_d.numpy(),
        n=n,
        _BLOCK_N=block_n,
        _BLOCK_P=block_p,
    )
    out = subprocess.run(
        [sys.executable, "-c", _INTERPRETED, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = np.load(tmp_path / "out.npz")
    return res["picks"], res["dists"]


@pytest.mark.parametrize("kind", ["clustered", "ties"])
def test_torch_step_equals_reference(kind):
    F, init = data(kind)
    want = reference(F, 80, init)
    x, min_d = start(F, init)
    picks, dists = _device_loop.greedy(x, min_d, 80, impl="torch", graph_steps=0)
    np.testing.assert_array_equal(picks.numpy(), want[0])
    np.testing.assert_allclose(dists.numpy(), want[1], rtol=1e-12)


def test_torch_step_first_pick_without_centers():
    F, _ = data("clustered")
    want = reference(F, 10, (), random_state=3)
    x, min_d = start(F, [])
    first = int(np.random.RandomState(3).randint(len(F)))
    picks, dists = _device_loop.greedy(x, min_d, 10, impl="torch", graph_steps=0, first=first)
    np.testing.assert_array_equal(picks.numpy(), want[0])
    assert dists[0] == float("inf")


@needs_triton
@pytest.mark.parametrize(("kind", "dtype"), [("ties", np.float64), ("clustered", np.float32)])
def test_triton_kernels_equal_reference(tmp_path, kind, dtype):
    # 150 rows, 70 columns: three row blocks and two column blocks, each of the last
    # partly outside the matrix
    F, init = data(kind, n=150, d=70)
    F = F.astype(dtype)
    want = reference(F, 20, init)
    x, min_d = start(F, init)
    picks, dists = triton_interpreted(tmp_path, x, min_d, 20)
    np.testing.assert_array_equal(picks, want[0])
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(dists, want[1], rtol=rtol)


@needs_triton
def test_triton_select_scans_several_chunks_of_block_maxima(tmp_path):
    rng = np.random.RandomState(1)
    F = rng.randint(-2, 3, size=(42, 3)).astype(np.float64)
    init = [0, 7, 30]
    want = reference(F, 12, init)
    x, min_d = start(F, init)
    picks, _ = triton_interpreted(tmp_path, x, min_d, 12, block_n=4, block_p=4)  # 3 chunks
    np.testing.assert_array_equal(picks, want[0])


def test_failing_step_falls_back_with_one_warning(monkeypatch):
    def broken(st, update):
        st.count.add_(1)  # leave a mess: the fallback must start again from scratch
        raise RuntimeError("no compiler for this GPU")

    monkeypatch.setattr(_device_loop, "_triton_step", broken)
    F, init = data("clustered")
    want = reference(F, 25, init)
    x, min_d = start(F, init)
    with pytest.warns(RuntimeWarning, match="triton step failed.*no compiler") as rec:
        picks, _ = _device_loop.greedy(x, min_d, 25, impl="triton", graph_steps=0)
    assert len(rec) == 1
    np.testing.assert_array_equal(picks.numpy(), want[0])


def test_graph_steps_are_ignored_off_cuda():
    F, init = data("clustered")
    x, min_d = start(F, init)
    st = _device_loop.run(x, min_d, 30, impl="torch", graph_steps=8)
    assert int(st.count) == 30
    np.testing.assert_array_equal(st.picks.numpy(), reference(F, 30, init)[0])


# -- on a GPU -------------------------------------------------------------------------

STEPS = ["torch", pytest.param("triton", marks=needs_triton)]


@pytest.mark.parametrize("graph_steps", [0, 16])
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.gpu
@needs_cuda
def test_cuda_loop_equals_reference(step, graph_steps, dtype):
    rng = np.random.RandomState(6)
    F = clustered(rng, 3000, 48).astype(dtype)
    want = reference(F, 200, range(100))
    got = kcenter._k_center_greedy(
        torch.from_numpy(F).cuda(),
        200,
        initial_centers=np.arange(100),
        backend="auto",
        prune="auto",
        random_state=None,
        n_threads=None,
        device_step=step,
        graph_steps=graph_steps,
    )
    if dtype == np.float64:
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    else:
        # float32 rounding can reorder near-ties; the first 20 picks of this data lead
        # the runner-up by at least 8e-5 (relative), far above float32 rounding
        np.testing.assert_array_equal(got[0][:20], want[0][:20])
        np.testing.assert_allclose(got[1][:20], want[1][:20], rtol=1e-5)
    cpu = k_center_greedy(F, 200, initial_centers=np.arange(100))
    if dtype == np.float64:
        np.testing.assert_array_equal(got[0], cpu[0])


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.gpu
@needs_cuda
def test_cuda_loop_never_syncs_with_the_host(step):
    rng = np.random.RandomState(7)
    F = clustered(rng, 5000, 64).astype(np.float32)
    x, min_d = start(F, range(200), device="cuda")
    _device_loop.run(x, min_d.clone(), 50, impl=step)  # compile, warm up the allocator
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        st = _device_loop.run(x, min_d, 300, impl=step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    want = _device_loop.greedy(
        x, start(F, range(200), device="cuda")[1], 300, impl="torch", graph_steps=0
    )[0]
    np.testing.assert_array_equal(st.picks.cpu().numpy(), want.numpy())


@pytest.mark.gpu
@needs_cuda
def test_k_center_greedy_syncs_a_few_times_not_once_per_pick():
    rng = np.random.RandomState(8)
    X = torch.from_numpy(clustered(rng, 5000, 64).astype(np.float32)).cuda()
    k_center_greedy(X, 300, initial_centers=np.arange(200))  # compile, warm up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            k_center_greedy(X, 300, initial_centers=np.arange(200))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) < 30  # setup and the final copy, not 300 picks


@pytest.mark.gpu
@needs_cuda
def test_cuda_first_pick_without_centers():
    F, _ = data("clustered")
    want = reference(F, 12, (), random_state=5)
    got = k_center_greedy(torch.from_numpy(F).cuda(), 12, random_state=5)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1][0] == np.inf


@pytest.mark.gpu
@needs_cuda
def test_cuda_keops_works_or_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(kcenter, "_KEOPS_STATE", {})
    rng = np.random.RandomState(9)
    F = clustered(rng, 2000, 32)
    X = torch.from_numpy(F).cuda()
    if kcenter.keops_available("cuda"):
        got = k_center_greedy(X, 50, initial_centers=np.arange(100), backend="keops")
        np.testing.assert_array_equal(got[0], reference(F, 50, range(100))[0])
    else:
        with pytest.raises(RuntimeError, match="KeOps"):
            k_center_greedy(X, 50, initial_centers=np.arange(100), backend="keops")


@pytest.mark.parametrize("n_init", [0, 40])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_device_route_of_k_center_greedy_on_the_cpu(monkeypatch, n_init, dtype):
    """What k_center_greedy does on a GPU (pool copy, index mapping, scaling), on the CPU."""
    monkeypatch.setattr(kcenter, "_PRUNED_DEVICES", ())
    rng = np.random.RandomState(10)
    F = (clustered(rng, 400, 9) * 1e30).astype(dtype)  # scaled by 2**-e on the way
    init = rng.choice(400, n_init, replace=False)
    want = reference(F.astype(np.float64), 30, init, random_state=4)
    got = k_center_greedy(F, 30, initial_centers=init, random_state=4)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12 if dtype == np.float64 else 1e-5)
    assert got[1].dtype == dtype


GRAPH_THEN_TRITON_FAILED = ["triton step in a CUDA graph failed", "triton step failed"]


@pytest.mark.parametrize(
    ("pinned", "failed"),
    [
        ({}, GRAPH_THEN_TRITON_FAILED),  # the defaults
        ({"device_step": "triton", "graph_steps": 16}, GRAPH_THEN_TRITON_FAILED),
        ({"device_step": "triton", "graph_steps": 0}, ["triton step failed"]),
        ({"device_step": "torch", "graph_steps": 16}, ["torch step in a CUDA graph"]),
        ({"device_step": "torch", "graph_steps": 0}, []),
    ],
)
@needs_triton
def test_device_step_and_graph_steps_reach_the_device_loop(monkeypatch, pinned, failed):
    """The fallback warnings name the step and graph that were asked for and failed."""

    def broken_triton(st, update):
        raise RuntimeError("no compiler")

    def broken_graph(x, min_d, n, *, impl, graph_steps, first=None):
        if graph_steps:
            raise RuntimeError("no graphs")
        return run(x, min_d, n, impl=impl, graph_steps=0, first=first)

    run = _device_loop.run
    monkeypatch.setattr(kcenter, "_PRUNED_DEVICES", ())
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the Triton step counts as usable here
    monkeypatch.setattr(_device_loop, "_triton_step", broken_triton)
    monkeypatch.setattr(_device_loop, "run", broken_graph)
    F, init = data("clustered")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        got = kcenter._k_center_greedy(
            F,
            25,
            initial_centers=init,
            backend="torch",
            prune="auto",
            random_state=None,
            n_threads=None,
            **pinned,
        )
    msgs = [str(w.message) for w in rec if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == len(failed), msgs
    for msg, what in zip(msgs, failed, strict=True):
        assert what in msg
    np.testing.assert_array_equal(got[0], reference(F, 25, init)[0])
