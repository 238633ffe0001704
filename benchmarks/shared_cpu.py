"""Speed of ``fit`` and ``k_center_greedy`` on CPUs shared with another busy program.

Each measurement runs in a fresh Python process (OpenMP reads its settings when torch is
imported), once alone and once next to a competitor: a second process that spins a Python
loop, i.e. one CPU-bound program such as another user's job. Every time is printed as a
ratio to the fastest setting measured alone in the same run, so the machine's speed
cancels; ``CPUs used`` (CPU time / wall time) shows threads that spin instead of work.

Workloads (small enough for a 2-core CPU):

* ``fit``: ``MoBYv2Classifier("cnn")``, one epoch on scikit-learn's digits, 300 labelled
  and 1,497 unlabelled images, batch 64;
* ``kcg``: ``k_center_greedy`` with the torch backend, N = 20,000 pool points plus
  M = 2,000 initial centers, d = 512, b = 500 picks, clustered features.

Settings (each a column of the table):

* ``torch default``: what torch does by itself, one thread per core of the machine and
  GNU OpenMP's default wait policy (spin about 3 ms before sleeping);
* ``limit_threads()``: the thread count :func:`skmoby.threads.available_cpus` picks
  (affinity mask and cgroup quota);
* ``1 thread``: ``limit_threads(1)``;
* ``passive``: ``limit_threads()`` with ``OMP_WAIT_POLICY=PASSIVE`` set before torch is
  imported (waiting threads sleep at once instead of spinning);
* ``spin=N``: ``limit_threads()`` with ``GOMP_SPINCOUNT=N`` (spin N iterations, then sleep;
  any N can be asked for).

``--small`` shrinks both workloads (fit: 256 digits; kcg: N = 2,000, M = 200, d = 32,
b = 20) to check in seconds that the script works; its ratios mean nothing.

Usage::

    flock /tmp/skmoby-heavy.lock uv run python benchmarks/shared_cpu.py
    uv run python benchmarks/shared_cpu.py --work kcg --settings default,passive --repeat 3
    uv run python benchmarks/shared_cpu.py --small --settings 1-thread
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import harness

SETTINGS = {
    # name: (environment, threads: "torch" = untouched, "auto" = limit_threads(), or int)
    "default": ({}, "torch"),
    "limit_threads": ({}, "auto"),
    "1-thread": ({}, 1),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, "auto"),
    "spin=10000": ({"GOMP_SPINCOUNT": "10000"}, "auto"),
}
LABELS = {
    "default": "torch default",
    "limit_threads": "limit_threads()",
    "1-thread": "1 thread",
    "passive": "passive",
    "spin=10000": "spin=10000",
}

_CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np
from skmoby.threads import available_cpus, limit_threads

work, threads, small = sys.argv[1], sys.argv[2], sys.argv[3] == "small"
n = None if threads == "auto" else int(threads) if threads != "torch" else "torch"
warnings.simplefilter("ignore")
if work == "kcg":
    from skmoby import k_center_greedy
    N, M, d, b = (2000, 200, 32, 20) if small else (20000, 2000, 512, 500)
    rng = np.random.RandomState(0)
    means = rng.randn(10, d).astype(np.float32) * 4.0
    x = means[rng.randint(10, size=N + M)] + rng.randn(N + M, d).astype(np.float32)
    warm = lambda: k_center_greedy(x[:3000], 10, initial_centers=np.arange(200),
                                   backend="torch")
    run = lambda: k_center_greedy(x, b, initial_centers=np.arange(M), backend="torch")
else:
    from sklearn.datasets import load_digits
    from skmoby import MoBYv2Classifier
    X, y = load_digits(return_X_y=True)
    X = (X / 16).reshape(-1, 8, 8).astype("float32")
    y = y.copy()
    y[300:] = -1
    if small:
        X, y = X[:256], y[:256]
    clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=64, lr=0.05, random_state=0,
                           device="cpu", verbose=0)
    warm = lambda: clf.fit(X[:256], y[:256])
    run = lambda: clf.fit(X, y)

def measure():
    import torch
    warm()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    return {"wall": wall, "cpu": cpu, "threads": torch.get_num_threads()}

if n == "torch":
    out = measure()
else:
    with limit_threads(n):
        out = measure()
out["available_cpus"] = available_cpus()
print("RESULT " + json.dumps(out), flush=True)
"""

_BUSY = "import time\nt = time.time() + {seconds}\nwhile time.time() < t:\n    pass\n"


