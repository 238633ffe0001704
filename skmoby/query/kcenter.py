"""Exact k-center greedy selection (Sener & Savarese, 2018) with KeOps and torch backends.

The greedy step picks the non-centre point farthest from its nearest centre and makes it
a centre. Every backend computes the same thing:

1. the distance of every point to its nearest initial centre -- the only ``N x M`` part,
   done by a KeOps min/argmin reduction (``"keops"``) or by chunked matrix products
   (``"torch"``), never materialising the ``N x M`` matrix; the distance to the nearest
   centre found is then recomputed from the coordinates, so both backends agree exactly;
2. one greedy pick at a time, updating the nearest-centre distances.

Step 2 is exact with pruning: a point ``x`` with nearest centre ``c`` can only get closer
to a new centre ``c'`` if ``d(c, c') < 2 d(x, c)`` (triangle inequality). Computing the
distances from ``c'`` to the centres is cheap (there are few centres), and the test rules
out whole groups of points at once; on clustered features (network embeddings cluster by
class) most of the pool is skipped at every step. On data where the test prunes little
(isotropic noise in high dimension) ``prune="auto"`` falls back to the plain scan.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

from . import _keops_probe

__all__ = ["k_center_greedy", "keops_available"]

_CHUNK_BYTES = 16 * 2**20  # bound on the temporary blocks of the N x M search
_SCAN_BYTES = 8 * 2**20  # per-pick scans: blocks that stay in cache are ~10x faster
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


def _nearest_keops(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of ``c`` for every row of ``x`` (KeOps reduction)."""
    from pykeops.torch import LazyTensor

    d2 = ((LazyTensor(x[:, None, :]) - LazyTensor(c[None, :, :])) ** 2).sum(-1)
    return d2.argmin(dim=1).view(-1).long()


def _nearest_torch(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of ``c`` for every row of ``x`` (chunked matmul)."""
    c_sq = (c * c).sum(1)
    rows = max(1, _CHUNK_BYTES // (max(1, c.shape[0]) * x.element_size()))
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for s in range(0, x.shape[0], rows):
        xb = x[s:s + rows]
        # ||x||^2 is the same for every centre, so argmin needs only ||c||^2 - 2 x.c
        scores = torch.addmm(c_sq[None, :], xb, c.t(), alpha=-2.0)
        out[s:s + rows] = scores.argmin(dim=1)
    return out


def _dist_to(x: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    """Euclidean distances from every row of ``x`` to one point, computed from differences."""
    rows = max(1, _SCAN_BYTES // max(1, x.shape[1] * x.element_size()))
    if x.shape[0] <= rows:
        return torch.linalg.vector_norm(x - point, dim=1)
    return torch.cat([torch.linalg.vector_norm(x[s:s + rows] - point, dim=1)
                      for s in range(0, x.shape[0], rows)])


def _dist_to_assigned(x: torch.Tensor, centers: torch.Tensor, assign: torch.Tensor):
    """``||x_i - centers[assign_i]||`` in chunks (never an (N, d) gather at once)."""
    rows = max(1, _SCAN_BYTES // max(1, x.shape[1] * x.element_size()))
    return torch.cat([torch.linalg.vector_norm(x[s:s + rows] - centers[assign[s:s + rows]],
                                               dim=1)
                      for s in range(0, x.shape[0], rows)])


def _auto_backend(device: torch.device, n: int, m: int, d: int) -> str:
    """The backend measured faster for the initial nearest-centre search (see docs).

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
            "k_center_greedy falls back to the torch backend.", RuntimeWarning,
            stacklevel=3,
        )
        return "torch"
    return "keops"


def _validate(features, n, initial_centers):
    if isinstance(features, torch.Tensor):
        x = features.detach()
    else:
        arr = np.asarray(features)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"features must be a numeric array; got dtype {arr.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (N, d); got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must have at least one row and column; got {tuple(x.shape)}")
    if x.is_complex():
        raise TypeError("features must be real-valued")
    if not x.is_floating_point():
        x = x.double()
    elif x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features contain NaN or infinity")
    N = x.shape[0]
    center = torch.zeros(N, dtype=torch.bool)
    if initial_centers is not None:
        ic = np.asarray(initial_centers.cpu() if isinstance(initial_centers, torch.Tensor)
                        else initial_centers)
        if ic.dtype == bool:
            if ic.shape != (N,):
                raise ValueError(
                    f"initial_centers as a boolean mask must have shape ({N},); got {ic.shape}"
                )
            center = torch.from_numpy(ic.copy())
        else:
            ic = ic.reshape(-1)
            if ic.size and not np.issubdtype(ic.dtype, np.integer):
                raise TypeError(
                    f"initial_centers must be integer indices or a boolean mask; got {ic.dtype}"
                )
            if ic.size and (ic.min() < -N or ic.max() >= N):
                raise ValueError(
                    f"initial_centers must index rows 0..{N - 1}; got values in "
                    f"[{ic.min()}, {ic.max()}]"
                )
            center[torch.from_numpy(ic.astype(np.int64) % N)] = True
    free = N - int(center.sum())
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"n must be an int; got {type(n).__name__}")
    if n <= 0 or n > free:
        raise ValueError(f"n must be in 1..{free} (the points that are not centres); got {n}")
    return x, center


