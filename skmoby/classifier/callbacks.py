"""The estimator's skorch callbacks: the learning-rate schedule of a training run, the
print log and the validation accuracy; and :func:`run_position`, where in its training
run a training call starts (the schedules read it)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from skorch.callbacks import LRScheduler, PrintLog
from skorch.utils import to_numpy
from torch.optim.lr_scheduler import MultiStepLR

__all__ = ["MilestoneLR", "run_position"]

# The sink skorch's PrintLog binds by default: builtins.print as it was when skorch was
# imported.
_SKORCH_PRINT = inspect.signature(PrintLog).parameters["sink"].default


def run_position(history: Any, max_epochs: int) -> tuple[int, int]:
    """``(epochs, steps)`` done in the training run that the next training call
    continues, from the finished epochs in ``history``; ``(0, 0)`` when it starts a
    new run (the last run is complete, or there is none).

    A training run is ``max_epochs`` epochs (see
    :meth:`~skmoby.MoBYv2Classifier.partial_fit`); each finished epoch's history row
    holds its position in the run (``run_epoch``) and its steps
    (``train_batch_count``).

    Examples
    --------
    >>> rows = [{"run_epoch": 1, "train_batch_count": 4}, {"run_epoch": 2, "train_batch_count": 4}]
    >>> run_position(rows, max_epochs=5), run_position(rows, max_epochs=2)
    ((2, 8), (0, 0))
    """
    rows = [row for row in history if "train_batch_count" in row]
    if not rows or rows[-1].get("run_epoch", max_epochs) >= max_epochs:
        return 0, 0
    done = int(rows[-1]["run_epoch"])
    return done, sum(int(row["train_batch_count"]) for row in rows[-done:])


class MilestoneLR(LRScheduler):
    """skorch's ``LRScheduler`` with PyTorch's ``MultiStepLR``: the learning rate is
    multiplied by ``net.lr_gamma`` at fractions ``net.lr_milestones`` of
    ``net.max_epochs`` (the paper: x0.1 at 60% and 80% of training).

    The milestones count the epochs of the current training run (see
    :meth:`MoBYv2Classifier.partial_fit`): a call that starts a new run starts again from
    the initial rate, one that continues an unfinished run (after an interrupt, or from
    a checkpoint restored by ``LoadInitState``) continues the schedule where it stopped.
    The estimator places this callback after the user's callbacks, so that it reads the
    run's position once ``LoadInitState`` has restored the history, and so that user
    callbacks see an epoch's own rate at its end (the rate steps after them).

    Parameters
    ----------
    event_name : str or None, default="event_lr"
        History key of each epoch's learning rate; ``None`` records none.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmoby import MoBYv2Classifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MoBYv2Classifier("mlp", max_epochs=5, lr_milestones=(0.4,), batch_size=64,
    ...                        queue_size=64, random_state=0, device="cpu")
    >>> clf.fit(X[:200] / 16, y[:200]).history[:, "event_lr"]  # x0.1 after epoch 2
    [0.01, 0.01, 0.001, 0.001, 0.001]
    """

    def __init__(self, event_name: str | None = "event_lr") -> None:
        super().__init__(
            policy=MultiStepLR, monitor=None, event_name=event_name, step_every="epoch"
        )

    def on_train_begin(self, net, **kwargs):
        done, _ = run_position(net.history, net.max_epochs)
        self.milestones = [round(f * net.max_epochs) for f in net.lr_milestones or ()]
        self.gamma = net.lr_gamma
        # MultiStepLR steps from the rate of the last finished epoch of the run.
        passed = sum(m <= done - 1 for m in self.milestones)
        for group in net.optimizer_.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * self.gamma**passed
        self.last_epoch = done - 1
        super().on_train_begin(net, **kwargs)


def valid_accuracy(net, X, y):
    """Validation accuracy where ``y`` holds the encoded class indices of the valid split."""
    return float(np.mean(net.predict(X) == net.classes_[to_numpy(y).astype(int)]))


class QuietPrintLog(PrintLog):
    """skorch's ``PrintLog`` that stays silent at ``verbose=0`` whatever ``print`` is now.

    skorch decides whether its default sink is ``print`` by identity with the current
    ``builtins.print``. Libraries that replace ``builtins.print`` (Ray does, for its
    progress bars, once a Ray runtime has started in the process) make every later fit
    print its epoch table even at ``verbose=0``. Here the default sink is recognised as
    either the current ``print`` or the one skorch bound; any other sink receives every
    line, as in skorch.
    """

    def _sink(self, text, verbose):
        if verbose or (self.sink is not print and self.sink is not _SKORCH_PRINT):
            self.sink(text)
