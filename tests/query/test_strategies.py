import numpy as np
import pytest
import torch
from modAL.models import ActiveLearner
from sklearn.linear_model import LogisticRegression

from skmoby import (
    coreset,
    diverse_margin,
    high_contrastive_loss,
    k_center_greedy,
    lowest_contrastive_subset,
    max_entropy,
    random_sampling,
)
from skmoby._compat import modal as compat
from skmoby.query import _common, strategies
from tests.conftest import small_clf


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.randn(60, 2) + 4.0, rng.randn(60, 2) - 4.0])
    y = np.repeat([0, 1], 60)
    perm = rng.permutation(120)
    return X[perm], y[perm]


def test_coreset_standalone_equals_k_center_greedy_on_raw_features(blobs):
    X, y = blobs
    clf = LogisticRegression().fit(X[:10], y[:10])
    idx, dist = coreset(clf, X[10:], n_instances=7, X_labeled=X[:10])
    want_idx, want_dist = k_center_greedy(X, 7, initial_centers=np.arange(10))
    np.testing.assert_array_equal(idx, want_idx - 10)
    np.testing.assert_allclose(dist, want_dist)


def test_coreset_uses_transform_features(fitted, digits):
    X, _ = digits
    idx, _ = coreset(fitted, X[600:700], n_instances=5, X_labeled=X[:300])
    F = np.concatenate([fitted.transform(X[:300]), fitted.transform(X[600:700])])
    want, _ = k_center_greedy(F, 5, initial_centers=np.arange(300))
    np.testing.assert_array_equal(idx, want - 300)


def test_coreset_accepts_a_list_pool(fitted, digits):
    """Issue 13.8: a list of images was read as a table ("expecting 1 features")."""
    X, _ = digits
    want = coreset(fitted, X[600:700], n_instances=5, X_labeled=X[:300])
    got = coreset(fitted, list(X[600:700]), n_instances=5, X_labeled=list(X[:300]))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1])
    tensors = [torch.from_numpy(x) for x in X[600:700]]
    np.testing.assert_array_equal(coreset(fitted, tensors, 5, X_labeled=X[:300])[0], want[0])


def test_coreset_keeps_the_wider_dtype(blobs):
    X, y = blobs
    clf = LogisticRegression().fit(X[:10], y[:10])
    lab32, pool64 = X[:10].astype(np.float32), X[10:] * (1 + 1e-12)
    idx, dist = coreset(clf, pool64, 6, X_labeled=lab32)
    F = np.concatenate([lab32.astype(np.float64), pool64])
    want_idx, want_dist = k_center_greedy(F, 6, initial_centers=np.arange(10))
    np.testing.assert_array_equal(idx, want_idx - 10)
    assert dist.dtype == np.float64
    np.testing.assert_array_equal(dist, want_dist)


@pytest.mark.parametrize(
    ("pool", "lab", "match"),
    [
        (np.zeros((0, 2)), None, "X_pool is empty"),
        (np.array([[0.0, np.nan], [1.0, 1.0]]), None, "X_pool contains NaN"),
        (np.ones((3, 2)), np.array([[np.inf, 0.0]]), "X_labeled contains NaN or infinity"),
        (np.ones((3, 2)), np.ones((2, 3)), "X_labeled has 3 features but X_pool has 2"),
    ],
)
def test_coreset_bad_input(blobs, pool, lab, match):
    X, y = blobs
    clf = LogisticRegression().fit(X[:10], y[:10])
    with pytest.raises(ValueError, match=match):
        coreset(clf, pool, 1, X_labeled=lab)


def test_coreset_names_the_estimator_when_its_features_are_not_finite(blobs):
    class Diverged:
        def transform(self, X):
            return np.full((len(X), 4), np.nan)

    with pytest.raises(ValueError, match=r"features of X_pool \(from Diverged.transform\)"):
        coreset(Diverged(), np.ones((5, 2)), 2)


class CountingStrategy:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_modal_query_calls_once_and_returns_k(blobs, k):
    X, y = blobs
    strat = CountingStrategy(coreset)
    learner = ActiveLearner(
        estimator=LogisticRegression(), query_strategy=strat, X_training=X[:10], y_training=y[:10]
    )
    idx, inst = learner.query(X[10:], n_instances=k)
    assert strat.calls == 1
    want, _ = k_center_greedy(X, k, initial_centers=np.arange(10))
    np.testing.assert_array_equal(idx, want - 10)
    np.testing.assert_array_equal(inst, X[10:][idx])


