"""skmoby: self-supervised active learning (MoBYv2AL) for image classification."""

from ._modal_compat import patch_modal
from .classifier import MoBYv2Classifier, UnlabeledData, stack_unlabeled
from .query import (
    coreset,
    high_contrastive_loss,
    k_center_greedy,
    lowest_contrastive_subset,
    max_entropy,
    random_sampling,
)

# modAL 0.4.2.1 passes a keyword that scikit-learn >= 1.8 no longer accepts; fix it
# (only where needed) so ActiveLearner.teach works. See skmoby/_modal_compat.py.
patch_modal()

__all__ = [
    "MoBYv2Classifier",
    "UnlabeledData",
    "coreset",
    "high_contrastive_loss",
    "k_center_greedy",
    "lowest_contrastive_subset",
    "max_entropy",
    "random_sampling",
    "stack_unlabeled",
]
__version__ = "0.1.0.dev0"
