"""Speed and memory of TypiClust, ProbCover and diverse margin sampling against CoreSet on
one feature matrix.

Each approach selects ``--budget`` samples from a pool of ``--n`` clustered features of
dimension ``--d`` with ``--labelled`` of them labelled, in a fresh child process, so
that its memory is its own. Printed: seconds (best of ``--repeat``), the peak resident
memory of the first timed call above the resident memory before it (after one call on
a small input, which sets up the libraries; :class:`harness.PeakMemory`), and both as
ratios to CoreSet measured in the same run. The peak is measured again in a second
child, with MKL's and glibc's caches of freed memory off (``harness.LIVE_MEMORY_ENV``):
that peak is what a call holds at once, and the table gives both (the second as
``peak MB`` and the timed child's as ``with caches``). The timing is the first
child's: without the caches, every large temporary costs fresh page faults. The
feature matrix itself is printed for scale. ``diverse-margin`` reads its probabilities
from a logistic regression fitted on the labelled features (10 classes; the fit is not
timed).

``--reference`` adds scikit-activeml's ProbCover with the same δ (a benchmark-only
reference, never a dependency: run the script with ``uv run --with
scikit-activeml==1.0.1``). It builds the dense N × N distance matrix; the row
``probcover-delta`` is ours on the same features. ``--compare`` instead runs both
ProbCovers in this process on small inputs and prints how many picks agree and the
coverage (points within δ of a labelled or picked point) each reaches.

Usage::

    uv run python benchmarks/coverage.py                       # N=60,000, d=128
    uv run python benchmarks/coverage.py --n 2000 --d 16 --budget 50 --repeat 1  # seconds
    uv run --with scikit-activeml==1.0.1 python benchmarks/coverage.py --n 20000 \
        --labelled 100 --budget 100 --only probcover-delta --reference
    uv run --with scikit-activeml==1.0.1 python benchmarks/coverage.py --compare
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import harness

APPROACHES = ("coreset", "typiclust", "probcover-delta", "probcover-auto", "diverse-margin")


def _features(n: int, d: int, seed: int = 0):
    import numpy as np

    rng = np.random.RandomState(seed)
    centers = rng.normal(0, 1, (20, d))
    F = centers[rng.randint(0, 20, n)] + rng.normal(0, 0.6, (n, d))
    return F.astype(np.float32)


def _unit(F):
    import numpy as np

    F = np.asarray(F, dtype=np.float64)
    return F / np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-12)


def _reference_probcover(lab, pool, budget: int, delta: float):
    """scikit-activeml's ProbCover on the L2-normalised features (pool indices)."""
    import numpy as np
    from skactiveml.pool import ProbCover

    X = _unit(np.concatenate([lab, pool]))
    y = np.full(len(X), np.nan)
    y[: len(lab)] = np.arange(len(lab)) % 10
    picks = ProbCover(deltas=[delta], random_state=0).query(X, y, batch_size=budget)
    return np.asarray(picks) - len(lab)


def _coverage(lab, pool, picks, delta: float) -> int:
    """Points within ``delta`` of a labelled or picked point (normalised features)."""
    import numpy as np

    from skmoby.query.coverage import radius_graph

    F = _unit(np.concatenate([lab, pool]))
    indptr, indices = radius_graph(F, delta)
    centres = np.concatenate([np.arange(len(lab)), len(lab) + np.asarray(picks)])
    covered = np.zeros(len(F), dtype=bool)
    for c in centres:
        covered[indices[indptr[c] : indptr[c + 1]]] = True
    return int(covered.sum())


def compare(args: argparse.Namespace) -> None:
    """Both ProbCovers on small inputs: agreeing picks and the coverage each reaches."""
    import numpy as np
    from sklearn.dummy import DummyClassifier

    from skmoby import probcover

    print("n    d   budget  same picks  coverage (ours)  coverage (scikit-activeml)")
    for n, d, budget in ((200, 4, 10), (300, 8, 20), (500, 16, 30)):
        F = _features(n, d, seed=n)
        lab, pool = F[:10], F[10:]
        est = DummyClassifier().fit(lab, np.arange(10) % 2)
        ours, _ = probcover(est, pool, budget, X_labeled=lab, delta=args.delta)
        ref = _reference_probcover(lab, pool, budget, args.delta)
        same = len(np.intersect1d(ours, ref))
        print(
            f"{n:<4} {d:<3} {budget:<7} {same:>4} of {budget:<4} "
            f"{_coverage(lab, pool, ours, args.delta):>15}  "
            f"{_coverage(lab, pool, ref, args.delta):>26}"
        )


