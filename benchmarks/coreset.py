"""Speed and memory of k-center greedy (CoreSet) selection against reference approaches.

A pool of N points plus M labelled centers, d features, b picks, float32, on
Gaussian-mixture features (10 clusters, like class-clustered network embeddings) and on
isotropic noise. All approaches must select the same points; the script says from which
pick on they differ (float32 near-ties are ordered differently by different formulas).

Reference approaches, reimplemented here:

1. ``authors``: the MoBYv2AL authors' code -- the full N x M distance matrix from
   scikit-learn's ``pairwise_distances``, its row minimum, then one
   ``pairwise_distances`` call per pick.
2. ``argmin_min``: scikit-learn's chunked ``pairwise_distances_argmin_min`` for the
   initial distances plus an incremental ``pairwise_distances`` update per pick (what
   scikit-activeml and modAL-style implementations do); ``argmin_min_norms`` is the same
   with the pool's squared norms computed once instead of at every pick.
3. ``cdist``: a full ``torch.cdist`` N x M matrix, then one ``cdist`` per pick, the
   pick's index brought to the host each time (the obvious GPU approach).

On the CPU every approach runs in its own subprocess, so its peak memory above the
feature matrix (VmHWM minus the resident size before the call) is measured cleanly;
ratio = time of ``argmin_min`` / time. With ``--device cuda`` all run in one process
(CUDA starts once), memory is the peak of ``torch.cuda.max_memory_allocated`` above the
features, ratio = time of ``cdist`` / time, and the script prints the bandwidth bound:
b passes over the pool's N x d features at the bandwidth of a device-to-device copy
measured in the same run. ``skmoby-cuda-<step>-<graph|eager>`` variants pin how a greedy step runs.

Usage::

    uv run python benchmarks/coreset.py --n 20000 --m 2000 --b 500   # CPU goal size
    uv run python benchmarks/coreset.py --only argmin_min,skmoby-torch-auto --repeat 3
    python benchmarks/coreset.py --device cuda --n 50000 --m 5000 --b 2500
"""

from __future__ import annotations

import argparse
import os
import sys

import harness
import numpy as np

