import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skmoby import k_center_greedy
from skmoby.query import kcenter, keops_available


def reference(F, n, initial=(), random_state=None):
    """Slow, obviously correct k-center greedy in NumPy float64."""
    F = np.asarray(F, dtype=np.float64)
    N = len(F)
    is_center = np.zeros(N, dtype=bool)
    is_center[list(initial)] = True
    min_d = np.full(N, np.inf)
    for c in np.flatnonzero(is_center):
        min_d = np.minimum(min_d, np.sqrt(((F - F[c]) ** 2).sum(axis=1)))
    picks, dists = [], []
    for _ in range(n):
        if not is_center.any():
            j, dj = int(np.random.RandomState(random_state).randint(N)), np.inf
        else:
            cand = np.where(is_center, -np.inf, min_d)
            j = int(np.argmax(cand))  # first maximum: ties go to the lowest index
            dj = min_d[j]
        picks.append(j)
        dists.append(dj)
        is_center[j] = True
        min_d = np.minimum(min_d, np.sqrt(((F - F[j]) ** 2).sum(axis=1)))
    return np.array(picks), np.array(dists)


def clustered(rng, n, d, k=5, spread=6.0):
    means = rng.randn(k, d) * spread
    return means[rng.randint(k, size=n)] + rng.randn(n, d)


BACKENDS = ["torch", pytest.param("keops", marks=pytest.mark.keops)]
PRUNE = [True, False, "auto"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prune", PRUNE)
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_equals_reference(backend, prune, kind):
    rng = np.random.RandomState(0)
    F = rng.randn(600, 7) if kind == "random" else clustered(rng, 600, 7)
    F[10] = F[20]  # duplicates
    F[30] = F[40]
    init = rng.choice(600, 40, replace=False)
    want = reference(F, 120, init)
    got = k_center_greedy(F, 120, initial_centers=init, backend=backend, prune=prune)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    assert got[1].dtype == np.float64


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_remaining_points_and_duplicates_of_centres(backend):
    rng = np.random.RandomState(1)
    F = np.repeat(rng.randn(10, 3), 3, axis=0)  # every point three times
    init = [0, 1]
    n = len(F) - 2
    want = reference(F, n, init)
    got = k_center_greedy(F, n, initial_centers=init, backend=backend)
    np.testing.assert_array_equal(got[0], want[0])
    assert sorted(got[0].tolist()) == list(range(2, len(F)))
    np.testing.assert_allclose(got[1], want[1])
    assert got[1][-1] == 0.0


def test_no_initial_centres_uses_random_state():
    rng = np.random.RandomState(2)
    F = rng.randn(200, 4)
    a = k_center_greedy(F, 20, random_state=7)
    b = k_center_greedy(F, 20, random_state=7)
    want = reference(F, 20, (), random_state=7)
    np.testing.assert_array_equal(a[0], want[0])
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1][0] == np.inf and np.isfinite(a[1][1:]).all()
    firsts = {int(k_center_greedy(F, 1, random_state=s)[0][0]) for s in range(20)}
    assert len(firsts) > 5


@settings(max_examples=60, deadline=None)
@given(
    n_points=st.integers(2, 40),
    d=st.integers(1, 5),
    n_init=st.integers(0, 10),
    seed=st.integers(0, 10**6),
    dup=st.booleans(),
    prune=st.sampled_from(PRUNE),
    data=st.data(),
)
def test_property_matches_reference(n_points, d, n_init, seed, dup, prune, data):
    rng = np.random.RandomState(seed)
    F = rng.randint(-3, 4, size=(n_points, d)).astype(np.float64)  # many exact ties
    if dup:
        F[: n_points // 2] = F[n_points // 2: 2 * (n_points // 2)]
    n_init = min(n_init, n_points - 1)
    init = rng.choice(n_points, n_init, replace=False)
    n = data.draw(st.integers(1, n_points - n_init))
    want = reference(F, n, init, random_state=seed)
    got = k_center_greedy(F, n, initial_centers=init, backend="torch", prune=prune,
                          random_state=seed)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1])


def test_mask_and_tensor_inputs():
    rng = np.random.RandomState(3)
    F = rng.randn(100, 5)
    mask = np.zeros(100, dtype=bool)
    mask[[3, 50]] = True
    a = k_center_greedy(F, 10, initial_centers=mask)
    b = k_center_greedy(torch.from_numpy(F), 10, initial_centers=torch.tensor([3, 50]))
    np.testing.assert_array_equal(a[0], b[0])
    c = k_center_greedy(F.astype(np.float32), 10, initial_centers=[3, 50])
    assert c[1].dtype == np.float32
    np.testing.assert_array_equal(a[0], c[0])


def test_pruning_skips_work_on_clustered_data(monkeypatch):
    rng = np.random.RandomState(4)
    F = torch.from_numpy(clustered(rng, 3000, 16, k=10, spread=10.0))
    sizes = []
    orig = kcenter._dist_to

    def spy(x, point):
        if x._base is None:  # a point scan; centre distances get a view of the centres
            sizes.append(x.shape[0])
        return orig(x, point)

    monkeypatch.setattr(kcenter, "_dist_to", spy)
    k_center_greedy(F, 50, initial_centers=np.arange(300), prune=True)
    assert len(sizes) == 49 and np.mean(sizes) < 0.3 * 3000
    sizes.clear()
    k_center_greedy(F, 50, initial_centers=np.arange(300), prune=False)
    assert sizes == [3000] * 49


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"n": 0}, ValueError, "n must be in 1..18"),
        ({"n": 19}, ValueError, "n must be in 1..18"),
        ({"n": 2.0}, TypeError, "n must be an int"),
        ({"features": np.full((20, 2), np.nan)}, ValueError, "NaN or infinity"),
        ({"features": np.zeros(20)}, ValueError, "2-D"),
        ({"initial_centers": [0, 25]}, ValueError, "initial_centers must index rows"),
        ({"initial_centers": np.zeros(5, dtype=bool)}, ValueError, "boolean mask"),
        ({"initial_centers": [0.5]}, TypeError, "integer indices"),
        ({"backend": "faiss"}, ValueError, "backend"),
        ({"prune": "sometimes"}, ValueError, "prune"),
        ({"features": np.array([["a", "b"]] * 20)}, TypeError, "numeric"),
    ],
)
def test_bad_input(kwargs, err, match):
    args = {"features": np.random.RandomState(0).randn(20, 2), "n": 3,
            "initial_centers": [0, 1]}
    args.update(kwargs)
    with pytest.raises(err, match=match):
        k_center_greedy(args.pop("features"), args.pop("n"), **args)


def test_keops_failure_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setitem(kcenter._KEOPS_STATE, "cpu", "OSError: no compiler")
    rng = np.random.RandomState(5)
    F = rng.randn(50, 2)
    with pytest.warns(RuntimeWarning, match="falls back to the torch backend"):
        assert kcenter._auto_backend(torch.device("cpu"), 10**6, 10**3, 2) == "torch"
    with pytest.raises(RuntimeError, match="no compiler"):
        k_center_greedy(F, 3, initial_centers=[0], backend="keops")


@pytest.mark.keops
def test_keops_is_available_on_this_machine():
    assert keops_available("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_cuda_matches_reference(backend):
    rng = np.random.RandomState(6)
    F = clustered(rng, 2000, 32)
    want = reference(F, 100, range(100))
    got = k_center_greedy(torch.from_numpy(F).cuda(), 100, initial_centers=np.arange(100),
                          backend=backend)
    np.testing.assert_array_equal(got[0], want[0])
