"""k-center greedy on the CPU: rows grouped around pivots, and a loop that skips groups.

The rows are put in groups (the Voronoi cells of a few *pivot* points, stored group by
group) and every row's distance to each pivot is tabulated once. By the triangle
inequality, ``|d(x, p) - d(y, p)| <= d(x, y)`` for every pivot ``p``, so the pivot
distances bound the distance between any row of a group and a new center, or a group of
centers, from below. A group whose bound exceeds its largest ``min_d`` cannot change and
is skipped: on clustered features (network embeddings cluster by class) most of the pool
is skipped at every pick, and the initial search compares each group with the few groups
of centers that can hold its nearest center. The groups that remain are contiguous
slices, scanned without gathering rows. On isotropic noise in high dimension nothing can
be skipped and this is a plain scan. Bounds carry a margin for rounding, so the picks
are those of the plain scan; the one exception is a point whose two nearest initial
centers are equally far to within the rounding of a distance, where the distance kept,
and so a later near-tie, can differ in the last bits.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._distances import CHUNK_BYTES, center_row, nearest_dist, times_pow2

_BLOCK_BYTES = 256 * 2**10  # NumPy's blocks of the per-pick distances (in L2)
_PARALLEL_BYTES = 16 * 2**20  # per-pick slices larger than this use every thread
_MAX_PIVOTS = 32  # pivots (and groups) of the CPU pruning
_PIVOT_SAMPLE = 1024  # rows among which the pivots are chosen


def _n_pivots(N: int, d: int, itemsize: int) -> int:
    # the float64 pivot table stays within half the size of the features
    return min(_MAX_PIVOTS, N // 2, (d * itemsize) // 16)


def _choose_pivots(x: torch.Tensor, P: int, k: int) -> torch.Tensor:
    """``P`` rows (times ``2**k``) spread over the data: farthest-first among evenly
    spaced rows."""
    step = max(1, x.shape[0] // _PIVOT_SAMPLE)
    sub = x[::step].clone()
    times_pow2(sub, k, out=sub)
    far = exact_dist(sub, sub.mean(0))
    cur = int(np.argmax(far))
    far.fill(np.inf)
    picked = []
    for _ in range(P):
        picked.append(cur)
        np.minimum(far, exact_dist(sub, sub[cur]), out=far)
        cur = int(np.argmax(far))
        if far[cur] == 0.0:
            break  # the rest duplicate a pivot
    return sub[picked].clone()


def _pivot_table(x: torch.Tensor, piv: torch.Tensor, k: int) -> tuple[np.ndarray, float]:
    """Distances (float64) from every scaled row to every pivot, and a bound on their error."""
    p64 = piv.double()
    p_sq = (p64 * p64).sum(1)
    rows = max(1, CHUNK_BYTES // (8 * max(x.shape[1], piv.shape[0])))
    T = torch.empty((x.shape[0], piv.shape[0]), dtype=torch.float64)
    r2 = 0.0
    for s in range(0, x.shape[0], rows):
        xb = times_pow2(x[s : s + rows].double(), k)  # never in place: may be a view of x
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


class Groups:
    """Rows sorted into the Voronoi cells of the pivots, with pivot-distance ranges.

    Within a group the centers come first, then the pool, each in the original order,
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
        self.n_centers = np.bincount(gid[~is_pool], minlength=G)
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
        self.x = times_pow2(xp, k, out=xp)


def initial_min_d(gr: Groups, backend: str, slack_rel: float) -> np.ndarray:
    """Distance to the nearest initial center for every row (-1 for centers)."""
    x, N = gr.x, gr.x.shape[0]
    min_d = np.full(N, np.inf, dtype=np.float64 if x.dtype == torch.float64 else np.float32)
    c_start = gr.start[:-1]
    c_end = c_start + gr.n_centers
    for g in range(gr.G):
        min_d[c_start[g] : c_end[g]] = -1.0
    if gr.n_centers.sum() == 0:
        return min_d
    cidx = np.concatenate([np.arange(c_start[h], c_end[h]) for h in range(gr.G)])
    C = x[torch.from_numpy(cidx)]  # the centers, contiguous, group by group
    mu = center_row(C)  # one centering for every subset of centers searched below
    c_off = np.concatenate([[0], np.cumsum(gr.n_centers)])
    has_c = gr.n_centers > 0
    if gr.T.shape[1]:
        # ranges of pivot distances over the centers of each group
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
            min_d[a:b] = nearest_dist(xg, C, backend, mu).numpy()
            continue
        # pool rows of g: their pivot ranges, against each group of centers
        p_lo, p_hi = gr.T[a:b].min(axis=0), gr.T[a:b].max(axis=0)
        bound = np.maximum(np.maximum(c_lo - p_hi, p_lo - c_hi), 0.0).max(axis=1)
        bound[~has_c] = np.inf
        order = np.argsort(bound, kind="stable")
        h0 = order[0]
        best = nearest_dist(xg, C[c_off[h0] : c_off[h0 + 1]], "torch", mu).numpy()
        reach = float(best.max()) * (1.0 + slack_rel) + 2.0 * gr.t_err
        rest = [h for h in order[1:] if bound[h] <= reach]
        if rest:
            if sum(gr.n_centers[h] for h in rest) > C.shape[0] // 2:
                more = nearest_dist(xg, C, "torch", mu).numpy()
            else:
                sel = np.concatenate([np.arange(c_off[h], c_off[h + 1]) for h in rest])
                more = nearest_dist(xg, C[torch.from_numpy(sel)], "torch", mu).numpy()
            best = np.minimum(best, more)
        min_d[a:b] = best
    return min_d


def parallel_scan(x: torch.Tensor) -> bool:
    """Whether the per-pick distances of the feature matrix ``x`` use every thread."""
    return x.numel() * x.element_size() > _PARALLEL_BYTES


def exact_dist(x: torch.Tensor, point: torch.Tensor, parallel: bool | None = None) -> np.ndarray:
    """Distances from rows of ``x`` to one point, from differences.

    For small feature matrices NumPy does it in one thread, in blocks whose temporaries
    stay in the cache: a multithreaded operation per pick waits at its end for every
    thread, and on a busy machine (more threads than cores) that wait is a scheduler
    time slice, longer than the work. Large ones use all threads (``torch.cdist``, no
    temporary). The two round differently, so ``parallel`` is decided once per feature
    matrix (:func:`parallel_scan`), not per slice: each row's distance is then the
    same whichever slices the scan is cut into, and pruning does not change the picks.
    """
    if parallel is None:
        parallel = parallel_scan(x)
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


def greedy(
    gr: Groups, min_d: np.ndarray, n: int, first: int | None, prune: bool, slack_rel: float
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` greedy picks (original indices) and their distances (float64).

    ``min_d`` (from :func:`initial_min_d`) is updated in place; ``first`` is the first
    pick when there are no centers. With ``prune``, a pick rescans only the groups that
    the pivot bounds do not rule out.
    """
    x, start, G = gr.x, gr.start, gr.G
    gmax = np.full(G, -np.inf, dtype=min_d.dtype)
    nonempty = start[1:] > start[:-1]
    gmax[nonempty] = np.maximum.reduceat(min_d, start[:-1][nonempty])
    pos = np.empty_like(gr.perm)
    pos[gr.perm] = np.arange(len(pos))
    parallel = parallel_scan(x)
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
            np.minimum(part, exact_dist(x[a:b], xj, parallel), out=part)
            idx = start[run] - a
            gmax[run] = np.maximum.reduceat(part, idx)
    return picks, dists
