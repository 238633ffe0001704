"""Diverse margin sampling: candidates, k-means, the pick per cluster, against a plain
NumPy reference; and its refusals."""

import numpy as np
import pytest
import torch
from modAL.models import ActiveLearner
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.utils import check_random_state

from skmoby import diverse_margin


class Fixed:
    """A fitted estimator whose probabilities and features are given: one row per
    pool sample, looked up by the sample's first input column (its index)."""

    def __init__(self, P, F):
        self.P, self.F = np.asarray(P, float), np.asarray(F, float)

    def predict_proba(self, X):
        return self.P[np.asarray(X)[:, 0].astype(int)]

    def transform(self, X):
        return self.F[np.asarray(X)[:, 0].astype(int)]


def _pool(n):
    return np.arange(n, dtype=float)[:, None]


@pytest.fixture
def case():
    rng = np.random.RandomState(0)
    n = 60
    p1 = rng.uniform(0.1, 0.9, n)
    P = np.stack([p1, 1 - p1 - 0.05 * p1, 0.05 * p1], axis=1)
    F = np.concatenate(
        [rng.normal(0, 0.2, (20, 3)), rng.normal(3, 0.2, (20, 3)), rng.normal(-3, 0.2, (20, 3))]
    )
    return Fixed(P, F), _pool(n)


def reference(est, X, n, beta, weighted, seed):
    """The algorithm written out with loops."""
    P = est.predict_proba(X)
    margin = np.array([np.sort(p)[-1] - np.sort(p)[-2] for p in P])
    cand = sorted(range(len(X)), key=lambda i: (margin[i], i))[: beta * n]
    F = est.transform(X[cand])
    F = F / np.linalg.norm(F, axis=1, keepdims=True)
    w = 1 - margin[cand] if weighted else np.ones(len(cand))
    km = KMeans(n, n_init="auto", random_state=check_random_state(seed).randint(2**31 - 1))
    km.fit(F, sample_weight=w)
    picks = []
    for c in range(n):
        members = [j for j in range(len(cand)) if km.labels_[j] == c]
        if members:
            d = [((F[j] - km.cluster_centers_[c]) ** 2).sum() for j in members]
            picks.append(cand[members[int(np.argmin(d))]])
    for j in cand:  # the smallest margins left, if a cluster came out empty
        if len(picks) < n and j not in picks:
            picks.append(j)
    return sorted(picks, key=lambda i: (margin[i], i)), margin


@pytest.mark.parametrize(("n", "beta", "weighted"), [(3, 10, True), (5, 4, False), (6, 2, True)])
def test_picks_equal_the_reference(case, n, beta, weighted):
    est, X = case
    idx, m = diverse_margin(est, X, n, beta=beta, weighted=weighted, random_state=7)
    want, margin = reference(est, X, n, beta, weighted, 7)
    assert idx.tolist() == want
    np.testing.assert_allclose(m, margin[want])


def test_three_separated_groups_give_one_pick_each(case):
    est, X = case
    idx, _ = diverse_margin(est, X, 3, beta=20, random_state=0)
    assert sorted(i // 20 for i in idx) == [0, 1, 2]


def test_beta_one_is_plain_margin_sampling_and_ties_go_to_the_lowest_index(case):
    est, X = case
    est.P[[5, 9, 30]] = [0.4, 0.4, 0.2]  # three ties at margin 0
    idx, m = diverse_margin(est, X, 4, beta=1)
    P = est.P
    margin = np.sort(P, 1)[:, -1] - np.sort(P, 1)[:, -2]
    assert idx.tolist()[:3] == [5, 9, 30]
    assert idx.tolist() == np.argsort(margin, kind="stable")[:4].tolist()
    assert m[0] == 0


def test_weights_pull_the_centre_to_the_uncertain_candidates():
    # one pick from three candidates on a line: the plain mean is the middle one, the
    # uncertainty-weighted mean lies near the most uncertain end
    F = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0], [1.0, 9.0]])
    P = np.array([[0.5, 0.5], [0.9, 0.1], [0.9, 0.1], [1.0, 0.0]])
    est = Fixed(P, F)
    plain, _ = diverse_margin(est, _pool(4), 1, beta=3, weighted=False, normalize=False)
    weighted, _ = diverse_margin(est, _pool(4), 1, beta=3, normalize=False)
    assert plain.tolist() == [1] and weighted.tolist() == [0]


def test_duplicates_and_identical_features_still_give_distinct_picks():
    P = np.tile([0.6, 0.4], (12, 1))
    P[[3, 7]] = [0.5, 0.5]
    est = Fixed(P, np.ones((12, 4)))  # every feature vector the same
    idx, _ = diverse_margin(est, _pool(12), 4, random_state=0)
    assert idx.tolist() == [3, 7, 0, 1]  # one "cluster", then the smallest margins left


