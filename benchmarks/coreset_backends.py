"""Crossover of the two k-center backends for the nearest-initial-centre search.

Times the KeOps min/argmin reduction against chunked torch matrix products for N pool
points and M centres over a range of dimensions d, and prints the ratio torch / keops
(> 1: KeOps faster). ``k_center_greedy(backend="auto")`` follows these measurements.

Usage::

    uv run python benchmarks/coreset_backends.py
    uv run python benchmarks/coreset_backends.py --device cuda --dims 2,8,32,128,512
"""

from __future__ import annotations

import argparse
import time

import torch

from skmoby.query import kcenter


def _time(fn, repeat: int) -> float:
    fn()  # compile (KeOps) / warm up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
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
    if not kcenter.keops_available(args.device):
        raise SystemExit(f"KeOps is not usable: {kcenter._KEOPS_STATE.get(args.device)}")
    print(f"N={args.n} M={args.m} device={args.device}, float32, best of {args.repeat}")
    print(f"{'d':>5}{'torch s':>10}{'keops s':>10}{'torch/keops':>13}")
    for d in (int(v) for v in args.dims.split(",")):
        g = torch.Generator().manual_seed(d)
        x = torch.randn(args.n, d, generator=g).to(args.device)
        c = torch.randn(args.m, d, generator=g).to(args.device)
        t_torch = _time(lambda x=x, c=c: kcenter._nearest_torch(x, c), args.repeat)
        t_keops = _time(lambda x=x, c=c: kcenter._nearest_keops(x, c), args.repeat)
        print(f"{d:>5}{t_torch:>10.3f}{t_keops:>10.3f}{t_torch / t_keops:>13.2f}")


if __name__ == "__main__":
    main()
