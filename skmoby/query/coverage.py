"""Low-budget selection: typical picks (TypiClust) and covering picks (ProbCover).

At small budgets, CoreSet's farthest-first picks favour outliers; picking *typical*
samples of the dense regions (TypiClust, Hacohen et al., ICML 2022) or samples whose
δ-balls *cover* the most unlabeled ones (ProbCover, Yehuda et al., NeurIPS 2022) does
better. Both work in a self-supervised embedding; here that is the estimator's
``transform`` (for :class:`~skmoby.MoBYv2Classifier`, the query-encoder features ``f_q``
that its contrastive loss shapes), L2-normalized by default, since the contrastive loss
compares normalized embeddings (cosine geometry): distances between raw features also
carry their norms, which the loss leaves free.

k-means and the within-cluster nearest neighbours are scikit-learn's; the δ-ball graph
is built in blocks with PyTorch (on the features' device, CPU or GPU) and kept sparse,
never as an N × N matrix; the greedy coverage loop is ours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

from .._compat.modal import modal_retry_guard
from ._common import (
    base_estimator,
    check_pool_n,
    feature_parts,
    stacked_features,
    strategy_result,
)

__all__ = ["probcover", "purity_radius", "radius_graph", "typiclust"]

#: Most distance entries computed at once while building the graph or the purity
#: radius; fewer for small features (see _block_entries), at least _MIN_BLOCK_ENTRIES.
_BLOCK_ENTRIES = 6 * 2**20
_MIN_BLOCK_ENTRIES = 2**20
#: Columns of a tile of the purity radius's distances: tiles of 4,096 columns and the
#: rows that fill a block took about 10 % less time than whole rows of 54,000 columns.
_TILE_COLUMNS = 4096


def _block_entries(F: torch.Tensor) -> int:
    """Entries per block, so that a block and its bool mask (5 bytes an entry in float32,
    9 in float64) take no more than 40 % of the features' memory (2.3 Mi entries, 12 MB,
    for 60,000 x 128 float32 features): with the features' sorted copy and the matrix
    products' own workspace (5 to 10 MB in MKL), a pass then holds less than twice the
    features."""
    fits = 2 * F.numel() * F.element_size() // (5 * (F.element_size() + 1))
    return min(_BLOCK_ENTRIES, max(_MIN_BLOCK_ENTRIES, fits))


def _normalized(F: np.ndarray) -> np.ndarray:
    F = np.asarray(F, dtype=np.float64 if F.dtype == np.float64 else np.float32)
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    return np.divide(F, norms, out=np.zeros_like(F), where=norms > 0)


def _at_most_distinct(F: np.ndarray, k: int) -> int:
    """``min(k, number of distinct rows of F)``, counting rows only where needed.

    Counting distinct rows sorts whole rows. A column never holds more distinct values
    than the matrix holds distinct rows, so when one of the first columns already has
    ``k`` the count is not needed (the common case: embeddings rarely repeat a
    coordinate). Above 100,000 rows every row is taken as distinct.
    """
    if len(F) > 100_000:
        return min(k, len(F))
    for j in range(min(F.shape[1], 4)):
        if len(np.unique(F[:, j])) >= k:
            return k
    return min(k, len(np.unique(F, axis=0)))


def _kmeans(F: np.ndarray, k: int, random_state: Any, overwrite: bool = False) -> np.ndarray:
    """k-means labels, as the TypiClust paper clusters: full k-means up to 50 clusters,
    mini-batch k-means above. ``k`` is capped by the number of distinct points.

    With ``overwrite``, full k-means takes no copy of ``F``: it centres ``F`` in place and
    puts the mean back after (each entry may then differ from before in its last bit),
    and it runs until the labels stop changing, since scikit-learn's relative tolerance
    computes the features' variances through a temporary copy of them. (On 60,000
    FashionMNIST images, PCA to 128 dimensions and normalized, that took 63 and 17
    iterations where the tolerance took 53 and 16, for two seeds.)"""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    k = max(1, _at_most_distinct(F, k))
    if k == 1:
        return np.zeros(len(F), dtype=np.int64)
    seed = check_random_state(random_state).randint(2**31 - 1)
    in_place = {"copy_x": False, "tol": 0} if overwrite else {}
    model = (
        KMeans(k, n_init="auto", random_state=seed, **in_place)
        if k <= 50
        else MiniBatchKMeans(k, n_init="auto", batch_size=max(1024, 3 * k), random_state=seed)
    )
    return model.fit_predict(F).astype(np.int64)


def _typicality(F: np.ndarray, n_neighbors: int) -> np.ndarray:
    """1 / mean distance to the ``n_neighbors`` nearest other members (inf for exact
    duplicates, 0 for a cluster of one)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(n_neighbors, len(F) - 1)
    if k < 1:
        return np.zeros(len(F))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(F).kneighbors(F)
    mean = np.sort(dist, axis=1)[:, 1:].mean(axis=1)  # the point itself is at distance 0
    with np.errstate(divide="ignore"):
        return 1.0 / mean


