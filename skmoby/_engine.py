"""How :class:`~skmoby.MoBYv2Classifier` runs its training steps on a device.

Resolves the ``"auto"`` settings (bf16 autocast and channels-last on CUDA, fp32 and the
default layout elsewhere) and, on CUDA, captures the whole training step as a CUDA graph
(:class:`CapturedSteps`): augmentation, forward, backward, optimizer step, the key
branch's EMA update and the enqueue are replayed as one graph, so a step costs a handful
of launches instead of several hundred, and nothing is read back to the host.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback

from ._data import inference_batches
from ._validation import check_augment_output
from .augment import StrongAugment, TabularStrongAugment, TabularWeakAugment, WeakAugment
from .network import cosine_momentum
from .threads import check_n_threads, limit_threads

__all__ = [
    "CapturedSteps",
    "DeviceSteps",
    "resolve_capture",
    "resolve_channels_last",
    "resolve_precision",
]


def resolve_precision(precision: str, device: torch.device) -> str:
    """The autocast precision for ``precision`` on ``device``: ``"auto"`` is bf16 on
    GPUs that support it and fp32 elsewhere."""
    is_cuda = device.type == "cuda"
    bf16_ok = is_cuda and torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "auto":
        return "bf16" if bf16_ok else "fp32"
    if precision == "bf16" and is_cuda and not bf16_ok:
        raise ValueError(
            f"precision='bf16' needs a GPU with bfloat16 support; "
            f"{torch.cuda.get_device_name(device)} has none. Use precision='fp16' or 'fp32'."
        )
    if precision == "fp16" and not is_cuda:
        raise ValueError(
            f"precision='fp16' needs a CUDA device; the device is {device}. "
            "Use precision='fp32' or 'bf16'."
        )
    return precision


def resolve_channels_last(value: bool | str, device: torch.device, is_image: bool) -> bool:
    """Channels-last layout for images: ``"auto"`` uses it on CUDA."""
    if value == "auto":
        return is_image and device.type == "cuda"
    return bool(value) and is_image


def _overrides(cb: Any, hook: str) -> bool:
    return getattr(type(cb), hook, None) is not getattr(Callback, hook)


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


class _Graph:
    """One captured step for batches of one kind and size."""

    def __init__(
        self,
        graph: torch.cuda.CUDAGraph,
        x: torch.Tensor,
        y: torch.Tensor | None,
        loss: torch.Tensor,
        y_pred: torch.Tensor,
        n_keys: int,
    ) -> None:
        self.graph, self.x, self.y = graph, x, y
        self.loss, self.y_pred, self.n_keys = loss, y_pred, n_keys


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

    def __init__(self, est: Any) -> None:
        self.est = est
        self.device = torch.device(est.device_)
        self.pool = torch.cuda.graph_pool_handle()
        self.side = torch.cuda.Stream(self.device)
        self.graphs: dict[bool, _Graph] = {}
        self.seen = {True: 0, False: 0}
        self.hyper: tuple | None = None
        self.failed = False
        net = est.module_
        self.key_params = list(net.key_encoder.parameters()) + list(net.key_projector.parameters())
        self.query_params = list(net.encoder.parameters()) + list(net.projector.parameters())
        self.step_t = torch.zeros((), dtype=torch.float32, device=self.device)
        self.ptr_t = torch.zeros((), dtype=torch.long, device=self.device)

    def _hyperparameters(self) -> tuple:
        return tuple(
            tuple(v for k, v in sorted(g.items()) if k != "params")
            for g in self.est.optimizer_.param_groups
        )

    def _body(self, x: torch.Tensor, y: torch.Tensor | None):
        est, net = self.est, self.est.module_
        loss, y_pred, keys = est.step_loss(x, y)
        loss.backward()
        est.optimizer_.step()
        n_keys = 0
        if keys is not None:
            total = float(est.total_steps_)
            t = torch.clamp(self.step_t, max=total)
            m = 1.0 - (1.0 - est.key_momentum) * (torch.cos(math.pi * t / total) + 1.0) / 2.0
            with torch.no_grad():
                torch._foreach_mul_(self.key_params, m)
                torch._foreach_add_(self.key_params, torch._foreach_mul(self.query_params, 1.0 - m))
                k_weak, k_strong = keys
                size = net.queue_size
                n_keys = min(k_weak.shape[0], size)
                k_weak, k_strong = k_weak[-n_keys:], k_strong[-n_keys:]
                idx = (self.ptr_t + torch.arange(n_keys, device=self.device)) % size
                net.queue_weak.index_copy_(0, idx, k_weak.to(net.queue_weak.dtype))
                net.queue_strong.index_copy_(0, idx, k_strong.to(net.queue_strong.dtype))
                net.queue_ptr.copy_((self.ptr_t + n_keys) % size)
        return loss.detach(), y_pred.detach(), n_keys

    def _capture(self, x: torch.Tensor, y: torch.Tensor | None) -> _Graph:
        est = self.est
        sx = x.clone()
        sy = None if y is None else y.clone()
        est.optimizer_.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(est._aug_generator_)
        with torch.cuda.graph(graph, pool=self.pool):
            loss, y_pred, n_keys = self._body(sx, sy)
        return _Graph(graph, sx, sy, loss, y_pred, n_keys)

    def _eager_warmup(self, batch) -> dict:
        """A normal step, on a side stream (what capture needs before it starts)."""
        est = self.est
        self.side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.side):
            out = est._eager_step(batch)
        torch.cuda.current_stream(self.device).wait_stream(self.side)
        return out

    def step(self, batch) -> dict | None:
        """Run one training step; ``None`` when the caller should run it eagerly."""
        if self.failed:
            return None
        x, y = batch[0], batch[1]
        kind = y is not None
        if len(batch) > 2:  # extra per-sample inputs are not captured
            return None
        hyper = self._hyperparameters()
        if hyper != self.hyper:
            self.graphs.clear()
            self.hyper = hyper
        g = self.graphs.get(kind)
        if g is not None and g.x.shape != x.shape:
            return None  # a batch of another size: eager
        if g is None:
            if self.seen[kind] < self.warmup:
                self.seen[kind] += 1
                return self._eager_warmup(batch)
            try:
                self.est._set_training(True)
                g = self.graphs[kind] = self._capture(x, y)
            except Exception as exc:
                self.failed = True
                warnings.warn(
                    f"CUDA graph capture of the training step failed ({exc!r}); "
                    "training continues without capture (capture=False avoids "
                    "this attempt).",
                    RuntimeWarning,
                    stacklevel=4,
                )
                return None
        else:
            g.x.copy_(x)
            if y is not None:
                g.y.copy_(y)
        est = self.est
        self.step_t.fill_(est.key_step_)
        self.ptr_t.fill_(est._queue_ptr_)
        g.graph.replay()
        if g.n_keys:
            est._queue_ptr_ = (est._queue_ptr_ + g.n_keys) % est.module_.queue_size
        return {"loss": g.loss.clone(), "y_pred": g.y_pred.clone()}

    def close(self) -> None:
        """Release the graphs; gradients return to ordinary tensors."""
        self.graphs.clear()
        self.est.optimizer_.zero_grad(set_to_none=True)


Augment = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


class DeviceSteps:
    """The device side of :class:`~skmoby.MoBYv2Classifier`'s training and inference:
    seeded generators, input scaling and normalisation, the two views, the loss of a
    training step, eager and fp16-scaled steps, captured steps, and batched inference.
    A mixin: it expects the estimator's fitted attributes (``module_``, ``mean_``, ...).
    """

    def _resolve_device_settings(self, strict: bool = True) -> None:
        """Resolve ``precision_`` and ``channels_last_`` for ``device_`` (``"auto"``:
        bf16 and channels-last on a GPU that has them, fp32 and the plain layout
        elsewhere). ``strict=False``, for a model loaded on another machine: a
        precision this device cannot run falls back to fp32 with a warning instead of
        the ``ValueError``."""
        device = torch.device(self.device_)
        try:
            self.precision_ = resolve_precision(self.precision, device)
        except ValueError as exc:  # e.g. precision="fp16" loaded where there is no GPU
            if strict:
                raise
            self.precision_ = "fp32"
            warnings.warn(
                f"{exc} This loaded model computes in fp32 instead.", UserWarning, stacklevel=4
            )
        self.channels_last_ = resolve_channels_last(
            self.channels_last, device, len(self.sample_shape_) == 3
        )

    def _seed_for(self, *salt: int) -> int:
        seq = np.random.SeedSequence([self.seed_, *salt])
        return int(seq.generate_state(1, np.uint64)[0]) & (2**63 - 1)

    def _generator(self, *salt: int, device: Any = "cpu") -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self._seed_for(*salt))

    def _start_steps(self) -> None:
        """Set up the step loop: the host's copy of the queue pointer (one read per fit;
        every later value is known on the host) and, where enabled, captured steps."""
        self._queue_ptr_ = int(self.module_.queue_ptr)
        self._steps_ = None
        if resolve_capture(self):
            self._steps_ = CapturedSteps(self)
        self.capture_ = self._steps_ is not None

    def _finish_steps(self) -> None:
        steps = getattr(self, "_steps_", None)
        if steps is not None:
            steps.close()
        self._steps_ = None

    def _autocast(self):
        precision = getattr(self, "precision_", "fp32")
        if precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        device_type = torch.device(self.device_).type
        # Autocast's weight-cast cache must be off while a CUDA graph is captured.
        capturing = device_type == "cuda" and torch.cuda.is_current_stream_capturing()
        return torch.autocast(device_type=device_type, dtype=dtype, cache_enabled=not capturing)

    def _to_unit(self, x) -> torch.Tensor:
        """Move a raw batch to the device as float32 (uint8 images scaled to [0, 1])."""
        x = torch.as_tensor(x).to(self.device_, non_blocking=True)
        if x.dtype == torch.uint8 and self._is_image:
            return x.float().div_(255.0)
        return x.float()

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean_ is not None:
            # Cached on the device: no host-to-device copy per batch (or in a graph).
            key = (x.device, x.dtype, x.ndim)
            cache = self.__dict__.setdefault("_norm_cache_", {})
            if cache.get("stats") is not self.mean_:
                cache.clear()
                cache["stats"] = self.mean_
            if key not in cache:
                shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
                cache[key] = tuple(
                    torch.as_tensor(v, dtype=x.dtype, device=x.device).view(shape)
                    for v in (self.mean_, self.std_)
                )
            mean, std = cache[key]
            x = (x - mean) / std
        if getattr(self, "channels_last_", False) and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _augmenters(self) -> tuple[Augment, Augment]:
        image = self._is_image
        weak = self.weak_augment
        strong = self.strong_augment
        if isinstance(weak, str):
            weak = WeakAugment() if image else TabularWeakAugment()
        if isinstance(strong, str):
            strong = StrongAugment() if image else TabularStrongAugment()
        return weak, strong

    def _views(self, raw, generator, *, strong: bool = True) -> tuple[torch.Tensor, ...]:
        """Weak and strong normalised views of a raw batch (the weak one alone with
        ``strong=False``); the weak view draws from ``generator`` first either way."""
        x = self._to_unit(raw)
        weak_fn, strong_fn = self._augmenters()
        fns = (("weak_augment", weak_fn), ("strong_augment", strong_fn))[: 2 if strong else 1]
        if self._is_image:
            return tuple(
                self._normalized(check_augment_output(name, x, fn(x, generator)))
                for name, fn in fns
            )
        x = self._normalized(x)
        return tuple(check_augment_output(name, x, fn(x, generator)) for name, fn in fns)

    def step_loss(self, X, y) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """Forward pass of one training batch: ``(loss, y_pred, keys)``.

        ``X`` is a raw batch on the device, ``y`` its encoded labels or ``None`` for an
        unlabelled batch. The loss is ``CE + lambda_c * L_con`` (labelled) or
        ``lambda_c * L_con`` (unlabelled); ``keys`` are the weak and strong keys to
        enqueue, ``None`` when ``lambda_c == 0`` (supervised only: the strong view,
        the key branch and the queues are skipped). Nothing here reads a device value
        on the host, so the step can be captured as a CUDA graph.
        """
        if self.lambda_c == 0:
            (weak,) = self._views(X, self._aug_generator_, strong=False)
            with self._autocast():
                y_pred = self.module_(weak).float()
            # Unlabelled batches still make an (all-zero gradient) optimizer step.
            loss = y_pred.sum() * 0.0 if y is None else self.get_loss(y_pred, y)
            return loss, y_pred, None
        weak, strong = self._views(X, self._aug_generator_)
        with self._autocast():
            con, f_weak, k_weak, k_strong = self.module_.contrastive_terms(
                weak, strong, self.temperature
            )
            y_pred = self.module_.head(f_weak).float()
        loss = self.lambda_c * con.float().mean()
        if y is not None:
            loss = loss + self.get_loss(y_pred, y)
        return loss, y_pred, (k_weak, k_strong)

    def _eager_step(self, batch, **fit_params):
        if self.precision_ == "fp16":
            step = self._scaled_step(batch, **fit_params)
        else:
            step = super().train_step(batch, **fit_params)
        if self._keys_ is not None:
            m = cosine_momentum(self.key_step_, self.total_steps_, self.key_momentum)
            self.module_.update_keys(m)
            self._queue_ptr_ = self.module_.enqueue(*self._keys_, ptr=self._queue_ptr_)
            self._keys_ = None
        return step

    def _scaled_step(self, batch, **fit_params):
        """An fp16 step with dynamic loss scaling (``torch.amp.GradScaler``)."""
        scaler = self.__dict__.get("_grad_scaler_")
        if scaler is None:
            scaler = self._grad_scaler_ = torch.amp.GradScaler(torch.device(self.device_).type)
        self._zero_grad_optimizer()
        self._set_training(True)
        loss, y_pred, self._keys_ = self.step_loss(*batch[:2])
        scaler.scale(loss).backward()
        scaler.unscale_(self.optimizer_)
        self.notify(
            "on_grad_computed", batch=batch, named_parameters=list(self.get_all_learnable_params())
        )
        scaler.step(self.optimizer_)
        scaler.update()
        return {"loss": loss, "y_pred": y_pred}

    @torch.no_grad()
    def _map_batches(self, X: np.ndarray, fn: Callable, width: int | None) -> np.ndarray:
        """``fn`` over large device batches of ``X`` in eval mode; one copy back."""
        self.module_.eval()
        with limit_threads(check_n_threads(getattr(self, "n_threads", None))):
            out = [fn(xb) for xb in inference_batches(X, torch.device(self.device_))]
        if not out:
            return np.zeros((0,) if width is None else (0, width), np.float32)
        return torch.cat(out).float().cpu().numpy()
