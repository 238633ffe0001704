"""How much the weak view's crop padding (and flips) matter on small images.

The paper pads the weak view by 4 pixels on 32x32 images; skmoby's ``WeakAugment`` keeps
that proportion (``padding="auto"``: 1 pixel on 8x8). This script fits MoBYv2Classifier
on scikit-learn's digits (stratified 70/30 split, 150 labelled training images, the rest
unlabelled, small CNN, 15 epochs, lr 0.05) with three settings of the views, over
several draws of the labelled set, and prints test accuracy and each setting's mean
relative to the paper's fixed 4 pixels:

* ``padding=4`` (the paper's pixels, whatever the image size);
* ``padding="auto"`` (the default);
* ``padding="auto"``, no flips and a milder strong view (crop scale 0.5-1, blur <= 0.5).

Usage::

    uv run python benchmarks/augment_views.py            # 3 draws
"""

from __future__ import annotations

import harness
import numpy as np

from skmoby import MoBYv2Classifier
from skmoby.augment import StrongAugment, WeakAugment

SETTINGS = {
    "padding=4 (fixed pixels)": dict(weak_augment=WeakAugment(padding=4)),
    'padding="auto" (default)': dict(),
    '"auto", no flips, milder strong': dict(
        weak_augment=WeakAugment(flip_p=0.0),
        strong_augment=StrongAugment(scale=(0.5, 1.0), flip_p=0.0, blur_sigma=(0.1, 0.5)),
    ),
}


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--labelled", type=int, default=150)
    p.add_argument("--epochs", type=int, default=15)
    args = p.parse_args()
    X_tr, X_te, y_tr, y_te = harness.digits_split()
    scores: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for draw in range(args.draws):
        order = np.random.default_rng(draw).permutation(len(X_tr))
        lab, unl = order[: args.labelled], order[args.labelled :]
        for name, views in SETTINGS.items():
            clf = MoBYv2Classifier(
                "cnn",
                max_epochs=args.epochs,
                batch_size=64,
                lr=0.05,
                queue_size=1024,
                random_state=0,
                device="cpu",
                **views,
            )
            clf.fit(X_tr[lab], y_tr[lab], X_unlabeled=X_tr[unl])
            scores[name].append(clf.score(X_te, y_te))
            print(f"draw {draw}: {name:<34} {scores[name][-1]:.3f}", flush=True)
    ref = np.mean(scores["padding=4 (fixed pixels)"])
    print(f"\ndigits, {args.labelled} labels, {args.epochs} epochs, {args.draws} draws")
    cols = [
        harness.Column("views", 34, align="<"),
        harness.Column("accuracies", 24),
        harness.Column("mean", 8, ".3f"),
        harness.Column("ratio", 8, ".2f"),
    ]
    rows = [
        [name, " ".join(f"{a:.3f}" for a in acc), np.mean(acc), harness.ratio(np.mean(acc), ref)]
        for name, acc in scores.items()
    ]
    print(harness.table(cols, rows))


if __name__ == "__main__":
    main()
