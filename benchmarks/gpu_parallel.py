"""Throughput of K concurrent fits sharing one device: what ``--jobs-per-gpu K`` buys.

Starts K processes (``spawn``, as the runner's workers), each fitting a
``MoBYv2Classifier`` on random images (labelled and as many unlabelled). Each process
fits once to warm up (imports, CUDA context, kernels), waits for the others, then times
``--epochs`` epochs. Prints each process's steps per second, their sum, and the ratio of
that sum to the steps per second of one process alone (K = 1 is run first, in the same
invocation, as the reference).

Usage::

    uv run python benchmarks/gpu_parallel.py --device cuda --jobs 1 2 3
    uv run python benchmarks/gpu_parallel.py --device cpu --backbone cnn --n 256 --size 8 \\
        --epochs 1 --jobs 1 2        # a quick try on the CPU
"""

from __future__ import annotations

import json
import multiprocessing as mp

import harness


def fit_worker(args: dict, barrier, queue) -> None:
    import numpy as np
    import torch
    from skorch.callbacks import Callback

    from skmoby import MoBYv2Classifier

    if args["threads"]:
        torch.set_num_threads(args["threads"])
    rng = np.random.default_rng(args["rank"])
    n, s = args["n"], args["size"]
    X = rng.integers(0, 256, (n, 3, s, s), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    U = rng.integers(0, 256, (n, 3, s, s), dtype=np.uint8)

    class Timer(Callback):
        def on_train_begin(self, net, **kwargs):
            self.watch = harness.Stopwatch(args["device"]).start()

        def on_train_end(self, net, **kwargs):
            self.seconds = self.watch.stop()

    def fit(epochs):
        timer = Timer()
        clf = MoBYv2Classifier(
            args["backbone"],
            max_epochs=epochs,
            batch_size=128,
            device=args["device"],
            random_state=args["rank"],
            callbacks=[("timer", timer)],
            train_split=None,
        )
        clf.fit(X, y, X_unlabeled=U)
        return clf.steps_per_epoch_ * epochs / timer.seconds

    with harness.Stopwatch() as warm:
        fit(1)  # warm-up
    barrier.wait()
    steps_per_s = fit(args["epochs"])
    queue.put({"rank": args["rank"], "steps_per_s": steps_per_s, "warmup_s": warm.seconds})


def measure(k: int, base: dict) -> list[dict]:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k), ctx.Queue()
    procs = [
        ctx.Process(target=fit_worker, args=({**base, "rank": r}, barrier, queue)) for r in range(k)
    ]
    for p in procs:
        p.start()
    out = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sorted(out, key=lambda r: r["rank"])


def main() -> None:
    p = harness.parser(__doc__)
    harness.add_device(p, "cuda")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--n", type=int, default=4096, help="labelled (and unlabelled) images")
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per process")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--label", default="", help="tag printed with the results (e.g. 'mps')")
    args = p.parse_args()
    base = dict(
        device=args.device,
        backbone=args.backbone,
        n=args.n,
        size=args.size,
        epochs=args.epochs,
        threads=0,
    )
    alone = None
    for k in sorted(set(args.jobs)):
        if args.device == "cpu":
            base["threads"] = max(1, harness.cpus() // k)
        rows = measure(k, base)
        total = sum(r["steps_per_s"] for r in rows)
        alone = alone if alone is not None else total / k
        each = ", ".join(f"{r['steps_per_s']:.1f}" for r in rows)
        print(
            json.dumps(
                {
                    "label": args.label,
                    "jobs": k,
                    "steps_per_s_each": each,
                    "aggregate_steps_per_s": round(total, 2),
                    "vs_one_alone": round(harness.ratio(total, alone), 2),
                    "warmup_s": [round(r["warmup_s"], 1) for r in rows],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
