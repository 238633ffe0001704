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

import harness
import numpy as np

from skmoby import MoBYv2Classifier


def fit_three(seed: int, epochs: int, n_labelled: int, X_tr, y_tr) -> dict:
    """The three learners of one seed, fitted on one draw of the labelled set."""
    idx = np.random.RandomState(seed).permutation(len(X_tr))
    lab, unl = idx[:n_labelled], idx[n_labelled:]
    kw = dict(
        backbone="cnn", batch_size=64, queue_size=1024, lr=0.05, random_state=seed, device="cpu"
    )
    joint = MoBYv2Classifier(max_epochs=epochs, **kw)
    joint.fit(X_tr[lab], y_tr[lab], X_unlabeled=X_tr[unl])
    sup = MoBYv2Classifier(max_epochs=epochs, lambda_c=0.0, **kw)
    sup.fit(X_tr[lab], y_tr[lab])
    same = MoBYv2Classifier(
        max_epochs=epochs * joint.steps_per_epoch_ // sup.steps_per_epoch_,
        lambda_c=0.0,
        **kw,
    ).fit(X_tr[lab], y_tr[lab])
    return {"joint": joint, "supervised": sup, "supervised, same steps": same}


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--labelled", type=int, default=100)
    args = p.parse_args()
    X_tr, X_te, y_tr, y_te = harness.digits_split()
    scores: dict[str, list[float]] = {"joint": [], "supervised": [], "supervised, same steps": []}
    with harness.Stopwatch() as sw:
        for seed in range(args.seeds):
            for name, clf in fit_three(seed, args.epochs, args.labelled, X_tr, y_tr).items():
                scores[name].append(clf.score(X_te, y_te))
            print(
                f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in scores.items()),
                flush=True,
            )
    print(
        f"\ndigits, {args.labelled} labels, {len(X_tr) - args.labelled} unlabelled, "
        f"{args.epochs} epochs, {args.seeds} seeds ({sw.seconds:.0f} s)"
    )
    cols = [
        harness.Column("learner", 26, align="<"),
        harness.Column("mean acc", 10, ".3f"),
        harness.Column("std", 8, ".3f"),
    ]
    print(harness.table(cols, [[k, np.mean(v), np.std(v)] for k, v in scores.items()]))


if __name__ == "__main__":
    main()
