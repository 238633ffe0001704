"""skmoby: self-supervised active learning (MoBYv2AL) for image classification."""

from .classifier import MoBYv2Classifier, UnlabeledData

__all__ = ["MoBYv2Classifier", "UnlabeledData"]
__version__ = "0.1.0.dev0"