@pytest.mark.parametrize("strategy", [coreset, random_sampling, max_entropy])
def test_all_strategies_work_in_modal(blobs, strategy):
    X, y = blobs
    learner = ActiveLearner(
        estimator=LogisticRegression(),
        query_strategy=strategy,
        X_training=X[:10],
        y_training=y[:10],
    )
    idx, _ = learner.query(X[10:], n_instances=2)
    assert len(set(idx.tolist())) == 2
    learner.teach(X[10:][idx], y[10:][idx])  # needs the force_all_finite fix on sklearn 1.8+
    assert len(learner.X_training) == 12


def test_modal_loop_with_mobyv2_on_digits(digits):
    X, y = digits
    X_pool, y_pool = X[200:800].copy(), y[200:800].copy()
    learner = ActiveLearner(
        estimator=small_clf(max_epochs=1),
        query_strategy=coreset,
        X_training=X[:100],
        y_training=y[:100],
        X_unlabeled=X[100:200],
    )
    picked = []
    for _ in range(3):
        idx, inst = learner.query(X_pool, n_instances=10)
        assert len(idx) == 10 and len(set(idx.tolist())) == 10
        picked.append(inst.copy())
        learner.teach(inst, y_pool[idx], X_unlabeled=X[100:200])
        X_pool, y_pool = np.delete(X_pool, idx, axis=0), np.delete(y_pool, idx)
    assert len(learner.X_training) == 130
    assert learner.estimator.score(X[800:], y[800:]) > 0
    # Queried images were not in the labelled set already.
    first = picked[0].reshape(10, -1)
    labeled = X[:100].reshape(100, -1)
    assert not any((labeled == row).all(axis=1).any() for row in first)


def test_max_entropy_picks_most_uncertain():
    class Proba:
        def predict_proba(self, X):
            return np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [1.0, 0.0]])

    idx, H = max_entropy(Proba(), np.zeros((4, 1)), 3)
    assert idx.tolist() == [0, 2, 1]
    np.testing.assert_allclose(H[0], np.log(2))


def test_random_sampling_is_seeded_and_without_replacement():
    a, _ = random_sampling(None, np.zeros((50, 1)), 20, random_state=1)
    b, _ = random_sampling(None, np.zeros((50, 1)), 20, random_state=1)
    c, _ = random_sampling(None, np.zeros((50, 1)), 20, random_state=2)
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 20 and not np.array_equal(a, c)


def test_contrastive_strategies_with_mobyv2(fitted, digits):
    X, _ = digits
    pool = X[600:660]
    L = fitted.contrastive_loss(pool)
    hi, hi_l = high_contrastive_loss(fitted, pool, 5)
    lo, lo_l = lowest_contrastive_subset(fitted, pool, 5)
    np.testing.assert_array_equal(hi, np.argsort(-L, kind="stable")[:5])
    np.testing.assert_array_equal(lo, np.argsort(L, kind="stable")[:5])
    assert hi_l.min() >= lo_l.max()
    with pytest.raises(TypeError, match="contrastive_loss"):
        high_contrastive_loss(LogisticRegression(), pool.reshape(60, -1), 2)


@pytest.mark.parametrize("n", [0, -1, 61])
@pytest.mark.parametrize("strategy", [coreset, random_sampling, max_entropy, high_contrastive_loss])
def test_bad_n_instances(fitted, digits, strategy, n):
    X, _ = digits
    with pytest.raises(ValueError, match=r"n_instances must be in 1\.\.60"):
        strategy(fitted, X[600:660], n)


def test_old_modal_contract_returns_indices_only(blobs, monkeypatch):
    X, y = blobs
    learner = ActiveLearner(
        estimator=LogisticRegression(), query_strategy=coreset, X_training=X[:10], y_training=y[:10]
    )
    monkeypatch.setattr(_common, "query_returns_metrics", lambda: False)
    out = coreset(learner, X[10:], 2)
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    # Standalone calls keep (indices, scores) whatever modAL is installed.
    assert isinstance(coreset(learner.estimator, X[10:], 2, X_labeled=X[:10]), tuple)


