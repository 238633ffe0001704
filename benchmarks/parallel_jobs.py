"""Speed-up of ``--jobs 2`` over ``--jobs 1`` on the CPU, and whether the tables match.

Runs the ``fashionmnist-cpu`` preset (reduced by default: 2 trials, 3 cycles, 10 epochs;
``--full`` for the whole preset) twice from the command line, ``skmoby run --jobs 1``
then ``--jobs 2``, each in a fresh folder, timing the whole command (worker start-up
included). Prints both wall times, their ratio, and whether the two ``results.csv``
files hold the same values (method, trial, cycle, n_labelled, accuracy) and the same
selections. The goal on a 2-core machine is a ratio of at least 1.6.

The FashionMNIST files are read from ``--data-root``: a folder in torchvision's layout
(``DIR/FashionMNIST/raw/``) or a folder holding the four ``*-ubyte.gz`` files directly.
``--preset demo`` (digits, no files) with ``--trials 2 --cycles 1 --epochs 1`` checks in
seconds that the script works; its timings mean nothing.

Usage::

    flock /tmp/skmoby-heavy.lock uv run python benchmarks/parallel_jobs.py --data-root DIR
    uv run python benchmarks/parallel_jobs.py --data-root DIR --full
    uv run python benchmarks/parallel_jobs.py --preset demo --trials 2 --cycles 1 --epochs 1
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import harness
import pandas as pd

from skmoby.experiment import PRESETS

VALUES = ["method", "trial", "cycle", "n_labelled", "accuracy"]


def run_cli(jobs: int, out: Path, args, options: list[str]) -> tuple[float, pd.DataFrame, dict]:
    """``skmoby run`` with ``--jobs jobs`` into ``out``: its wall time, table, selections."""
    data = ["--data-root", args.data_root] if args.data_root else []
    cmd = [sys.executable, "-m", "skmoby.cli", "run", "--preset", args.preset]
    cmd += ["--device", "cpu", *data, "--out", str(out), "--quiet", "--jobs", str(jobs)]
    with harness.Stopwatch() as sw:
        done = subprocess.run([*cmd, *options], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"--jobs {jobs} failed:\n{done.stderr[-3000:]}")
    selections = json.loads((out / "selections.json").read_text())
    return sw.seconds, pd.read_csv(out / "results.csv"), selections


def main() -> None:
    p = harness.parser(__doc__)
    harness.add_data_root(p, env=True)
    p.add_argument(
        "--preset",
        default="fashionmnist-cpu",
        choices=sorted(PRESETS),
        help="the runner's preset (fashionmnist-cpu)",
    )
    p.add_argument("--full", action="store_true", help="the whole preset, not reduced")
    p.add_argument("--jobs", type=int, default=2, help="parallel jobs to compare with 1")
    for name, reduced in (("trials", 2), ("cycles", 3), ("epochs", 10)):
        p.add_argument(
            f"--{name}", type=int, default=None, help=f"override the preset's (reduced: {reduced})"
        )
    args = p.parse_args()
    dataset = PRESETS[args.preset]["dataset"]
    if dataset != "digits" and not args.data_root:
        p.error(f"give --data-root (or set SKMOBY_DATA) for {dataset}")
    changes = {} if args.full else {"trials": 2, "cycles": 3, "epochs": 10}
    changes.update(
        {
            k: getattr(args, k)
            for k in ("trials", "cycles", "epochs")
            if getattr(args, k) is not None
        }
    )
    options = [word for k, v in changes.items() for word in (f"--{k}", str(v))]
    # Import once untimed, so that neither timed command pays for compiling the
    # bytecode of torch, torchvision and skmoby (written on first import).
    subprocess.run([sys.executable, "-c", "import skmoby.experiment, torchvision"], check=True)
    times, tables, selections = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, args.jobs):
            out = Path(tmp) / f"jobs{jobs}"
            times[jobs], tables[jobs], selections[jobs] = run_cli(jobs, out, args, options)
            print(f"--jobs {jobs}: {times[jobs]:.1f} s", flush=True)
    same = (
        tables[1][VALUES].equals(tables[args.jobs][VALUES])
        and selections[1] == selections[args.jobs]
    )
    print(
        f"cpus: {harness.cpus()}, preset: {args.preset}"
        + "".join(f", {k} {v}" for k, v in changes.items())
    )
    speed_up = harness.ratio(times[1], times[args.jobs])
    print(f"speed-up of --jobs {args.jobs} over --jobs 1: {speed_up:.2f}x")
    for jobs in (1, args.jobs):
        t = tables[jobs]
        print(
            f"--jobs {jobs}: fits {t['fit_seconds'].sum():.1f} s and queries "
            f"{t['query_seconds'].sum():.1f} s summed over cycles, of "
            f"{times[jobs]:.1f} s wall"
        )
    print(f"identical results.csv values and selections: {same}")


if __name__ == "__main__":
    main()
