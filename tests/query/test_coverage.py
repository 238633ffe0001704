"""TypiClust and ProbCover against plain NumPy references, and their edge cases."""

import numpy as np
import pytest
import torch
from modAL.models import ActiveLearner
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from skmoby import probcover, typiclust
from skmoby.query import coverage, purity_radius, radius_graph


def _dense(F):
    F = np.asarray(F, dtype=np.float64)
    return np.sqrt(((F[:, None, :] - F[None, :, :]) ** 2).sum(-1))


def _ref_graph(F, delta):
    D = _dense(F)
    return [np.flatnonzero(D[i] <= delta) for i in range(len(F))]


def _ref_coverage(F, delta, m, n):
    """Greedy max coverage, written plainly: ties to the lowest index."""
    balls = _ref_graph(F, delta)
    covered = set()
    for i in range(m):
        covered |= set(balls[i].tolist())
    picks = []
    for _ in range(n):
        gains = [
            (-1 if (i < m or i in picks) else len(set(balls[i].tolist()) - covered))
            for i in range(len(F))
        ]
        best = int(np.argmax(gains))
        if gains[best] <= 0:
            break
        picks.append(best)
        covered |= set(balls[best].tolist())
    return picks


def _ref_typiclust(F, labels, m, n, k):
    taken = set(range(m))
    count = {c: int(np.sum(labels[:m] == c)) for c in set(labels.tolist())}
    size = {c: int(np.sum(labels == c)) for c in count}
    picks = []
    for _ in range(n):
        open_ = [c for c in count if any(labels[i] == c and i not in taken for i in range(len(F)))]
        c = min(open_, key=lambda c: (count[c], -size[c], c))
        members = [i for i in range(len(F)) if labels[i] == c]
        D = _dense(F[members])
        kk = min(k, len(members) - 1)
        best, best_t = None, -np.inf
        for a, i in enumerate(members):
            if i in taken:
                continue
            t = (
                0.0
                if kk < 1
                else 1.0 / np.sort(D[a])[1 : kk + 1].mean()
                if np.sort(D[a])[1 : kk + 1].mean() > 0
                else np.inf
            )
            if t > best_t:
                best, best_t = i, t
        picks.append(best)
        taken.add(best)
        count[c] += 1
    return picks


@pytest.fixture
def points():
    rng = np.random.RandomState(0)
    return np.concatenate(
        [rng.normal(0, 0.3, (25, 3)), rng.normal(3, 0.5, (15, 3)), rng.normal(-4, 1.0, (8, 3))]
    )


# ============================================================================ the graph
@pytest.mark.parametrize("delta", [0.0, 0.2, 0.7, 2.5, 1e6])
def test_radius_graph_equals_the_dense_reference(points, delta, monkeypatch):
    monkeypatch.setattr(coverage, "_BLOCK_ENTRIES", 7 * len(points))  # several blocks
    indptr, indices = radius_graph(points, delta)
    got = [indices[indptr[i] : indptr[i + 1]] for i in range(len(points))]
    for a, b in zip(got, _ref_graph(points, delta), strict=True):
        np.testing.assert_array_equal(a, b)


def test_radius_graph_refuses_too_many_edges(points):
    with pytest.raises(ValueError, match="max_edges=100 edges"):
        radius_graph(points, 1e6, max_edges=100)


@pytest.mark.parametrize("delta", [-1.0, float("nan"), "0.5", True])
def test_radius_graph_refuses_a_bad_delta(points, delta):
    with pytest.raises(ValueError, match="delta must be"):
        radius_graph(points, delta)


@pytest.mark.parametrize("purity", [1.0, 0.95, 0.8, 0.5])
def test_purity_radius_is_the_largest_pure_enough_radius(points, purity, monkeypatch):
    monkeypatch.setattr(coverage, "_BLOCK_ENTRIES", 5 * len(points))
    labels = np.repeat([0, 1, 2], [25, 15, 8])
    labels[3] = 1  # an impurity
    delta = purity_radius(points, labels, purity)
    D = _dense(points)

    def pure_fraction(d):
        return np.mean([np.all(labels[D[i] <= d] == labels[i]) for i in range(len(points))])

    assert pure_fraction(delta) >= purity
    r = np.sort([D[i][labels != labels[i]].min() for i in range(len(points))])
    assert pure_fraction(r[r > delta][0]) < purity  # the next radius is not