def test_version_gates():
    assert compat.query_returns_metrics((0, 4, 2, 1))
    assert not compat.query_returns_metrics((0, 4, 1))

    def old_check(X, y, force_all_finite=True):
        return X, y

    def new_check(X, y, ensure_all_finite=True):
        return X, y

    assert compat._needs_patch((0, 4, 2, 1), new_check)
    assert not compat._needs_patch((0, 4, 2, 1), old_check)
    assert not compat._needs_patch((0, 5, 0), new_check)
    assert not compat._needs_patch(None, new_check)
    assert compat._parse("0.4.2.1") == (0, 4, 2, 1)


def test_patch_is_applied_and_idempotent():
    import importlib
    import inspect

    from sklearn.utils import check_X_y

    needed = "force_all_finite" not in inspect.signature(check_X_y).parameters
    users = [
        m for m in (importlib.import_module(n) for n in compat._MODULES) if hasattr(m, "check_X_y")
    ]
    assert users  # the installed modAL imports check_X_y somewhere we know
    for module in users:
        assert getattr(module.check_X_y, "_skmoby_patched", False) == needed
    assert compat.patch_modal() == needed
    wrapped = [m.check_X_y for m in users]
    assert compat.patch_modal() == needed
    assert [m.check_X_y for m in users] == wrapped


# modAL 0.4.2.x's query calls the strategy in a bare `except:` and calls it again on any
# exception: a Ctrl-C only restarted the selection, and an error was computed twice.


