"""The training data path of :class:`~skmoby.MoBYv2Classifier`.

In-memory training data is moved to the training device once per ``fit``, in its stored
dtype (uint8 images stay uint8, four times smaller than float32), and every epoch's
batches are gathered there from a seeded permutation drawn on the same device: no
per-sample ``__getitem__``, no collate, no host-to-device copy per step and no host
synchronisation. When the data does not fit on the device (see :func:`fits_on_device`)
it stays in host memory (pinned for CUDA) and each batch is gathered there and copied
over asynchronously: the streaming path. Both paths draw the same batches from the same
seed when the permutation is drawn on the same device type, so on the CPU they train the
same model.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

__all__ = [
    "RESIDENT_FRACTION",
    "TrainingBatches",
    "drops_lone_last",
    "fits_on_device",
    "inference_batches",
    "n_batches",
    "steps_per_epoch",
    "training_arrays",
]

#: Share of the device's free memory that resident training data may take. The rest is
#: left to the network's activations, the optimizer state and the queues.
RESIDENT_FRACTION = 0.25


def drops_lone_last(n: int, batch_size: int) -> bool:
    """Whether training on ``n`` samples drops the last batch: it would hold a single
    sample, which breaks batch norm in training mode.

    Examples
    --------
    >>> drops_lone_last(65, 32), drops_lone_last(64, 32)
    (True, False)
    """
    return n > 1 and n % batch_size == 1


def steps_per_epoch(n_labelled: int, n_unlabelled: int, batch_size: int) -> int:
    """Optimizer steps in one training epoch on ``n_labelled`` and ``n_unlabelled``
    samples: one per batch, labelled and unlabelled batches alternating over the longer
    of the two (a lone last sample of either is dropped, see :func:`drops_lone_last`).

    Parameters
    ----------
    n_labelled, n_unlabelled : int
        Sample counts (``n_unlabelled=0``: labelled batches only; ``n_labelled=0``:
        unlabelled batches only).
    batch_size : int
        Samples per batch (``-1``: one batch of everything).

    Returns
    -------
    int

    Examples
    --------
    >>> steps_per_epoch(100, 0, 32), steps_per_epoch(100, 300, 32), steps_per_epoch(0, 300, 32)
    (4, 20, 10)
    """
    lab = n_batches(n_labelled, batch_size)
    if not n_unlabelled:
        return lab
    if not n_labelled:  # contrastive training only
        return n_batches(n_unlabelled, batch_size)
    return 2 * max(lab, n_batches(n_unlabelled, batch_size))


def n_batches(n: int, batch_size: int) -> int:
    """Batches per pass over ``n`` samples (a lone last sample is dropped)."""
    if batch_size == -1:
        batch_size = n
    return -(-n // batch_size) - drops_lone_last(n, batch_size)


def free_device_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device; ``None`` for devices without a memory budget."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def fits_on_device(nbytes: int, device: torch.device, fraction: float = RESIDENT_FRACTION) -> bool:
    """The resident-data rule: data fits when it takes at most ``fraction`` of the
    device's free memory. The CPU has no separate memory, so data always fits there."""
    free = free_device_memory(device)
    return free is None or nbytes <= fraction * free


