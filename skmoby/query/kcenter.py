"""Exact k-center greedy selection (Sener & Savarese, 2018) on the CPU and on GPUs.

The greedy step picks the non-center point farthest from its nearest center and makes it
a center. Two parts:

1. the distance of every point to its nearest initial center -- the only ``N x M`` part,
   found by matrix products (``backend="torch"``) or a KeOps min/argmin reduction
   (``"keops"``), see ``_distances``;
2. one pick at a time, each updating the nearest-center distances ``min_d``.

**CPU.** Rows are grouped around a few pivot points and the triangle inequality skips
the groups a pick cannot change (see ``_kcenter_cpu``). Bounds carry a margin for
rounding, so the picks are those of the plain scan; the one exception is a point whose
two nearest initial centers are equally far to within the rounding of a distance, where
the distance kept, and so a later near-tie, can differ in the last bits.

**GPU.** Pruning needs the host to look at the data, so there the picks are made on the
device without it and without host synchronization (see ``_device_loop``): a fused
Triton kernel per pick (or plain torch operations), replayed from a CUDA graph.

Features are scaled by a power of two, or float32 worked on in float64, wherever that
keeps squared distances exact (see ``_distances``).

This module holds the public function, its input checks and the choice of backend.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

from ..threads import check_n_threads, limit_threads
from . import _device_loop, _kcenter_cpu, _keops_probe
from ._common import check_n
from ._distances import nearest_dist, times_pow2, working_precision

__all__ = ["k_center_greedy", "keops_available"]

_GRAPH_STEPS = 64  # greedy steps per CUDA graph (0: launch each step from the host)
_DEVICE_STEP = "triton"  # "triton" or "torch": how a greedy step runs on CUDA
_PRUNED_DEVICES = ("cpu",)  # device types that use the pruned host loop
_KEOPS_STATE: dict[str, Any] = {}


def keops_available(device: str | torch.device = "cpu", *, refresh: bool = False) -> bool:
    """Whether pykeops runs correctly on ``device``, asked of a separate process.

    A child Python process runs one small KeOps reduction on the device type and
    compares it with torch, under a time limit, so a KeOps that crashes (pykeops 2.3
    on CUDA 13 dies with SIGSEGV), hangs or answers wrongly cannot take the caller
    down; this process never imports pykeops to find out. The verdict is kept in
    ``$XDG_CACHE_HOME/skmoby`` (else ``~/.cache/skmoby``), keyed by the pykeops,
    keopscore, torch and CUDA versions and the device name, so the child runs once per
    environment; a failure's reason is what :func:`k_center_greedy` reports.

    Parameters
    ----------
    device : str or torch.device, default="cpu"
        Device type to test.
    refresh : bool, default=False
        Ask again instead of using the stored verdict (e.g. after installing a
        compiler or a CUDA toolkit).

    Returns
    -------
    bool

    Examples
    --------
    >>> isinstance(keops_available("cpu"), bool)
    True
    """
    kind = torch.device(device).type
    if refresh or kind not in _KEOPS_STATE:
        ok, reason = _keops_probe.probe(kind, refresh=refresh)
        _KEOPS_STATE[kind] = True if ok else reason
    return _KEOPS_STATE[kind] is True


def _keops_reason(kind: str) -> str:
    return str(_KEOPS_STATE.get(kind, "not tested"))


def _auto_backend(device: torch.device, n: int, m: int, d: int) -> str:
    """The backend measured faster for the initial nearest-center search (see docs).

    On CUDA that is torch: KeOps has not been measured to win there, and pykeops 2.3
    crashes with the CUDA 13 of the torch wheels, so it is not even probed.
    """
    if m == 0 or device.type != "cpu":
        return "torch"
    if not (d <= 4 and n * m >= 10**7):
        return "torch"
    if not keops_available(device):
        warnings.warn(
            f"KeOps is not usable on {device.type} ({_keops_reason(device.type)}); "
            "k_center_greedy falls back to the torch backend.",
            RuntimeWarning,
            stacklevel=3,
        )
        return "torch"
    return "keops"


# -- input checks ---------------------------------------------------------------------


_BEYOND_2_53 = (
    "features holds integers beyond 2**53, which float64 cannot represent exactly; "
    "convert them to floating point yourself"
)


def _as_tensor(features: Any) -> torch.Tensor:
    """``features`` as a 2-D real tensor in a dtype the work uses (float32 or float64,
    exact conversions only), or ``TypeError``/``ValueError`` naming what is wrong."""
    if isinstance(features, torch.Tensor):
        x = features.detach()
        if x.dtype in (torch.uint16, torch.uint32, torch.uint64):
            # few torch kernels take these: float64 is exact below 2**53
            x = x.to(torch.float64)
            if x.numel() and float(x.max()) >= 2**53:
                raise ValueError(_BEYOND_2_53)
    else:
        x = _tensor_from_array(features)
    if x.is_complex():
        raise TypeError("features must be real-valued; got a complex tensor")
    if x.dtype == torch.bool:
        raise TypeError("features must be a numeric array; got dtype bool")
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (N, d); got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"features must have at least one row and one column; got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        # from the extremes as Python ints: abs() of int64's minimum overflows
        big = max(abs(int(x.min())), abs(int(x.max()))) if x.numel() else 0
        if big > 2**53:
            raise ValueError(_BEYOND_2_53)
        x = x.double()  # exact for these integers
    elif x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # exact: every float16/bfloat16 value is a float32 value
    return x


def _tensor_from_array(features: Any) -> torch.Tensor:
    """A tensor sharing (where it can) the memory of a dense, real, numeric array."""
    if hasattr(features, "tocsr") or type(features).__module__.startswith("scipy.sparse"):
        raise TypeError(
            "features must be a dense array; got a sparse matrix (call .toarray() on it)"
        )
    arr = np.asarray(features)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)):
        raise TypeError(f"features must be a numeric array; got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError("features must be real-valued; got a complex array")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        raise TypeError(
            f"features of dtype {arr.dtype} (extended precision) are not "
            "supported; convert them to float64 yourself"
        )
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))  # the same values, this byte order
    if arr.dtype.kind == "u" and arr.dtype.itemsize > 1:
        # torch has few kernels for uint16/32/64: float64 holds these values exactly
        # up to 2**53 (beyond, refused like any integer)
        if arr.size and int(arr.max()) > 2**53:
            raise ValueError(_BEYOND_2_53)
        arr = arr.astype(np.float64)
    with warnings.catch_warnings():
        # a read-only array (a data frame's, a memory map): never written to here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(arr))


def _center_mask(initial_centers: Any, N: int) -> torch.Tensor:
    center = torch.zeros(N, dtype=torch.bool)
    if initial_centers is None:
        return center
    ic = np.asarray(
        initial_centers.cpu() if isinstance(initial_centers, torch.Tensor) else initial_centers
    )
    if ic.dtype == bool:
        if ic.shape != (N,):
            raise ValueError(
                f"initial_centers as a boolean mask must have shape ({N},); got {ic.shape}"
            )
        return torch.from_numpy(ic.copy())
    ic = ic.reshape(-1)
    if ic.size and not np.issubdtype(ic.dtype, np.integer):
        raise TypeError(
            f"initial_centers must be integer indices or a boolean mask; got {ic.dtype}"
        )
    if ic.size and (ic.min() < -N or ic.max() >= N):
        raise ValueError(
            f"initial_centers must index rows 0..{N - 1} (or -{N}..-1); got values in "
            f"[{ic.min()}, {ic.max()}]"
        )
    center[torch.from_numpy(ic.astype(np.int64) % N)] = True
    return center


# -- the public function --------------------------------------------------------------


def k_center_greedy(
    features: np.ndarray | torch.Tensor,
    n: int,
    *,
    initial_centers: np.ndarray | torch.Tensor | list[int] | None = None,
    backend: str = "auto",
    prune: bool | str = "auto",
    random_state: int | np.random.RandomState | None = None,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Select ``n`` points by k-center greedy (exact), the CoreSet selection.

    Each step picks the non-center point whose Euclidean distance to its nearest center
    is largest (ties go to the lowest index) and makes it a center.

    Parameters
    ----------
    features : ndarray or torch.Tensor of shape (N, d)
        Points, on any device (the work runs there). Arithmetic is in the input dtype:
        float64 in, float64 math; float32 in, float32 math. float16 and bfloat16 are
        computed in float32 and integers in float64, conversions that are exact (integers
        beyond 2**53 are refused), so the picks are those of the given values. Extended
        precision (``np.longdouble``) and sparse matrices raise ``TypeError``. Exact
        for any finite input of these types: features are scaled by a power of two
        (exact) when their magnitude would make squared distances overflow or
        underflow (float32 features of order 1e20 or 1e-25), and float32 features whose
        magnitudes span too many orders for one scale (an outlier at 1e25 among values
        of order 1) are computed in float64, so the picks are those float64 gives
        (float64 features are exact while their non-zero magnitudes span less than a
        factor of about 1e280). NaN or infinity raise ``ValueError``.
    n : int
        Number of points to pick, ``1 <= n <=`` the number of non-center points.
    initial_centers : array-like of int or bool, optional
        Indices, or a boolean mask of length N, of the points that are centers from the
        start (the labeled set); they are never picked. Repeated indices count once.
    backend : {"auto", "keops", "torch"}, default="auto"
        How the nearest initial center of every point is found: matrix products
        (``"torch"``) or a KeOps reduction. ``"auto"`` picks the faster as measured
        (see the docs' backend table): KeOps on the CPU for d <= 4 and N·M >= 10**7,
        torch otherwise and always on CUDA. Whether KeOps works is tested once per
        environment in a separate process (:func:`~skmoby.query.keops_available`);
        if it does not, ``"auto"`` falls back to torch with one warning naming the
        reason, and ``"keops"`` raises ``RuntimeError``.
    prune : bool or "auto", default="auto"
        On the CPU, skip the groups of points that the triangle inequality proves
        cannot get closer to the new center (``True`` and ``"auto"``), or scan every
        point at every pick (``False``). On CUDA the picks are made on the device and
        every point is scanned. The result is the same either way, up to near-ties
        within float rounding (see the module's notes).
    random_state : int, RandomState or None, default=None
        Draws the first pick when there are no initial centers (uniformly over the
        points); unused otherwise.
    n_threads : int or None, default=None
        CPU threads torch uses during the call (restored afterwards); ``None`` keeps
        torch's current count capped at the CPUs this process may run on
        (:func:`skmoby.threads.limit_threads`).

    Returns
    -------
    indices : ndarray of shape (n,), int64
        The picks, in the order they were made.
    distances : ndarray of shape (n,)
        ``distances[i]`` is the distance of pick ``i`` to its nearest center when it was
        picked (``inf`` for a first pick made without any center); float64 for float64
        or integer features, float32 otherwise (where a distance beyond float32's range,
        such as from -3e38 to 3e38, is ``inf``).

    Raises
    ------
    TypeError
        If ``features`` is not real and numeric, ``n`` is not an int or
        ``initial_centers`` is neither integer indices nor a boolean mask.
    ValueError
        If ``features`` is not 2-D, is empty or holds NaN or infinity, if
        ``initial_centers`` is out of range, or if ``n`` is not in 1..(points that are
        not centers).
    RuntimeError
        If ``backend="keops"`` and KeOps cannot run on the device.

    Notes
    -----
    Duplicated points are fine: a copy of a center is at distance 0 and is picked only
    when nothing farther is left. A single feature (d = 1) is fine.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.array([[0.0], [1.0], [5.0], [10.0]])
    >>> idx, dist = k_center_greedy(pts, 2, initial_centers=[0])
    >>> idx.tolist(), dist.tolist()
    ([3, 2], [10.0, 5.0])
    """
    return _k_center_greedy(
        features,
        n,
        initial_centers=initial_centers,
        backend=backend,
        prune=prune,
        random_state=random_state,
        n_threads=n_threads,
    )


