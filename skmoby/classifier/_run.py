"""The set-up of a training call of :class:`~skmoby.MoBYv2Classifier`: where in its
training run it starts, and the batches, augmentation generator, queue position and
captured steps that its epochs use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ._batches import TrainingBatches, training_arrays
from ._history import drop_unfinished_epochs
from ._step import CapturedSteps, FitState, resolve_capture, seeded_generator, sub_seed
from .callbacks import run_position

__all__ = ["start_run", "training_batches"]


def start_run(est: Any, state: FitState) -> int:
    """Set the schedules' position for this training call of ``est`` (in ``state`` and
    ``est.key_step_``); return the epochs it trains."""
    history = est.history
    drop_unfinished_epochs(history)  # an interrupted epoch is trained again
    done, steps = run_position(history, est.max_epochs)
    state.run_epoch = done
    state.steps_before = sum(int(row["train_batch_count"]) for row in history)
    est.key_step_ = steps
    return est.max_epochs - done


def training_batches(
    est: Any, state: FitState, dataset: Any, eager_step: Callable[[Any], dict]
) -> TrainingBatches:
    """The training batches of a call of ``est`` on ``dataset``, with the call's
    augmentation generator, queue position and (when used) captured steps set in
    ``state``; ``eager_step`` runs a step without capture."""
    X, y, w = training_arrays(dataset, state.sample_weight)
    step = state.steps_before  # a new stream for every call
    device = torch.device(est.device_)
    batches = TrainingBatches(
        X,
        np.asarray(y, dtype=np.int64),
        state.unlabeled,
        est.batch_size,
        device,
        est.resident_data,
        sub_seed(est.seed_, step, 1),
        w=w,
    )
    est.resident_data_ = batches.resident
    est.steps_per_epoch_ = len(batches)
    est.total_steps_ = max(1, est.steps_per_epoch_ * est.max_epochs)
    state.aug_generator = seeded_generator(est.seed_, step, 3, device=device)
    # The host's copy of the queue position: one read per call, every later value is
    # known on the host.
    state.queue_ptr = int(est.module_.queue_ptr)
    capture = resolve_capture(est)
    state.captured = CapturedSteps(est, state, eager_step) if capture else None
    est.capture_ = state.captured is not None
    return batches