def test_a_batch_of_the_whole_pool_and_more_clusters_than_distinct_points(case):
    est, X = case
    idx, _ = diverse_margin(est, X, len(X))
    assert sorted(idx.tolist()) == list(range(len(X)))
    est.F[:30] = est.F[0]  # 31 distinct vectors among 60
    idx, _ = diverse_margin(est, X, 40, beta=2, random_state=0)
    assert len(set(idx.tolist())) == 40


def test_one_class_known_makes_every_sample_equally_certain():
    est = Fixed(np.ones((5, 1)), np.eye(5))
    idx, m = diverse_margin(est, _pool(5), 2, beta=1)
    assert idx.tolist() == [0, 1] and m.tolist() == [1.0, 1.0]


def test_the_same_picks_from_an_array_a_list_and_a_tensor():
    rng = np.random.RandomState(1)
    X = np.concatenate([rng.normal(-2, 1, (40, 2)), rng.normal(2, 1, (40, 2))])
    clf = LogisticRegression().fit(X, np.repeat([0, 1], 40))
    pool = rng.normal(0, 2, (50, 2))
    a, _ = diverse_margin(clf, pool, 5, random_state=3)
    b, _ = diverse_margin(clf, list(pool), 5, random_state=3)
    c, _ = diverse_margin(clf, torch.as_tensor(pool), 5, random_state=3)
    assert a.tolist() == b.tolist() == c.tolist()
    assert len(set(a.tolist())) == 5


def test_a_modal_learner_queries_with_it():
    rng = np.random.RandomState(2)
    X = np.concatenate([rng.normal(-2, 1, (40, 2)), rng.normal(2, 1, (40, 2))])
    y = np.repeat([0, 1], 40)
    learner = ActiveLearner(
        estimator=LogisticRegression(),
        query_strategy=diverse_margin,
        X_training=X[::8],
        y_training=y[::8],
    )
    idx, picked = learner.query(X, n_instances=6)
    assert len(set(np.asarray(idx).tolist())) == 6
    np.testing.assert_array_equal(picked, X[idx])


def test_on_the_estimators_contrastive_features(fitted, digits):
    X, _ = digits
    idx, m = diverse_margin(fitted, X[600:900], 10, random_state=0)
    assert len(set(idx.tolist())) == 10
    assert np.all(np.diff(m) >= 0) and np.all((0 <= m) & (m <= 1))


# ============================================================================ refusals
@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"n_instances": 0}, ValueError, "n_instances"),
        ({"n_instances": 61}, ValueError, "n_instances"),
        ({"n_instances": 2.0}, TypeError, "n_instances"),
        ({"beta": 0}, ValueError, "beta"),
        ({"beta": True}, ValueError, "beta"),
        ({"beta": 2.5}, ValueError, "beta"),
        ({"weighted": 1}, TypeError, "weighted"),
        ({"normalize": "yes"}, TypeError, "normalize"),
    ],
)
def test_bad_arguments_are_refused_by_name(case, kwargs, error, name):
    est, X = case
    with pytest.raises(error, match=name):
        diverse_margin(est, X, **{"n_instances": 2, **kwargs})


def test_an_empty_pool_is_refused(case):
    with pytest.raises(ValueError, match="X_pool is empty"):
        diverse_margin(case[0], np.zeros((0, 1)), 1)


def test_non_finite_features_or_probabilities_are_refused(case):
    est, X = case
    est.F[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        diverse_margin(est, X, 2, beta=30)
    est.F[3, 1] = 0.0
    est.P[4, 0] = np.inf
    with pytest.raises(ValueError, match="predict_proba gave NaN or infinity"):
        diverse_margin(est, X, 2)


def test_an_estimator_without_predict_proba_is_refused():
    class NoProba:
        def transform(self, X):
            return X

    with pytest.raises(TypeError, match="predict_proba"):
        diverse_margin(NoProba(), np.zeros((4, 2)), 1)


def test_probabilities_of_another_length_are_refused(case):
    est, X = case
    est.predict_proba = lambda X: np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match="one row per sample of X_pool"):
        diverse_margin(est, X, 2)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_a_non_finite_pool_is_refused_even_outside_the_candidates(as_tensor):
    rng = np.random.RandomState(3)
    X = np.concatenate([rng.normal(-2, 1, (40, 2)), rng.normal(2, 1, (40, 2))])
    clf = LogisticRegression().fit(X, np.repeat([0, 1], 40))
    pool = rng.normal(0, 1, (50, 2))
    pool[49, 1] = -np.inf  # far from the boundary's candidates
    with pytest.raises(ValueError, match="X_pool contains NaN or infinity"):
        diverse_margin(clf, torch.as_tensor(pool) if as_tensor else pool, 2, beta=1)