def _setting(name: str) -> tuple[dict, str | int]:
    if name.startswith("spin="):  # any spin count, e.g. spin=0, spin=300000
        return {"GOMP_SPINCOUNT": str(int(name[5:]))}, "auto"
    return SETTINGS[name]


def _run(work: str, setting: str, timeout: float, small: bool = False) -> dict:
    env_extra, threads = _setting(setting)
    env = {**os.environ, **env_extra}
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"):
        if key not in env_extra:
            env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, work, str(threads), "small" if small else "full"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{work}/{setting} failed:\n{proc.stderr[-2000:]}")


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def measure_all(args, works: list[str], settings: list[str]) -> dict:
    """Median wall and CPU seconds of every (work, setting, alone or competitor)."""
    # Alone and next to the competitor back to back for each setting, so that both see
    # the same background load; repeats go round the whole list again.
    runs: dict[tuple[str, str, str], list[dict]] = {}
    for _ in range(args.repeat):
        for work in works:
            for s in settings:
                for condition in ("alone", "competitor"):
                    busy = None
                    if condition == "competitor":
                        busy = subprocess.Popen(
                            [sys.executable, "-c", _BUSY.format(seconds=args.timeout + 60)]
                        )
                        time.sleep(0.5)
                    try:
                        res = _run(work, s, args.timeout, args.small)
                    finally:
                        if busy is not None:
                            busy.kill()
                            busy.wait()
                    runs.setdefault((work, s, condition), []).append(res)
                    print(
                        f"  {condition:10s} {work:4s} {LABELS[s]:16s} "
                        f"threads={res['threads']}  wall {res['wall']:7.2f} s  "
                        f"cpu {res['cpu']:7.2f} s  (load {_load()})",
                        flush=True,
                    )
    return {
        key: {
            "wall": statistics.median(r["wall"] for r in rs),
            "cpu": statistics.median(r["cpu"] for r in rs),
        }
        for key, rs in runs.items()
    }


def print_tables(results: dict, works: list[str], settings: list[str]) -> None:
    # The reference is the fastest setting alone: on a machine that others use too, it is
    # the closest measurement of the machine's quiet speed.
    cols = [harness.Column("", 28, align="<")]
    cols += [harness.Column(LABELS[s], 18, ".2f") for s in settings]
    for work in works:
        alone = {s: results[work, s, "alone"] for s in settings}
        busy = {s: results[work, s, "competitor"] for s in settings}
        ref = min(settings, key=lambda s: alone[s]["wall"])
        base = alone[ref]["wall"]
        own = {s: alone[s]["wall"] for s in settings}
        ratios = [
            ("  alone", alone, dict.fromkeys(settings, base)),
            ("  next to a competitor", busy, dict.fromkeys(settings, base)),
            ("  competitor / own alone", busy, own),
        ]
        rows = [
            [title, *(f"{harness.ratio(num[s]['wall'], den[s]):.2f}x" for s in settings)]
            for title, num, den in ratios
        ]
        rows.append(
            ["  CPUs used (competitor)", *(busy[s]["cpu"] / busy[s]["wall"] for s in settings)]
        )
        print(f"{work}: wall time / fastest alone ({LABELS[ref]}, {base:.2f} s)")
        print(harness.table(cols, rows) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = harness.parser(__doc__)
    p.add_argument("--work", default="fit,kcg", help="comma list of fit, kcg")
    p.add_argument(
        "--settings",
        default="default,limit_threads,1-thread,passive,spin=10000",
        help=f"comma list of {', '.join(SETTINGS)}, spin=N",
    )
    harness.add_repeat(p, 1, help="runs per cell; the median is kept")
    p.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    p.add_argument(
        "--small",
        action="store_true",
        help="tiny workloads, to check that the script works (seconds)",
    )
    args = p.parse_args(argv)
    works = args.work.split(",")
    settings = args.settings.split(",")
    for s in settings:
        if s not in SETTINGS and not (s.startswith("spin=") and s[5:].isdigit()):
            p.error(f"unknown setting {s!r}; choose from {list(SETTINGS)} or spin=N")
        LABELS.setdefault(s, s)
    print(
        f"CPUs: os.cpu_count()={os.cpu_count()}, affinity={harness.cpus()}; "
        f"load average at start: {_load()}"
    )
    results = measure_all(args, works, settings)
    print(f"load average at end: {_load()}\n")
    print_tables(results, works, settings)


if __name__ == "__main__":
    main()