# ============================================================================ ProbCover
@pytest.mark.parametrize(("delta", "m", "n"), [(0.5, 0, 5), (0.9, 6, 4), (1.5, 10, 3)])
def test_probcover_equals_the_greedy_reference(points, delta, m, n):
    idx, gains = probcover(
        DummyClassifier(),
        points[m:],
        n,
        X_labeled=points[:m] if m else None,
        delta=delta,
        normalize=False,
    )
    want = _ref_coverage(points, delta, m, n)
    assert (idx + m).tolist() == want
    assert np.all(gains > 0)


def test_probcover_with_every_ball_one_point_picks_in_index_order(points):
    idx, gains = probcover(DummyClassifier(), points, 4, delta=0.0, normalize=False)
    assert idx.tolist() == [0, 1, 2, 3] and gains.tolist() == [1, 1, 1, 1]


def test_probcover_with_one_ball_holding_all_then_draws_at_random(points):
    idx, gains = probcover(DummyClassifier(), points, 5, delta=1e6, normalize=False, random_state=0)
    assert gains[0] == len(points) and gains[1:].tolist() == [0] * 4
    assert len(set(idx.tolist())) == 5 and idx.min() >= 0 and idx.max() < len(points)


def test_probcover_duplicates_and_identical_features():
    X = np.zeros((10, 4))
    idx, gains = probcover(DummyClassifier(), X, 3, delta=0.1, normalize=False, random_state=0)
    assert idx[0] == 0 and gains.tolist() == [10, 0, 0] and len(set(idx.tolist())) == 3
    with pytest.raises(ValueError, match="single distinct point: give delta"):
        probcover(DummyClassifier(), X, 3, n_clusters=3)


def test_probcover_chooses_delta_from_the_estimators_classes(points):
    y = np.repeat([0, 1, 2], [25, 15, 8])
    clf = LogisticRegression().fit(points, y)
    idx, gains = probcover(clf, points, 3, normalize=False, random_state=0)
    assert len(set(idx.tolist())) == 3 and gains[0] >= gains[-1] > 0
    with pytest.raises(ValueError, match="n_clusters >= 2"):
        probcover(DummyClassifier(), points, 3)


# ============================================================================ TypiClust
@pytest.mark.parametrize(("m", "n", "k"), [(0, 3, 20), (5, 6, 3), (0, 12, 2)])
def test_typiclust_picks_equal_the_reference(points, m, n, k):
    labels = np.repeat([0, 1, 2], [25, 15, 8])
    got, _ = coverage._typiclust_picks(points, labels, m, n, k)
    assert got.tolist() == _ref_typiclust(points, labels, m, n, k)


def test_typiclust_one_pick_per_cluster_largest_first(points):
    labels = np.repeat([0, 1, 2], [25, 15, 8])
    got, _ = coverage._typiclust_picks(points, labels, 0, 3, 20)
    assert [labels[i] for i in got] == [0, 1, 2]


def test_typiclust_with_more_picks_than_clusters(points):
    idx, _ = typiclust(
        DummyClassifier(), points, 10, max_clusters=3, normalize=False, random_state=0
    )
    assert len(set(idx.tolist())) == 10


def test_typiclust_on_identical_features_and_duplicates():
    X = np.ones((6, 3))
    idx, t = typiclust(DummyClassifier(), X, 3, normalize=False, random_state=0)
    assert idx.tolist() == [0, 1, 2] and np.isinf(t).all()


def test_typiclust_one_cluster_takes_its_most_typical_point():
    X = np.array([[0.0], [1.0], [1.1], [1.2], [5.0]])
    idx, _ = typiclust(DummyClassifier(), X, 1, max_clusters=1, n_neighbors=2, normalize=False)
    assert idx.tolist() == [2]


