"""Standard streams for processes started without them."""

from __future__ import annotations

import os
import sys


def ensure_std_streams() -> None:
    """Give ``sys.stdout``/``sys.stderr`` a sink where the process has none.

    Python sets them to ``None`` when the file descriptor is closed (``cmd >&-``, some
    daemons and services). Printing is then a no-op, but code that calls
    ``sys.stdout.flush()`` (skorch's ``PrintLog`` does after every epoch, whatever
    ``verbose`` is) raises ``AttributeError``, which would end every fit.
    """
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))
