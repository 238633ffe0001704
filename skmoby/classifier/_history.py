"""The training history of :class:`~skmoby.MoBYv2Classifier` during a training call:
the epoch's batch losses, kept on the device while it runs and read back in one host
synchronisation at its end, the divergence check on them, and the epochs that a new
call trains again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["divergence_error", "drop_unfinished_epochs", "read_batch_losses"]


def drop_unfinished_epochs(history: Any) -> None:
    """Remove the trailing epochs without ``train_batch_count`` (interrupted ones)."""
    while history and "train_batch_count" not in history[-1]:
        history.pop()


def read_batch_losses(history: Any, key: str) -> list:
    """The last epoch's batch losses under ``key``, device tensors among them replaced
    in the history by floats, all read in one host synchronisation."""
    batches = history[-1]["batches"]
    rows = [b for b in batches if isinstance(b.get(key), torch.Tensor)]
    if rows:
        values = torch.stack([b[key] for b in rows]).float().tolist()
        for row, value in zip(rows, values, strict=True):
            row[key] = value
    return [b[key] for b in batches if key in b]


def divergence_error(losses: list, epoch: int, lr: float, momentum: Any) -> ValueError:
    """The error for an epoch whose ``losses`` are not all finite, naming the first
    non-finite one, the epoch and the step-size settings to lower."""
    return ValueError(
        f"Training diverged: the loss became {losses[np.argmin(np.isfinite(losses))]} "
        f"in epoch {epoch}. Try a lower lr (now {lr}) or "
        f"optimizer__momentum (now {momentum})."
    )
