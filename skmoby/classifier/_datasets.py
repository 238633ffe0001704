"""Datasets given to :class:`~skmoby.MoBYv2Classifier` where skorch takes them: a torch or
skorch ``Dataset`` as ``X`` is read once, in order, into arrays (the training data then
lives on the device), its items' labels becoming ``y``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from skorch.dataset import Dataset as SkorchDataset
from torch.utils.data import DataLoader, Dataset

__all__ = ["read_dataset", "with_dataset_labels"]


def _collated(value: Any) -> np.ndarray:
    """A collated batch as an array; a dict of one entry (skorch's dict inputs) is
    unwrapped, one of several refused (the network takes one input)."""
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise ValueError(f"items hold a dict with keys {list(value)!r}, not one array")
        value = next(iter(value.values()))
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def read_dataset(dataset: Dataset, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples and labels (``None`` when its items carry none) of a torch
    ``Dataset``, read once in order.

    A skorch ``Dataset`` gives its arrays as they are; any other dataset is read
    through a ``DataLoader`` (default collation, no workers): items ``(x, y, ...)`` or
    a bare ``x``.
    """
    if isinstance(dataset, SkorchDataset):
        y = None if dataset.y is None else _collated(dataset.y)
        return dataset.X, y
    try:
        loader = DataLoader(dataset, batch_size=1024, shuffle=False)
        xs, ys = [], []
        for batch in loader:
            if isinstance(batch, list | tuple) and not isinstance(batch, Mapping):
                xs.append(_collated(batch[0]))
                if len(batch) > 1:
                    ys.append(_collated(batch[1]))
            else:
                xs.append(_collated(batch))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"{name} is a Dataset whose items could not be read as samples (x, y) or "
            f"x of one shape: {exc}"
        ) from exc
    if not xs:
        raise ValueError(f"{name} is an empty Dataset")
    return np.concatenate(xs), (np.concatenate(ys) if ys else None)


def with_dataset_labels(X: Any, y: Any) -> tuple[Any, Any]:
    """``(X, y)`` of a fit, with a ``Dataset`` given as ``X`` read into arrays (skorch's
    convention: its items carry the labels, and ``y`` is ``None`` or the same labels,
    e.g. for a stratified split)."""
    if not isinstance(X, Dataset):
        return X, y
    X, labels = read_dataset(X, "X")
    if labels is None:
        return X, y
    if y is not None:
        given = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if given.shape != labels.shape or not np.array_equal(given, labels):
            raise ValueError(
                "y differs from the labels of the Dataset given as X; pass y=None (the "
                "Dataset's labels are used) or the same labels"
            )
    return X, labels
