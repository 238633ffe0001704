"""Batch norm per view or over both views: accuracy and fit time of the joint learner.

skmoby passes the weak and the strong view through each encoder as separate batches
(MoBY and the authors' code do), so batch-norm statistics are those of one view. The
alternative, one concatenated batch of both views (skmoby before it followed them), is
patched in here for comparison. scikit-learn's digits (8x8), a stratified 70/30 split,
100 labelled training images and the rest unlabelled, the small CNN backbone (which
has batch norm) with the ``bn-relu`` projector (batch norm there too), averaged over
seeds; each fit reports its test accuracy and seconds.

Usage::

    uv run python benchmarks/ablation_batchnorm.py            # 5 seeds, 30 epochs
"""

from __future__ import annotations

import harness
import numpy as np
import torch

from skmoby import MoBYv2Classifier
from skmoby.losses import symmetric_info_nce
from skmoby.network import MoBYv2Network


class ConcatenatedViews(MoBYv2Network):
    """The MoBYv2 network with both views through each encoder as one batch (batch-norm
    statistics mixed over views)."""

    def contrastive_terms(self, weak, strong, temperature):
        n = weak.shape[0]
        f, q = self.query(torch.cat([weak, strong]))
        k = self.key(torch.cat([weak, strong]))
        (q_weak, q_strong), (k_weak, k_strong) = q.split(n), k.split(n)
        loss = symmetric_info_nce(
            q_weak,
            q_strong,
            k_weak,
            k_strong,
            self.queue_weak.clone(),
            self.queue_strong.clone(),
            temperature,
        )
        return loss, f[:n], k_weak, k_strong


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--labelled", type=int, default=100)
    args = p.parse_args()
    X_tr, X_te, y_tr, y_te = harness.digits_split()
    # The first fit of a process pays one-off imports (torch's optimizer machinery).
    MoBYv2Classifier(
        "cnn", max_epochs=1, batch_size=64, queue_size=64, device="cpu", random_state=0
    ).fit(X_tr[:64], y_tr[:64])
    acc: dict[str, list[float]] = {"per view": [], "concatenated": []}
    secs: dict[str, list[float]] = {"per view": [], "concatenated": []}
    for seed in range(args.seeds):
        idx = np.random.RandomState(seed).permutation(len(X_tr))
        lab, unl = idx[: args.labelled], idx[args.labelled :]
        for name in acc:
            clf = MoBYv2Classifier(
                "cnn",
                max_epochs=args.epochs,
                batch_size=64,
                queue_size=1024,
                lr=0.05,
                random_state=seed,
                device="cpu",
                module=ConcatenatedViews if name == "concatenated" else MoBYv2Network,
                module__projection_head="bn-relu",
            )
            with harness.Stopwatch() as took:
                clf.fit(X_tr[lab], y_tr[lab], X_unlabeled=X_tr[unl])
            secs[name].append(took.seconds)
            acc[name].append(clf.score(X_te, y_te))
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in acc.items()), flush=True)
    gap = 100 * (np.array(acc["per view"]) - np.array(acc["concatenated"]))
    print(
        f"\ndigits, {args.labelled} labels, {len(X_tr) - args.labelled} unlabelled, CNN + "
        f"bn-relu heads, {args.epochs} epochs, {args.seeds} seeds"
    )
    for name in acc:
        print(
            f"  {name:<13} accuracy {100 * np.mean(acc[name]):.2f} ± "
            f"{100 * np.std(acc[name], ddof=1):.2f} %   fit {np.mean(secs[name]):.1f} s"
        )
    ratio = np.mean(secs["per view"]) / np.mean(secs["concatenated"])
    print(
        f"  per view - concatenated: {gap.mean():+.2f} ± {gap.std(ddof=1):.2f} points "
        f"(paired); fit time ratio {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