def _typiclust_picks(
    F: np.ndarray, labels: np.ndarray, m: int, n: int, n_neighbors: int
) -> tuple[np.ndarray, np.ndarray]:
    """TypiClust's loop on cluster ``labels``: rows ``:m`` of ``F`` are labeled.

    Each pick goes to the cluster with the fewest labeled members (the largest first,
    then the lowest id) that has a free point, and takes its most typical free point
    (the lowest index on ties).
    """
    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k)
    labeled = np.bincount(labels[:m], minlength=k)
    free = sizes - labeled
    members = np.split(np.argsort(labels, kind="stable"), np.cumsum(sizes)[:-1])
    typical: dict[int, np.ndarray] = {}
    taken = np.zeros(len(F), dtype=bool)
    taken[:m] = True
    picks, scores = [], []
    for _ in range(n):
        open_ = np.flatnonzero(free > 0)
        c = int(open_[np.lexsort((open_, -sizes[open_], labeled[open_]))[0]])
        if c not in typical:
            typical[c] = _typicality(F[members[c]], n_neighbors)
        t = np.where(taken[members[c]], -np.inf, typical[c])
        j = int(np.argmax(t))
        i = int(members[c][j])
        picks.append(i)
        scores.append(t[j])
        taken[i] = True
        labeled[c] += 1
        free[c] -= 1
    return np.asarray(picks, dtype=np.int64), np.asarray(scores, dtype=np.float64)


