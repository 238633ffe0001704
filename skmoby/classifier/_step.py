"""One training step of :class:`~skmoby.MoBYv2Classifier`: its loss, and the three ways
it runs.

* :func:`step_loss`: the two views, the contrastive terms and the cross-entropy.
* Eager steps: skorch's ``train_step`` (or :func:`scaled_step`, fp16's dynamic loss
  scaling), then :func:`follow_query`: the key branch's EMA and the enqueue.
* :class:`CapturedSteps`: on CUDA, the whole step (augmentation, forward, backward,
  optimizer step, EMA, enqueue) captured as a CUDA graph and replayed: a handful of
  launches instead of several hundred, and nothing read back to the host.

The key branch's update itself lives in :mod:`skmoby.network`
(:meth:`~skmoby.network.MoBYv2Network.follow_query`); both step kinds call it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback, EpochScoring, LRScheduler

from ..network import cosine_momentum
from ._views import autocast, views

__all__ = [
    "CapturedSteps",
    "FitState",
    "check_weighted_criterion",
    "follow_query",
    "reads_batch_rows",
    "resolve_capture",
    "scaled_step",
    "seeded_generator",
    "step_loss",
    "sub_seed",
    "weighted_loss",
]


@dataclass
class FitState:
    """The working state of one ``fit``/``partial_fit`` call, held by the estimator
    in one attribute while it trains and dropped afterwards (never pickled).

    Attributes
    ----------
    unlabeled, sample_weight
        The call's unlabelled samples and labelled rows' weights (for the batches).
    steps_before : int
        Optimizer steps taken before this call (each call draws a new batch stream).
    run_epoch : int
        Epochs done in the current training run.
    aug_generator : torch.Generator or None
        Draws the augmentations, on the device.
    queue_ptr : int
        The queue's write position, kept on the host (read once per call).
    keys : tuple of Tensor or None
        The last eager step's keys, waiting to be enqueued.
    batch_weight : Tensor or None
        The weights of the batch in the step (``get_loss`` reads them).
    captured : CapturedSteps or None
        The captured steps, where capture is on.
    batch_floats : bool
        Whether batch rows get their loss as a float at once (one host
        synchronisation per step), because a callback reads them during the epoch.
    """

    unlabeled: np.ndarray | None = None
    sample_weight: np.ndarray | None = None
    steps_before: int = 0
    run_epoch: int = 0
    aug_generator: torch.Generator | None = None
    queue_ptr: int = 0
    keys: tuple | None = None
    batch_weight: torch.Tensor | None = None
    captured: CapturedSteps | None = None
    batch_floats: bool = False


def sub_seed(seed: int, *salt: int) -> int:
    """A seed for one purpose (``salt``) derived from the fit's base ``seed``."""
    seq = np.random.SeedSequence([seed, *salt])
    return int(seq.generate_state(1, np.uint64)[0]) & (2**63 - 1)


