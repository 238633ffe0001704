"""The budget-aware default: its rule, and that it selects exactly as the strategy the
rule names."""

import functools

import numpy as np
import pytest
from modAL.models import ActiveLearner
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from skmoby import adaptive, diverse_margin, typiclust
from skmoby.query import adaptive_choice


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X = np.concatenate(
        [rng.normal(0, 0.3, (30, 3)), rng.normal(3, 0.5, (20, 3)), rng.normal(-4, 1.0, (10, 3))]
    )
    y = np.repeat([0, 1, 2], [30, 20, 10])
    return X, y


# ============================================================================ the rule
@pytest.mark.parametrize(
    ("n_labeled", "classes", "switch", "want"),
    [
        (0, 10, 10, "typiclust"),
        (99, 10, 10, "typiclust"),  # 9.9 per class
        (100, 10, 10, "diverse_margin"),  # exactly the switch
        (9000, 10, 10, "diverse_margin"),
        (15, 3, 5, "diverse_margin"),
        (14, 3, 5, "typiclust"),
        (1, 1, 0.5, "diverse_margin"),
    ],
)
def test_the_rule_switches_at_the_labels_per_class_of_the_model(n_labeled, classes, switch, want):
    assert adaptive_choice(n_labeled, classes, switch_per_class=switch) == want


def test_the_default_switch_is_five_labels_per_class():
    assert adaptive_choice(49, 10) == "typiclust"
    assert adaptive_choice(50, 10) == "diverse_margin"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_labeled": -1}, "n_labeled"),
        ({"n_labeled": 1.5}, "n_labeled"),
        ({"n_labeled": True}, "n_labeled"),
        ({"n_classes": 0}, "n_classes"),
        ({"n_classes": "10"}, "n_classes"),
        ({"switch_per_class": 0}, "switch_per_class"),
        ({"switch_per_class": float("nan")}, "switch_per_class"),
        ({"switch_per_class": "500"}, "switch_per_class"),
    ],
)
def test_the_rule_refuses_bad_arguments_by_name(kwargs, name):
    args = {"n_labeled": 10, "n_classes": 3, **kwargs}
    switch = args.pop("switch_per_class", 10)
    with pytest.raises(ValueError, match=name):
        adaptive_choice(args["n_labeled"], args["n_classes"], switch_per_class=switch)


# ============================================================================ the picks
def test_below_the_switch_it_picks_as_typiclust(data):
    X, y = data
    clf = LogisticRegression().fit(X[:6], y[[0, 1, 30, 31, 50, 51]])
    got = adaptive(clf, X[6:], 6, X_labeled=X[:6], random_state=0)
    want = typiclust(clf, X[6:], 6, X_labeled=X[:6], random_state=0)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert not np.array_equal(got[0], diverse_margin(clf, X[6:], 6, random_state=0)[0])


def test_at_the_switch_it_picks_as_diverse_margin(data):
    X, y = data
    clf = LogisticRegression().fit(X[:6], y[[0, 1, 30, 31, 50, 51]])
    # 6 labels / 3 classes = 2 labels per class
    got = adaptive(clf, X[6:], 6, X_labeled=X[:6], switch_per_class=2, random_state=0)
    want = diverse_margin(clf, X[6:], 6, random_state=0)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_a_modal_learner_counts_its_own_labels(data):
    X, y = data
    idx = np.r_[0:4, 30:34, 50:54]  # 12 labels, 3 classes
    rest = np.setdiff1d(np.arange(len(X)), idx)

    def learner(switch):
        return ActiveLearner(
            estimator=LogisticRegression(),
            query_strategy=functools.partial(adaptive, switch_per_class=switch, random_state=0),
            X_training=X[idx],
            y_training=y[idx],
        )

    # 12 labels, 4 per class: diverse margin from a switch of 4, typiclust above
    q_margin, _ = learner(4).query(X[rest], n_instances=3)
    q_typical, _ = learner(4.5).query(X[rest], n_instances=3)
    ref = learner(4)
    want = diverse_margin(ref, X[rest], 3, random_state=0)[0].tolist()
    assert np.asarray(q_margin).tolist() == want
    assert np.asarray(q_typical).tolist() == typiclust(ref, X[rest], 3, random_state=0)[0].tolist()


def test_classes_come_from_the_estimator_or_are_asked_for(data):
    X, _ = data
    with pytest.raises(ValueError, match="adaptive needs n_classes"):
        adaptive(object(), X, 2)
    idx, _ = adaptive(object(), X, 2, n_classes=3, random_state=0)  # raw inputs as features
    assert len(set(idx.tolist())) == 2


def test_bad_input_is_refused_by_name(data):
    X, y = data
    clf = DummyClassifier().fit(X, y)
    with pytest.raises(ValueError, match=r"n_instances must be in 1\.\.60"):
        adaptive(clf, X, 61)
    with pytest.raises(ValueError, match="X_pool is empty"):
        adaptive(clf, X[:0], 1)
    bad = X.copy()
    bad[5, 0] = np.inf
    for switch in (500, 0.1):  # whichever strategy is chosen
        with pytest.raises(ValueError, match="NaN or infinity"):
            adaptive(clf, bad, 2, switch_per_class=switch)
    with pytest.raises(ValueError, match="switch_per_class"):
        adaptive(clf, X, 2, switch_per_class=-3)


def test_an_error_inside_modals_query_is_raised_not_retried(data):
    X, y = data
    learner = ActiveLearner(
        estimator=LogisticRegression(),
        query_strategy=functools.partial(adaptive, switch_per_class=0),
        X_training=X[:10],
        y_training=y[[0, 1, 2, 30, 31, 32, 50, 51, 52, 53]],
    )
    with pytest.raises(ValueError, match="switch_per_class must be a positive number"):
        learner.query(X[10:], n_instances=2)
