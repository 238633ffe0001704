"""skmoby: self-supervised active learning (MoBYv2AL) for image classification.

The public names are imported on first use, so that ``import skmoby`` and the
``skmoby`` command's ``--help``, ``--version`` and argument errors answer without
importing PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._compat import pickles as _pickles

_pickles.install()  # pickles of earlier releases name modules that have moved

__all__ = [
    "MoBYv2Classifier",
    "UnlabeledData",
    "adaptive",
    "coreset",
    "diverse_margin",
    "high_contrastive_loss",
    "k_center_greedy",
    "lowest_contrastive_subset",
    "max_entropy",
    "probcover",
    "random_sampling",
    "stack_unlabeled",
    "typiclust",
]
__version__ = "0.1.0.dev0"

_WHERE = {
    "MoBYv2Classifier": ".classifier",
    "UnlabeledData": ".classifier",
    "stack_unlabeled": ".classifier",
    "adaptive": ".query",
    "coreset": ".query",
    "diverse_margin": ".query",
    "high_contrastive_loss": ".query",
    "k_center_greedy": ".query",
    "lowest_contrastive_subset": ".query",
    "max_entropy": ".query",
    "random_sampling": ".query",
    "probcover": ".query",
    "typiclust": ".query",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'skmoby' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
