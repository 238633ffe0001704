"""Speed and memory of k-center greedy (CoreSet) selection against reference approaches.

Default problem: a pool of N = 50,000 points plus M = 5,000 labelled centres, d = 512,
b = 2,500 picks, on Gaussian-mixture features (10 clusters, like class-clustered network
embeddings) and on isotropic noise. Every approach runs in its own subprocess, so its
peak memory above the feature matrix (VmHWM minus the resident size before the call) is
measured cleanly. All approaches must select the same points; the script checks it.

Reference approaches, reimplemented here:

1. ``authors``: the MoBYv2AL authors' code -- the full N x M distance matrix from
   scikit-learn's ``pairwise_distances``, its row minimum, then one
   ``pairwise_distances`` call per pick.
2. ``argmin_min``: scikit-learn's chunked ``pairwise_distances_argmin_min`` for the
   initial distances plus an incremental ``pairwise_distances`` update per pick (what
   scikit-activeml and modAL-style implementations do); ``argmin_min_norms`` is the same
   with the pool's squared norms computed once instead of at every pick.
3. ``cdist``: a full ``torch.cdist`` N x M matrix, then per-pick updates.

Usage::

    uv run python benchmarks/coreset.py                  # the full default problem
    uv run python benchmarks/coreset.py --n 10000 --m 1000 --b 500 --only skmoby
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

APPROACHES = [
    "authors", "argmin_min", "argmin_min_norms", "cdist",
    "skmoby-torch-auto", "skmoby-torch-prune", "skmoby-torch-noprune",
    "skmoby-keops-auto", "skmoby-keops-noprune",
]


def make_features(kind: str, n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    if kind == "clustered":
        means = rng.randn(10, d).astype(np.float32) * 4.0
        x = means[rng.randint(10, size=n)] + rng.randn(n, d).astype(np.float32)
    else:
        x = rng.randn(n, d).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def run_authors(x, m, b):
    from sklearn.metrics import pairwise_distances

    pool, lab = x[m:], x[:m]
    dist = pairwise_distances(pool, lab, metric="euclidean")
    min_d = dist.min(axis=1).reshape(-1, 1)
    del dist
    picks, ds = [], []
    for _ in range(b):
        j = int(np.argmax(min_d))
        picks.append(j)
        ds.append(float(min_d[j, 0]))
        d_new = pairwise_distances(pool, pool[[j]], metric="euclidean")
        min_d = np.minimum(min_d, d_new)
    return np.array(picks), np.array(ds)


def run_argmin_min(x, m, b):
    from sklearn.metrics import pairwise_distances, pairwise_distances_argmin_min

    pool, lab = x[m:], x[:m]
    _, min_d = pairwise_distances_argmin_min(pool, lab)
    picks, ds = [], []
    for _ in range(b):
        j = int(np.argmax(min_d))
        picks.append(j)
        ds.append(float(min_d[j]))
        min_d = np.minimum(min_d, pairwise_distances(pool, pool[[j]]).ravel())
    return np.array(picks), np.array(ds)


def run_argmin_min_norms(x, m, b):
    """Approach (2) tuned: the pool's squared norms are computed once, not per pick."""
    from sklearn.metrics import pairwise_distances_argmin_min
    from sklearn.metrics.pairwise import euclidean_distances

    pool, lab = x[m:], x[:m]
    _, min_d = pairwise_distances_argmin_min(pool, lab)
    sq = np.einsum("ij,ij->i", pool, pool)[:, None]
    picks, ds = [], []
    for _ in range(b):
        j = int(np.argmax(min_d))
        picks.append(j)
        ds.append(float(min_d[j]))
        d_new = euclidean_distances(pool, pool[[j]], X_norm_squared=sq).ravel()
        min_d = np.minimum(min_d, d_new)
    return np.array(picks), np.array(ds)


