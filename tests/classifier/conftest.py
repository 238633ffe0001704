"""Callbacks and fixtures shared by the estimator's tests."""

import pytest
from skorch.callbacks import Callback

from skmoby.network import MoBYv2Network


class Interrupt(Callback):
    """Raise KeyboardInterrupt (as Ctrl-C does) once, at the start of an epoch."""

    def __init__(self, at_epoch):
        self.at_epoch = at_epoch
        self.fired = False

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.at_epoch and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


class RecordLR(Callback):
    def __init__(self, seen):
        self.seen = seen

    def on_epoch_end(self, net, **kwargs):
        self.seen.append(net.optimizer_.param_groups[0]["lr"])


@pytest.fixture
def momenta(monkeypatch):
    """Every key-branch momentum used by eager steps, in order."""
    seen = []
    original = MoBYv2Network.update_keys

    def spy(self, momentum):
        seen.append(momentum)
        return original(self, momentum)

    monkeypatch.setattr(MoBYv2Network, "update_keys", spy)
    return seen