def k_center_greedy(
    features: np.ndarray | torch.Tensor,
    n: int,
    *,
    initial_centers: np.ndarray | torch.Tensor | list[int] | None = None,
    backend: str = "auto",
    prune: bool | str = "auto",
    random_state: int | np.random.RandomState | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Select ``n`` points by k-center greedy (exact), the CoreSet selection.

    Each step picks the non-centre point whose Euclidean distance to its nearest centre
    is largest (ties go to the lowest index) and makes it a centre.

    Parameters
    ----------
    features : ndarray or torch.Tensor of shape (N, d)
        Points, on any device (the work runs there). Arithmetic is in the input dtype:
        float64 in, float64 math. float16/bfloat16 are upcast to float32, integers to
        float64.
    n : int
        Number of points to pick, ``1 <= n <=`` the number of non-centre points.
    initial_centers : array-like of int or bool, optional
        Indices, or a boolean mask of length N, of the points that are centres from the
        start (the labelled set); they are never picked.
    backend : {"auto", "keops", "torch"}, default="auto"
        How the nearest initial centre of every point is found: a KeOps reduction or
        chunked matrix products. ``"auto"`` picks the faster for the device, N, M and d
        (measured; see the docs' crossover table) and falls back to torch, with one
        warning, when KeOps cannot build. ``"keops"`` raises if KeOps is not usable.
    prune : bool or "auto", default="auto"
        Skip points that the triangle inequality proves cannot move closer to the new
        centre. ``"auto"`` stops pruning while it rules out too few points to pay off.
        The result is the same either way.
    random_state : int, RandomState or None, default=None
        Draws the first pick when there are no initial centres (uniformly over the
        points); unused otherwise.

    Returns
    -------
    indices : ndarray of shape (n,), int64
        The picks, in the order they were made.
    distances : ndarray of shape (n,)
        ``distances[i]`` is the distance of pick ``i`` to its nearest centre when it was
        picked (``inf`` for a first pick made without any centre).

    Raises
    ------
    ValueError
        If ``n`` is out of range, features are not 2-D or not finite, or initial centres
        are out of range.
    RuntimeError
        If ``backend="keops"`` and KeOps cannot run on the device.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.array([[0.0], [1.0], [5.0], [10.0]])
    >>> idx, dist = k_center_greedy(pts, 2, initial_centers=[0])
    >>> idx.tolist(), dist.tolist()
    ([3, 2], [10.0, 5.0])
    """
    x, center = _validate(features, n, initial_centers)
    if backend not in ("auto", "keops", "torch"):
        raise ValueError(f"backend must be 'auto', 'keops' or 'torch'; got {backend!r}")
    if prune not in (True, False, "auto"):
        raise ValueError(f"prune must be True, False or 'auto'; got {prune!r}")
    device = x.device
    N, d = x.shape
    center = center.to(device)
    init_idx = torch.nonzero(center).view(-1)
    M = int(init_idx.numel())
    if backend == "auto":
        backend = _auto_backend(device, N, M, d)
    elif backend == "keops" and not keops_available(device):
        raise RuntimeError(
            f"backend='keops' was asked for, but KeOps cannot run on {device.type}: "
            f"{_keops_reason(device.type)}"
        )

    # Centre coordinates, in the order centres were made; slot k <-> centres[k].
    centers = torch.empty((M + n, d), dtype=x.dtype, device=device)
    min_d = torch.full((N,), float("inf"), dtype=x.dtype, device=device)
    assign = torch.zeros(N, dtype=torch.long, device=device)
    if M:
        centers[:M] = x[init_idx]
        nearest = (_nearest_keops if backend == "keops" else _nearest_torch)(x, centers[:M])
        assign = nearest
        min_d = _dist_to_assigned(x, centers, nearest)
    min_d[center] = -1.0  # centres are never picked and never updated

    picks = np.empty(n, dtype=np.int64)
    dists = np.empty(n, dtype=np.float64 if x.dtype == torch.float64 else np.float32)
    pruning = prune is not False
    misses = 0  # consecutive steps where pruning ruled out less than half the points
    k = M
    for i in range(n):
        if k == 0:
            j = int(check_random_state(random_state).randint(N))
            dj = float("inf")
        else:
            j = int(torch.argmax(min_d))
            dj = float(min_d[j])
        picks[i], dists[i] = j, dj
        xj = x[j]
        centers[k] = xj
        min_d[j] = -1.0
        assign[j] = k
        if i == n - 1:
            break
        cand = None
        if pruning and k > 0:
            # d(c, x_j) for every centre c; x can only improve if d(c_x, x_j) < 2 d(x, c_x).
            cd = _dist_to(centers[:k + 1], xj)
            mask = cd[assign] < 2.0 * min_d * (1.0 + 1e-6)
            n_cand = int(mask.sum())
            if prune is True or n_cand <= N // 2:
                cand = torch.nonzero(mask).view(-1)
                misses = 0
            else:
                misses += 1
                pruning = misses < 2
        if cand is not None:
            if cand.numel():
                dn = _dist_to(x[cand], xj)
                better = dn < min_d[cand]
                upd = cand[better]
                min_d[upd] = dn[better]
                assign[upd] = k
        else:
            dn = _dist_to(x, xj)
            better = dn < min_d
            min_d = torch.where(better, dn, min_d)
            assign = torch.where(better, torch.full_like(assign, k), assign)
            if prune == "auto" and not pruning and (i + 1) % 256 == 0:
                pruning, misses = True, 0  # look again: centres get denser as picks go on
        k += 1
    return picks, dists