def seeded_generator(seed: int, *salt: int, device: Any = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded with :func:`sub_seed`."""
    return torch.Generator(device=device).manual_seed(sub_seed(seed, *salt))


def step_loss(est: Any, X, y, generator) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
    """Forward pass of one training batch: ``(loss, y_pred, keys)``.

    ``X`` is a raw batch on the device, ``y`` its encoded labels or ``None`` for an
    unlabelled batch. The loss is ``CE + lambda_c * L_con`` (labelled) or
    ``lambda_c * L_con`` (unlabelled); ``keys`` are the weak and strong keys to
    enqueue, ``None`` when ``lambda_c == 0`` (supervised only: the strong view,
    the key branch and the queues are skipped). Nothing here reads a device value
    on the host, so the step can be captured as a CUDA graph.
    """
    if est.lambda_c == 0:
        (weak,) = views(est, X, generator, strong=False)
        with autocast(est):
            y_pred = est.module_(weak).float()
        # Unlabelled batches still make an (all-zero gradient) optimizer step.
        loss = y_pred.sum() * 0.0 if y is None else est.get_loss(y_pred, y)
        return loss, y_pred, None
    weak, strong = views(est, X, generator)
    with autocast(est):
        con, f_weak, k_weak, k_strong = est.module_.contrastive_terms(weak, strong, est.temperature)
        y_pred = est.module_.head(f_weak).float()
    loss = est.lambda_c * con.float().mean()
    if y is not None:
        loss = loss + est.get_loss(y_pred, y)
    return loss, y_pred, (k_weak, k_strong)


def follow_query(est: Any, state: FitState) -> None:
    """After an eager step: the key branch's EMA at this step's cosine momentum, and
    the step's keys enqueued at the host-kept write position."""
    if state.keys is None:
        return
    m = cosine_momentum(est.key_step_, est.total_steps_, est.key_momentum)
    state.queue_ptr = est.module_.follow_query(*state.keys, momentum=m, ptr=state.queue_ptr)
    state.keys = None


def scaled_step(est: Any, state: FitState, batch) -> dict:
    """An fp16 step with dynamic loss scaling (``torch.amp.GradScaler``).

    The scaler is ``est._grad_scaler_``: kept across training calls and pickles, as
    the optimizer's state is, so that its loss scale carries over to the next call.
    """
    scaler = est.__dict__.get("_grad_scaler_")
    if scaler is None:
        scaler = est._grad_scaler_ = torch.amp.GradScaler(torch.device(est.device_).type)
    est._zero_grad_optimizer()
    est._set_training(True)
    loss, y_pred, state.keys = step_loss(est, *batch[:2], state.aug_generator)
    scaler.scale(loss).backward()
    scaler.unscale_(est.optimizer_)
    est.notify(
        "on_grad_computed", batch=batch, named_parameters=list(est.get_all_learnable_params())
    )
    scaler.step(est.optimizer_)
    scaler.update()
    return {"loss": loss, "y_pred": y_pred}


def check_weighted_criterion(criterion: Any) -> None:
    """Refuse ``sample_weight`` with a criterion that cannot give per-row losses."""
    if not hasattr(criterion, "reduction"):
        raise TypeError(
            f"sample_weight needs a criterion with a `reduction` "
            f"argument; {type(criterion).__name__} has none"
        )


def weighted_loss(criterion: Any, y_pred, y_true, w: torch.Tensor) -> torch.Tensor:
    """The mean over the batch of ``criterion``'s per-row losses weighted by ``w``."""
    reduction, criterion.reduction = criterion.reduction, "none"
    try:
        per_row = criterion(y_pred, y_true)
    finally:
        criterion.reduction = reduction
    return (per_row * w.to(per_row.dtype)).mean()


def _overrides(cb: Any, hook: str) -> bool:
    return getattr(type(cb), hook, None) is not getattr(Callback, hook)


def reads_batch_rows(callbacks: list) -> bool:
    """Whether any of the ``(name, callback)`` pairs may read the history's batch rows
    during an epoch: one that implements ``on_batch_begin`` or ``on_batch_end``
    (``ProgressBar``, ``BatchScoring``, a user's), other than skorch's epoch scoring and
    learning-rate schedules stepped per epoch, which read nothing there."""
    for _, cb in callbacks:
        if isinstance(cb, EpochScoring):
            continue
        if isinstance(cb, LRScheduler) and cb.step_every != "batch":
            continue
        if _overrides(cb, "on_batch_end") or _overrides(cb, "on_batch_begin"):
            return True
    return False


def resolve_capture(est: Any) -> bool:
    """Whether ``est`` captures its training steps as CUDA graphs.

    ``"auto"`` captures on CUDA with SGD (the default optimizer, whose step replays
    exactly) unless a callback needs the gradients between backward and step
    (``on_grad_computed``) or fp16's dynamic loss scaling is in use; ``True`` asks for
    capture and raises where it cannot work.
    """
    if est.capture is False:
        return False
    device = torch.device(est.device_)
    reasons = []
    if device.type != "cuda":
        reasons.append(f"the device is {device}, not CUDA")
    if est.optimizer is not torch.optim.SGD:
        reasons.append(f"the optimizer is {est.optimizer.__name__}, not torch.optim.SGD")
    if est.precision_ == "fp16":
        reasons.append("precision='fp16' scales the loss dynamically")
    hooked = [name for name, cb in est.callbacks_ if _overrides(cb, "on_grad_computed")]
    if hooked:
        reasons.append(f"callbacks {hooked} read gradients (on_grad_computed)")
    if reasons and est.capture is True:
        raise ValueError(
            "capture=True cannot capture the training step: "
            + "; ".join(reasons)
            + ". Use capture='auto' or False."
        )
    return not reasons


@dataclass
class _Graph:
    """One captured step for batches of one kind and size."""

    graph: torch.cuda.CUDAGraph
    x: torch.Tensor
    y: torch.Tensor | None
    loss: torch.Tensor
    y_pred: torch.Tensor
    n_keys: int


class CapturedSteps:
    """Training steps of an estimator replayed from CUDA graphs.

    The first ``warmup`` steps of each kind (labelled, unlabelled) run eagerly on a side
    stream, as CUDA graph capture requires; the next full-size batch of that kind is
    captured, then replayed for every later full-size batch. Batches of another size
    (the last one of an epoch) run eagerly. The optimizer's hyperparameters are baked
    into a graph, so a change (a learning-rate milestone) triggers a new capture. The
    step counter of the key momentum's schedule and the queue's write position are
    written into device scalars before each replay; both are known on the host, so
    nothing is read back. A capture that fails (a custom augmentation that reads device
    values, for example) falls back to eager steps with one warning.
    """

    warmup = 3

    def __init__(self, est: Any, state: FitState, eager_step: Callable[[Any], dict]) -> None:
        self.est, self.state, self.eager_step = est, state, eager_step
        self.device = torch.device(est.device_)
        self.pool = torch.cuda.graph_pool_handle()
        self.side = torch.cuda.Stream(self.device)
        self.graphs: dict[bool, _Graph] = {}
        self.seen = {True: 0, False: 0}
        self.hyper: tuple | None = None
        self.failed = False
        self.step_t = torch.zeros((), dtype=torch.float32, device=self.device)
        self.ptr_t = torch.zeros((), dtype=torch.long, device=self.device)

    def _hyperparameters(self) -> tuple:
        return tuple(
            tuple(v for k, v in sorted(g.items()) if k != "params")
            for g in self.est.optimizer_.param_groups
        )

    def _body(self, x: torch.Tensor, y: torch.Tensor | None):
        est, net = self.est, self.est.module_
        loss, y_pred, keys = step_loss(est, x, y, self.state.aug_generator)
        loss.backward()
        est.optimizer_.step()
        n_keys = 0
        if keys is not None:
            n_keys = min(keys[0].shape[0], net.queue_size)
            m = cosine_momentum(self.step_t, est.total_steps_, est.key_momentum)
            net.follow_query(*keys, momentum=m, ptr=self.ptr_t)
        return loss.detach(), y_pred.detach(), n_keys

    def _capture(self, x: torch.Tensor, y: torch.Tensor | None) -> _Graph:
        sx = x.clone()
        sy = None if y is None else y.clone()
        self.est.optimizer_.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.state.aug_generator)
        with torch.cuda.graph(graph, pool=self.pool):
            loss, y_pred, n_keys = self._body(sx, sy)
        return _Graph(graph, sx, sy, loss, y_pred, n_keys)

    def _eager_warmup(self, batch) -> dict:
        """A normal step, on a side stream (what capture needs before it starts)."""
        self.side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.side):
            out = self.eager_step(batch)
        torch.cuda.current_stream(self.device).wait_stream(self.side)
        return out

    def _graph_for(self, batch) -> _Graph | dict | None:
        """The graph for this batch's kind, captured now if its warm-up is over; a
        warm-up step's result; or ``None`` to run eagerly."""
        x, y = batch[0], batch[1]
        kind = y is not None
        if self.seen[kind] < self.warmup:
            self.seen[kind] += 1
            return self._eager_warmup(batch)
        try:
            self.est._set_training(True)
            self.graphs[kind] = self._capture(x, y)
        except Exception as exc:
            self.failed = True
            warnings.warn(
                f"CUDA graph capture of the training step failed ({exc!r}); "
                "training continues without capture (capture=False avoids "
                "this attempt).",
                RuntimeWarning,
                stacklevel=5,
            )
            return None
        return self.graphs[kind]

    def step(self, batch) -> dict | None:
        """Run one training step; ``None`` when the caller should run it eagerly."""
        if self.failed or len(batch) > 2:  # extra per-sample inputs are not captured
            return None
        x, y = batch[0], batch[1]
        hyper = self._hyperparameters()
        if hyper != self.hyper:
            self.graphs.clear()
            self.hyper = hyper
        g = self.graphs.get(y is not None)
        if g is not None and g.x.shape != x.shape:
            return None  # a batch of another size: eager
        if g is None:
            g = self._graph_for(batch)
            if not isinstance(g, _Graph):
                return g
        else:
            g.x.copy_(x)
            if y is not None:
                g.y.copy_(y)
        state, est = self.state, self.est
        self.step_t.fill_(est.key_step_)
        self.ptr_t.fill_(state.queue_ptr)
        g.graph.replay()
        if g.n_keys:
            state.queue_ptr = (state.queue_ptr + g.n_keys) % est.module_.queue_size
        return {"loss": g.loss.clone(), "y_pred": g.y_pred.clone()}

    def close(self) -> None:
        """Release the graphs; gradients return to ordinary tensors."""
        self.graphs.clear()
        self.est.optimizer_.zero_grad(set_to_none=True)