# ============================================================================ contract
@pytest.mark.parametrize("strategy", [typiclust, probcover])
def test_strategies_refuse_bad_input(points, strategy):
    kw = {"delta": 0.5} if strategy is probcover else {}
    with pytest.raises(ValueError, match=r"n_instances must be in 1\.\.48"):
        strategy(DummyClassifier(), points, 49, **kw)
    bad = points.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        strategy(DummyClassifier(), bad, 2, **kw)
    with pytest.raises(ValueError, match="X_pool is empty"):
        strategy(DummyClassifier(), points[:0], 1, **kw)
    with pytest.raises(TypeError, match="normalize must be a bool"):
        strategy(DummyClassifier(), points, 1, normalize="yes", **kw)


@pytest.mark.parametrize("strategy", [typiclust, probcover])
def test_strategies_in_a_modal_learner_use_its_labels(points, strategy):
    y = np.repeat([0, 1, 2], [25, 15, 8])
    learner = ActiveLearner(
        estimator=LogisticRegression(),
        query_strategy=strategy,
        X_training=points[::4],
        y_training=y[::4],
    )
    idx, _ = learner.query(points, n_instances=4)
    assert len(idx) == 4 and len(set(np.asarray(idx).tolist())) == 4


def test_typiclust_on_the_estimators_contrastive_features(fitted, digits):
    X, _ = digits
    idx, t = typiclust(fitted, X[600:900], 10, X_labeled=X[:300], random_state=0)
    assert len(set(idx.tolist())) == 10 and np.all(t > 0)


@pytest.mark.parametrize(
    "strategy",
    ["coreset", "typiclust", "probcover", "adaptive", "diverse_margin", "high_contrastive_loss"],
)
def test_feature_strategies_on_a_committee_are_refused_clearly(points, strategy):
    # Once: coreset on a Committee picked in raw pixel space with no labelled centres.
    from modAL.models import Committee

    import skmoby

    y = np.repeat([0, 1, 2], [25, 15, 8])
    members = [
        ActiveLearner(estimator=LogisticRegression(), X_training=points[i::3], y_training=y[i::3])
        for i in range(2)
    ]
    committee = Committee(learner_list=members, query_strategy=getattr(skmoby, strategy))
    with pytest.raises(TypeError, match=r"Committee|contrastive_loss"):
        getattr(skmoby, strategy)(committee, points, 2)
    idx, _ = skmoby.coreset(members[0], points, 2)  # one member, as the message says
    assert len(idx) == 2


@pytest.mark.parametrize("strategy", ["max_entropy", "random_sampling"])
def test_committee_wide_strategies_work_on_a_committee(points, strategy):
    from modAL.models import Committee

    import skmoby

    y = np.repeat([0, 1, 2], [25, 15, 8])
    members = [
        ActiveLearner(estimator=LogisticRegression(), X_training=points[i::3], y_training=y[i::3])
        for i in range(2)
    ]
    committee = Committee(learner_list=members, query_strategy=getattr(skmoby, strategy))
    idx, _ = committee.query(points, n_instances=3)
    assert len(set(np.asarray(idx).tolist())) == 3


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 40])
def test_cluster_cap_counts_distinct_rows_only_as_needed(k):
    rng = np.random.RandomState(3)
    cases = [
        rng.randn(30, 4),  # every column distinct
        np.repeat(rng.randn(4, 3), 5, axis=0),  # four distinct rows
        np.tile(rng.randint(0, 2, size=(10, 1)), (1, 6))  # columns equal, few values
        + np.arange(10)[:, None] % 3 * np.eye(1, 6, 5),  # rows told apart by the last
        np.zeros((12, 2)),
        np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 2.0]]),  # -0.0 equals 0.0
    ]
    for F in cases:
        want = min(k, len(np.unique(F, axis=0)))
        assert coverage._at_most_distinct(F, k) == want


