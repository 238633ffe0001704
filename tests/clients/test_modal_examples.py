"""modAL's examples (pool-based sampling, ranked batch mode, query by committee,
stream-based sampling, custom strategies) with MoBYv2Classifier and skmoby's
strategies swapped in."""

import numpy as np
import pytest
from modAL.batch import uncertainty_batch_sampling
from modAL.disagreement import max_disagreement_sampling, vote_entropy_sampling
from modAL.models import ActiveLearner, Committee
from modAL.uncertainty import classifier_uncertainty, uncertainty_sampling

from skmoby import coreset, max_entropy, probcover, random_sampling, typiclust
from tests.clients.conftest import make


@pytest.fixture(scope="module")
def pool(digits):
    X, y = digits
    return X[:60], y[:60], X[60:400], y[60:400]


@pytest.mark.parametrize("kind", ["default", "small"])
def test_pool_based_loop_with_coreset(pool, kind):
    X0, y0, Xp, yp = pool
    learner = ActiveLearner(
        estimator=make(kind), query_strategy=coreset, X_training=X0, y_training=y0
    )
    Xp, yp = Xp.copy(), yp.copy()
    for _ in range(2):
        idx, picked = learner.query(Xp, n_instances=5)
        assert len(set(np.asarray(idx).tolist())) == 5
        np.testing.assert_array_equal(picked, Xp[idx])
        learner.teach(Xp[idx], yp[idx])
        Xp, yp = np.delete(Xp, idx, axis=0), np.delete(yp, idx)
    assert len(learner.y_training) == 70
    assert 0.0 <= learner.score(Xp, yp) <= 1.0


@pytest.mark.parametrize(
    "strategy", [coreset, typiclust, probcover, max_entropy, random_sampling, uncertainty_sampling]
)
def test_every_strategy_in_a_learner(pool, strategy):
    X0, y0, Xp, _ = pool
    learner = ActiveLearner(estimator=make(), query_strategy=strategy, X_training=X0, y_training=y0)
    idx, _ = learner.query(Xp, n_instances=4)
    assert len(np.unique(idx)) == 4 and np.max(idx) < len(Xp)


def test_ranked_batch_mode(pool):
    X0, y0, Xp, _ = pool
    learner = ActiveLearner(
        estimator=make(),
        query_strategy=uncertainty_batch_sampling,
        X_training=X0,
        y_training=y0,
    )
    idx, _ = learner.query(Xp, n_instances=3)
    assert len(np.unique(idx)) == 3


def test_stream_based_sampling_one_instance_at_a_time(pool):
    X0, y0, Xp, yp = pool
    learner = ActiveLearner(estimator=make(), X_training=X0, y_training=y0)
    taught = 0
    for i in range(3):
        x = Xp[i : i + 1]
        u = classifier_uncertainty(learner, x)
        assert u.shape == (1,) and 0.0 <= float(u[0]) <= 1.0
        if u[0] >= 0.0:  # teach it (a stream-based rule would threshold here)
            learner.teach(x, yp[i : i + 1])
            taught += 1
    assert len(learner.y_training) == 60 + taught


def test_custom_strategy_returning_indices(pool):
    X0, y0, Xp, _ = pool

    def lowest_max_proba(classifier, X_pool, n_instances=1):
        proba = classifier.predict_proba(X_pool)
        idx = np.argsort(proba.max(axis=1))[:n_instances]
        return idx, X_pool[idx]

    learner = ActiveLearner(
        estimator=make(), query_strategy=lowest_max_proba, X_training=X0, y_training=y0
    )
    idx, _ = learner.query(Xp, n_instances=2)
    assert len(idx) == 2


def test_teach_only_new_with_warm_start_needs_classes_when_labels_are_missing(pool):
    X0, y0, Xp, yp = pool
    few = np.isin(y0, [0, 1, 2])
    learner = ActiveLearner(estimator=make(warm_start=True), X_training=X0[few], y_training=y0[few])
    with pytest.raises(ValueError, match=r"classes=\[\.\.\.\]"):
        learner.teach(Xp[:20], yp[:20], only_new=True)
    # with the classes named up front, modAL's loop works
    learner = ActiveLearner(
        estimator=make(warm_start=True, classes=list(range(10))),
        X_training=X0[few],
        y_training=y0[few],
    )
    learner.teach(Xp[:20], yp[:20], only_new=True)
    assert len(learner.estimator.history) == 2
    assert set(learner.estimator.classes_) == set(range(10))


def _committee(X0, y0, **kwargs):
    return Committee(
        [
            ActiveLearner(estimator=make(random_state=s, **kwargs), X_training=X0, y_training=y0)
            for s in (0, 1)
        ],
    )


@pytest.mark.parametrize("strategy", [vote_entropy_sampling, max_disagreement_sampling])
def test_query_by_committee(pool, strategy):
    X0, y0, Xp, yp = pool
    committee = _committee(X0, y0)
    committee.query_strategy = strategy
    idx, _ = committee.query(Xp, n_instances=3)
    assert len(np.unique(idx)) == 3
    committee.teach(Xp[idx], yp[idx])
    assert all(len(m.y_training) == 63 for m in committee.learner_list)


@pytest.mark.parametrize("strategy", [coreset, typiclust, probcover])
def test_feature_strategies_refuse_a_committee(pool, strategy):
    X0, y0, Xp, _ = pool
    committee = _committee(X0, y0)
    with pytest.raises(TypeError, match="Committee"):
        strategy(committee, Xp, n_instances=2)


def test_committee_bootstrap_teach(pool):
    X0, y0, Xp, yp = pool
    committee = _committee(X0, y0)
    committee.teach(Xp[:10], yp[:10], bootstrap=True)  # each refits on a bootstrap sample
    assert all(len(m.y_training) == 70 for m in committee.learner_list)
    # one new sample alone cannot be trained on: one clear error naming the fix
    with pytest.raises(ValueError, match=r"1 sample.*only_new=False"):
        committee.teach(Xp[10:11], yp[10:11], bootstrap=True, only_new=True)


def test_one_class_fit_works_when_classes_are_named(pool):
    X0, y0, _, _ = pool
    ones = y0 == 1
    with pytest.raises(ValueError, match=r"1 class.*classes=\[\.\.\.\]"):
        make().fit(X0[ones], y0[ones])
    clf = make(classes=list(range(10))).fit(X0[ones], y0[ones])
    assert clf.classes_.tolist() == list(range(10))
