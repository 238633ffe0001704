"""Selection strategies: CoreSet (k-center greedy) and the other functions of the paper."""

from .kcenter import k_center_greedy, keops_available
from .strategies import (
    coreset,
    high_contrastive_loss,
    lowest_contrastive_subset,
    max_entropy,
    random_sampling,
)

__all__ = [
    "coreset",
    "high_contrastive_loss",
    "k_center_greedy",
    "keops_available",
    "lowest_contrastive_subset",
    "max_entropy",
    "random_sampling",
]
