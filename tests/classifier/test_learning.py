"""End-to-end learning on digits: 100 labels, the rest unlabelled."""

import numpy as np
from sklearn.model_selection import train_test_split

from tests.conftest import small_clf


def test_joint_training_beats_chance_and_supervised_only(digits):
    X, y = digits
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    joint, sup = [], []
    for seed in range(2):
        idx = np.random.RandomState(seed).permutation(len(X_tr))
        lab, unl = idx[:100], idx[100:]
        kw = dict(max_epochs=12, batch_size=64, queue_size=1024, lr=0.05, random_state=seed)
        joint.append(
            small_clf(**kw).fit(X_tr[lab], y_tr[lab], X_unlabeled=X_tr[unl]).score(X_te, y_te)
        )
        sup.append(small_clf(lambda_c=0.0, **kw).fit(X_tr[lab], y_tr[lab]).score(X_te, y_te))
    # Chance is 0.1; the joint learner is far above it and above supervised-only.
    assert np.mean(joint) > 0.5
    assert np.mean(joint) > np.mean(sup) + 0.1