@pytest.mark.parametrize("delta", [0.3, 0.8, 1.6])
def test_radius_graph_over_many_blocks_equals_the_dense_reference(delta, monkeypatch):
    # Blocks of a few rows: every row's mirrored, own and upper parts cross block edges.
    monkeypatch.setattr(coverage, "_BLOCK_ENTRIES", 3 * 120)
    F = np.random.RandomState(1).normal(size=(120, 4)).astype(np.float32)
    F = F / np.linalg.norm(F, axis=1, keepdims=True)
    indptr, indices = radius_graph(F, delta)
    assert indptr.dtype == np.int64 and indices.dtype == np.int32
    ref = _ref_graph(F, delta)
    assert indptr[-1] == sum(len(b) for b in ref)
    for i, want in enumerate(ref):
        np.testing.assert_array_equal(indices[indptr[i] : indptr[i + 1]], want)


def _pruned_graph(F, delta):
    """The graph probcover builds: rows sorted along their spread, windows of reach."""
    Fs, order, proj = coverage._along_spread(F, normalize=False)
    indptr, indices = coverage._ball_graph(
        torch.from_numpy(Fs), float(delta), 10**9, torch.from_numpy(proj)
    )
    # back to the input's indices, each row sorted
    back = [np.sort(order[indices[indptr[k] : indptr[k + 1]]]) for k in range(len(F))]
    rows = [None] * len(F)
    for k, i in enumerate(order):
        rows[i] = back[k]
    return rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("delta", [0.0, 0.05, 0.3, 0.8, 2.0])
def test_graph_along_the_spread_equals_the_dense_reference(dtype, delta, monkeypatch):
    # Points on and near a line (a long spread) with exact and near duplicates: pairs just
    # inside and just outside delta, which the windows must not drop. Pairs at delta
    # itself, up to the rounding of the dtype, may go either way (with or without the
    # windows); every other pair must be exactly where the float64 reference puts it.
    monkeypatch.setattr(coverage, "_BLOCK_ENTRIES", 4 * 150)
    rng = np.random.RandomState(3)
    t = rng.uniform(-1, 1, (150, 1))
    F = np.concatenate([t, 0.05 * rng.normal(size=(150, 3))], axis=1)
    F[10:20] = F[0]  # exact duplicates
    F[20:30] = F[1] + 1e-4  # near duplicates
    F = (F / np.linalg.norm(F, axis=1, keepdims=True)).astype(dtype)
    d2 = _dense(F) ** 2
    clear = np.abs(d2 - delta**2) > 64 * np.finfo(dtype).eps
    got = _pruned_graph(F, delta)
    for i in range(len(F)):
        member = np.zeros(len(F), dtype=bool)
        member[got[i]] = True
        np.testing.assert_array_equal(member[clear[i]], (d2[i] <= delta**2)[clear[i]])
        assert member[i]  # every point is in its own ball


