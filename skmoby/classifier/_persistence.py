"""Pickling and saved parameters of :class:`~skmoby.MoBYv2Classifier`.

A pickle (or deep copy) leaves out the working state of a training call in progress
(:class:`~skmoby.classifier._step.FitState`) and resolves ``device="auto"``, and the
settings that follow the device, on the machine that loads it; :meth:`load_params`
restores a network saved by ``save_params`` or skorch's ``Checkpoint``, with its input
normalization.
"""

from __future__ import annotations

import torch

from ..devices import resolve_device
from ._views import device_settings

__all__ = ["Persistence"]

#: Per-fit working state that pickles of 0.1.0.dev0 may hold as attributes of their own.
#: Each training call sets it up afresh (queue position from the network, run position
#: from the history), so it is dropped on loading.
_OLD_PER_FIT_ATTRIBUTES = (
    "_norm_cache_",
    "_steps_",
    "_keys_",
    "_unlabeled_",
    "_sample_weight_",
    "_batch_weight_",
    "_aug_generator_",
    "_queue_ptr_",
    "_run_epoch_",
    "_steps_before_",
)


class Persistence:
    """The estimator's pickling and parameter loading: a base of
    :class:`~skmoby.MoBYv2Classifier` placed before skorch's ``NeuralNetClassifier``,
    so that its methods override skorch's.
    """

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_fit_state", None)  # device tensors, CUDA graphs, the training data
        return state

    def __setstate__(self, state):
        # skorch maps saved tensors to state["device"], which must be a real device:
        # "auto" is resolved here, on the machine that loads (an unfitted estimator
        # holds no tensors). An explicit "cuda" on a machine without one falls back to
        # the CPU with skorch's DeviceWarning, and the parameter then says "cpu".
        state = {k: v for k, v in state.items() if k not in _OLD_PER_FIT_ATTRIBUTES}
        requested = state.get("device", "auto")
        fitted = state.get("initialized_", False)
        auto = isinstance(requested, str) and requested == "auto"
        if not fitted:
            state["device"] = "cpu"
        elif auto:
            state["device"] = resolve_device("auto")
        super().__setstate__(state)
        if fitted:
            self.device_ = self.device
            self._resolve_for_device()
        if auto or not fitted:
            self.device = requested

    def _resolve_for_device(self) -> None:
        """Resolve the settings that follow the device for the device loaded on, as
        :meth:`initialize` does: a model fitted on a GPU and loaded on a CPU must not
        keep the GPU's bf16 autocast, many times slower on a CPU."""
        if not hasattr(self, "sample_shape_"):
            return
        was = getattr(self, "channels_last_", False)
        self.precision_, self.channels_last_ = device_settings(self, strict=False)
        if was and not self.channels_last_ and getattr(self, "module_", None) is not None:
            self.module_ = self.module_.to(memory_format=torch.contiguous_format)

    def load_params(
        self,
        f_params=None,
        f_optimizer=None,
        f_criterion=None,
        f_history=None,
        checkpoint=None,
        use_safetensors=False,
        **kwargs,
    ):
        """Load parameters saved by :meth:`save_params` or skorch's ``Checkpoint``.

        What a checkpoint holds: ``f_params`` the whole network (query and key
        branches, projector, predictor, classifier, both queues and their write
        position) and the input normalisation statistics (buffers ``input_mean`` and
        ``input_std``, so that a new estimator normalises as the saved one did);
        ``f_optimizer`` the SGD momentum buffers and the learning rate; ``f_history``
        the epochs, losses and the position in the training run (a fit continues an
        unfinished run from it). It does not hold the hyperparameters, the classes,
        the sample shape or the random state: a new estimator takes them from its
        constructor (``input_shape``, ``classes``) or from the data of its ``fit``.

        An estimator that is not initialised is initialised first (see
        :meth:`initialize`). Arguments are skorch's ``NeuralNet.load_params``.

        Examples
        --------
        >>> import os, tempfile
        >>> from skmoby import MoBYv2Classifier
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu").fit(X[:100], y[:100])
        >>> path = os.path.join(tempfile.mkdtemp(), "params.pt")
        >>> clf.save_params(f_params=path)
        >>> new = MoBYv2Classifier("cnn", queue_size=64, device="cpu",
        ...                        input_shape=(8, 8), classes=range(10))
        >>> new.load_params(f_params=path)
        >>> bool((new.predict(X[100:150]) == clf.predict(X[100:150])).all())
        True
        """
        if not self.initialized_:
            self.initialize()
        with self._device_resolved():
            super().load_params(
                f_params=f_params,
                f_optimizer=f_optimizer,
                f_criterion=f_criterion,
                f_history=f_history,
                checkpoint=checkpoint,
                use_safetensors=use_safetensors,
                **kwargs,
            )
        mean = self.module_.input_mean.detach().cpu().double().numpy()
        std = self.module_.input_std.detach().cpu().double().numpy()
        no_stats = not mean.any() and (std == 1).all()
        self.mean_, self.std_ = (None, None) if no_stats else (mean, std)
        self._stats_pending = False
