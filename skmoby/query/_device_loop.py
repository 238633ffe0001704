"""The greedy picks of k-center greedy without host synchronization (for GPUs).

Every pick reads the whole feature matrix once, so on a GPU the loop is bound by memory
bandwidth -- unless each pick waits for the host, as it does when the pick's index is
brought back to Python (``int(argmax)``) to index the features. Here nothing is brought
back: the state lives in device tensors and each step works on it in place,

    update  min_d = min(min_d, ||x - x[j]||)          (j: the previous pick, on the device)
    select  j = argmax(min_d); picks[c] = j; dists[c] = min_d[j]; min_d[j] = -1; c += 1

and the picks are copied to the host once at the end. Two implementations of a step:

* ``"triton"``: two fused Triton kernels; the update reads ``x`` once and also reduces
  each block of rows to its maximum, so the select kernel scans only the block maxima.
  Runs on CUDA, and on the CPU under Triton's interpreter (``TRITON_INTERPRET=1``, set
  before triton is first imported: set later, the step fails and falls back to torch),
  which is how the tests check it without a GPU.
* ``"torch"``: plain torch operations (argmax, index_select, a chunked vector norm),
  on any device.

On CUDA, a block of steps can be captured once as a CUDA graph and replayed, so the host
does not launch each kernel of each step. Ties go to the lowest index in both, as in
``torch.argmax``; the distances are computed from coordinate differences, as on the CPU,
so float64 picks equal those of the NumPy float64 reference.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch

tl = None  # triton.language, imported on first use (importing triton takes a while)

_SCAN_BYTES = 8 * 2**20  # rows per chunk of the torch step: temporaries stay in cache
_BLOCK_N = 64  # rows per program of the Triton update kernel
_BLOCK_D = 64  # columns per iteration of that kernel
_BLOCK_P = 1024  # block maxima per iteration of the select kernel


class GreedyState:
    """Device tensors of one greedy run; every step updates them in place."""

    def __init__(self, x: torch.Tensor, min_d: torch.Tensor, n: int):
        dev = x.device
        self.x, self.min_d, self.n = x, min_d, n
        self.picks = torch.zeros(n, dtype=torch.long, device=dev)
        self.dists = torch.zeros(n, dtype=x.dtype, device=dev)
        self.count = torch.zeros(1, dtype=torch.long, device=dev)  # picks made so far
        self.last = torch.zeros(1, dtype=torch.long, device=dev)  # the latest pick
        n_blocks = -(-x.shape[0] // _BLOCK_N)
        self.block_max = torch.empty(n_blocks, dtype=x.dtype, device=dev)
        self.block_arg = torch.empty(n_blocks, dtype=torch.long, device=dev)


# -- torch step -----------------------------------------------------------------------


def _select_torch(st: GreedyState) -> None:
    j = torch.argmax(st.min_d).view(1)  # first maximum: ties go to the lowest index
    st.last.copy_(j)
    st.picks.index_copy_(0, st.count, j)
    st.dists.index_copy_(0, st.count, st.min_d.index_select(0, j))
    st.min_d.index_fill_(0, j, -1.0)
    st.count.add_(1)


def _update_torch(st: GreedyState) -> None:
    x, min_d = st.x, st.min_d
    xj = x.index_select(0, st.last)
    rows = max(1, _SCAN_BYTES // max(1, x.shape[1] * x.element_size()))
    for s in range(0, x.shape[0], rows):
        part = min_d[s : s + rows]
        torch.minimum(part, torch.linalg.vector_norm(x[s : s + rows] - xj, dim=1), out=part)


# -- Triton step ----------------------------------------------------------------------


def _update_kernel(
    x_ptr,
    min_d_ptr,
    last_ptr,
    bmax_ptr,
    barg_ptr,
    N,
    D,
    stride,
    UPDATE: tl.constexpr,
    F64: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    in_rows = rows < N
    md = tl.load(min_d_ptr + rows, mask=in_rows, other=0.0)
    if UPDATE:
        j = tl.load(last_ptr)
        if F64:
            acc = tl.zeros([BLOCK_N], dtype=tl.float64)
        else:
            acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            in_cols = cols < D
            xb = tl.load(
                x_ptr + rows[:, None].to(tl.int64) * stride + cols[None, :],
                mask=in_rows[:, None] & in_cols[None, :],
                other=0.0,
            )
            cb = tl.load(x_ptr + j * stride + cols, mask=in_cols, other=0.0)
            diff = xb - cb[None, :]
            acc += tl.sum(diff * diff, axis=1)
        # correctly rounded square roots, as torch and NumPy compute them
        dist = tl.sqrt(acc) if F64 else tl.sqrt_rn(acc)
        md = tl.minimum(md, dist)  # centers hold -1 and stay there
        tl.store(min_d_ptr + rows, md, mask=in_rows)
    md = tl.where(in_rows, md, -float("inf"))
    best = tl.max(md, axis=0)
    arg = tl.min(tl.where(md == best, rows, N), axis=0)  # lowest index among the ties
    tl.store(bmax_ptr + pid, best)
    tl.store(barg_ptr + pid, arg.to(tl.int64))


def _select_kernel(
    bmax_ptr,
    barg_ptr,
    n_blocks,
    min_d_ptr,
    last_ptr,
    picks_ptr,
    dists_ptr,
    count_ptr,
    BIG,
    BLOCK_P: tl.constexpr,
):
    best = tl.zeros([], dtype=bmax_ptr.dtype.element_ty) - float("inf")
    arg = tl.zeros([], dtype=tl.int64) + BIG
    for s in range(0, n_blocks, BLOCK_P):
        offs = s + tl.arange(0, BLOCK_P)
        ok = offs < n_blocks
        v = tl.load(bmax_ptr + offs, mask=ok, other=-float("inf"))
        a = tl.load(barg_ptr + offs, mask=ok, other=BIG)
        m = tl.max(v, axis=0)
        am = tl.min(tl.where(v == m, a, BIG), axis=0)
        # blocks come in row order, so an earlier chunk wins a tie
        take = m > best
        arg = tl.where(take, am, arg)
        best = tl.where(take, m, best)
    c = tl.load(count_ptr)
    tl.store(last_ptr, arg)
    tl.store(picks_ptr + c, arg)
    tl.store(dists_ptr + c, best)
    tl.store(min_d_ptr + arg, -1.0)
    tl.store(count_ptr, c + 1)


@functools.cache
def _kernels(interpret: bool):
    """The two kernels, compiled by Triton (or interpreted on the CPU)."""
    global tl
    import triton
    import triton.language

    tl = triton.language
    del interpret  # part of the cache key: triton.jit reads TRITON_INTERPRET
    return triton.jit(_update_kernel), triton.jit(_select_kernel)


def triton_usable(device: torch.device) -> bool:
    """Whether the Triton step can run on ``device`` (CUDA, or the CPU interpreter)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