def _near_a_line(dtype, n=150, seed=3):
    rng = np.random.RandomState(seed)
    t = rng.uniform(-1, 1, (n, 1))
    F = np.concatenate([t, 0.05 * rng.normal(size=(n, 3))], axis=1)
    F[10:20] = F[0]  # exact duplicates
    F[20:30] = F[1] + 1e-4  # near duplicates
    return (F / np.linalg.norm(F, axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("delta", [0.0, 0.05, 0.3, 2.0])
@pytest.mark.parametrize("share", [0.0, 0.4, 1.0])
def test_graph_of_the_uncovered_holds_every_pair_with_one_of_them(dtype, delta, share, monkeypatch):
    # The uncovered ("active") points first, each part along the spread, as probcover
    # orders them: their balls are whole; every other row lists the active points in
    # its ball and itself, in increasing order.
    monkeypatch.setattr(coverage, "_BLOCK_ENTRIES", 4 * 150)
    F = _near_a_line(dtype)
    active = np.random.RandomState(5).uniform(size=len(F)) < share
    Fs, order, proj = coverage._along_spread(F, normalize=False)
    moved = np.argsort(~active[order], kind="stable")
    Fs, order, proj = Fs[moved], order[moved], proj[moved]
    indptr, indices = coverage._ball_graph(
        torch.from_numpy(Fs), delta, 10**9, torch.from_numpy(proj), n_active=active.sum()
    )
    d2 = _dense(F) ** 2
    clear = np.abs(d2 - delta**2) > 64 * np.finfo(dtype).eps
    for k, i in enumerate(order):
        row = indices[indptr[k] : indptr[k + 1]]
        assert np.all(np.diff(row) > 0) and k in row
        member = np.zeros(len(F), dtype=bool)
        member[order[row]] = True
        want = d2[i] <= delta**2
        if not active[i]:
            want &= active
            want[i] = True
        np.testing.assert_array_equal(member[clear[i]], want[clear[i]])


@pytest.mark.parametrize("kind", ["random", "identity", "one cycle", "swaps", "partition"])
def test_rows_permuted_in_place_equal_a_permuted_copy(kind):
    rng = np.random.RandomState(9)
    F = rng.normal(size=(200, 3)).astype(np.float32)
    perm = {
        "random": rng.permutation(200),
        "identity": np.arange(200),
        "one cycle": np.roll(np.arange(200), 1),
        "swaps": np.arange(200).reshape(-1, 2)[:, ::-1].ravel(),
        # as probcover moves the uncovered points first, each part in its order
        "partition": np.argsort(rng.uniform(size=200) < 0.3, kind="stable"),
    }[kind]
    want = F[perm]
    coverage._permute_rows(F, perm)
    np.testing.assert_array_equal(F, want)
    coverage._permute_rows(F, np.argsort(perm))  # and back
    np.testing.assert_array_equal(F[perm], want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("delta", [0.0, 0.05, 0.3, 2.0])
@pytest.mark.parametrize("n_centres", [0, 1, 40, 150])
def test_points_covered_by_the_centres_equal_the_dense_reference(
    dtype, delta, n_centres, monkeypatch
):
    monkeypatch.setattr(coverage, "_BLOCK_ENTRIES", 3 * 150)
    F = _near_a_line(dtype)
    Fs, _, proj = coverage._along_spread(F, normalize=False)
    centres = np.sort(np.random.RandomState(6).permutation(len(F))[:n_centres])
    d2 = _dense(Fs) ** 2
    clear = np.all(np.abs(d2[centres] - delta**2) > 64 * np.finfo(dtype).eps, axis=0)
    want = np.any(d2[centres] <= delta**2, axis=0)
    for p in (torch.from_numpy(proj), None):  # along the spread, or every column
        got = coverage._covered(torch.from_numpy(Fs), centres, delta, p)
        np.testing.assert_array_equal(got[clear], want[clear])
        assert got[centres].all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("normalize", [True, False])
def test_rows_along_the_spread_are_the_normalized_rows_sorted(dtype, normalize):
    rng = np.random.RandomState(4)
    F = (rng.normal(size=(40, 5)) * [5, 1, 1, 1, 1] * 10).astype(dtype)
    F[7] = 0  # a zero row stays zero
    rows, order, proj = coverage._along_spread(F, normalize)
    assert sorted(order.tolist()) == list(range(40))
    want = coverage._normalized(F) if normalize else F.astype(np.float64)
    np.testing.assert_array_equal(rows, want[order])
    assert rows.dtype == want.dtype and np.all(np.diff(proj) >= 0)
    # the projections are on a unit vector, along the largest spread (the first axis)
    v = np.linalg.lstsq(rows.astype(np.float64), proj.astype(np.float64), rcond=None)[0]
    assert np.isclose(np.linalg.norm(v), 1, atol=1e-3) and abs(v[0]) > 0.9


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float32, np.float64)])
@pytest.mark.parametrize("chunk", [5, 8192])
def test_rows_along_the_spread_from_two_parts_equal_those_of_the_stack(normalize, dtypes, chunk):
    # The labeled set's features and the pool's, never stacked: the rows of their stack
    # (in the wider dtype), normalized exactly as from the stack, a chunk at a time; the
    # direction is summed part by part, so the projections agree up to rounding.
    rng = np.random.RandomState(8)
    lab = (rng.normal(size=(13, 5)) * [5, 1, 1, 1, 1]).astype(dtypes[0])
    pool = (rng.normal(size=(30, 5)) * [5, 1, 1, 1, 1]).astype(dtypes[1])
    pool[4] = 0
    stack = np.concatenate([lab, pool], dtype=np.result_type(lab, pool))
    rows, order, proj = coverage._along_spread([lab, pool], normalize, chunk=chunk)
    want_rows, want_order, want_proj = coverage._along_spread(stack, normalize)
    full = coverage._normalized(stack) if normalize else stack.astype(np.float64)
    np.testing.assert_array_equal(rows, full[order])
    assert rows.dtype == want_rows.dtype and proj.dtype == want_proj.dtype
    np.testing.assert_array_equal(order, want_order)
    np.testing.assert_allclose(proj, want_proj, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(proj) >= 0)


