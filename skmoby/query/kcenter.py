"""Exact k-center greedy selection (Sener & Savarese, 2018) on the CPU and on GPUs.

The greedy step picks the non-centre point farthest from its nearest centre and makes it
a centre. Two parts:

1. the distance of every point to its nearest initial centre -- the only ``N x M`` part,
   found by matrix products (``backend="torch"``) or a KeOps min/argmin reduction
   (``"keops"``), never materialising the ``N x M`` matrix; the products only shortlist
   (every centre that rounding could have ranked wrongly is compared again by
   coordinate differences), and the distance to the nearest centre is computed from
   differences, so backends agree;
2. one pick at a time, each updating the nearest-centre distances ``min_d``.

**CPU.** The rows are put in groups (the Voronoi cells of a few *pivot* points, stored
group by group) and every row's distance to each pivot is tabulated once. By the
triangle inequality, ``|d(x, p) - d(y, p)| <= d(x, y)`` for every pivot ``p``, so the
pivot distances bound the distance between any row of a group and a new centre, or a
group of centres, from below. A group whose bound exceeds its largest ``min_d`` cannot
change and is skipped: on clustered features (network embeddings cluster by class) most
of the pool is skipped at every pick, and the initial search compares each group with
the few groups of centres that can hold its nearest centre. The groups that remain are
contiguous slices, scanned without gathering rows. On isotropic noise in high dimension
nothing can be skipped and this is a plain scan. Bounds carry a margin for rounding, so
the picks are those of the plain scan; the one exception is a point whose two nearest
initial centres are equally far to within the rounding of a distance, where the
distance kept, and so a later near-tie, can differ in the last bits.

**GPU.** Pruning needs the host to look at the data, so there the picks are made on the
device without it and without host synchronisation (see ``_device_loop``): a fused
Triton kernel per pick (or plain torch operations), replayed from a CUDA graph.

**Scale and precision.** Features are multiplied by a power of two (exact) when their
magnitudes would make squared distances overflow or underflow, e.g. float32 features of
order 1e20 or 1e-25; picks do not depend on a common scale. float32 features whose
magnitudes span more orders than any one scale keeps safe (one row at 1e25 among
features of order 1) are worked on in float64, an exact conversion whose squares hold
every float32 difference, so k-center greedy is exact for any finite float32 input. The
products of the nearest-centre search are centred on the coordinate-wise median of the
centres, which an outlier among them does not move, and what cancellation they suffer
(two populations far apart) only widens the shortlist compared by differences.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

from ..threads import check_n_threads, limit_threads
from . import _device_loop, _keops_probe

__all__ = ["k_center_greedy", "keops_available"]

_CHUNK_BYTES = 16 * 2**20  # bound on the temporary blocks of the N x M search
_SCAN_BYTES = 8 * 2**20  # rows per exact-distance block: temporaries stay in cache
_BLOCK_BYTES = 256 * 2**10  # NumPy's blocks of the per-pick distances (in L2)
_PARALLEL_BYTES = 16 * 2**20  # per-pick slices larger than this use every thread
_MAX_PIVOTS = 32  # pivots (and groups) of the CPU pruning
_PIVOT_SAMPLE = 1024  # rows among which the pivots are chosen
_MEDIAN_ROWS = 256  # centres whose median centres the nearest-centre search
_GRAPH_STEPS = 64  # greedy steps per CUDA graph (0: launch each step from the host)
_DEVICE_STEP = "triton"  # "triton" or "torch": how a greedy step runs on CUDA
_PRUNED_DEVICES = ("cpu",)  # device types that use the pruned host loop
# Largest magnitude below which (and smallest above which) features are used unscaled:
# squared distances of such values neither overflow nor lose precision to underflow.
_SAFE_EXPONENT = {torch.float32: 20, torch.float64: 200}
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


def _centre_row(c: torch.Tensor) -> torch.Tensor:
    """The coordinate-wise median of (at most ``_MEDIAN_ROWS`` evenly spaced) rows of
    ``c``, values of ``c`` without rounding: unlike the mean, a few far outliers among
    ``c`` do not move it."""
    step = -(-c.shape[0] // _MEDIAN_ROWS)
    return c[::step].median(dim=0).values


def _nearest_torch(
    x: torch.Tensor,
    c: torch.Tensor,
    mu: torch.Tensor | None = None,
    dist: torch.Tensor | None = None,
) -> torch.Tensor:
    """Index of the nearest row of ``c`` for every row of ``x`` (chunked matmul), and
    in ``dist`` (when given) the distance to it, from differences.

    Both sets are first moved by ``mu`` (default: the coordinate-wise median of
    ``c``): distances do not change, but the expansion ``||c||^2 - 2 x.c`` loses to
    cancellation what the features share (GPS coordinates, a large embedding offset),
    and centred it works on the spread only. The median, unlike the mean, stays with
    the bulk of the centres when one of them is an extreme outlier. Callers that search
    subsets of one set of centres pass the median of the whole set, so that a score
    never depends on which subset was searched.

    The products only shortlist: a row's scores are off by at most
    ``k (r + ||c - mu||)**2`` (``r`` the row's distance from ``mu``, ``k`` about
    ``d + 3`` unit roundoffs), and only centres within ``r + d*`` of ``mu`` can be
    nearer than the best-scored one, at ``d*``; so every centre nearer than it scores
    within ``2 k (2 r + d*)**2`` of the best. Those candidates are compared by
    differences, which cancellation cannot touch (two populations far apart, a row far
    from the centres' median), and the nearest is kept.
    """
    mu = _centre_row(c) if mu is None else mu
    cc = c - mu
    c_sq = (cc * cc).sum(1)
    k = 4.0 * (x.shape[1] + 3) * _matmul_unit(x)  # twice the bound: it is rounded too
    rows = max(1, _CHUNK_BYTES // (max(1, c.shape[0], x.shape[1]) * x.element_size()))
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for s in range(0, x.shape[0], rows):
        xb = x[s : s + rows]
        xc = xb - mu
        # ||x||^2 is the same for every centre, so argmin needs only ||c||^2 - 2 x.c
        scores = torch.addmm(c_sq[None, :], xc, cc.t(), alpha=-2.0)
        best = scores.argmin(dim=1)
        d_star = torch.linalg.vector_norm(xb - c[best], dim=1)
        reach = (
            scores.gather(1, best[:, None])[:, 0]
            + k * (2.0 * torch.linalg.vector_norm(xc, dim=1) + d_star) ** 2
        )
        reach[d_star == 0] = -math.inf  # a copy of a centre: nothing is nearer
        scores.scatter_(1, best[:, None], math.inf)
        # rows with other candidates: their second-best score is within reach
        rest = torch.nonzero(scores.amin(dim=1) <= reach).view(-1)
        if rest.numel():
            i, j = torch.nonzero(scores[rest] <= reach[rest, None], as_tuple=True)
            i = rest[i]
            d_ij = torch.empty(i.shape[0], dtype=x.dtype, device=x.device)
            step = max(1, _SCAN_BYTES // max(1, x.shape[1] * x.element_size()))
            for p in range(0, i.shape[0], step):  # long lists: bounded temporaries
                d_ij[p : p + step] = torch.linalg.vector_norm(
                    xb[i[p : p + step]] - c[j[p : p + step]], dim=1
                )
            low = torch.minimum(
                d_star, torch.full_like(d_star, math.inf).scatter_reduce(0, i, d_ij, "amin")
            )
            # the lowest index among the nearest, as argmin would pick
            top = torch.full_like(best, c.shape[0]).scatter_reduce(
                0, i[d_ij == low[i]], j[d_ij == low[i]], "amin"
            )
            best = torch.where(d_star == low, torch.minimum(best, top), top)
            d_star = low
        out[s : s + rows] = best
        if dist is not None:
            dist[s : s + rows] = d_star
    return out


def _dist_to(x: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    """Euclidean distances from every row of ``x`` to one point, from differences."""
    rows = max(1, _SCAN_BYTES // max(1, x.shape[1] * x.element_size()))
    if x.shape[0] <= rows:
        return torch.linalg.vector_norm(x - point, dim=1)
    return torch.cat(
        [
            torch.linalg.vector_norm(x[s : s + rows] - point, dim=1)
            for s in range(0, x.shape[0], rows)
        ]
    )


def _dist_rows(x: torch.Tensor, c: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """``||x_i - c_i||`` (or ``||x_i - c[index_i]||``) row by row, in blocks (never an
    (N, d) temporary at once)."""
    rows = max(1, _SCAN_BYTES // max(1, x.shape[1] * x.element_size()))
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], rows):
        cb = c[s : s + rows] if index is None else c[index[s : s + rows]]
        out[s : s + rows] = torch.linalg.vector_norm(x[s : s + rows] - cb, dim=1)
    return out


def _matmul_unit(x: torch.Tensor) -> float:
    """Unit roundoff of the matrix products on ``x``'s dtype and device: float32's own,
    or bfloat16's where torch may compute float32 products in lower precision."""
    u = float(torch.finfo(x.dtype).eps) / 2
    if x.dtype == torch.float32 and (
        torch.get_float32_matmul_precision() != "highest"
        or (x.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)
    ):
        u = max(u, 2.0**-8)
    return u


def _nearest_dist(
    x: torch.Tensor, c: torch.Tensor, backend: str, mu: torch.Tensor | None = None
) -> torch.Tensor:
    """Distance from every row of ``x`` to its nearest row of ``c``, from differences
    (``mu``: see :func:`_nearest_torch`)."""
    if backend == "keops":
        return _dist_rows(x, c, _nearest_keops(x, c))
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    _nearest_torch(x, c, mu, out)
    return out


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
            "k_center_greedy falls back to the torch backend.",
            RuntimeWarning,
            stacklevel=3,
        )
        return "torch"
    return "keops"