def typiclust(
    learner: Any,
    X_pool: Any,
    n_instances: int = 1,
    *,
    X_labeled: Any = None,
    max_clusters: int = 500,
    n_neighbors: int = 20,
    normalize: bool = True,
    random_state: int | np.random.RandomState | None = None,
):
    """TypiClust: the most typical sample of each of the least-covered clusters.

    The features of the labeled and pool samples are clustered by k-means into
    ``min(n_labeled + n_instances, max_clusters)`` clusters. Each pick goes to the
    cluster with the fewest labeled members (among those, the largest), and takes its
    most *typical* pool sample: the one with the highest typicality, 1 / mean distance
    to its ``n_neighbors`` nearest neighbours inside the cluster.

    Parameters
    ----------
    learner : modAL learner or estimator
        A modAL learner (its ``estimator`` and ``X_training`` are used) or a fitted
        estimator; features come from its ``transform`` (else the flattened inputs).
    X_pool : array-like
        The unlabeled pool.
    n_instances : int, default=1
        Number of samples to select.
    X_labeled : array-like, optional
        The labeled samples; defaults to ``learner.X_training``.
    max_clusters : int, default=500
        Cap on the number of clusters (the paper's).
    n_neighbors : int, default=20
        Neighbours that define typicality (the paper's).
    normalize : bool, default=True
        L2-normalize the features first (the contrastive embedding's geometry).
    random_state : int, RandomState or None, default=None
        Seed of k-means.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Indices into ``X_pool``, in the order they were picked.
    typicality : ndarray of shape (n_instances,)
        Each pick's typicality (``inf`` for an exact duplicate, 0 alone in a cluster).

    Raises
    ------
    ValueError
        For an empty pool, ``n_instances`` outside ``1..len(X_pool)``, non-finite
        features, or invalid ``max_clusters``/``n_neighbors``.

    References
    ----------
    G. Hacohen, A. Dekel, D. Weinshall. Active Learning on a Budget: Opposite Strategies
    Suit High and Low Budgets. ICML 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyClassifier
    >>> rng = np.random.RandomState(0)
    >>> X = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (5, 2))])
    >>> idx, _ = typiclust(DummyClassifier(), X, n_instances=2, normalize=False,
    ...                    random_state=0)
    >>> sorted(int(i) >= 50 for i in idx)  # one pick in each dense region
    [False, True]
    """
    for name, v in (("max_clusters", max_clusters), ("n_neighbors", n_neighbors)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {v!r}")
    with modal_retry_guard():
        F, m, n = _prepared(learner, X_pool, n_instances, X_labeled, normalize)
        labels = _kmeans(F, min(m + n, int(max_clusters), len(F)), random_state)
        picks, scores = _typiclust_picks(F, labels, m, n, int(n_neighbors))
        return strategy_result(learner, picks - m, scores)


def _prepared(learner, X_pool, n_instances, X_labeled, normalize, *, raw=False):
    """The stacked features (labeled first: as float32/float64, L2-normalized when
    ``normalize``), the number of labeled rows and the checked number to select; with
    ``raw``, the features as :func:`~._common.feature_parts` gives them instead (the
    caller stacks and normalizes them itself)."""
    n = check_pool_n(X_pool, n_instances)
    if not isinstance(normalize, bool | np.bool_):
        raise TypeError(f"normalize must be a bool; got {normalize!r}")
    if raw:
        parts = feature_parts(learner, X_pool, X_labeled)
        return parts, len(parts[0]) if len(parts) > 1 else 0, n
    F, m = stacked_features(learner, X_pool, X_labeled)
    return (_normalized(F) if normalize else np.asarray(F, dtype=np.float64)), m, n


def _band_blocks(lo: np.ndarray, hi: np.ndarray, budget: int):
    """Row slices ``s:e`` and column ranges ``c0:c1`` covering the columns
    ``lo[i]:hi[i]`` of every row ``i`` (``lo`` and ``hi`` non-decreasing), each block
    ``s:e`` x ``c0:c1`` of at most about ``budget`` entries."""
    n = len(lo)
    s = 0
    while s < n:
        e = min(n, s + max(1, budget // max(1, int(hi[s]) - int(lo[s]))))
        while e - s > 1 and (e - s) * (int(hi[e - 1]) - int(lo[s])) > budget:
            e = s + (e - s) // 2
        yield slice(s, e), int(lo[s]), int(hi[e - 1])
        s = e


def _scratch(
    n: int, like: torch.Tensor, budget: int, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """One flat buffer for every block of an ``n``-point upper-triangle pass: reused,
    since allocating a fresh block each time costs a third of the block's time in page
    faults on the CPU."""
    size = min(n * n, max(budget, n))
    return torch.empty(size, dtype=dtype or like.dtype, device=like.device)


def _scratches(F: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distance block and its bool mask for a pass over the pairs of ``F``'s rows."""
    budget = _block_entries(F)
    return _scratch(len(F), F, budget), _scratch(len(F), F, budget, torch.bool)


def _view(buf: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    return buf[: rows * cols].view(rows, cols)


def _count(mask: torch.Tensor) -> np.ndarray:
    """True entries of each row of ``mask``; through NumPy on the CPU, about ten times
    faster than summing a bool tensor there."""
    if mask.device.type != "cpu":
        return mask.sum(1).cpu().numpy()
    return np.count_nonzero(mask.numpy(), axis=1)


def _columns(mask: torch.Tensor, offset: int, counts: np.ndarray, dtype: type) -> np.ndarray:
    """Column indices (plus ``offset``) of the true entries of ``mask``, row-major, as
    ``dtype``; on the CPU through NumPy's ``flatnonzero``, several times faster than
    ``Tensor.nonzero`` there, and in place (8 bytes an entry, then the result)."""
    if not counts.any():
        return np.empty(0, dtype=dtype)
    if mask.device.type != "cpu":
        return (mask.nonzero()[:, 1] + offset).cpu().numpy().astype(dtype)
    flat = np.flatnonzero(mask.numpy())
    np.remainder(flat, mask.shape[1], out=flat)
    flat += offset
    return flat.astype(dtype)


def _squared_norms(F: torch.Tensor, rows: int = 8192) -> torch.Tensor:
    """Each row's squared norm, a few thousand rows at a time: ``(F * F).sum(1)`` at once
    would hold a temporary as large as ``F``."""
    if len(F) <= rows:
        return (F * F).sum(1)
    return torch.cat([(c * c).sum(1) for c in F.split(rows)])


def _as_tensor(features: Any) -> torch.Tensor:
    F = features if torch.is_tensor(features) else torch.as_tensor(np.asarray(features))
    return F if F.is_floating_point() else F.double()


def radius_graph(
    features: Any, delta: float, *, max_edges: int = 200_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """The δ-ball graph of ``features`` as CSR arrays, built in row blocks.

    Row ``i`` lists every ``j`` with ``||f_i - f_j|| <= delta`` (``i`` itself
    included), in increasing order. The relation is symmetric, so only the upper
    triangle of the distances is computed, in blocks of rows against the later points on
    the features' device (memory stays at one block plus the edges), and mirrored.

    Parameters
    ----------
    features : array-like or torch.Tensor of shape (n, d)
        Finite features.
    delta : float
        Ball radius, ``>= 0``.
    max_edges : int, default=200_000_000
        Refuse a graph with more edges (a ``delta`` too large for the data).

    Returns
    -------
    indptr : ndarray of shape (n + 1,), int64
    indices : ndarray of shape (n_edges,)
        int32 while it can hold every point's index (half the memory), else int64.

    Examples
    --------
    >>> indptr, indices = radius_graph([[0.0], [0.5], [3.0]], delta=1.0)
    >>> [indices[indptr[i]:indptr[i + 1]].tolist() for i in range(3)]
    [[0, 1], [0, 1], [2]]
    """
    _check_delta(delta)
    return _ball_graph(_as_tensor(features), float(delta), max_edges)


def _check_delta(delta: Any) -> None:
    if (
        isinstance(delta, bool)
        or not isinstance(delta, int | float | np.floating)
        or not np.isfinite(delta)
        or delta < 0
    ):
        raise ValueError(f"delta must be a finite number >= 0; got {delta!r}")


def _window(F: torch.Tensor, f2: torch.Tensor, delta: float) -> float:
    """How far apart along a unit vector two rows of ``F`` within ``delta`` can seem: the
    slack covers the rounding of the distance test (relative to the squared norms
    ``f2``), then of the projections (a dot product of ``F.shape[1]`` terms each)."""
    eps = float(torch.finfo(F.dtype).eps)
    scale = float(f2.max())
    window = float(np.sqrt(delta**2 + 16 * eps * scale))
    return window + 2 * (F.shape[1] + 2) * eps * float(np.sqrt(scale))


def _near(
    F: torch.Tensor,
    f2: torch.Tensor,
    bound: torch.Tensor,
    rows: slice | torch.Tensor,
    c0: int,
    c1: int,
    scratch: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Which of the columns ``c0:c1`` lie within delta of each of ``rows``, in the
    scratch mask: ``||a - b||^2 <= delta^2  <=>  2 a.b - |b|^2 >= |a|^2 - delta^2``, one
    matrix product (with ``|b|^2`` as its bias) and one comparison (``bound`` is
    ``f2 - delta**2``)."""
    prod, near = scratch
    a = F[rows]
    shape = (len(a), c1 - c0)
    p = torch.addmm(-f2[c0:c1], a, F[c0:c1].T, alpha=2, out=_view(prod, *shape))
    return torch.ge(p, bound[rows, None], out=_view(near, *shape))


def _covered(
    F: torch.Tensor,
    centres: np.ndarray,
    delta: float,
    proj: torch.Tensor | None = None,
    scratch: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> np.ndarray:
    """Which rows of ``F`` lie within ``delta`` of a row at the (increasing) positions
    ``centres`` (those rows included): one pass over those rows against the others in
    blocks, with the same test as :func:`_ball_graph`; with ``proj`` as there, only the
    columns within about ``delta`` along it. ``scratch``: the block buffers, as
    :func:`_ball_graph` takes them."""
    n = len(F)
    covered = np.zeros(n, dtype=bool)
    if not len(centres):
        return covered
    f2 = _squared_norms(F)
    bound = f2 - delta**2
    if proj is not None:
        w, p = _window(F, f2, delta), proj.cpu().numpy()
        lo = np.searchsorted(p, p[centres] - w, side="left")
        hi = np.searchsorted(p, p[centres] + w, side="right")
    else:
        lo, hi = np.zeros(len(centres), dtype=np.int64), np.full(len(centres), n)
    scratch = scratch or _scratches(F)
    for block, c0, c1 in _band_blocks(lo, hi, len(scratch[1])):
        rows = torch.as_tensor(centres[block], device=F.device)
        covered[c0:c1] |= _near(F, f2, bound, rows, c0, c1, scratch).any(0).cpu().numpy()
    covered[centres] = True  # each in its own ball, whatever the rounding at delta = 0
    return covered


def _ball_graph(
    F: torch.Tensor,
    delta: float,
    max_edges: int,
    proj: torch.Tensor | None = None,
    n_active: int | None = None,
    scratch: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`radius_graph` of the rows of ``F``.

    With ``n_active``, only the pairs that hold one of the first ``n_active`` rows are
    computed and kept: the rows after them list only those (and themselves). With
    ``proj``, the projections of the rows on a unit vector, non-decreasing over the
    first ``n_active`` rows and over the rest, only the pairs less than about ``delta``
    apart along it are computed: two points farther apart along a unit vector are
    farther apart in space too. The slack (:func:`_window`) covers the rounding of both
    tests, so the graph is the one computed without ``proj``. ``scratch``: the buffers
    for the blocks (:func:`_scratches`), when the caller reuses them."""
    n = len(F)
    a = n if n_active is None else int(n_active)
    f2 = _squared_norms(F)
    bound = f2 - delta**2  # see _near
    first = np.arange(a)
    if proj is not None and a:
        w, p = _window(F, f2, delta), proj.cpu().numpy()
        reach = np.searchsorted(p[:a], p[:a] + w, side="right")
        lo_rest = a + np.searchsorted(p[a:], p[:a] - w, side="left")
        hi_rest = a + np.searchsorted(p[a:], p[:a] + w, side="right")
    else:
        reach, lo_rest, hi_rest = np.full(a, a), np.full(a, a), np.full(a, n)
    # Each active row i meets, in its own blocks, the active j > i (up to its reach),
    # then the rows after the active ones (within its window).
    bands = ((first, np.maximum(reach, first + 1), True), (lo_rest, hi_rest, False))
    index = np.int32 if n < 2**31 else np.int64  # half the memory while it fits
    # Per block: its rows and, row-major, the columns j > i of each row's ball.
    upper: list[tuple[slice, np.ndarray, np.ndarray]] = []
    n_upper = np.zeros(n, dtype=np.int64)  # per row i: points j > i in its ball
    n_lower = np.zeros(n, dtype=np.int64)  # per row j: points i < j in its ball
    total = n  # every point is in its own ball
    scratch = scratch or _scratches(F)
    for lo, hi, square in bands:
        for block, c0, c1 in _band_blocks(lo, hi, len(scratch[1])):
            if c1 <= c0:
                continue
            mask = _near(F, f2, bound, block, c0, c1, scratch)
            if square:  # j > i only: the diagonal is added below, the lower half mirrored
                mask[:, : block.stop - block.start].triu_(1)
            counts = _count(mask)
            total += 2 * int(counts.sum())
            if total > max_edges:
                raise ValueError(
                    f"delta={delta} gives more than max_edges={max_edges} edges "
                    f"on {n} points; choose a smaller delta"
                )
            n_upper[block] += counts
            cols = _columns(mask, c0, counts, index)
            n_lower += np.bincount(cols, minlength=n)
            upper.append((block, counts, cols))
    # Row i of the CSR: the i' < i that hold i (mirrored), i itself, then its own j > i;
    # each part in increasing order (a row's active j before the rest, both bands in
    # row order), so no sort is needed.
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(n_lower + 1 + n_upper, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=index)
    own = indptr[:-1] + n_lower
    indices[own] = np.arange(n)
    later = own + 1  # next free slot of each row's own j > i
    cursor = indptr[:-1].copy()  # next free mirrored slot of each row
    upper.reverse()  # popped from the end: first block first, each freed once placed
    while upper:
        block, counts, cols = upper.pop()
        rows = np.repeat(np.arange(block.start, block.stop), counts)
        starts = np.cumsum(counts) - counts
        indices[later[rows] + np.arange(len(cols)) - np.repeat(starts, counts)] = cols
        later[block] += counts
        del rows
        # Rows in increasing order, and a row holds each j once: its mirrored entries
        # go to distinct slots, in increasing order of the row.
        for k in np.flatnonzero(counts):
            js = cols[starts[k] : starts[k] + counts[k]]
            indices[cursor[js]] = block.start + k
            cursor[js] += 1
    return indptr, indices


def purity_radius(features: Any, labels: Any, purity: float = 0.95) -> float:
    """The largest δ whose balls are pure for at least ``purity`` of the points.

    A ball around point ``i`` is pure when no point of another (pseudo-)label lies
    within δ, that is when δ is below ``r_i``, the distance from ``i`` to the nearest
    point of another label. The fraction of pure balls falls as δ grows, so the largest
    δ with at least ``purity`` of them pure is just below the matching quantile of the
    ``r_i`` (by a relative 1e-4, a margin for rounding); they are computed in blocks of
    the upper triangle of the distances, never as an N × N matrix, in the features'
    floating dtype (float64 for other inputs).

    Parameters
    ----------
    features : array-like of shape (n, d)
    labels : array-like of shape (n,)
        (Pseudo-)labels, at least two distinct.
    purity : float, default=0.95
        In ``(0, 1]``.

    Returns
    -------
    float

    Examples
    --------
    >>> d = purity_radius([[0.0], [1.0], [10.0], [12.0]], [0, 0, 1, 1], purity=1.0)
    >>> 8.99 < d < 9.0  # 1 and 10 are 9 apart: every ball just below 9 is pure
    True
    """
    labels = np.asarray(labels)
    _check_purity(purity)
    if len(np.unique(labels)) < 2:
        raise ValueError("labels must hold at least two classes to measure purity")
    F = _as_tensor(features)
    if F.dtype not in (torch.float32, torch.float64):
        F = F.double()
    if labels.shape != (len(F),):
        raise ValueError(
            f"labels must hold one label per point: shape ({len(F)},); got {labels.shape}"
        )
    codes = np.unique(labels, return_inverse=True)[1].ravel()
    order = np.argsort(codes, kind="stable")
    F = F[torch.as_tensor(order, device=F.device)]  # the caller's features stay as they are
    return _grouped_purity_radius(F, _group_bounds(codes[order]), purity)


def _check_purity(purity: Any) -> None:
    if (
        isinstance(purity, bool)
        or not isinstance(purity, int | float | np.floating)
        or not 0 < purity <= 1
    ):
        raise ValueError(f"purity must be in (0, 1]; got {purity!r}")


def _group_bounds(codes: np.ndarray) -> np.ndarray:
    """Where each group of the sorted codes ``0..k-1`` starts, then ``len(codes)``."""
    return np.searchsorted(codes, np.arange(int(codes.max()) + 2))


def _grouped_purity_radius(F: torch.Tensor, bounds: np.ndarray, purity: float) -> float:
    """:func:`purity_radius` of rows grouped by label: label ``g`` is rows
    ``bounds[g]:bounds[g + 1]``.

    Grouped so, the points of other labels after a group are one contiguous run: each
    pair of different labels is computed once, with no mask, and pairs of the same label
    not at all."""
    n = len(F)
    f2 = _squared_norms(F)
    r2 = torch.full((n,), torch.inf, dtype=F.dtype, device=F.device)
    budget = _block_entries(F)
    buf = _scratch(n, F, budget)
    ones = torch.ones(n, 1, dtype=F.dtype, device=F.device)
    for g in range(len(bounds) - 2):
        later = int(bounds[g + 1])
        cols = min(n - later, _TILE_COLUMNS)
        step = max(1, budget // cols)
        for s in range(int(bounds[g]), later, step):
            e = min(later, s + step)
            # [-2a, |a|^2, 1] . [b, 1, |b|^2] = |a - b|^2: the distances in one product,
            # whose row and column minima are the nearest of either side, in tiles of
            # columns that stay in the cache for both.
            A = torch.cat([F[s:e] * -2, f2[s:e, None], ones[s:e]], 1)
            for c in range(later, n, cols):
                k = min(n, c + cols)
                B = torch.cat([F[c:k], ones[c:k], f2[c:k, None]], 1)
                d2 = torch.mm(A, B.T, out=_view(buf, e - s, k - c))
                torch.minimum(r2[s:e], d2.amin(1), out=r2[s:e])
                torch.minimum(r2[c:k], d2.amin(0), out=r2[c:k])
    r = r2.cpu().clamp_min_(0).sqrt()  # in label order: only their quantile is needed
    allowed = int(np.floor((1 - purity) * len(F) + 1e-9))  # balls allowed to be impure
    edge = float(torch.sort(r).values[min(allowed, len(F) - 1)])
    # Below the edge by a relative 1e-4, so that rounding (here or in a float32 graph)
    # cannot put the nearest point of another label inside the ball.
    return edge * (1 - 1e-4)


def _uncovered_per_ball(indptr: np.ndarray, indices: np.ndarray, covered: np.ndarray):
    """Points of each ball not yet covered, summed over row ranges of about
    ``_BLOCK_ENTRIES`` edges (a sum over every edge at once would hold an int64 per
    edge). Every ball holds its own point, so no row is empty."""
    n = len(indptr) - 1
    if not covered.any():
        return np.diff(indptr)
    degree = np.empty(n, dtype=np.int64)
    lo = 0
    while lo < n:
        hi = max(lo + 1, int(np.searchsorted(indptr, indptr[lo] + _BLOCK_ENTRIES)) - 1)
        hi = min(hi, n)
        span = indices[indptr[lo] : indptr[hi]]
        degree[lo:hi] = np.add.reduceat(~covered[span], indptr[lo:hi] - indptr[lo], dtype=np.int64)
        lo = hi
    return degree


def _greedy_coverage(
    indptr: np.ndarray,
    indices: np.ndarray,
    covered: np.ndarray,
    m: int,
    n: int,
    rng: np.random.RandomState,
    order: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``n`` of the points ``m..`` whose balls cover the most uncovered points;
    points ``:m`` are labeled, and ``covered`` (those in their balls) are covered from
    the start. Ties go to the lowest index; once every point is covered, the rest are
    drawn at random.

    The graph is of the points in ``order``: its point ``i`` has index ``order[i]``;
    picks and ties are in indices. It needs only the pairs that hold an uncovered
    point: the balls of those are whole, and every other row lists the uncovered points
    in its ball."""
    N = len(indptr) - 1
    starts, ends = indptr[:-1], indptr[1:]
    index = np.asarray(order)

    def ball(i):
        return indices[starts[i] : ends[i]]

    labeled = np.flatnonzero(index < m)
    covered = covered.copy()
    degree = _uncovered_per_ball(indptr, indices, covered)
    degree[labeled] = -1
    picks, gains = [], []
    for _ in range(n):
        top = degree.max()
        if top <= 0:
            break
        ties = np.flatnonzero(degree == top)  # the lowest index, not the first in order
        i = int(ties[np.argmin(index[ties])])
        picks.append(int(index[i]))
        gains.append(int(top))
        new = ball(i)[~covered[ball(i)]]
        covered[new] = True
        if len(new):  # each newly covered point leaves every ball that holds it
            hit = np.concatenate([ball(v) for v in new])
            degree -= np.bincount(hit, minlength=N)
            degree[degree < 0] = -1
        degree[i] = -1
    if len(picks) < n:
        rest = np.setdiff1d(np.arange(m, N), picks)
        extra = rng.choice(rest, n - len(picks), replace=False)
        picks.extend(int(i) for i in extra)
        gains.extend([0] * len(extra))
    return np.asarray(picks, dtype=np.int64), np.asarray(gains, dtype=np.int64)


def _along_spread(
    parts: np.ndarray | list[np.ndarray], normalize: bool, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of ``parts`` (one array, or several stacked; L2-normalized when
    ``normalize``, as :func:`_normalized` does, else as float64) sorted by their
    projection on (about) the direction of their largest variance: the sorted rows, the
    order and the sorted projections.

    Any unit direction keeps the graph exact; the spread one separates the most pairs.
    It is found by a few power iterations on the centred rows, without a ``d x d``
    matrix or a stacked copy, and the rows are written once, sorted and normalized, a
    chunk at a time straight from the parts: no copy of the features beyond the
    result."""
    parts = [parts] if isinstance(parts, np.ndarray) else list(parts)
    dtype = np.result_type(*parts)
    if normalize:
        work = np.float64 if dtype == np.float64 else np.float32
    else:
        work = dtype if np.issubdtype(dtype, np.floating) else np.float64
    parts = [np.asarray(P, dtype=work) for P in parts]
    out_dtype = work if normalize else np.float64
    bounds = np.cumsum([0] + [len(P) for P in parts])
    n, d = int(bounds[-1]), parts[0].shape[1]
    if normalize:
        norms = np.concatenate([np.linalg.norm(P, axis=1) for P in parts])
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    else:
        scale = np.ones(n, dtype=work)
    pieces = [(P, scale[lo:hi]) for P, lo, hi in zip(parts, bounds, bounds[1:], strict=False)]
    if n >= 3:
        mean = sum((c @ P).astype(np.float64) for P, c in pieces) / n
        v = np.random.RandomState(0).normal(size=d)
        for _ in range(8):
            w = np.zeros(d)
            for P, c in pieces:
                u = (P @ v.astype(work)) * c - (mean @ v).astype(work)
                w += (P.T @ (u * c)).astype(np.float64)
            norm = np.linalg.norm(w)
            if not norm > 0:
                break
            v = w / norm
        v = v / np.linalg.norm(v)
    else:
        v = np.zeros(d)
    proj = np.concatenate([(P @ v.astype(work)) * c for P, c in pieces]).astype(out_dtype)
    order = np.argsort(proj, kind="stable")
    rows = np.empty((n, d), dtype=out_dtype)
    for s in range(0, n, chunk):
        idx, out = order[s : s + chunk], rows[s : s + chunk]
        for P, lo, hi in zip(parts, bounds, bounds[1:], strict=False):
            here = (idx >= lo) & (idx < hi)
            out[here] = P[idx[here] - lo]
        if normalize:
            nrm = norms[idx, None]
            np.divide(out, nrm, out=out, where=nrm > 0)
    return rows, order, proj[order]


def _permute_rows(F: np.ndarray, perm: np.ndarray) -> None:
    """``F[:] = F[perm]`` in place, with one row aside at a time: each cycle of the
    permutation is followed once, so every row is moved once (a Python step a row, far
    below the cost of any pass over the pairs)."""
    target = perm.tolist()
    done = bytearray(len(target))
    for start in np.flatnonzero(perm != np.arange(len(perm))).tolist():
        if done[start]:
            continue
        aside = F[start].copy()
        i = start
        while True:
            done[i] = 1
            j = target[i]
            if j == start:
                F[i] = aside
                break
            F[i] = F[j]
            i = j


def probcover(
    learner: Any,
    X_pool: Any,
    n_instances: int = 1,
    *,
    X_labeled: Any = None,
    delta: float | None = None,
    purity: float = 0.95,
    n_clusters: int | None = None,
    normalize: bool = True,
    max_edges: int = 200_000_000,
    random_state: int | np.random.RandomState | None = None,
):
    """ProbCover: greedy maximum coverage of δ-balls in the feature space.

    Each pick is the pool sample whose ball of radius ``delta`` holds the most samples
    (labeled or pool) that no labeled or already picked sample's ball holds. The
    graph of balls is sparse and built in blocks. Without ``delta``, it is chosen as the
    paper does: the largest radius whose balls are at least ``purity`` pure under
    k-means pseudo-labels with ``n_clusters`` clusters (the number of classes).

    The greedy coverage only needs the pairs that hold a sample not yet covered, so the
    samples within ``delta`` of a labeled one are marked first, and the graph holds
    only the pairs with an uncovered sample (none at all once the labeled samples cover
    the pool). It is built with the samples sorted along their direction of largest
    variance: two samples farther apart along it than ``delta`` are farther apart in
    space too, so each block of rows only meets the columns within ``delta`` of it
    along that direction. The picks are the same as on the whole graph (up to pairs at
    ``delta`` itself, within rounding); only distances that cannot change them are
    skipped. Memory stays under twice the features plus the graph's edges.

    Parameters
    ----------
    learner : modAL learner or estimator
        As for :func:`typiclust`.
    X_pool : array-like
        The unlabeled pool.
    n_instances : int, default=1
        Number of samples to select.
    X_labeled : array-like, optional
        The labeled samples; defaults to ``learner.X_training``.
    delta : float, optional
        Ball radius (in the normalized space when ``normalize``).
    purity : float, default=0.95
        Purity the automatic ``delta`` keeps (the paper's α).
    n_clusters : int, optional
        Pseudo-label clusters for the automatic ``delta``; defaults to the number of the
        estimator's ``classes_``.
    normalize : bool, default=True
        L2-normalize the features first.
    max_edges : int, default=200_000_000
        Refuse a graph with more edges.
    random_state : int, RandomState or None, default=None
        Seed of k-means and of the random picks once every sample is covered.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Indices into ``X_pool``, in the order they were picked.
    gains : ndarray of shape (n_instances,)
        Samples each pick newly covered (0 for a random pick after full coverage).

    References
    ----------
    O. Yehuda, A. Dekel, G. Hacohen, D. Weinshall. Active Learning Through a Covering
    Lens. NeurIPS 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyClassifier
    >>> X = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [9.0]])
    >>> probcover(DummyClassifier(), X, n_instances=2, delta=0.15,
    ...           normalize=False)[0].tolist()
    [1, 3]
    """
    with modal_retry_guard():
        parts, m, n = _prepared(learner, X_pool, n_instances, X_labeled, normalize, raw=True)
        if delta is not None:
            _check_delta(delta)
        # stacked, normalized and sorted at once: see _along_spread
        F, order, proj = _along_spread(parts, normalize)
        del parts
        rng = check_random_state(random_state)
        if delta is None:
            k = (
                n_clusters
                if n_clusters is not None
                else len(getattr(base_estimator(learner), "classes_", ()))
            )
            if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
                raise ValueError(
                    "probcover needs n_clusters >= 2 (or an estimator with "
                    f"classes_) to choose delta; got {k!r}"
                )
            _check_purity(purity)
            # F is this call's own copy: k-means centres it in place, and it is grouped
            # by label in place for the purity radius, then put back in order.
            labels = _kmeans(F, int(k), rng, overwrite=True)
            if len(np.unique(labels)) < 2:
                raise ValueError("the features hold a single distinct point: give delta")
            by_label = np.argsort(labels, kind="stable")
            _permute_rows(F, by_label)
            delta = _grouped_purity_radius(
                torch.from_numpy(F), _group_bounds(labels[by_label]), purity
            )
            _permute_rows(F, np.argsort(by_label))
        delta = float(delta)
        scratch = _scratches(torch.from_numpy(F))  # for both passes: allocated once
        covered = _covered(
            torch.from_numpy(F),
            np.flatnonzero(order < m),
            delta,
            torch.from_numpy(proj),
            scratch,
        )
        # The uncovered points first, each part still along the spread: the pairs of two
        # covered points are never computed (every pair once the labeled cover the pool).
        moved = np.argsort(covered, kind="stable")
        _permute_rows(F, moved)
        proj, order, covered = proj[moved], order[moved], covered[moved]
        indptr, indices = _ball_graph(
            torch.from_numpy(F),
            delta,
            max_edges,
            torch.from_numpy(proj),
            n_active=int(np.count_nonzero(~covered)),
            scratch=scratch,
        )
        del F, scratch
        picks, gains = _greedy_coverage(indptr, indices, covered, m, n, rng, order)
        return strategy_result(learner, picks - m, gains)