def _k_center_greedy(
    features,
    n,
    *,
    initial_centers,
    backend,
    prune,
    random_state,
    n_threads,
    device_step: str = _DEVICE_STEP,
    graph_steps: int = _GRAPH_STEPS,
):
    """:func:`k_center_greedy`, with how the picks are made on CUDA as arguments.

    ``device_step`` is ``"triton"`` or ``"torch"`` (torch where Triton cannot run) and
    ``graph_steps`` the greedy steps per CUDA graph (0: launch each step from the host);
    both are ignored on the CPU. The defaults are what :func:`k_center_greedy` uses;
    the benchmarks pin them to time each way.
    """
    n_threads = check_n_threads(n_threads)
    with limit_threads(n_threads):
        return _select(
            features, n, initial_centers, backend, prune, random_state, device_step, graph_steps
        )


def _select(features, n, initial_centers, backend, prune, random_state, device_step, graph_steps):
    x = _as_tensor(features)
    N, d = x.shape
    center = _center_mask(initial_centers, N)
    M = int(center.sum())
    n = check_n(
        n,
        N - M,
        "n",
        what="the points that are not centers",
        none_left=f"no point is left to pick, all {N} are initial_centers",
    )
    prune = _check_options(backend, prune)
    out_dtype = np.float64 if x.dtype == torch.float64 else np.float32
    x, e = working_precision(x)  # the work is done on x * 2**-e
    device = x.device
    if backend == "auto":
        backend = _auto_backend(device, N, M, d)
    elif backend == "keops" and M and not keops_available(device):
        raise RuntimeError(
            f"backend='keops' was asked for, but KeOps cannot run on {device.type}: "
            f"{_keops_reason(device.type)}"
        )
    first = None if M else int(check_random_state(random_state).randint(N))
    if device.type in _PRUNED_DEVICES:
        # rounding of the exact distances: a margin for the pruning bounds
        slack_rel = 4.0 * d * float(torch.finfo(x.dtype).eps)
        gr = _kcenter_cpu.Groups(x, center, -e, prune is not False)
        min_d = _kcenter_cpu.initial_min_d(gr, backend, slack_rel)
        picks, dists = _kcenter_cpu.greedy(gr, min_d, n, first, prune is not False, slack_rel)
    else:
        picks, dists = _greedy_on_device(
            x, center, e, n, first, backend, device_step=device_step, graph_steps=graph_steps
        )
    # undo the scaling exactly (a power of two), in float64 so nothing overflows first
    with np.errstate(over="ignore"):
        return picks, np.ldexp(dists, e).astype(out_dtype)


