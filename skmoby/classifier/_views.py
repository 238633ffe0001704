"""How raw batches become network inputs on the device, for training and inference.

The ``"auto"`` settings that follow the device (bf16 autocast and channels-last on
CUDA, fp32 and the default layout elsewhere), pixel scaling, input normalization and the
weak and strong augmented views. Functions read the estimator's parameters and fitted
attributes only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from ..augment import StrongAugment, TabularStrongAugment, TabularWeakAugment, WeakAugment
from ._params import AUGMENT_HINT

__all__ = [
    "Augment",
    "autocast",
    "check_augment_output",
    "device_settings",
    "normalized",
    "resolve_channels_last",
    "resolve_precision",
    "to_unit",
    "views",
]

Augment = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


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


def device_settings(est: Any, strict: bool = True) -> tuple[str, bool]:
    """``(precision_, channels_last_)`` of ``est`` on its ``device_``.

    ``strict=False``, for a model loaded on another machine: a precision this device
    cannot run falls back to fp32 with a warning instead of the ``ValueError``.
    """
    device = torch.device(est.device_)
    try:
        precision = resolve_precision(est.precision, device)
    except ValueError as exc:  # e.g. precision="fp16" loaded where there is no GPU
        if strict:
            raise
        precision = "fp32"
        warnings.warn(
            f"{exc} This loaded model computes in fp32 instead.", UserWarning, stacklevel=5
        )
    is_image = len(est.sample_shape_) == 3
    return precision, resolve_channels_last(est.channels_last, device, is_image)


def autocast(est: Any) -> AbstractContextManager:
    """The autocast context of the forward passes of ``est``."""
    precision = getattr(est, "precision_", "fp32")
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    device_type = torch.device(est.device_).type
    # Autocast's weight-cast cache must be off while a CUDA graph is captured.
    capturing = device_type == "cuda" and torch.cuda.is_current_stream_capturing()
    return torch.autocast(device_type=device_type, dtype=dtype, cache_enabled=not capturing)


def to_unit(est: Any, x: Any) -> torch.Tensor:
    """A raw batch on the device as float32 (uint8 images scaled to [0, 1]).

    A batch of one-channel images without their channel axis, ``(n, H, W)`` (the shape
    ``fit`` accepts), gains it here: skorch's own paths (``forward``, ``predict`` on a
    ``Dataset``, a validation split, ``fit_loop``) hand batches over as they are.
    """
    x = torch.as_tensor(x).to(est.device_, non_blocking=True)
    shape = est.sample_shape_
    if len(shape) == 3 and shape[0] == 1 and x.ndim == 3 and tuple(x.shape[1:]) == shape[1:]:
        x = x.unsqueeze(1)
    if x.dtype == torch.uint8 and len(est.sample_shape_) == 3:
        return x.float().div_(255.0)
    return x.float()


def normalized(est: Any, x: torch.Tensor) -> torch.Tensor:
    """``x`` normalized with the fitted statistics, in the fitted memory layout.

    The statistics are read from the network's buffers ``input_mean``/``input_std``
    (the fitted ``mean_``/``std_`` as float32, on the device): no host-to-device copy
    per batch, nor inside a captured graph.
    """
    if est.mean_ is not None:
        shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
        net = est.module_
        mean = net.input_mean.to(dtype=x.dtype, device=x.device).view(shape)
        std = net.input_std.to(dtype=x.dtype, device=x.device).view(shape)
        x = (x - mean) / std
    if getattr(est, "channels_last_", False) and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def network_input(est: Any, raw: Any) -> torch.Tensor:
    """A raw batch as the network takes it, without augmentation (inference)."""
    return normalized(est, to_unit(est, raw))


def augmenters(est: Any) -> tuple[Augment, Augment]:
    """The weak and strong augmentations of ``est`` (``"auto"`` resolved)."""
    image = len(est.sample_shape_) == 3
    weak, strong = est.weak_augment, est.strong_augment
    if isinstance(weak, str):
        weak = WeakAugment() if image else TabularWeakAugment()
    if isinstance(strong, str):
        strong = StrongAugment() if image else TabularStrongAugment()
    return weak, strong


def check_augment_output(name: str, x: torch.Tensor, out: Any) -> torch.Tensor:
    """The augmented batch, once it is a tensor of the batch's shape (no device sync)."""
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = (
            f"a tensor of shape {tuple(out.shape)}"
            if isinstance(out, torch.Tensor)
            else f"a {type(out).__name__}"
        )
        raise TypeError(
            f"{name} returned {got} for a batch of shape {tuple(x.shape)}; {AUGMENT_HINT}"
        )
    return out


def views(
    est: Any, raw: Any, generator: torch.Generator | None, *, strong: bool = True
) -> tuple[torch.Tensor, ...]:
    """Weak and strong normalized views of a raw batch (the weak one alone with
    ``strong=False``); the weak view draws from ``generator`` first either way.

    Images are augmented as ``[0, 1]`` pixels and normalized afterwards; tabular rows
    are standardized first and augmented in that scale.
    """
    x = to_unit(est, raw)
    weak_fn, strong_fn = augmenters(est)
    fns = (("weak_augment", weak_fn), ("strong_augment", strong_fn))[: 2 if strong else 1]
    if len(est.sample_shape_) == 3:
        return tuple(
            normalized(est, check_augment_output(name, x, fn(x, generator))) for name, fn in fns
        )
    x = normalized(est, x)
    return tuple(check_augment_output(name, x, fn(x, generator)) for name, fn in fns)
