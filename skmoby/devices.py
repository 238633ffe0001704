"""Which device a name means on this machine: one check for the estimator, the runner
and the command line, so that all three refuse the same names with the same words.

Examples
--------
>>> check_device("cpu")
'cpu'
>>> resolve_device("auto") in {"cpu", "cuda"}
True
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_device", "cuda_count", "resolve_device", "wants_gpu"]

_USAGE = "use 'auto' (the GPU when there is one), 'cpu', 'cuda' or 'cuda:<index>'"


def cuda_count() -> int:
    """The number of CUDA GPUs torch can use here (0 without CUDA).

    Examples
    --------
    >>> cuda_count() >= 0
    True
    """
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_device(device: Any, *, name: str = "device") -> Any:
    """Return ``device`` unchanged once it is known to exist on this machine.

    ``"auto"`` is always accepted. Anything else must parse as a ``torch.device`` of
    type cpu, cuda (with an index below the number of GPUs) or mps (when available).

    Parameters
    ----------
    device : str or torch.device
        The device asked for.
    name : str, default="device"
        The argument's name, used in the error message.

    Returns
    -------
    str or torch.device
        ``device`` itself.

    Raises
    ------
    ValueError
        If torch does not know the device, or this machine does not have it; the
        message names ``name`` and the values that work.

    Examples
    --------
    >>> check_device("cpu")
    'cpu'
    >>> check_device("tpu", name="--device")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --device='tpu' is not a device torch knows; use 'auto' ...
    """
    if isinstance(device, str) and device == "auto":
        return device
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"{name}={device!r} is not a device torch knows; {_USAGE}") from exc
    if d.type == "cuda":
        n = cuda_count()
        if n == 0:
            raise ValueError(
                f"{name}={device!r} asks for a CUDA GPU, but torch finds no usable CUDA GPU "
                "on this machine (torch.cuda.is_available() is False); use 'auto' or 'cpu'"
            )
        if d.index is not None and d.index >= n:
            raise ValueError(
                f"{name}={device!r} names GPU {d.index}, but this machine has {n} "
                f"(indices 0 to {n - 1})"
            )
    elif d.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"{name}={device!r}: the MPS backend is not available here; use 'auto' or 'cpu'"
            )
    elif d.type != "cpu":
        raise ValueError(f"{name}={device!r} is not supported; {_USAGE}")
    return device


def resolve_device(device: Any, *, name: str = "device") -> Any:
    """The device ``device`` names: ``"auto"`` becomes ``"cuda"`` when a GPU is
    available and ``"cpu"`` otherwise; anything else goes through :func:`check_device`.

    Parameters
    ----------
    device : str or torch.device
        The device asked for.
    name : str, default="device"
        The argument's name, used in the error message.

    Returns
    -------
    str or torch.device

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    >>> resolve_device("auto") == ("cuda" if cuda_count() else "cpu")
    True
    """
    if isinstance(device, str) and device == "auto":
        return "cuda" if cuda_count() > 0 else "cpu"
    return check_device(device, name=name)


def wants_gpu(device: str) -> bool:
    """Whether ``device`` runs on a CUDA GPU here (``"auto"`` does when one exists).

    Examples
    --------
    >>> wants_gpu("cpu"), wants_gpu("cuda:0")
    (False, True)
    """
    return device.startswith("cuda") or (device == "auto" and cuda_count() > 0)
