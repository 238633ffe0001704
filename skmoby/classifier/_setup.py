"""How :class:`~skmoby.MoBYv2Classifier` builds its parts with skorch.

:class:`NetSetup` is the estimator's base below skorch's ``NeuralNetClassifier``:
parameters stored as given (scikit-learn's contract), its ``repr`` and tags, the default
callbacks, ``initialize`` (parameter checks, the device and its settings, the seed), the
network with its input normalization, the optimizer's arguments and ``set_params``.
"""

from __future__ import annotations

from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochScoring, PrintLog

from ..backbones import build_encoder
from ..devices import resolve_device
from ._inputs import FitData, check_backbone, data_free_state
from ._params import seed_from, takes_argument, validate_params
from ._sklearn import estimator_repr
from ._views import device_settings
from .callbacks import MilestoneLR, QuietPrintLog, valid_accuracy

__all__ = ["NetSetup"]


class NetSetup(NeuralNetClassifier):
    """skorch's ``NeuralNetClassifier`` set up for MoBYv2AL: the base of
    :class:`~skmoby.MoBYv2Classifier` that builds the network, the optimizer and the
    callbacks, and stores and checks parameters. Training and inference are the
    estimator's own."""

    initialized_ = False
    history_ = None
    _stats_pending = False  # initialize() without data, normalize="auto": see _train
    virtual_params_ = MappingProxyType({})  # initialize() replaces it with a new dict

    # ------------------------------------------------------------------ skorch setup
    def __setattr__(self, name, attr):
        # Parameters are stored as given: a module passed as `backbone` (copied at each
        # fit) or an augmentation that is a module is no component for skorch to track
        # and move. Fitted components (names ending in "_") go through skorch.
        if name.endswith("_"):
            super().__setattr__(name, attr)
        else:
            object.__setattr__(self, name, attr)

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        # scikit-learn's style: the class and the parameters that differ from defaults.
        return estimator_repr(self)

    def _get_param_names(self):
        # skorch lists every public attribute; its private bookkeeping is no parameter.
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    @property
    def _default_callbacks(self):
        callbacks = []
        for name, cb in super()._default_callbacks:
            if name == "valid_acc":
                cb = EpochScoring(valid_accuracy, name="valid_acc", lower_is_better=False)
            elif name == "print_log":
                cb = QuietPrintLog()
            callbacks.append((name, cb))
        # A callback of the user's named lr_scheduler (skorch's documented name for an
        # LRScheduler) replaces the built-in schedule instead of being refused as a
        # duplicate name or stacking on it.
        users = {cb[0] for cb in self.callbacks or () if isinstance(cb, tuple)}
        if "lr_scheduler" not in users:
            callbacks.insert(1, ("lr_scheduler", MilestoneLR()))
        return callbacks

    def initialize_callbacks(self):
        """skorch's callbacks, with the learning-rate schedule moved after the user's
        (before the print log): it then reads the run's position in ``on_train_begin``
        after ``LoadInitState`` restored the history, and steps after user callbacks saw
        the epoch's own rate in ``on_epoch_end``."""
        super().initialize_callbacks()
        schedule = [(n, cb) for n, cb in self.callbacks_ if n == "lr_scheduler"]
        rest = [(n, cb) for n, cb in self.callbacks_ if n != "lr_scheduler"]
        at = next((i for i, (_, cb) in enumerate(rest) if isinstance(cb, PrintLog)), len(rest))
        self.callbacks_ = rest[:at] + schedule + rest[at:]
        return self

    @contextmanager
    def _device_resolved(self):
        """Let skorch's own device handling see the resolved device."""
        requested = self.device
        self.device = self.device_
        try:
            yield
        finally:
            self.device = requested

    def initialize(self):
        """Initialise the network, optimizer and callbacks; ``fit`` calls this.

        Without data (no ``fit`` yet), the constructor parameters ``input_shape`` and
        ``classes`` give the sample shape and the classes: that is how a new estimator
        receives saved parameters (:meth:`load_params`).

        Returns
        -------
        self : MoBYv2Classifier

        Raises
        ------
        ValueError
            For invalid hyperparameters or device; without data, when ``input_shape``
            or ``classes`` is missing; when a module ``backbone`` fails on the sample
            shape.
        """
        validate_params(self)
        if not hasattr(self, "sample_shape_"):
            self._learn_from(data_free_state(self))
            self.n_features_in_ = self.sample_shape_[0]
            # normalize="auto" takes its statistics from the first training call's data,
            # unless load_params restores saved ones first
            self._stats_pending = isinstance(self.normalize, str)
        check_backbone(self.backbone, self.sample_shape_)
        self.device_ = resolve_device(self.device)
        self.precision_, self.channels_last_ = device_settings(self)
        self.seed_ = seed_from(self.random_state)
        self.key_step_ = 0
        with self._device_resolved():
            return super().initialize()

    def get_params_for_optimizer(self, prefix, named_parameters):
        """skorch's optimizer arguments, plus PyTorch's fused SGD kernels on CUDA unless
        ``foreach`` or ``fused`` is set explicitly. ``optimizer__momentum`` is left out
        when it is ``None``, or the default and the optimizer takes no momentum."""
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        if (
            prefix == "optimizer"
            and "momentum" in kwargs
            and (kwargs["momentum"] is None or not takes_argument(self.optimizer, "momentum"))
        ):
            del kwargs["momentum"]
        if (
            prefix == "optimizer"
            and self.optimizer is torch.optim.SGD
            and torch.device(self.device_).type == "cuda"
            and "fused" not in kwargs
            and "foreach" not in kwargs
        ):
            kwargs["fused"] = True
        return args, kwargs

    def set_params(self, **params):
        """Set parameters. Before the first fit they are stored as given and validated by
        ``fit`` (scikit-learn's contract); on a fitted estimator skorch's rules apply
        (e.g. ``module__*`` rebuilds the network). A new ``device`` takes effect at the
        next ``fit``: the fitted network stays on ``device_`` until then.

        Returns
        -------
        self : MoBYv2Classifier
        """
        if not self.initialized_:
            valid = self.get_params(deep=False)
            for key, value in params.items():
                if "__" in key:  # component and callback arguments: checked by initialize()
                    self._params_to_validate.add(key)
                elif key not in valid:
                    raise ValueError(
                        f"Invalid parameter {key!r} for estimator "
                        f"{type(self).__name__}. Valid parameters are: "
                        f"{sorted(valid)!r}."
                    )
                setattr(self, key, value)
            return self
        device = params.pop("device", self.device)
        with self._device_resolved():
            super().set_params(**params)
        self.device = device
        if "lr" in params:  # a new rate is the start of the next run's schedule
            for group in self.optimizer_.param_groups:
                group.pop("initial_lr", None)
        return self

    def initialize_module(self):
        """Build the MoBYv2 network for the data seen by ``fit``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed_)
            encoder, dim = build_encoder(self.backbone, self.sample_shape_)
            kwargs = self.get_params_for("module")
            self.module_ = self.module(
                encoder,
                dim,
                len(self.classes_),
                projection_dim=self.projection_dim,
                queue_size=self.queue_size,
                **kwargs,
            )
        self.feature_dim_ = dim
        # The normalisation travels with the weights (save_params, Checkpoint).
        n = self.sample_shape_[0]
        for name, stats, fill in (
            ("input_mean", self.mean_, 0.0),
            ("input_std", self.std_, 1.0),
        ):
            value = torch.full((n,), fill) if stats is None else torch.as_tensor(stats)
            self.module_.register_buffer(name, value.float())
        if self.channels_last_:
            self.module_ = self.module_.to(memory_format=torch.channels_last)
        return self

    def get_all_learnable_params(self):
        """The query branch and classifier; the key branch follows by EMA."""
        for name, p in self.module_.named_parameters():
            if p.requires_grad:
                yield name, p

    def _learn_from(self, data: FitData) -> None:
        """Keep what a first fit (or ``initialize`` without data) learned."""
        self.sample_shape_ = data.sample_shape
        self.classes_inferred_ = data.classes
        self.mean_, self.std_ = data.mean, data.std
        self._stats_pending = False

    def _set_normalization(self, mean, std) -> None:
        """Normalization statistics for an initialised network (its buffers too)."""
        self.mean_, self.std_ = mean, std
        for name, stats in (("input_mean", mean), ("input_std", std)):
            buffer = getattr(self.module_, name)
            buffer.copy_(torch.as_tensor(stats, dtype=buffer.dtype))
        self._stats_pending = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.non_deterministic = self.random_state is None
        return tags


def refuse_valid_monitors(net: Any) -> None:
    """Refuse callbacks that monitor a validation score when ``net`` has no validation
    split: skorch's ``Checkpoint()`` and ``EarlyStopping()`` monitor ``valid_loss`` by
    default, and would fail after the first epoch with a ``KeyError``. Checked when
    training starts: loading a checkpoint into an initialised net needs no score."""
    if net.train_split is not None:
        return
    for name, cb in net.callbacks_:
        monitor = getattr(cb, "monitor", None)
        if isinstance(monitor, str) and monitor.startswith("valid_"):
            raise ValueError(
                f"callback {name!r} ({type(cb).__name__}) monitors {monitor!r}, but "
                f"train_split is None ({type(net).__name__}'s default: the paper trains "
                "on every label), so no validation score is recorded. Give it a "
                f"training score, e.g. {type(cb).__name__}(monitor="
                f"{monitor.replace('valid_', 'train_', 1)!r}), or set a validation split, "
                "e.g. train_split=skorch.dataset.ValidSplit(5)"
            )
