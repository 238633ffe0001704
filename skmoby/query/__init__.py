"""Selection strategies: CoreSet (k-center greedy), the other functions of the paper, the
low-budget strategies TypiClust and ProbCover, diverse margin sampling, and the
budget-aware ``adaptive``."""

from .adaptive import adaptive, adaptive_choice
from .coverage import probcover, purity_radius, radius_graph, typiclust
from .kcenter import k_center_greedy, keops_available
from .margin import diverse_margin
from .strategies import (
    coreset,
    high_contrastive_loss,
    lowest_contrastive_subset,
    max_entropy,
    random_sampling,
)

__all__ = [
    "adaptive",
    "adaptive_choice",
    "coreset",
    "diverse_margin",
    "high_contrastive_loss",
    "k_center_greedy",
    "keops_available",
    "lowest_contrastive_subset",
    "max_entropy",
    "probcover",
    "purity_radius",
    "radius_graph",
    "random_sampling",
    "typiclust",
]
