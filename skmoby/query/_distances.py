"""Distances for k-center greedy: the nearest-center search and exact working precision.

The distance of every point to its nearest initial center is the only ``N x M`` part of
k-center greedy. It is found by matrix products (:func:`nearest_torch`) or a KeOps
min/argmin reduction (:func:`nearest_keops`), never materializing the ``N x M`` matrix;
the products only shortlist (every center that rounding could have ranked wrongly is
compared again by coordinate differences), and the distance to the nearest center is
computed from differences, so backends agree.

**Scale and precision.** Features are multiplied by a power of two (exact) when their
magnitudes would make squared distances overflow or underflow, e.g. float32 features of
order 1e20 or 1e-25; picks do not depend on a common scale. float32 features whose
magnitudes span more orders than any one scale keeps safe (one row at 1e25 among
features of order 1) are worked on in float64, an exact conversion whose squares hold
every float32 difference, so k-center greedy is exact for any finite float32 input. The
products of the nearest-center search are centered on the coordinate-wise median of the
centers, which an outlier among them does not move, and what cancellation they suffer
(two populations far apart) only widens the shortlist compared by differences.
"""

from __future__ import annotations

import math

import numpy as np
import torch

CHUNK_BYTES = 16 * 2**20  # bound on the temporary blocks of the N x M search
SCAN_BYTES = 8 * 2**20  # rows per exact-distance block: temporaries stay in cache
_MEDIAN_ROWS = 256  # centers whose median centers the nearest-center search
# Largest magnitude below which (and smallest above which) features are used unscaled:
# squared distances of such values neither overflow nor lose precision to underflow.
_SAFE_EXPONENT = {torch.float32: 20, torch.float64: 200}


def nearest_keops(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of ``c`` for every row of ``x`` (KeOps reduction)."""
    from pykeops.torch import LazyTensor

    d2 = ((LazyTensor(x[:, None, :]) - LazyTensor(c[None, :, :])) ** 2).sum(-1)
    return d2.argmin(dim=1).view(-1).long()


def center_row(c: torch.Tensor) -> torch.Tensor:
    """The coordinate-wise median of (at most ``_MEDIAN_ROWS`` evenly spaced) rows of
    ``c``, values of ``c`` without rounding: unlike the mean, a few far outliers among
    ``c`` do not move it."""
    step = -(-c.shape[0] // _MEDIAN_ROWS)
    return c[::step].median(dim=0).values


def nearest_torch(
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
    and centerd it works on the spread only. The median, unlike the mean, stays with
    the bulk of the centers when one of them is an extreme outlier. Callers that search
    subsets of one set of centers pass the median of the whole set, so that a score
    never depends on which subset was searched.

    The products only shortlist: a row's scores are off by at most
    ``k (r + ||c - mu||)**2`` (``r`` the row's distance from ``mu``, ``k`` about
    ``d + 3`` unit roundoffs), and only centers within ``r + d*`` of ``mu`` can be
    nearer than the best-scored one, at ``d*``; so every center nearer than it scores
    within ``2 k (2 r + d*)**2`` of the best. Those candidates are compared by
    differences, which cancellation cannot touch (two populations far apart, a row far
    from the centers' median), and the nearest is kept.
    """
    mu = center_row(c) if mu is None else mu
    cc = c - mu
    c_sq = (cc * cc).sum(1)
    k = 4.0 * (x.shape[1] + 3) * matmul_unit(x)  # twice the bound: it is rounded too
    rows = max(1, CHUNK_BYTES // (max(1, c.shape[0], x.shape[1]) * x.element_size()))
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for s in range(0, x.shape[0], rows):
        xb = x[s : s + rows]
        xc = xb - mu
        # ||x||^2 is the same for every center, so argmin needs only ||c||^2 - 2 x.c
        scores = torch.addmm(c_sq[None, :], xc, cc.t(), alpha=-2.0)
        best = scores.argmin(dim=1)
        d_star = torch.linalg.vector_norm(xb - c[best], dim=1)
        reach = (
            scores.gather(1, best[:, None])[:, 0]
            + k * (2.0 * torch.linalg.vector_norm(xc, dim=1) + d_star) ** 2
        )
        reach[d_star == 0] = -math.inf  # a copy of a center: nothing is nearer
        scores.scatter_(1, best[:, None], math.inf)
        # rows with other candidates: their second-best score is within reach
        rest = torch.nonzero(scores.amin(dim=1) <= reach).view(-1)
        if rest.numel():
            i, j = torch.nonzero(scores[rest] <= reach[rest, None], as_tuple=True)
            i = rest[i]
            d_ij = torch.empty(i.shape[0], dtype=x.dtype, device=x.device)
            step = max(1, SCAN_BYTES // max(1, x.shape[1] * x.element_size()))
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


def dist_rows(x: torch.Tensor, c: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """``||x_i - c_i||`` (or ``||x_i - c[index_i]||``) row by row, in blocks (never an
    (N, d) temporary at once)."""
    rows = max(1, SCAN_BYTES // max(1, x.shape[1] * x.element_size()))
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], rows):
        cb = c[s : s + rows] if index is None else c[index[s : s + rows]]
        out[s : s + rows] = torch.linalg.vector_norm(x[s : s + rows] - cb, dim=1)
    return out


def matmul_unit(x: torch.Tensor) -> float:
    """Unit roundoff of the matrix products on ``x``'s dtype and device: float32's own,
    or bfloat16's where torch may compute float32 products in lower precision."""
    u = float(torch.finfo(x.dtype).eps) / 2
    if x.dtype == torch.float32 and (
        torch.get_float32_matmul_precision() != "highest"
        or (x.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)
    ):
        u = max(u, 2.0**-8)
    return u


def nearest_dist(
    x: torch.Tensor, c: torch.Tensor, backend: str, mu: torch.Tensor | None = None
) -> torch.Tensor:
    """Distance from every row of ``x`` to its nearest row of ``c``, from differences
    (``mu``: see :func:`nearest_torch`)."""
    if backend == "keops":
        return dist_rows(x, c, nearest_keops(x, c))
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    nearest_torch(x, c, mu, out)
    return out


def _exponent_window(dtype: torch.dtype, d: int) -> tuple[int, int]:
    """Binary exponents ``(lo, hi)`` (``frexp``'s) that keep the work exact in ``dtype``.

    With the largest magnitude below ``2**hi``, sums of ``d`` squared differences and
    the products of the nearest-center search stay below a quarter of the overflow
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


def working_precision(x: torch.Tensor) -> tuple[torch.Tensor, int]:
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


def times_pow2(t: torch.Tensor, k: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """``t * 2**k``, exactly, in steps that never overflow the factor itself."""
    while k:
        s = max(-500, min(500, k))
        t = torch.mul(t, 2.0**s, out=out)
        k -= s
    return t