@pytest.fixture
def interrupted_once(monkeypatch):
    """k_center_greedy raising KeyboardInterrupt (a Ctrl-C) on its first call; the list
    of its calls."""
    calls = []
    real = strategies.k_center_greedy

    def patched(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(strategies, "k_center_greedy", patched)
    return calls


def _learner(blobs, estimator=None, strategy=coreset):
    X, y = blobs
    return ActiveLearner(
        estimator=estimator or LogisticRegression(),
        query_strategy=strategy,
        X_training=X[:10],
        y_training=y[:10],
    )


def test_ctrl_c_during_a_modal_query_stops_it(blobs, interrupted_once):
    calls = interrupted_once
    learner = _learner(blobs)
    with pytest.raises(KeyboardInterrupt):
        learner.query(blobs[0][10:], n_instances=3)
    assert len(calls) == 1  # not selected a second time
    # the next query runs as usual, and selects what an uninterrupted one does
    idx, _ = learner.query(blobs[0][10:], n_instances=3)
    want, _ = coreset(learner, blobs[0][10:], n_instances=3)
    np.testing.assert_array_equal(idx, want)


class _CountingTransform(LogisticRegression):
    """Features are the inputs, NaN from the first pool row on (a diverged network)."""

    def transform(self, X):
        self.calls = getattr(self, "calls", 0) + 1
        F = np.array(X, dtype=float)
        F[0] = np.nan
        return F


def test_an_error_in_a_modal_query_is_computed_once(blobs):
    learner = _learner(blobs, _CountingTransform())
    with pytest.raises(ValueError, match="NaN"):
        learner.query(blobs[0][10:], n_instances=3)
    assert learner.estimator.calls == 1


@pytest.mark.parametrize(
    "strategy", [max_entropy, high_contrastive_loss, random_sampling, diverse_margin]
)
def test_every_strategy_raises_once_in_a_modal_query(blobs, strategy):
    class Failing(LogisticRegression):
        calls = 0

        def predict_proba(self, X):
            type(self).calls += 1
            raise KeyboardInterrupt

        contrastive_loss = predict_proba

    learner = _learner(blobs, Failing(), strategy)
    if strategy is random_sampling:  # reads nothing of the estimator: a bad n instead
        checks = []
        real_check = strategies.check_n

        def counted(*args, **kwargs):
            checks.append(1)
            return real_check(*args, **kwargs)

        strategies.check_n = counted
        try:
            with pytest.raises(ValueError, match="n_instances"):
                learner.query(blobs[0][10:], n_instances=10**6)
        finally:
            strategies.check_n = real_check
        assert len(checks) == 1
        return
    with pytest.raises(KeyboardInterrupt):
        learner.query(blobs[0][10:], n_instances=2)
    assert Failing.calls == 1


def test_a_wrapper_that_retries_inside_the_query_runs_again(blobs, interrupted_once):
    # A user's strategy that catches the error and calls coreset again from its own code
    # is not modAL's retry: its second call must run.
    calls = interrupted_once

    def retrying(learner, X_pool, n_instances=1):
        try:
            return coreset(learner, X_pool, n_instances)
        except KeyboardInterrupt:
            return coreset(learner, X_pool, n_instances)

    idx, _ = _learner(blobs, strategy=retrying).query(blobs[0][10:], n_instances=3)
    assert len(calls) == 2 and len(idx) == 3


def test_direct_calls_are_not_guarded(blobs, interrupted_once):
    calls = interrupted_once
    learner = _learner(blobs)
    with pytest.raises(KeyboardInterrupt):
        coreset(learner, blobs[0][10:], n_instances=3)
    idx, _ = coreset(learner, blobs[0][10:], n_instances=3)  # runs again, from here
    assert len(calls) == 2 and len(idx) == 3


def _query(strategy, X_pool, from_another_line=False):
    """A stand-in for a modAL query that does not retry (see ``fake_queries``)."""
    if from_another_line:
        return strategy(None, X_pool)
    return strategy(None, X_pool)


@compat.guard_modal_retry
def _failing(learner, X_pool, n_instances=1):
    raise KeyboardInterrupt


@pytest.fixture
def fake_queries(monkeypatch):
    """Functions named ``query`` count as modAL's (``_query`` above is one)."""
    monkeypatch.setattr(_query, "__code__", _query.__code__.replace(co_name="query"))
    monkeypatch.setattr(compat, "_is_modal_query", lambda code: code.co_name == "query")


def test_an_error_left_pending_never_surfaces_in_a_later_query(fake_queries):
    # A query that does not retry (another modAL release) leaves its error pending; the
    # next query call, from another line, must run its strategy, not raise that error.
    with pytest.raises(KeyboardInterrupt):
        _query(_failing, np.zeros((4, 1)))
    idx, _ = _query(random_sampling, np.zeros((4, 1)), from_another_line=True)
    assert len(idx) == 1


def test_a_pending_error_is_let_go_at_the_next_guarded_call(fake_queries):
    # The pending exception's traceback holds the failed call's frames (the pool, its
    # features): it must not outlive the next guarded call, inside a query or not.
    with pytest.raises(KeyboardInterrupt):
        _query(_failing, np.zeros((4, 1)))
    assert compat._retry.pending is not None
    random_sampling(None, np.zeros((4, 1)))  # a direct call, outside any query
    assert compat._retry.pending is None


def test_no_guard_where_modal_does_not_retry(fake_queries, monkeypatch):
    monkeypatch.setattr(compat, "_modal_retries", lambda: False)  # modAL 0.4.1
    with pytest.raises(KeyboardInterrupt):
        _query(_failing, np.zeros((4, 1)))
    assert compat._retry.pending is None


def test_guard_modal_retry_keeps_the_strategy_and_pickles():
    import pickle

    guarded = compat.guard_modal_retry(random_sampling)
    assert guarded.__wrapped__ is random_sampling
    assert pickle.loads(pickle.dumps(coreset)) is coreset
    np.testing.assert_array_equal(
        guarded(None, np.zeros((5, 1)), 2, random_state=0)[0],
        random_sampling(None, np.zeros((5, 1)), 2, random_state=0)[0],
    )


def test_sparse_pools_are_refused_or_densified_by_transform(blobs):
    sparse = pytest.importorskip("scipy.sparse")
    X, y = blobs
    clf = LogisticRegression().fit(X[:10], y[:10])
    with pytest.raises(TypeError, match="X_pool must be dense"):
        coreset(clf, sparse.csr_matrix(X[10:]), 3, X_labeled=X[:10])

    class SparseFeatures(LogisticRegression):
        def transform(self, Z):
            return sparse.csr_matrix(np.asarray(Z.toarray() if sparse.issparse(Z) else Z))

    est = SparseFeatures().fit(X[:10], y[:10])
    got = coreset(est, sparse.csr_matrix(X[10:]), 3, X_labeled=X[:10])
    np.testing.assert_array_equal(got[0], coreset(clf, X[10:], 3, X_labeled=X[:10])[0])