class TrainingBatches:
    """Labelled and unlabelled training batches, alternating, drawn on a device.

    One epoch is a pass over the labelled or the unlabelled data, whichever has more
    batches, alternating one labelled and one unlabelled batch; the shorter set starts
    over (with a new permutation) when exhausted. Without unlabelled data an epoch is a
    pass over the labelled data. Each item is ``(X, y)`` with ``y`` ``None`` for an
    unlabelled batch, or ``(X, y, w)`` for a labelled batch when per-sample weights
    ``w`` are given; ``X`` keeps the stored dtype.

    Parameters
    ----------
    X : ndarray
        Labelled samples (uint8 or float32).
    y : ndarray of int64
        Encoded labels of ``X``.
    U : ndarray or None
        Unlabelled samples, same per-sample shape and dtype as ``X``.
    batch_size : int
        Samples per batch (``-1``: one batch of everything).
    device : torch.device
        Where batches are used.
    resident : bool or "auto"
        ``True`` keeps the data on ``device``; ``False`` streams it from host memory;
        ``"auto"`` keeps it there when :func:`fits_on_device` and warns when it does not.
    seed : int
        Seeds the permutations; each iteration over the object is a new epoch.
    w : ndarray of float32 or None, default=None
        Per-sample weights of ``X``, gathered with the labelled batches.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        U: np.ndarray | None,
        batch_size: int,
        device: torch.device,
        resident: bool | str,
        seed: int,
        w: np.ndarray | None = None,
    ) -> None:
        self.device = device
        nbytes = X.nbytes + y.nbytes + (U.nbytes if U is not None else 0)
        nbytes += w.nbytes if w is not None else 0
        if resident == "auto":
            resident = fits_on_device(nbytes, device)
            if not resident:
                warnings.warn(
                    f"The training data ({nbytes / 2**20:.0f} MiB) takes more than "
                    f"{RESIDENT_FRACTION:.0%} of the free memory of {device}; it is streamed "
                    "from host memory instead (set resident_data=True to force it onto the "
                    "device).",
                    RuntimeWarning,
                    stacklevel=4,
                )
        self.resident = bool(resident)
        self.storage = device if self.resident else torch.device("cpu")
        pin = not self.resident and device.type == "cuda"
        self.X = self._store(X, pin)
        self.y = self._store(y, pin)
        self.w = self._store(w, pin) if w is not None else None
        self.U = self._store(U, pin) if U is not None and len(U) else None
        self.batch_size = batch_size
        self.generator = torch.Generator(device=self.storage).manual_seed(seed)
        self.n_labeled_batches = n_batches(len(X), batch_size)
        self.n_unlabeled_batches = 0 if self.U is None else n_batches(len(self.U), batch_size)

    def _store(self, a: np.ndarray, pin: bool) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        if pin:
            return t.pin_memory()
        return t.to(self.storage)

    def __len__(self) -> int:
        n_u = 0 if self.U is None else len(self.U)
        return steps_per_epoch(len(self.X), n_u, self.batch_size)

    def _index_batches(self, n: int, n_batch: int) -> Iterator[torch.Tensor]:
        """Index batches of ``n`` samples, forever, a new permutation per pass."""
        size = n if self.batch_size == -1 else self.batch_size
        while True:
            perm = torch.randperm(n, generator=self.generator, device=self.storage)
            for i in range(n_batch):
                yield perm[i * size : (i + 1) * size]

    def _gather(self, data: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        out = data.index_select(0, idx)
        if self.resident:
            return out
        if self.device.type == "cuda":
            out = out.pin_memory()
        return out.to(self.device, non_blocking=True)

    def _labeled(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = (self._gather(self.X, idx), self._gather(self.y, idx))
        return batch if self.w is None else (*batch, self._gather(self.w, idx))

    def __iter__(self) -> Iterator[tuple[torch.Tensor | None, ...]]:
        lab = self._index_batches(len(self.X), self.n_labeled_batches)
        if self.U is None:
            for _ in range(self.n_labeled_batches):
                yield self._labeled(next(lab))
            return
        unl = self._index_batches(len(self.U), self.n_unlabeled_batches)
        if not len(self.X):  # contrastive training only
            for _ in range(self.n_unlabeled_batches):
                yield self._gather(self.U, next(unl)), None
            return
        for _ in range(len(self) // 2):
            yield self._labeled(next(lab))
            yield self._gather(self.U, next(unl)), None


def inference_batches(
    X: np.ndarray, device: torch.device, batch_size: int | None = None
) -> Iterator[torch.Tensor]:
    """Batches of ``X`` on ``device`` for inference, in order, in the stored dtype.

    Inference holds no gradients or optimizer state, so batches are large: 4096 samples
    of up to 3x32x32 by default, fewer for larger samples (about 48 MiB of float32 input
    per batch).
    """
    per_sample = max(1, int(np.prod(X.shape[1:])))
    if batch_size is None:
        batch_size = max(1, min(len(X), 4096, (48 << 20) // (4 * per_sample)))
    t = torch.from_numpy(np.ascontiguousarray(X))
    pin = device.type == "cuda"
    for start in range(0, len(X), batch_size):
        chunk = t[start : start + batch_size]
        if pin:
            chunk = chunk.pin_memory()
        yield chunk.to(device, non_blocking=True)


def training_arrays(dataset: Any, sample_weight: Any) -> tuple:
    """``(X, y, w)`` of a training set: skorch's dataset, or a ``Subset`` of one (the
    training part of a ``train_split``), with the rows of ``sample_weight`` it holds."""
    if not isinstance(dataset, Subset):
        return dataset.X, dataset.y, sample_weight
    idx = np.asarray(dataset.indices)
    w = None if sample_weight is None else sample_weight[idx]
    return dataset.dataset.X[idx], dataset.dataset.y[idx], w
