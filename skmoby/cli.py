"""The ``skmoby`` command."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.metrics import classification_report
    from sklearn.model_selection import train_test_split

    from .classifier import MoBYv2Classifier

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8).astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=args.seed,
                                              stratify=y)
    idx = np.random.RandomState(args.seed).permutation(len(X_tr))
    lab, unl = idx[: args.n_labelled], idx[args.n_labelled:]
    print(f"digits: {len(lab)} labelled, {len(unl)} unlabelled training images, "
          f"{len(X_te)} test images")
    common = dict(backbone="cnn", max_epochs=args.epochs, batch_size=64, queue_size=1024,
                  lr=0.05, random_state=args.seed, device=args.device)
    rows = []
    for name, kw, fit_kw in [
        ("MoBYv2 (joint)", {}, {"X_unlabeled": X_tr[unl]}),
        ("supervised only", {"lambda_c": 0.0}, {}),
    ]:
        t0 = time.perf_counter()
        clf = MoBYv2Classifier(**common, **kw).fit(X_tr[lab], y_tr[lab], **fit_kw)
        acc = clf.score(X_te, y_te)
        rows.append((name, acc, time.perf_counter() - t0))
        if name.startswith("MoBYv2"):
            report = classification_report(y_te, clf.predict(X_te), digits=3)
    print(f"\n{'learner':<18}{'test accuracy':>14}{'fit seconds':>13}")
    for name, acc, sec in rows:
        print(f"{name:<18}{acc:>14.3f}{sec:>13.1f}")
    print("\nMoBYv2 per-class report:\n" + report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skmoby`` command."""
    parser = argparse.ArgumentParser(
        prog="skmoby", description="Self-supervised active learning (MoBYv2AL)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="fit MoBYv2 on scikit-learn's digits with few labels and report",
        description="Fit MoBYv2Classifier on scikit-learn's digits with few labels and the "
        "rest unlabelled, compare with supervised-only training, print a report.",
    )
    demo.add_argument("--n-labelled", type=int, default=100, help="labelled images (100)")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs (30)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")
    demo.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda' (auto)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skmoby`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "n_labelled", 20) < 20:
        parser.error("--n-labelled must be at least 20")
    if getattr(args, "epochs", 1) < 1:
        parser.error("--epochs must be at least 1")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
