"""Crossover of the two k-center backends for the nearest-initial-centre search.

Times the KeOps min/argmin reduction against chunked torch matrix products for N pool
points and M centres over a range of dimensions d, on isotropic noise (no pruning
helps there), and prints the ratio torch / keops (> 1: KeOps faster).
``k_center_greedy(backend="auto")`` follows these measurements. Whether KeOps works is
asked of a child process first (``keops_available``); where it does not, the reason is
printed and only torch is timed.

Usage::

    uv run python benchmarks/coreset_backends.py
    python benchmarks/coreset_backends.py --device cuda --dims 2,8,32,128,512
"""

from __future__ import annotations

import datetime
import os

import harness
import torch

from skmoby.query import _distances, kcenter, keops_available


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--m", type=int, default=5_000)
    p.add_argument("--dims", default="2,4,8,16,32,64,128,512")
    harness.add_device(p, "cpu")
    harness.add_repeat(p, 3)
    args = p.parse_args()
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()} CPU cores"
    keops = keops_available(args.device)
    print(
        f"N={args.n} M={args.m} device={args.device} ({where}), float32, best of "
        f"{args.repeat}, {datetime.date.today()}"
    )
    if not keops:
        print(f"KeOps is not usable here: {kcenter._keops_reason(torch.device(args.device).type)}")
    cols = [
        harness.Column("d", 5),
        harness.Column("torch s", 10, ".4f"),
        harness.Column("keops s", 10, ".4f"),
        harness.Column("torch/keops", 13, ".2f"),
    ]
    print(harness.header(cols))
    for d in (int(v) for v in args.dims.split(",")):
        g = torch.Generator().manual_seed(d)
        x = torch.randn(args.n, d, generator=g).to(args.device)
        c = torch.randn(args.m, d, generator=g).to(args.device)

        def best(fn):  # the first call compiles (KeOps) or warms up
            return harness.measure(fn, args.repeat, warmup=1, device=args.device).best

        t_torch = best(lambda x=x, c=c: _distances.nearest_torch(x, c))
        t_keops = best(lambda x=x, c=c: _distances.nearest_keops(x, c)) if keops else None
        ratio = harness.ratio(t_torch, t_keops) if keops else None
        print(harness.row(cols, [d, t_torch, t_keops, ratio]), flush=True)


if __name__ == "__main__":
    main()