CPU_APPROACHES = [
    "authors",
    "argmin_min",
    "argmin_min_norms",
    "cdist",
    "skmoby-torch-auto",
    "skmoby-torch-noprune",
    "skmoby-keops-auto",
]
CUDA_APPROACHES = [
    "cdist",
    "skmoby-cuda-auto",
    "skmoby-cuda-triton-graph",
    "skmoby-cuda-triton-eager",
    "skmoby-cuda-torch-graph",
    "skmoby-cuda-torch-eager",
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

    x = torch.as_tensor(x)  # NumPy features on the CPU, a tensor already with --device cuda
    pool, lab = x[m:], x[:m]
    min_d = torch.cdist(pool, lab).min(dim=1).values
    picks, ds = [], []
    for _ in range(b):
        j = int(torch.argmax(min_d))
        picks.append(j)
        ds.append(float(min_d[j]))
        min_d = torch.minimum(min_d, torch.cdist(pool, pool[j : j + 1]).view(-1))
    return np.array(picks), np.array(ds)


def run_skmoby(x, m, b, name):
    from skmoby.query import kcenter

    parts = name.split("-")
    pinned = {}  # none: the CUDA step and graph size k_center_greedy uses
    if parts[1] == "cuda":
        backend, prune = "torch", "auto"
        if parts[2] != "auto":
            graph_steps = kcenter._GRAPH_STEPS if parts[3] == "graph" else 0
            pinned = {"device_step": parts[2], "graph_steps": graph_steps}
    else:
        backend = parts[1]
        prune = {"auto": "auto", "noprune": False}[parts[2]]
    idx, ds = kcenter._k_center_greedy(
        x,
        b,
        initial_centers=np.arange(m),
        backend=backend,
        prune=prune,
        random_state=None,
        n_threads=None,
        **pinned,
    )
    return idx - m, ds


def run(name, x, m, b):
    if name == "authors":
        return run_authors(x, m, b)
    if name == "argmin_min":
        return run_argmin_min(x, m, b)
    if name == "argmin_min_norms":
        return run_argmin_min_norms(x, m, b)
    if name == "cdist":
        return run_cdist(x, m, b)
    return run_skmoby(x, m, b, name)


def child(args) -> None:
    """One CPU approach in a fresh process; prints a JSON line."""
    x = make_features(args.kind, args.n + args.m, args.d)
    if args.approach.startswith("skmoby-keops"):
        # Probe KeOps and compile its formula for this dimension outside the timing.
        run_skmoby(x[:64], 8, 1, "skmoby-keops-noprune")
    import sklearn.metrics  # noqa: F401  (libraries load before the baseline)
    import torch  # noqa: F401

    import skmoby  # noqa: F401

    before = _rss("VmRSS")
    with harness.Stopwatch() as sw:
        idx, ds = run(args.approach, x, args.m, args.b)
    peak = _rss("VmHWM")
    harness.emit(
        {
            "seconds": sw.seconds,
            "extra_bytes": max(0, peak - before),
            "feature_bytes": x.nbytes,
            "picks": [int(v) for v in idx],
            "distances": [float(v) for v in ds],
        }
    )


def cuda_copy_bandwidth(nbytes: int) -> float:
    """Bytes per second of a device-to-device copy (read + write) of ``nbytes``."""
    import torch

    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    best = harness.measure(lambda: dst.copy_(src), 5, warmup=1, device="cuda").best
    return 2 * src.numel() * 4 / best


def run_cuda(args, kind, chosen):
    import torch

    x = torch.from_numpy(make_features(kind, args.n + args.m, args.d)).cuda()
    results = {}
    for name in chosen:
        for rep in range(args.repeat + 1):  # the first run compiles and warms up
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            with harness.Stopwatch("cuda") as sw:
                idx, _ = run(name, x, args.m, args.b)
            if rep == 0:
                continue
            r = results.setdefault(name, {"times": [], "feature_bytes": x.numel() * 4})
            r["times"].append(sw.seconds)
            r["extra_bytes"] = torch.cuda.max_memory_allocated() - base
            r["picks"] = [int(v) for v in idx]
    return results


def report(kind, results, ref_name, args):
    ref = results[ref_name]
    fb = ref["feature_bytes"]
    print(
        f"\n{kind} features (ratio = {ref_name} time / time, median of {args.repeat}; "
        f"memory = peak extra memory / feature matrix of {fb / 2**20:.0f} MiB)"
    )
    cols = [
        harness.Column("approach", 26, align="<"),
        harness.Column("seconds", 9, ".3f"),
        harness.Column("ratio", 8, ".2f"),
        harness.Column("extra MiB", 11, ".0f"),
        harness.Column("memory", 8, ".2f"),
        harness.Column("same picks", 12),
    ]
    rows = []
    for a, r in results.items():
        sec, ref_sec = np.median(r["times"]), np.median(ref["times"])
        diverge = next(
            (i for i, (u, v) in enumerate(zip(r["picks"], ref["picks"], strict=True)) if u != v),
            None,
        )
        same = "yes" if diverge is None else f"from {diverge}"
        extra = r["extra_bytes"]
        rows.append([a, sec, harness.ratio(ref_sec, sec), extra / 2**20, extra / fb, same])
    print(harness.table(cols, rows))


def run_cpu(args, kind, chosen):
    """Each approach in a child process, ``--repeat`` times, interleaved."""
    results = {}
    for _ in range(args.repeat):
        for a in chosen:
            cmd = [sys.executable, __file__, "--approach", a, "--kind", kind]
            cmd += ["--n", str(args.n), "--m", str(args.m), "--d", str(args.d), "--b", str(args.b)]
            res = harness.run_child(cmd, f"approach {a!r} ({kind} features)")
            r = results.setdefault(a, {**res, "times": []})
            r["times"].append(res["seconds"])
            r["extra_bytes"] = max(r["extra_bytes"], res["extra_bytes"])
    return results


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--n", type=int, default=50_000, help="pool size N (50000)")
    p.add_argument("--m", type=int, default=5_000, help="labelled centers M (5000)")
    p.add_argument("--d", type=int, default=512, help="feature dimension (512)")
    p.add_argument("--b", type=int, default=2_500, help="picks (2500)")
    p.add_argument("--kinds", default="clustered,noise")
    harness.add_device(p, "cpu", choices=["cpu", "cuda"])
    harness.add_repeat(p, 1, help="runs per approach, interleaved; the median is reported")
    p.add_argument("--only", default="", help="comma-separated approach prefixes to run")
    p.add_argument("--approach", help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.approach:
        child(args)
        return
    pool = CUDA_APPROACHES if args.device == "cuda" else CPU_APPROACHES
    chosen = [
        a for a in pool if not args.only or any(a.startswith(o) for o in args.only.split(","))
    ]
    where = (
        f"{os.cpu_count()} CPU cores"
        if args.device == "cpu"
        else __import__("torch").cuda.get_device_name()
    )
    print(f"N={args.n} M={args.m} d={args.d} b={args.b}, float32, {where}", flush=True)
    if args.device == "cuda":
        per_pick = args.n * args.d * 4  # each pick must read the whole pool once
        bw = cuda_copy_bandwidth(max(per_pick, 256 * 2**20))
        bound = args.b * per_pick / bw
        print(
            f"bandwidth bound: {args.b} passes over {per_pick / 2**20:.0f} MiB at "
            f"{bw / 1e9:.0f} GB/s (device copy) = {bound:.3f} s",
            flush=True,
        )
    for kind in args.kinds.split(","):
        if args.device == "cuda":
            results = run_cuda(args, kind, chosen)
            ref_name = "cdist" if "cdist" in results else chosen[0]
        else:
            results = run_cpu(args, kind, chosen)
            ref_name = "argmin_min" if "argmin_min" in results else chosen[0]
        report(kind, results, ref_name, args)
        if args.device == "cuda":
            for a, r in results.items():
                if a.startswith("skmoby"):
                    print(f"{a}: {np.median(r['times']) / bound:.2f}x the bandwidth bound")


if __name__ == "__main__":
    main()
