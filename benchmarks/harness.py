"""What the benchmark scripts share: their options, data, timer, child runs and tables.

The scripts run as ``uv run python benchmarks/NAME.py``, which puts this folder first on
``sys.path``, so they ``import harness`` as it is. Every table a script prints gives its
times as ratios against a reference measured in the same run, so the machine's speed
cancels.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# -- options ----------------------------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser described by the first line of a script's docstring."""
    return argparse.ArgumentParser(description=(doc or "").splitlines()[0])


def add_repeat(p: argparse.ArgumentParser, default: int, help: str | None = None) -> None:
    """``--repeat``: how many timed runs a measurement takes."""
    p.add_argument("--repeat", type=int, default=default, help=help)


def add_device(
    p: argparse.ArgumentParser, default: str, choices: Sequence[str] | None = None
) -> None:
    """``--device``: where the work runs."""
    p.add_argument("--device", default=default, choices=choices)


def add_data_root(p: argparse.ArgumentParser, env: bool = False) -> None:
    """``--data-root``: the folder of the dataset files (FashionMNIST in torchvision's
    layout or the four .gz files); with ``env``, ``$SKMOBY_DATA`` is the default."""
    p.add_argument(
        "--data-root",
        default=os.environ.get("SKMOBY_DATA") if env else None,
        help="FashionMNIST folder (torchvision layout or the four .gz files)",
    )


def cpus() -> int:
    """CPUs this process may run on (its affinity mask)."""
    return len(os.sched_getaffinity(0))


# -- data -------------------------------------------------------------------------------


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as float32 8x8 images in [0, 1], split 70/30 stratified
    (seed 0): ``X_train, X_test, y_train, y_test``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8).astype(np.float32)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def load_fashion_mnist(data_root: str | None):
    """FashionMNIST from ``data_root`` (``None``: ``$SKMOBY_DATA``, else skmoby's cache),
    as a :class:`skmoby.datasets.ImageDataset`."""
    from skmoby.datasets import load_dataset

    return load_dataset("fashionmnist", data_root)


# -- timing -----------------------------------------------------------------------------


def synchronize(device: Any) -> None:
    """Wait for the work queued on a CUDA ``device``; nothing elsewhere."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@dataclass
class Timing:
    """Seconds of each timed run."""

    times: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def measure(
    fn: Callable[[], Any], repeat: int = 1, *, warmup: int = 0, device: Any = "cpu"
) -> Timing:
    """Time ``fn()`` ``repeat`` times with ``time.perf_counter`` after ``warmup`` untimed
    calls (compilation, caches); on CUDA each run is timed to the end of its work."""
    for _ in range(warmup):
        fn()
    timing = Timing()
    for _ in range(repeat):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        timing.times.append(time.perf_counter() - t0)
    return timing


#: Environment for a child whose :class:`PeakMemory` should be the memory a call holds
#: at once: MKL's memory manager keeps the packing buffers of its matrix products for
#: later calls (tens of MB), and glibc raises its threshold for returning large blocks
#: to the system as they are freed, so both would count memory kept for reuse.
LIVE_MEMORY_ENV = {"MKL_DISABLE_FAST_MM": "1", "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


class PeakMemory:
    """``with PeakMemory() as pm: ...`` then ``pm.mb``: the peak resident memory of the
    block above the resident memory at its start, in MiB.

    On Linux the process's high-water mark is reset at the start (``/proc/self/clear_refs``),
    so earlier peaks (making the inputs, an earlier call) do not hide or inflate the
    block's. Elsewhere it falls back to ``ru_maxrss``, which only grows: then ``mb`` is
    0 when the block stays under an earlier peak."""

    def __init__(self) -> None:
        self.mb = float("nan")

    @staticmethod
    def _status(key: str) -> float | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def __enter__(self) -> PeakMemory:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._start = self._status("VmRSS")
        except OSError:
            self._start = None
        self._hwm = self._start is not None
        if not self._hwm:
            self._start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._status("VmHWM") if self._hwm else None
        if end is None:
            end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.mb = max(0.0, end - self._start)


class Stopwatch:
    """``with Stopwatch(device) as sw: ...`` then ``sw.seconds``: one timed block (or
    ``start()`` and ``stop()`` where the block spans two callbacks)."""

    def __init__(self, device: Any = "cpu") -> None:
        self.device, self.seconds = device, float("nan")

    def start(self) -> Stopwatch:
        synchronize(self.device)
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> float:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._t0
        return self.seconds

    def __enter__(self) -> Stopwatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- child processes --------------------------------------------------------------------


def emit(result: dict) -> None:
    """Print a child's result as the JSON line :func:`run_child` reads."""
    print(json.dumps(result), flush=True)


def run_child(cmd: Sequence[str], what: str, **kwargs: Any) -> dict:
    """Run ``cmd`` and return the JSON of its last line of output; exit with the child's
    error output, naming ``what`` failed, if it fails."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        sys.exit(f"{what} failed with exit status {done.returncode}:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- tables -----------------------------------------------------------------------------


def ratio(value: float, reference: float) -> float:
    """``value / reference``: a figure against the reference measured in the same run."""
    return value / reference


@dataclass
class Column:
    """A table column: its title, width and number format (``None`` prints ``-``)."""

    title: str
    width: int
    fmt: str = ""
    align: str = ">"


def _cell(col: Column, v: Any) -> str:
    text = v if isinstance(v, str) else "-" if v is None else format(v, col.fmt)
    return f"{text:{col.align}{col.width}}"


def header(columns: Sequence[Column]) -> str:
    """The line of column titles."""
    return "".join(_cell(c, c.title) for c in columns)


def row(columns: Sequence[Column], values: Sequence[Any]) -> str:
    """One line of the table: each value formatted and padded to its column's width."""
    return "".join(_cell(c, v) for c, v in zip(columns, values, strict=True))


def table(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> str:
    """The header and the rows (for a table printed as its rows come, see :func:`row`)."""
    return "\n".join([header(columns), *(row(columns, r) for r in rows)])