# -- input checks ---------------------------------------------------------------------


def _as_tensor(features: Any) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        x = features.detach()
        if x.dtype in (torch.uint16, torch.uint32, torch.uint64):
            # few torch kernels take these: float64 is exact below 2**53
            x = x.to(torch.float64)
            if x.numel() and float(x.max()) >= 2**53:
                raise ValueError(
                    "features holds integers beyond 2**53, which float64 cannot represent "
                    "exactly; convert them to floating point yourself"
                )
    else:
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
            # up to 2**53 (beyond, refused below like any integer)
            if arr.size and int(arr.max()) > 2**53:
                raise ValueError(
                    "features holds integers beyond 2**53, which float64 cannot represent "
                    "exactly; convert them to floating point yourself"
                )
            arr = arr.astype(np.float64)
        with warnings.catch_warnings():
            # a read-only array (a data frame's, a memory map): never written to here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            x = torch.from_numpy(np.ascontiguousarray(arr))
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
            raise ValueError(
                "features holds integers beyond 2**53, which float64 cannot represent "
                "exactly; convert them to floating point yourself"
            )
        x = x.double()  # exact for these integers
    elif x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # exact: every float16/bfloat16 value is a float32 value
    return x


def _exponent_window(dtype: torch.dtype, d: int) -> tuple[int, int]:
    """Binary exponents ``(lo, hi)`` (``frexp``'s) that keep the work exact in ``dtype``.

    With the largest magnitude below ``2**hi``, sums of ``d`` squared differences and
    the products of the nearest-centre search stay below a quarter of the overflow
    threshold. With the smallest non-zero magnitude at least ``2**(lo - 1)``, every
    non-zero difference of two values (at least half an ulp of the smaller one) has a
    normal square, so no distance loses precision to underflow.
    """
    fi = np.finfo(torch.empty((), dtype=dtype).numpy().dtype)
    hi = (fi.maxexp - 6 - math.ceil(math.log2(max(d, 1)))) // 2
    lo = -((-(fi.minexp + 2 * fi.nmant + 4)) // 2)  # ceil
    return lo, hi


def _magnitudes(x: torch.Tensor) -> tuple[float, float]:
    """Largest and smallest non-zero ``|x|`` (``inf`` when all are zero), one pass in
    blocks; NaN or infinity raise ``ValueError``."""
    rows = max(1, 2**20 // max(1, x.shape[1] * x.element_size()))  # blocks in cache
    big = torch.zeros((), dtype=x.dtype, device=x.device)
    small = torch.full((), math.inf, dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], rows):
        a = x[s : s + rows].abs()
        big = torch.maximum(big, a.max())
        small = torch.minimum(small, a.masked_fill_(a == 0, math.inf).min())
    big_f, small_f = (float(v) for v in torch.stack([big, small]).cpu())  # one sync
    if not math.isfinite(big_f):
        rows = torch.nonzero(~torch.isfinite(x).all(dim=1)).view(-1)[:5].tolist()
        raise ValueError(f"features contain NaN or infinity (rows {rows}, ...)")
    return big_f, small_f


def _working_precision(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The features to work on and ``e`` such that the work on ``x * 2**-e`` is exact.

    Picks depend on neither a power-of-two scale (exact) nor the conversion of float32
    to float64 (exact), so both are used as needed: ordinary features are used as they
    are; features whose magnitudes would make squared distances overflow or underflow
    are scaled into the range where they do neither; float32 features whose
    magnitudes span too many orders for any one scale (one extreme outlier, 1e25,
    among features of order 1) are worked on in float64, which holds the squares of
    every float32 difference.
    """
    big, small = _magnitudes(x)
    if big == 0.0:
        return x, 0
    d = x.shape[1]
    e_big = math.frexp(big)[1]  # big = f * 2**e_big with 0.5 <= f < 1
    e_small = math.frexp(small)[1] if math.isfinite(small) else e_big
    lo, hi = _exponent_window(x.dtype, d)
    if e_big - e_small > hi - lo and x.dtype == torch.float32:
        # MPS has no float64: such features are worked on by the CPU there
        x = (x.cpu() if x.device.type == "mps" else x).double()
        lo, hi = _exponent_window(x.dtype, d)
    e = 0 if abs(e_big) <= _SAFE_EXPONENT[x.dtype] else e_big  # unscaled when safe
    if e_big - e > hi or e_small - e < lo:
        if e_big - e_small <= hi - lo:
            e = (e_big - hi + e_small - lo) // 2  # both ends inside the window
        else:  # float64 spanning more than ~1e280: no overflow, tiny distances round
            e = e_big - hi
    return x, e


def _times_pow2(t: torch.Tensor, k: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """``t * 2**k``, exactly, in steps that never overflow the factor itself."""
    while k:
        s = max(-500, min(500, k))
        t = torch.mul(t, 2.0**s, out=out)
        k -= s
    return t


def _centre_mask(initial_centers: Any, N: int) -> torch.Tensor:
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


def _check_n(n: Any, N: int, free: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"n must be an int; got {type(n).__name__}")
    if free == 0:
        raise ValueError(f"n: no point is left to pick, all {N} are initial_centers")
    if n <= 0 or n > free:
        raise ValueError(f"n must be in 1..{free} (the points that are not centres); got {n}")
    return int(n)


# -- CPU: pivots, groups and the pruned loop ------------------------------------------


def _n_pivots(N: int, d: int, itemsize: int) -> int:
    # the float64 pivot table stays within half the size of the features
    return min(_MAX_PIVOTS, N // 2, (d * itemsize) // 16)


def _choose_pivots(x: torch.Tensor, P: int, k: int) -> torch.Tensor:
    """``P`` rows (times ``2**k``) spread over the data: farthest-first among evenly
    spaced rows."""
    step = max(1, x.shape[0] // _PIVOT_SAMPLE)
    sub = x[::step].clone()
    _times_pow2(sub, k, out=sub)
    far = _exact_dist(sub, sub.mean(0))
    cur = int(np.argmax(far))
    far.fill(np.inf)
    picked = []
    for _ in range(P):
        picked.append(cur)
        np.minimum(far, _exact_dist(sub, sub[cur]), out=far)
        cur = int(np.argmax(far))
        if far[cur] == 0.0:
            break  # the rest duplicate a pivot
    return sub[picked].clone()


def _pivot_table(x: torch.Tensor, piv: torch.Tensor, k: int) -> tuple[np.ndarray, float]:
    """Distances (float64) from every scaled row to every pivot, and a bound on their error."""
    p64 = piv.double()
    p_sq = (p64 * p64).sum(1)
    rows = max(1, _CHUNK_BYTES // (8 * max(x.shape[1], piv.shape[0])))
    T = torch.empty((x.shape[0], piv.shape[0]), dtype=torch.float64)
    r2 = 0.0
    for s in range(0, x.shape[0], rows):
        xb = _times_pow2(x[s : s + rows].double(), k)  # never in place: may be a view of x
        x_sq = (xb * xb).sum(1)
        r2 = max(r2, float(x_sq.max()))
        sq = torch.addmm(x_sq[:, None] + p_sq[None, :], xb, p64.t(), alpha=-2.0)
        T[s : s + rows] = sq.clamp_(min=0.0).sqrt_()
    # Each squared distance is off by at most ~4 d eps64 max(||x||^2, ||p||^2), so a
    # distance by at most the square root of that.
    r2 = max(r2, float(p_sq.max()))
    err = math.sqrt(16.0 * x.shape[1] * np.finfo(np.float64).eps * r2)
    return T.numpy(), err


def _gap(t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Lower bound on distances from a point with pivot distances ``t`` to each group."""
    return np.maximum(lo - t, t - hi).max(axis=-1).clip(min=0.0)


class _Groups:
    """Rows sorted into the Voronoi cells of the pivots, with pivot-distance ranges.

    Within a group the centres come first, then the pool, each in the original order,
    so the first maximum of a slice is the one with the lowest original index.
    """

    def __init__(self, x: torch.Tensor, center: torch.Tensor, k: int, prune: bool):
        N, d = x.shape
        P = _n_pivots(N, d, x.element_size()) if prune else 0
        if P >= 2:
            piv = _choose_pivots(x, P, k)
            T, self.t_err = _pivot_table(x, piv, k)
            gid = T.argmin(axis=1)
        else:
            T, self.t_err, gid = np.zeros((N, 0)), 0.0, np.zeros(N, dtype=np.int64)
        is_pool = ~center.numpy()
        perm = np.argsort(gid * 2 + is_pool, kind="stable")
        G = int(gid.max()) + 1
        self.start = np.searchsorted(gid[perm], np.arange(G + 1))
        self.n_centres = np.bincount(gid[~is_pool], minlength=G)
        self.perm = perm
        self.T = T[perm]
        nonempty = self.start[1:] > self.start[:-1]
        self.lo = np.full((G, T.shape[1]), np.inf)
        self.hi = np.full((G, T.shape[1]), -np.inf)
        if T.shape[1]:
            idx = self.start[:-1][nonempty]
            self.lo[nonempty] = np.minimum.reduceat(self.T, idx, axis=0)
            self.hi[nonempty] = np.maximum.reduceat(self.T, idx, axis=0)
        self.G = G
        # one copy of the features, in group order (and scaled, if needed)
        xp = x[torch.from_numpy(perm)]
        self.x = _times_pow2(xp, k, out=xp)


def _initial_min_d(gr: _Groups, backend: str, slack_rel: float) -> np.ndarray:
    """Distance to the nearest initial centre for every row (-1 for centres)."""
    x, N = gr.x, gr.x.shape[0]
    min_d = np.full(N, np.inf, dtype=np.float64 if x.dtype == torch.float64 else np.float32)
    c_start = gr.start[:-1]
    c_end = c_start + gr.n_centres
    for g in range(gr.G):
        min_d[c_start[g] : c_end[g]] = -1.0
    if gr.n_centres.sum() == 0:
        return min_d
    cidx = np.concatenate([np.arange(c_start[h], c_end[h]) for h in range(gr.G)])
    C = x[torch.from_numpy(cidx)]  # the centres, contiguous, group by group
    mu = _centre_row(C)  # one centring for every subset of centres searched below
    c_off = np.concatenate([[0], np.cumsum(gr.n_centres)])
    has_c = gr.n_centres > 0
    if gr.T.shape[1]:
        # ranges of pivot distances over the centres of each group
        CT = gr.T[cidx]
        idx = c_off[:-1][has_c]
        c_lo = np.full_like(gr.lo, np.inf)
        c_hi = np.full_like(gr.hi, -np.inf)
        c_lo[has_c] = np.minimum.reduceat(CT, idx, axis=0)
        c_hi[has_c] = np.maximum.reduceat(CT, idx, axis=0)
    for g in range(gr.G):
        a, b = c_end[g], gr.start[g + 1]
        if a == b:
            continue
        xg = x[a:b]
        if backend == "keops" or not gr.T.shape[1]:
            min_d[a:b] = _nearest_dist(xg, C, backend, mu).numpy()
            continue
        # pool rows of g: their pivot ranges, against each group of centres
        p_lo, p_hi = gr.T[a:b].min(axis=0), gr.T[a:b].max(axis=0)
        bound = np.maximum(np.maximum(c_lo - p_hi, p_lo - c_hi), 0.0).max(axis=1)
        bound[~has_c] = np.inf
        order = np.argsort(bound, kind="stable")
        h0 = order[0]
        best = _nearest_dist(xg, C[c_off[h0] : c_off[h0 + 1]], "torch", mu).numpy()
        reach = float(best.max()) * (1.0 + slack_rel) + 2.0 * gr.t_err
        rest = [h for h in order[1:] if bound[h] <= reach]
        if rest:
            if sum(gr.n_centres[h] for h in rest) > C.shape[0] // 2:
                more = _nearest_dist(xg, C, "torch", mu).numpy()
            else:
                sel = np.concatenate([np.arange(c_off[h], c_off[h + 1]) for h in rest])
                more = _nearest_dist(xg, C[torch.from_numpy(sel)], "torch", mu).numpy()
            best = np.minimum(best, more)
        min_d[a:b] = best
    return min_d


def _parallel_scan(x: torch.Tensor) -> bool:
    """Whether the per-pick distances of the feature matrix ``x`` use every thread."""
    return x.numel() * x.element_size() > _PARALLEL_BYTES


def _exact_dist(x: torch.Tensor, point: torch.Tensor, parallel: bool | None = None) -> np.ndarray:
    """Distances from rows of ``x`` to one point, from differences.

    For small feature matrices NumPy does it in one thread, in blocks whose temporaries
    stay in the cache: a multithreaded operation per pick waits at its end for every
    thread, and on a busy machine (more threads than cores) that wait is a scheduler
    time slice, longer than the work. Large ones use all threads (``torch.cdist``, no
    temporary). The two round differently, so ``parallel`` is decided once per feature
    matrix (:func:`_parallel_scan`), not per slice: each row's distance is then the
    same whichever slices the scan is cut into, and pruning does not change the picks.
    """
    if parallel is None:
        parallel = _parallel_scan(x)
    if parallel:
        return (
            torch.cdist(x, point[None, :], compute_mode="donot_use_mm_for_euclid_dist")
            .view(-1)
            .numpy()
        )
    a, p = x.numpy(), point.numpy()
    rows = max(1, _BLOCK_BYTES // (a.shape[1] * a.itemsize))
    out = np.empty(a.shape[0], dtype=a.dtype)
    buf = np.empty((min(rows, a.shape[0]), a.shape[1]), dtype=a.dtype)
    for s in range(0, a.shape[0], rows):
        diff = np.subtract(a[s : s + rows], p, out=buf[: min(rows, a.shape[0] - s)])
        np.einsum("ij,ij->i", diff, diff, out=out[s : s + rows])
    return np.sqrt(out, out=out)


def _greedy_cpu(
    gr: _Groups, min_d: np.ndarray, n: int, first: int | None, prune: bool, slack_rel: float
) -> tuple[np.ndarray, np.ndarray]:
    x, start, G = gr.x, gr.start, gr.G
    gmax = np.full(G, -np.inf, dtype=min_d.dtype)
    nonempty = start[1:] > start[:-1]
    gmax[nonempty] = np.maximum.reduceat(min_d, start[:-1][nonempty])
    pos = np.empty_like(gr.perm)
    pos[gr.perm] = np.arange(len(pos))
    parallel = _parallel_scan(x)
    picks = np.empty(n, dtype=np.int64)
    dists = np.empty(n, dtype=np.float64)
    for i in range(n):
        if i == 0 and first is not None:
            j, dj = int(pos[first]), math.inf
        else:
            top = gmax.max()
            best_orig, j = None, -1
            for g in np.flatnonzero(gmax == top):
                jj = int(start[g]) + int(np.argmax(min_d[start[g] : start[g + 1]]))
                if best_orig is None or gr.perm[jj] < best_orig:
                    best_orig, j = gr.perm[jj], jj
            dj = float(min_d[j])
        picks[i], dists[i] = gr.perm[j], dj
        min_d[j] = -1.0
        if i == n - 1:
            break
        if prune and gr.T.shape[1]:
            need = _gap(gr.T[j], gr.lo, gr.hi) <= gmax * (1.0 + slack_rel) + 2.0 * gr.t_err
            need &= nonempty
        else:
            need = nonempty.copy()
        g = np.flatnonzero(need)
        # groups that follow each other in memory are scanned as one slice
        cut = np.flatnonzero(start[g[1:]] != start[g[:-1] + 1]) + 1
        xj = x[j]
        for run in np.split(g, cut):
            a, b = int(start[run[0]]), int(start[run[-1] + 1])
            part = min_d[a:b]
            np.minimum(part, _exact_dist(x[a:b], xj, parallel), out=part)
            idx = start[run] - a
            gmax[run] = np.maximum.reduceat(part, idx)
    return picks, dists


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

    Each step picks the non-centre point whose Euclidean distance to its nearest centre
    is largest (ties go to the lowest index) and makes it a centre.

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
        Number of points to pick, ``1 <= n <=`` the number of non-centre points.
    initial_centers : array-like of int or bool, optional
        Indices, or a boolean mask of length N, of the points that are centres from the
        start (the labelled set); they are never picked. Repeated indices count once.
    backend : {"auto", "keops", "torch"}, default="auto"
        How the nearest initial centre of every point is found: matrix products
        (``"torch"``) or a KeOps reduction. ``"auto"`` picks the faster as measured
        (see the docs' backend table): KeOps on the CPU for d <= 4 and N·M >= 10**7,
        torch otherwise and always on CUDA. Whether KeOps works is tested once per
        environment in a separate process (:func:`~skmoby.query.keops_available`);
        if it does not, ``"auto"`` falls back to torch with one warning naming the
        reason, and ``"keops"`` raises ``RuntimeError``.
    prune : bool or "auto", default="auto"
        On the CPU, skip the groups of points that the triangle inequality proves
        cannot get closer to the new centre (``True`` and ``"auto"``), or scan every
        point at every pick (``False``). On CUDA the picks are made on the device and
        every point is scanned. The result is the same either way, up to near-ties
        within float rounding (see the module's notes).
    random_state : int, RandomState or None, default=None
        Draws the first pick when there are no initial centres (uniformly over the
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
        ``distances[i]`` is the distance of pick ``i`` to its nearest centre when it was
        picked (``inf`` for a first pick made without any centre); float64 for float64
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
        not centres).
    RuntimeError
        If ``backend="keops"`` and KeOps cannot run on the device.

    Notes
    -----
    Duplicated points are fine: a copy of a centre is at distance 0 and is picked only
    when nothing farther is left. A single feature (d = 1) is fine.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.array([[0.0], [1.0], [5.0], [10.0]])
    >>> idx, dist = k_center_greedy(pts, 2, initial_centers=[0])
    >>> idx.tolist(), dist.tolist()
    ([3, 2], [10.0, 5.0])
    """
    n_threads = check_n_threads(n_threads)
    with limit_threads(n_threads):
        return _k_center_greedy(features, n, initial_centers, backend, prune, random_state)


def _k_center_greedy(features, n, initial_centers, backend, prune, random_state):
    x = _as_tensor(features)
    N, d = x.shape
    center = _centre_mask(initial_centers, N)
    M = int(center.sum())
    n = _check_n(n, N, N - M)
    if backend not in ("auto", "keops", "torch"):
        raise ValueError(f"backend must be 'auto', 'keops' or 'torch'; got {backend!r}")
    if not (isinstance(prune, bool | np.bool_) or (isinstance(prune, str) and prune == "auto")):
        raise ValueError(f"prune must be True, False or 'auto'; got {prune!r}")
    if prune != "auto":
        prune = bool(prune)  # np.False_ is not False
    out_dtype = np.float64 if x.dtype == torch.float64 else np.float32
    x, e = _working_precision(x)  # the work is done on x * 2**-e
    device = x.device
    if backend == "auto":
        backend = _auto_backend(device, N, M, d)
    elif backend == "keops" and M and not keops_available(device):
        raise RuntimeError(
            f"backend='keops' was asked for, but KeOps cannot run on {device.type}: "
            f"{_keops_reason(device.type)}"
        )
    first = None if M else int(check_random_state(random_state).randint(N))
    # rounding of the exact distances: a margin for the pruning bounds
    slack_rel = 4.0 * d * float(torch.finfo(x.dtype).eps)

    if device.type in _PRUNED_DEVICES:
        gr = _Groups(x, center, -e, prune is not False)
        min_d = _initial_min_d(gr, backend, slack_rel)
        picks, dists = _greedy_cpu(gr, min_d, n, first, prune is not False, slack_rel)
    else:
        if M:
            # the loop reads only the pool, copied once into contiguous rows
            center = center.to(device)
            pool = torch.nonzero(~center).view(-1)
            xs, centres = x[pool], x[center]
            _times_pow2(xs, -e, out=xs)
            _times_pow2(centres, -e, out=centres)
            min_d = _nearest_dist(xs, centres, backend)
            del centres
        else:
            xs = x.contiguous() if e == 0 else x.clone()
            _times_pow2(xs, -e, out=xs)
            min_d = torch.full((N,), float("inf"), dtype=x.dtype, device=device)
        step = _DEVICE_STEP if _device_loop.triton_usable(device) else "torch"
        p, dd = _device_loop.greedy(xs, min_d, n, impl=step, graph_steps=_GRAPH_STEPS, first=first)
        picks = (pool.cpu()[p] if M else p).numpy()
        dists = dd.double().numpy()
        if first is not None:
            dists[0] = math.inf
    # undo the scaling exactly (a power of two), in float64 so nothing overflows first
    with np.errstate(over="ignore"):
        return picks, np.ldexp(dists, e).astype(out_dtype)
