"""Speed and memory of TypiClust and ProbCover against CoreSet on one feature matrix.

Each approach selects ``--budget`` samples from a pool of ``--n`` clustered features of
dimension ``--d`` with ``--labelled`` of them labelled, in a fresh child process, so
that its peak resident memory (``ru_maxrss``) is its own. Printed: seconds (best of
``--repeat``), the peak memory above the child's baseline (after importing torch and
making the features), and both as ratios to CoreSet measured in the same run. The
feature matrix itself is printed for scale.

Usage::

    uv run python benchmarks/coverage.py                       # N=60,000, d=128
    uv run python benchmarks/coverage.py --n 2000 --d 16 --budget 50 --repeat 1  # seconds
"""

from __future__ import annotations

import argparse
import os
import sys

import harness

APPROACHES = ("coreset", "typiclust", "probcover-delta", "probcover-auto")


def _features(n: int, d: int, seed: int = 0):
    import numpy as np

    rng = np.random.RandomState(seed)
    centers = rng.normal(0, 1, (20, d))
    F = centers[rng.randint(0, 20, n)] + rng.normal(0, 0.6, (n, d))
    return F.astype(np.float32)


def _child(args: argparse.Namespace) -> None:
    import resource

    import numpy as np
    from sklearn.dummy import DummyClassifier

    from skmoby import coreset, probcover, typiclust

    F = _features(args.n, args.d)
    lab, pool = F[: args.labelled], F[args.labelled :]
    est = DummyClassifier().fit(lab, np.arange(len(lab)) % 10)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run = {
        "coreset": lambda: coreset(est, pool, args.budget, X_labeled=lab),
        "typiclust": lambda: typiclust(est, pool, args.budget, X_labeled=lab, random_state=0),
        "probcover-delta": lambda: probcover(
            est, pool, args.budget, X_labeled=lab, delta=args.delta, random_state=0
        ),
        "probcover-auto": lambda: probcover(
            est, pool, args.budget, X_labeled=lab, n_clusters=10, random_state=0
        ),
    }[args.approach]
    best = harness.measure(run, args.repeat).best
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    harness.emit({"seconds": best, "peak_mb": peak / 1024})


def main(argv: list[str] | None = None) -> None:
    p = harness.parser(__doc__)
    p.add_argument("--n", type=int, default=60_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--labelled", type=int, default=1000)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument(
        "--delta",
        type=float,
        default=0.3,
        help="radius of probcover-delta, on L2-normalized features",
    )
    harness.add_repeat(p, 3)
    p.add_argument("--only", default=",".join(APPROACHES))
    p.add_argument("--approach", help=argparse.SUPPRESS)  # run one in this process
    args = p.parse_args(argv)
    if args.approach:
        _child(args)
        return
    mb = args.n * args.d * 4 / 2**20
    print(
        f"N={args.n} d={args.d} labelled={args.labelled} budget={args.budget}, float32 "
        f"features {mb:.0f} MB, {os.cpu_count()} CPU cores, best of {args.repeat}"
    )
    rows = {}
    for name in args.only.split(","):
        cmd = [sys.executable, __file__, "--approach", name, *(argv or sys.argv[1:])]
        rows[name] = harness.run_child(cmd, name)
    ref = rows.get("coreset")
    cols = [
        harness.Column("approach", 17, align="<"),
        harness.Column("seconds", 10, ".3f"),
        harness.Column("x coreset", 11, ".2f"),
        harness.Column("peak MB", 10, ".0f"),
        harness.Column("x coreset", 11, ".2f"),
    ]
    table = [
        [
            name,
            r["seconds"],
            harness.ratio(r["seconds"], ref["seconds"]) if ref else None,
            r["peak_mb"],
            harness.ratio(r["peak_mb"], max(ref["peak_mb"], 1e-9)) if ref else None,
        ]
        for name, r in rows.items()
    ]
    print(harness.table(cols, table))


if __name__ == "__main__":
    main()
