"""The estimator: :class:`MoBYv2Classifier` and what goes with it.

Modules, in the order ``fit`` reaches them: ``classifier.py`` (the class, ``fit`` and
``partial_fit``, skorch's hooks down to ``train_step``), ``_setup.py`` (its base below
skorch's: parameters stored as given, ``initialize``, the network, the optimizer's
arguments, the callbacks), ``_params.py`` (the parameter constraints), ``_inputs.py``
and ``_unlabeled.py`` (checks of the data, returning a ``FitData`` record),
``_batches.py`` (training batches on the device), ``_step.py`` (the training step: loss,
eager, fp16-scaled and captured steps, the per-fit ``FitState``), ``_views.py``
(scaling, normalization, augmented views, autocast), ``callbacks.py``,
``_inference.py``, ``_persistence.py`` and ``_sklearn.py`` (``repr``, expected check
failures). The network, its key-branch EMA and its queues are in :mod:`skmoby.network`.
"""

from .._compat.modal import patch_modal
from ._batches import drops_lone_last, steps_per_epoch
from ._sklearn import expected_failed_checks
from ._unlabeled import UnlabeledData, stack_unlabeled
from .callbacks import MilestoneLR
from .classifier import MoBYv2Classifier

# modAL 0.4.2.1 passes a keyword that scikit-learn >= 1.8 no longer accepts; fix it (only
# where needed) wherever skmoby's estimator or strategies are used, so that
# ActiveLearner.teach works. See skmoby/_compat/modal.py.
patch_modal()

__all__ = [
    "MilestoneLR",
    "MoBYv2Classifier",
    "UnlabeledData",
    "drops_lone_last",
    "expected_failed_checks",
    "stack_unlabeled",
    "steps_per_epoch",
]