def run_cdist(x, m, b):
    import torch

    pool, lab = torch.from_numpy(x[m:]), torch.from_numpy(x[:m])
    min_d = torch.cdist(pool, lab).min(dim=1).values
    picks, ds = [], []
    for _ in range(b):
        j = int(torch.argmax(min_d))
        picks.append(j)
        ds.append(float(min_d[j]))
        min_d = torch.minimum(min_d, torch.cdist(pool, pool[j:j + 1]).view(-1))
    return np.array(picks), np.array(ds)


def run_skmoby(x, m, b, backend, prune):
    from skmoby import k_center_greedy

    idx, ds = k_center_greedy(x, b, initial_centers=np.arange(m), backend=backend,
                              prune=prune)
    return idx - m, ds


def child(args) -> None:
    x = make_features(args.kind, args.n + args.m, args.d)
    if args.approach.startswith("skmoby-keops"):
        # Compile the KeOps formulas for this dimension outside the timed region.
        run_skmoby(x[:64], 8, 1, "keops", True)
    import sklearn.metrics  # noqa: F401  (libraries load before the baseline)
    import torch  # noqa: F401

    import skmoby  # noqa: F401

    before = _rss("VmRSS")
    t0 = time.perf_counter()
    name = args.approach
    if name == "authors":
        idx, ds = run_authors(x, args.m, args.b)
    elif name == "argmin_min":
        idx, ds = run_argmin_min(x, args.m, args.b)
    elif name == "argmin_min_norms":
        idx, ds = run_argmin_min_norms(x, args.m, args.b)
    elif name == "cdist":
        idx, ds = run_cdist(x, args.m, args.b)
    else:
        _, backend, prune = name.split("-")
        prune = {"prune": True, "noprune": False, "auto": "auto"}[prune]
        idx, ds = run_skmoby(x, args.m, args.b, backend, prune)
    sec = time.perf_counter() - t0
    peak = _rss("VmHWM")
    print(json.dumps({"seconds": sec, "extra_bytes": max(0, peak - before),
                      "feature_bytes": x.nbytes, "picks": idx.tolist(),
                      "distances": [float(v) for v in ds]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000, help="pool size N (50000)")
    p.add_argument("--m", type=int, default=5_000, help="labelled centres M (5000)")
    p.add_argument("--d", type=int, default=512, help="feature dimension (512)")
    p.add_argument("--b", type=int, default=2_500, help="picks (2500)")
    p.add_argument("--kinds", default="clustered,noise")
    p.add_argument("--only", default="", help="comma-separated approach prefixes to run")
    p.add_argument("--approach", help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.approach:
        child(args)
        return
    chosen = [a for a in APPROACHES
              if not args.only or any(a.startswith(o) for o in args.only.split(","))]
    print(f"N={args.n} M={args.m} d={args.d} b={args.b}, float32, "
          f"{os.cpu_count()} CPU cores")
    for kind in args.kinds.split(","):
        results = {}
        for a in chosen:
            cmd = [sys.executable, __file__, "--approach", a, "--kind", kind,
                   "--n", str(args.n), "--m", str(args.m), "--d", str(args.d),
                   "--b", str(args.b)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[a] = json.loads(out.stdout.strip().splitlines()[-1])
        ref_name = "argmin_min" if "argmin_min" in results else chosen[0]
        ref = results[ref_name]
        print(f"\n{kind} features (ratio = {ref_name} time / time; memory = peak extra "
              f"memory / feature matrix of {ref['feature_bytes'] / 2**20:.0f} MiB)")
        print(f"{'approach':<24}{'seconds':>9}{'ratio':>8}{'extra MiB':>11}{'memory':>8}"
              f"{'same picks':>12}")
        for a, r in results.items():
            diverge = next((i for i, (u, v) in enumerate(zip(r["picks"], ref["picks"],
                                                                strict=True)) if u != v), None)
            same = "yes" if diverge is None else f"from {diverge}"
            print(f"{a:<24}{r['seconds']:>9.2f}{ref['seconds'] / r['seconds']:>8.2f}"
                  f"{r['extra_bytes'] / 2**20:>11.0f}"
                  f"{r['extra_bytes'] / r['feature_bytes']:>8.2f}{same:>12}")


if __name__ == "__main__":
    main()
