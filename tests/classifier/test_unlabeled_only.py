"""Training on unlabelled data only: MoBYv2AL's contrastive training before any label
exists, the encoder whose features choose the first labelled set."""

import numpy as np
import pytest

from skmoby import coreset, typiclust
from skmoby.classifier import steps_per_epoch
from tests.conftest import small_clf

CLASSES = list(range(10))


@pytest.fixture(scope="module")
def pretrained(digits):
    X, _ = digits
    return small_clf(classes=CLASSES).fit(X[:300], np.full(300, -1))


def test_fit_with_every_row_unlabelled_trains_the_encoder(pretrained, digits):
    X, _ = digits
    assert pretrained.classes_.tolist() == CLASSES
    rows = pretrained.history
    assert [r["train_batch_count"] for r in rows] == [steps_per_epoch(0, 300, 32)] * 2
    assert all(np.isfinite(rows[:, "train_loss"]))
    untrained = small_clf(classes=CLASSES, max_epochs=1)
    untrained.fit(X[:300], np.full(300, -1), epochs=1)
    assert not np.allclose(untrained.transform(X[:20]), pretrained.transform(X[:20]))
    # normalisation statistics come from the unlabelled rows
    np.testing.assert_allclose(pretrained.mean_, [X[:300].mean()], rtol=1e-5)


def test_its_features_choose_the_first_labels_and_labels_follow(pretrained, digits):
    X, y = digits
    first, _ = typiclust(pretrained, X[:300], n_instances=10)
    assert len(np.unique(first)) == 10
    picks, _ = coreset(pretrained, X[:300], n_instances=10)
    assert len(np.unique(picks)) == 10
    clf = small_clf(classes=CLASSES, warm_start=True).fit(X[:300], np.full(300, -1))
    y_semi = np.full(300, -1)
    y_semi[first] = y[first]
    clf.fit(X[:300], y_semi)  # continues from the contrastive weights
    assert len(clf.history) == 4
    assert clf.predict(X[300:310]).shape == (10,)


def test_partial_fit_with_classes_and_x_unlabeled_only_rows(digits):
    X, _ = digits
    clf = small_clf(max_epochs=1).partial_fit(X[:100], np.full(100, -1), classes=CLASSES)
    clf.partial_fit(X[:100], np.full(100, -1), X_unlabeled=X[100:200])
    assert clf.history[-1]["train_batch_count"] == steps_per_epoch(0, 200, 32)


def test_no_labels_without_classes_is_refused_naming_classes(digits):
    X, _ = digits
    with pytest.raises(ValueError, match=r"no labelled rows.*classes=\[\.\.\.\]"):
        small_clf().fit(X[:100], np.full(100, -1))


def test_no_labels_and_no_contrastive_loss_is_refused(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="lambda_c=0"):
        small_clf(classes=CLASSES, lambda_c=0.0).fit(X[:100], np.full(100, -1))


def test_no_labels_with_one_class_is_refused(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="classes must hold at least 2"):
        small_clf(classes=[3]).fit(X[:100], np.full(100, -1))


def test_sample_weight_with_no_labelled_row_is_ignored(digits):
    X, _ = digits
    clf = small_clf(classes=CLASSES, max_epochs=1)
    clf.fit(X[:100], np.full(100, -1), sample_weight=np.ones(100))
    assert len(clf.history) == 1
