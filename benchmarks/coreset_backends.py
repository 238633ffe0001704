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

import argparse
import datetime
import os
import time

import torch

from skmoby.query import _distances, kcenter


def _time(fn, repeat: int, device: str) -> float:
    fn()  # compile (KeOps) / warm up
    best = float("inf")
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--m", type=int, default=5_000)
    p.add_argument("--dims", default="2,4,8,16,32,64,128,512")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()} CPU cores"
    keops = kcenter.keops_available(args.device)
    print(
        f"N={args.n} M={args.m} device={args.device} ({where}), float32, best of "
        f"{args.repeat}, {datetime.date.today()}"
    )
    if not keops:
        print(f"KeOps is not usable here: {kcenter._keops_reason(torch.device(args.device).type)}")
    print(f"{'d':>5}{'torch s':>10}{'keops s':>10}{'torch/keops':>13}")
    for d in (int(v) for v in args.dims.split(",")):
        g = torch.Generator().manual_seed(d)
        x = torch.randn(args.n, d, generator=g).to(args.device)
        c = torch.randn(args.m, d, generator=g).to(args.device)
        t_torch = _time(lambda x=x, c=c: _distances.nearest_torch(x, c), args.repeat, args.device)
        if keops:
            t_keops = _time(
                lambda x=x, c=c: _distances.nearest_keops(x, c), args.repeat, args.device
            )
            print(f"{d:>5}{t_torch:>10.4f}{t_keops:>10.4f}{t_torch / t_keops:>13.2f}", flush=True)
        else:
            print(f"{d:>5}{t_torch:>10.4f}{'-':>10}{'-':>13}", flush=True)


if __name__ == "__main__":
    main()