def _triton_step(st: GreedyState, update: bool) -> None:
    upd, sel = _kernels(os.environ.get("TRITON_INTERPRET") == "1")
    N, D = st.x.shape
    n_blocks = st.block_max.shape[0]
    upd[(n_blocks,)](
        st.x,
        st.min_d,
        st.last,
        st.block_max,
        st.block_arg,
        N,
        D,
        st.x.stride(0),
        UPDATE=update,
        F64=st.x.dtype == torch.float64,
        BLOCK_N=_BLOCK_N,
        BLOCK_D=_BLOCK_D,
    )
    sel[(1,)](
        st.block_max,
        st.block_arg,
        n_blocks,
        st.min_d,
        st.last,
        st.picks,
        st.dists,
        st.count,
        N,
        BLOCK_P=_BLOCK_P,
    )


# -- the loop -------------------------------------------------------------------------


def _steps(st: GreedyState, impl: str):
    if impl == "triton":
        return (lambda: _triton_step(st, False)), (lambda: _triton_step(st, True))
    return (lambda: _select_torch(st)), (lambda: (_update_torch(st), _select_torch(st)))


def run(
    x: torch.Tensor,
    min_d: torch.Tensor,
    n: int,
    *,
    impl: str = "torch",
    graph_steps: int = 0,
    first: int | None = None,
) -> GreedyState:
    """Make ``n`` greedy picks on ``x``'s device; ``min_d`` is updated in place.

    Parameters
    ----------
    x : Tensor of shape (N, d), contiguous
    min_d : Tensor of shape (N,)
        Distance of every point to its nearest center, -1 for centers; ``inf`` for all
        points when there are no centers yet (then ``first`` must be given).
    n : int
        Picks to make.
    impl : {"torch", "triton"}
    graph_steps : int, default=0
        On CUDA, capture this many steps as one CUDA graph and replay it; 0: launch
        every step from the host.
    first : int, optional
        The first pick, when there are no centers to choose it by distance.

    Returns
    -------
    GreedyState
        Its ``picks`` and ``dists`` (on the device) hold the result.
    """
    st = GreedyState(x, min_d, n)
    select, step = _steps(st, impl)
    if first is None:
        select()
    else:
        st.last.fill_(first)
        st.picks[0] = first
        st.dists[0] = float("inf")
        st.min_d[first] = -1.0
        st.count.fill_(1)
    left = n - 1
    if graph_steps and x.device.type == "cuda" and left > graph_steps:
        step()  # compiles and warms up outside the capture
        left -= 1
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(graph_steps):
                step()
        for _ in range(left // graph_steps):
            graph.replay()
        left %= graph_steps
    for _ in range(left):
        step()
    return st


def greedy(
    x: torch.Tensor,
    min_d: torch.Tensor,
    n: int,
    *,
    impl: str,
    graph_steps: int,
    first: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`run` with fallbacks; returns picks and distances on the host.

    A Triton step or a graph capture that fails (a compiler missing, an unsupported
    GPU) is reported in one warning and the picks are made again from the start with
    the next simpler method: Triton -> torch, graph -> launches from the host.
    """
    start = min_d.clone()
    plans = [(impl, graph_steps)]
    if graph_steps:
        plans.append((impl, 0))
    if impl == "triton":
        plans.append(("torch", 0))
    for k, (how, g) in enumerate(plans):
        try:
            st = run(x, min_d, n, impl=how, graph_steps=g, first=first)
            return st.picks.cpu(), st.dists.cpu()
        except Exception as exc:
            if k == len(plans) - 1:
                raise
            nxt = plans[k + 1]
            warnings.warn(
                f"k_center_greedy: the {how} step{' in a CUDA graph' if g else ''} failed "
                f"({type(exc).__name__}: {exc}); using the {nxt[0]} step"
                f"{' in a CUDA graph' if nxt[1] else ''} instead.",
                RuntimeWarning,
                stacklevel=3,
            )
            min_d.copy_(start)
    raise AssertionError("unreachable")