def _check_options(backend: Any, prune: Any) -> bool | str:
    """Refuse an unknown ``backend`` or ``prune``; ``prune`` as a Python bool or "auto"."""
    if backend not in ("auto", "keops", "torch"):
        raise ValueError(f"backend must be 'auto', 'keops' or 'torch'; got {backend!r}")
    if not (isinstance(prune, bool | np.bool_) or (isinstance(prune, str) and prune == "auto")):
        raise ValueError(f"prune must be True, False or 'auto'; got {prune!r}")
    return prune if prune == "auto" else bool(prune)  # np.False_ is not False


def _greedy_on_device(
    x: torch.Tensor,
    center: torch.Tensor,
    e: int,
    n: int,
    first: int | None,
    backend: str,
    *,
    device_step: str,
    graph_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Picks and their distances (of ``x * 2**-e``, float64) from the device loop."""
    N, device = x.shape[0], x.device
    M = int(center.sum())
    if M:
        # the loop reads only the pool, copied once into contiguous rows
        center = center.to(device)
        pool = torch.nonzero(~center).view(-1)
        xs, centers = x[pool], x[center]
        times_pow2(xs, -e, out=xs)
        times_pow2(centers, -e, out=centers)
        min_d = nearest_dist(xs, centers, backend)
        del centers
    else:
        xs = x.contiguous() if e == 0 else x.clone()
        times_pow2(xs, -e, out=xs)
        min_d = torch.full((N,), float("inf"), dtype=x.dtype, device=device)
    step = device_step if _device_loop.triton_usable(device) else "torch"
    p, dd = _device_loop.greedy(xs, min_d, n, impl=step, graph_steps=graph_steps, first=first)
    picks = (pool.cpu()[p] if M else p).numpy()
    dists = dd.double().numpy()
    if first is not None:
        dists[0] = math.inf
    return picks, dists
