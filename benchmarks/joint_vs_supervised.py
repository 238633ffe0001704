"""Does joint contrastive training help? MoBYv2 vs the same net trained supervised-only.

scikit-learn's digits (8x8), a stratified 70/30 split, 100 labelled training images and
the rest unlabelled, the small CNN backbone, averaged over seeds. Three learners:

* ``joint``: MoBYv2Classifier with the unlabelled images (the method);
* ``supervised``: the same network and settings with ``lambda_c=0`` and no unlabelled
  data, for the same number of epochs (the paper's comparison);
* ``supervised, same steps``: supervised-only for as many SGD steps as ``joint`` takes
  (an epoch of ``joint`` alternates labelled and unlabelled batches, so it has more steps).

Usage::

    uv run python benchmarks/joint_vs_supervised.py            # 5 seeds, 30 epochs
    uv run python benchmarks/joint_vs_supervised.py --seeds 3 --epochs 12
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skmoby import MoBYv2Classifier


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--labelled", type=int, default=100)
    args = p.parse_args()
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8).astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scores: dict[str, list[float]] = {"joint": [], "supervised": [], "supervised, same steps": []}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        idx = np.random.RandomState(seed).permutation(len(X_tr))
        lab, unl = idx[: args.labelled], idx[args.labelled :]
        kw = dict(
            backbone="cnn", batch_size=64, queue_size=1024, lr=0.05, random_state=seed, device="cpu"
        )
        joint = MoBYv2Classifier(max_epochs=args.epochs, **kw)
        joint.fit(X_tr[lab], y_tr[lab], X_unlabeled=X_tr[unl])
        sup = MoBYv2Classifier(max_epochs=args.epochs, lambda_c=0.0, **kw)
        sup.fit(X_tr[lab], y_tr[lab])
        same = MoBYv2Classifier(
            max_epochs=args.epochs * joint.steps_per_epoch_ // sup.steps_per_epoch_,
            lambda_c=0.0,
            **kw,
        ).fit(X_tr[lab], y_tr[lab])
        for name, clf in (("joint", joint), ("supervised", sup), ("supervised, same steps", same)):
            scores[name].append(clf.score(X_te, y_te))
        print(
            f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in scores.items()), flush=True
        )
    print(
        f"\ndigits, {args.labelled} labels, {len(X_tr) - args.labelled} unlabelled, "
        f"{args.epochs} epochs, {args.seeds} seeds ({time.perf_counter() - t0:.0f} s)"
    )
    print(f"{'learner':<26}{'mean acc':>10}{'std':>8}")
    for name, v in scores.items():
        print(f"{name:<26}{np.mean(v):>10.3f}{np.std(v):>8.3f}")


if __name__ == "__main__":
    main()