def _child(args: argparse.Namespace) -> None:
    import numpy as np
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    from skmoby import coreset, diverse_margin, probcover, typiclust

    F = _features(args.n, args.d)
    lab, pool = F[: args.labelled], F[args.labelled :]
    est = DummyClassifier().fit(lab, np.arange(len(lab)) % 10)
    if args.approach == "diverse-margin":
        clf = LogisticRegression(max_iter=200).fit(lab, np.arange(len(lab)) % 10)
    select = {
        "coreset": lambda lab, pool, b: coreset(est, pool, b, X_labeled=lab),
        "typiclust": lambda lab, pool, b: typiclust(est, pool, b, X_labeled=lab, random_state=0),
        "probcover-delta": lambda lab, pool, b: probcover(
            est, pool, b, X_labeled=lab, delta=args.delta, random_state=0
        ),
        "probcover-auto": lambda lab, pool, b: probcover(
            est, pool, b, X_labeled=lab, n_clusters=10, random_state=0
        ),
        "diverse-margin": lambda lab, pool, b: diverse_margin(clf, pool, b, random_state=0),
        "reference-probcover": lambda lab, pool, b: _reference_probcover(lab, pool, b, args.delta),
    }[args.approach]
    # Warm the libraries (thread pools, BLAS and allocator set-up: tens of MB on first
    # use) on a small input, so that the peak below is the call's own.
    small = min(len(pool), 2000)
    select(lab[:50], pool[:small], min(args.budget, small // 4))
    peaks = []

    def run():
        with harness.PeakMemory() as pm:
            select(lab, pool, args.budget)
        peaks.append(pm.mb)

    best = harness.measure(run, args.repeat).best
    # The first call's: later ones reuse the heap that it freed and kept.
    harness.emit({"seconds": best, "peak_mb": peaks[0]})


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
    p.add_argument(
        "--reference",
        action="store_true",
        help="add scikit-activeml's ProbCover (needs uv run --with scikit-activeml==1.0.1)",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="compare both ProbCovers' picks on small inputs (needs scikit-activeml)",
    )
    args = p.parse_args(argv)
    if (args.reference or args.compare) and importlib.util.find_spec("skactiveml") is None:
        raise SystemExit(
            "--reference and --compare need scikit-activeml, a benchmark-only reference: "
            "uv run --with scikit-activeml==1.0.1 python benchmarks/coverage.py ..."
        )
    if args.compare:
        compare(args)
        return
    if args.approach:
        _child(args)
        return
    mb = args.n * args.d * 4 / 2**20
    print(
        f"N={args.n} d={args.d} labelled={args.labelled} budget={args.budget}, float32 "
        f"features {mb:.0f} MB, {os.cpu_count()} CPU cores, best of {args.repeat}"
    )
    rows = {}
    names = args.only.split(",") + (["reference-probcover"] if args.reference else [])
    for name in names:
        cmd = [sys.executable, __file__, "--approach", name, *(argv or sys.argv[1:])]
        rows[name] = harness.run_child(cmd, name)
        # The peak again, in a child with the allocators' caches off: one call is enough.
        live = harness.run_child(
            [*cmd, "--repeat", "1"], name, env={**os.environ, **harness.LIVE_MEMORY_ENV}
        )
        rows[name]["cached_mb"] = rows[name]["peak_mb"]
        rows[name]["peak_mb"] = live["peak_mb"]
    ref = rows.get("coreset")
    cols = [
        harness.Column("approach", 21, align="<"),
        harness.Column("seconds", 10, ".3f"),
        harness.Column("x coreset", 11, ".2f"),
        harness.Column("peak MB", 10, ".0f"),
        harness.Column("x coreset", 11, ".2f"),
        harness.Column("with caches", 13, ".0f"),
    ]
    table = [
        [
            name,
            r["seconds"],
            harness.ratio(r["seconds"], ref["seconds"]) if ref else None,
            r["peak_mb"],
            harness.ratio(r["peak_mb"], max(ref["peak_mb"], 1e-9)) if ref else None,
            r["cached_mb"],
        ]
        for name, r in rows.items()
    ]
    print(harness.table(cols, table))


if __name__ == "__main__":
    main()