@pytest.mark.parametrize(
    ("shape", "dtype", "want"),
    [
        ((200_000, 128), torch.float32, 6 * 2**20),  # capped
        ((60_000, 128), torch.float32, 2 * 60_000 * 128 * 4 // 25),  # 40 % of the features
        ((40_000, 128), torch.float64, 2 * 40_000 * 128 * 8 // 45),
        ((20_000, 128), torch.float32, 2**20),  # at least the floor
        ((100, 4), torch.float32, 2**20),
    ],
)
def test_a_block_and_its_mask_take_no_more_than_40_percent_of_the_features(shape, dtype, want):
    F = torch.empty(shape, dtype=dtype)
    assert coverage._block_entries(F) == want


@pytest.mark.parametrize("band", ["upper", "rest"])
def test_windows_along_the_spread_skip_the_far_pairs(band):
    # Spread along a line, a small delta: the blocks hold far fewer entries than the
    # upper triangle (or the whole rectangle against the rest), and still cover every
    # row's columns, one block after another.
    proj = np.linspace(0, 10, 1000)
    if band == "upper":
        lo = np.arange(1000)
        hi = np.maximum(np.searchsorted(proj, proj + 0.1, side="right"), lo + 1)
    else:  # against 700 other points along the same line
        rest = np.sort(np.random.RandomState(0).uniform(0, 10, 700))
        lo = np.searchsorted(rest, proj - 0.1, side="left")
        hi = np.searchsorted(rest, proj + 0.1, side="right")
    blocks = list(coverage._band_blocks(lo, hi, 2000))
    entries = sum((b.stop - b.start) * (c1 - c0) for b, c0, c1 in blocks)
    assert entries < 0.1 * 1000 * 1001 / 2
    for b, c0, c1 in blocks:
        assert c0 <= lo[b].min() and c1 >= hi[b].max()
        assert (b.stop - b.start) * (c1 - c0) <= 2000
    assert [b.start for b, _, _ in blocks] == [0] + [b.stop for b, _, _ in blocks[:-1]]
    assert blocks[-1][0].stop == 1000


@pytest.mark.parametrize(("delta", "m", "n"), [(0.9, 6, 4), (1.5, 10, 3), (2.5, 3, 5)])
def test_probcover_in_small_blocks_equals_the_greedy_reference(points, delta, m, n, monkeypatch):
    # Blocks of a few rows for the graph and of a few edges for the first gains.
    monkeypatch.setattr(coverage, "_BLOCK_ENTRIES", 40)
    idx, gains = probcover(
        DummyClassifier(), points[m:], n, X_labeled=points[:m], delta=delta, normalize=False
    )
    want = _ref_coverage(points, delta, m, n)  # stops once every point is covered
    assert (idx[: len(want)] + m).tolist() == want
    assert np.all(gains[: len(want)] > 0) and np.all(gains[len(want) :] == 0)


def test_purity_radius_refuses_labels_of_another_length(points):
    labels = np.repeat([0, 1], [24, 23])  # one short
    with pytest.raises(ValueError, match=r"one label per point: shape \(48,\); got \(47,\)"):
        purity_radius(points, labels)
