"""How many CPU threads torch should use: the CPUs this process may run on.

PyTorch starts as many intra-op threads as the machine has cores, whatever the process
is allowed to use. Under a CPU affinity mask (``taskset``, Slurm, Kubernetes' static CPU
manager) or a cgroup CPU quota (Docker's ``--cpus``, Kubernetes ``limits.cpu``, systemd's
``CPUQuota``), that is more threads than CPUs, and every parallel torch operation then
waits for threads that the kernel has descheduled. :func:`available_cpus` counts the CPUs
this process may actually use, and :func:`limit_threads` runs a block of code with torch's
intra-op thread count capped at it (or set to a number you choose), restoring the
caller's setting afterwards. :class:`~skmoby.MoBYv2Classifier` and
:func:`~skmoby.k_center_greedy` do so by default (their ``n_threads``).

Neither can see other programs that share the CPUs without a limit (a second training
run on a laptop, other users of a shared server). On a machine with few cores, leaving a
core to them -- ``limit_threads(available_cpus() - 1)`` -- keeps a fit from slowing down
many times over; the benchmark ``benchmarks/shared_cpu.py`` measures it.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# torch is imported inside the functions: available_cpus() is usable before torch (and
# its OpenMP runtime) is loaded, e.g. to set OMP_NUM_THREADS first.

__all__ = ["available_cpus", "limit_threads"]

# Where the kernel exposes the process's control groups; module attributes so that tests
# can point them at fake files.
_PROC_CGROUP = Path("/proc/self/cgroup")
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _affinity_cpus() -> int:
    """CPUs in this process's affinity mask (all CPUs where the OS has no masks)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def _own_cgroups() -> dict[str, str]:
    """``{controller: path}`` from /proc/self/cgroup; ``""`` is the cgroup v2 entry."""
    groups: dict[str, str] = {}
    try:
        text = _PROC_CGROUP.read_text()
    except OSError:
        return groups
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(","):
            groups[controller] = parts[2]
    return groups


def _ancestors(base: Path, rel: str) -> list[Path]:
    """``base/rel`` and every folder above it up to ``base``: a quota on any applies."""
    parts = [p for p in rel.strip("/").split("/") if p]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _read_quota_v2(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or float(period) <= 0:
        return None
    return float(quota) / float(period)


def _read_quota_v1(folder: Path) -> float | None:
    try:
        quota = float((folder / "cpu.cfs_quota_us").read_text())
        period = float((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:  # -1 means no limit
        return None
    return quota / period


def _quota_cpus() -> float | None:
    """The tightest cgroup CPU quota on this process, in CPUs, or None without one."""
    groups = _own_cgroups()
    quotas: list[float] = []
    # cgroup v2: one hierarchy; the process's path is on the "0::" line. Inside a
    # container with its own cgroup namespace that path is "/", the root of the mount.
    for folder in _ancestors(_CGROUP_ROOT, groups.get("", "/")):
        q = _read_quota_v2(folder)
        if q is not None:
            quotas.append(q)
    # cgroup v1: the cpu controller is mounted on its own folder (named "cpu" or
    # "cpu,cpuacct", often both as links).
    rel = groups.get("cpu", "/")
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for folder in _ancestors(_CGROUP_ROOT / mount, rel):
            q = _read_quota_v1(folder)
            if q is not None:
                quotas.append(q)
    return min(quotas) if quotas else None


def check_n_threads(n: Any, name: str = "n_threads") -> int | None:
    """``n`` as an int of at least 1, or None; ``TypeError``/``ValueError`` naming
    ``name`` otherwise."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral)):
        raise TypeError(f"{name} must be an int or None; got {type(n).__name__}")
    if n is not None and n < 1:
        raise ValueError(f"{name} must be at least 1; got {n}")
    return None if n is None else int(n)


def available_cpus() -> int:
    """Number of CPUs this process may use: its affinity mask, capped by its CPU quota.

    The affinity mask (``os.sched_getaffinity``) is what ``taskset``, Slurm and
    Kubernetes' static CPU manager set. The quota is the cgroup CPU bandwidth limit
    (cgroup v2 ``cpu.max``, cgroup v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``) of the
    process's own control group and of every group above it, as Docker's ``--cpus`` and
    Kubernetes' ``limits.cpu`` set; a fractional quota is rounded up (1.5 CPUs -> 2), as
    joblib and the JVM do.

    Returns
    -------
    int
        At least 1.

    See Also
    --------
    limit_threads : run code with torch's thread count set to this number.

    Examples
    --------
    >>> from skmoby.threads import available_cpus
    >>> available_cpus() >= 1
    True
    """
    n = _affinity_cpus()
    quota = _quota_cpus()
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


@contextmanager
def limit_threads(n: int | None = None) -> Iterator[int]:
    """Run a block with torch's intra-op thread count set to ``n``, then restore it.

    Parameters
    ----------
    n : int or None, default=None
        Threads to use. ``None`` keeps torch's current count but never more than
        :func:`available_cpus`: a count the program chose (``torch.set_num_threads``,
        ``OMP_NUM_THREADS``, a runner splitting the CPUs between jobs) stays, torch's
        default of one thread per core of the machine is cut to the CPUs this process
        may use. A number is used as given, even one larger than
        :func:`available_cpus` (it oversubscribes the CPUs).

    Yields
    ------
    int
        The thread count in effect inside the block.

    Raises
    ------
    TypeError
        If ``n`` is not an int or None.
    ValueError
        If ``n`` is smaller than 1.

    Notes
    -----
    ``torch.set_num_threads`` is process-wide: two Python threads that enter
    ``limit_threads`` with different numbers at the same time set each other's count.
    The setting covers torch's CPU operations (ATen's OpenMP pool and MKL/oneDNN); the
    inter-op pool and data-loader worker processes are not changed.

    Examples
    --------
    >>> import torch
    >>> from skmoby.threads import limit_threads
    >>> before = torch.get_num_threads()
    >>> with limit_threads(1) as n:
    ...     torch.get_num_threads() == n == 1
    True
    >>> torch.get_num_threads() == before
    True
    """
    import torch

    n = check_n_threads(n, "n")
    previous = torch.get_num_threads()
    target = min(previous, available_cpus()) if n is None else n
    if target != previous:
        torch.set_num_threads(target)
    try:
        yield target
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
