"""``MoBYv2Classifier``: MoBYv2AL's joint contrastive + cross-entropy learner as a
scikit-learn estimator built on skorch."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EpochScoring
from skorch.dataset import unpack_data
from skorch.utils import to_numpy
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .augment import StrongAugment, TabularStrongAugment, TabularWeakAugment, WeakAugment
from .backbones import make_backbone
from .network import MoBYv2Network, cosine_momentum

__all__ = ["MoBYv2Classifier", "UnlabeledData"]

Augment = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


class UnlabeledData:
    """A holder for unlabelled samples that scikit-learn passes to ``fit`` whole.

    scikit-learn's cross-validation (``GridSearchCV``, ``cross_validate``) slices every
    fit parameter whose length equals ``len(X)`` along with ``X``. Wrapping
    ``X_unlabeled`` in this object (which has no length) keeps it out of that slicing, so
    every fold trains with all of it.

    Parameters
    ----------
    data : array-like or torch.Tensor
        The unlabelled samples, with the same per-sample shape as ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> u = UnlabeledData(np.zeros((5, 8, 8)))
    >>> u.data.shape
    (5, 8, 8)
    """

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data

    def __repr__(self) -> str:
        shape = getattr(self.data, "shape", None)
        return f"UnlabeledData(shape={tuple(shape) if shape is not None else '?'})"


class LRStepSchedule(Callback):
    """Multiply the learning rate by ``net.lr_gamma`` at fractions ``net.lr_milestones``
    of ``net.max_epochs`` (the paper: x0.1 at 60% and 80% of training)."""

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history) - 1  # the row for this epoch already exists
        milestones = net.lr_milestones or ()
        n_passed = sum(epoch >= round(f * net.max_epochs) for f in milestones)
        lr = net.lr * net.lr_gamma**n_passed
        for group in net.optimizer_.param_groups:
            group["lr"] = lr


def _valid_accuracy(net, X, y):
    """Validation accuracy where ``y`` holds the encoded class indices of the valid split."""
    return float(np.mean(net.predict(X) == net.classes_[to_numpy(y).astype(int)]))


class _Alternating:
    """Iterate labelled and unlabelled batches in turn, one epoch being a pass over
    the longer of the two loaders; the shorter one starts over when exhausted."""

    def __init__(self, labelled: DataLoader, unlabelled: DataLoader) -> None:
        self.labelled, self.unlabelled = labelled, unlabelled

    def __len__(self) -> int:
        return 2 * max(len(self.labelled), len(self.unlabelled))

    def __iter__(self) -> Iterator[Any]:
        def forever(loader):  # a new pass (and shuffle) each time one ends
            while True:
                yield from loader

        labelled, unlabelled = forever(self.labelled), forever(self.unlabelled)
        for _ in range(len(self) // 2):
            yield next(labelled)
            yield next(unlabelled)


def _drops_lone_last(n: int, batch_size: int) -> bool:
    """Whether training on ``n`` samples drops the last batch: it would hold a single
    sample, which breaks batch norm in training mode."""
    return n > 1 and n % batch_size == 1


def _resolve_device(device: Any) -> Any:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class MoBYv2Classifier(NeuralNetClassifier):
    """MoBYv2AL's self-supervised classifier (Caramalau et al., BMVC 2022).

    A backbone ``f_q`` is trained jointly with a linear classifier on the weak view of
    labelled images (cross-entropy) and with MoBY's symmetric contrastive loss on a weak
    and a strong view of labelled and unlabelled images. Labelled and unlabelled
    batches alternate; on unlabelled batches only the contrastive loss flows:
    ``L = CE + lambda_c * L_con`` (labelled), ``L = lambda_c * L_con`` (unlabelled).

    Unlabelled data comes either as ``fit(X, y, X_unlabeled=U)`` or, following
    scikit-learn's semi-supervised convention, as rows of ``X`` whose label equals
    ``unlabeled_label`` (``-1``); both can be used together. Without unlabelled data the
    contrastive loss still runs on the labelled batches.

    All defaults are the paper's. Every hyperparameter is a constructor argument, so
    ``clone``, ``set_params`` and ``GridSearchCV`` work as for any estimator; any other
    skorch argument (``callbacks``, ``iterator_train__num_workers``, ...) passes through.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="resnet18"
        The encoder ``f_q``: one of ``"vgg16"``, ``"resnet18"``, ``"wrn28"``, ``"lenet5"``,
        ``"cnn"`` (images), ``"mlp"`` (tabular data or flattened images), or a module
        mapping a batch to feature vectors ``(n, d)``. A module is deep-copied at every
        ``fit`` (each fit starts from the module as given). Its feature size ``d`` is its
        integer ``feature_dim`` attribute if it has one; otherwise it is read from the
        output of a forward pass, in eval mode, on two training samples.
    projection_dim : int, default=128
        Output size of the projector and predictor (the contrastive embedding).
    queue_size : int, default=4096
        Number of keys in each of the two queues (weak and strong views).
    temperature : float, default=0.2
        InfoNCE temperature ``tau``.
    key_momentum : float, default=0.99
        Initial EMA momentum of the key branch; it rises to 1 by a cosine schedule over
        all ``max_epochs`` x (batches per epoch) training steps.
    lambda_c : float, default=0.5
        Weight of the contrastive loss. ``0`` trains supervised-only (the paper's
        baselines): the strong view, the key branch and the queues are then skipped,
        which makes each step several times cheaper; :meth:`contrastive_loss` of such a
        model is not meaningful.
    lr : float, default=0.01
        Learning rate of the optimizer.
    max_epochs : int, default=200
        Number of epochs. An epoch is one pass over the labelled or the unlabelled data,
        whichever has more batches, alternating one labelled and one unlabelled batch
        (the shorter set starts over when exhausted).
    batch_size : int, default=128
        Samples per batch, for labelled and unlabelled batches alike.
    optimizer : type, default=torch.optim.SGD
        Optimizer class; it receives the query branch and the classifier only.
    optimizer__momentum : float, default=0.9
        SGD momentum.
    optimizer__weight_decay : float, default=5e-4
        SGD weight decay.
    lr_milestones : tuple of float or None, default=(0.6, 0.8)
        Fractions of ``max_epochs`` at which the learning rate is multiplied by
        ``lr_gamma`` (epochs 120 and 160 of 200). ``None`` or ``()`` keeps ``lr`` constant.
    lr_gamma : float, default=0.1
        Learning-rate decay factor at each milestone.
    weak_augment, strong_augment : callable or "auto", default="auto"
        Callables ``(batch, generator) -> batch`` producing the weak and strong views.
        ``"auto"``: :class:`~skmoby.augment.WeakAugment` and
        :class:`~skmoby.augment.StrongAugment` for images (applied to ``[0, 1]`` pixels
        before normalisation), :class:`~skmoby.augment.TabularWeakAugment` and
        :class:`~skmoby.augment.TabularStrongAugment` for tabular data (applied after
        standardisation).
    normalize : "auto", None or tuple of (mean, std), default="auto"
        Input normalisation: ``"auto"`` uses the per-channel (images) or per-feature
        (tabular) mean and standard deviation of the training data, labelled and
        unlabelled; a ``(mean, std)`` pair gives them explicitly (one value per channel
        or feature, on the ``[0, 1]`` scale for images); ``None`` disables it.
    unlabeled_label : int or None, default=-1
        Label that marks unlabelled rows of ``y``; ``None`` treats every row as labelled.
    random_state : int, numpy.random.RandomState or None, default=None
        Seeds weight initialisation, batch order and augmentations. With an int, fits on
        the CPU are reproducible (same data and seed give the same predictions).
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"`` runs forward passes under bfloat16 autocast (faster on recent GPUs).
    channels_last : bool, default=False
        Use the channels-last memory format for images (faster convolutions on GPUs).
    train_split : callable or None, default=None
        skorch's validation split of the labelled data; ``None`` (the paper) uses all.
    verbose : int, default=0
        skorch's per-epoch log is printed when > 0.
    module : type, default=MoBYv2Network
        The network class, built with ``(encoder, feature_dim, n_classes,
        projection_dim, queue_size)``.
    criterion : type, default=torch.nn.CrossEntropyLoss
        Classification loss.
    **kwargs
        Further skorch ``NeuralNetClassifier`` arguments.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, in the user's label type.
    module_ : MoBYv2Network
        The fitted network (query and key branches, classifier, queues).
    sample_shape_ : tuple of int
        Shape of one input sample: ``(C, H, W)`` for images, ``(d,)`` for tabular data.
    feature_dim_ : int
        Size of the features returned by :meth:`transform`.
    mean_, std_ : ndarray
        Normalisation statistics in use (``None`` when ``normalize=None``).
    device_ : str or torch.device
        The device the network lives on.
    n_features_in_ : int
        ``X.shape[1]`` of the training data (scikit-learn convention).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
    >>> clf = MoBYv2Classifier("cnn", max_epochs=2, batch_size=64, queue_size=256,
    ...                        random_state=0, device="cpu")
    >>> clf = clf.fit(X[:200], y[:200], X_unlabeled=X[200:600])
    >>> clf.predict(X[:3]).shape, clf.transform(X[:3]).shape
    ((3,), (3, 128))
    """

    def __init__(
        self,
        backbone: str | nn.Module = "resnet18",
        *,
        projection_dim: int = 128,
        queue_size: int = 4096,
        temperature: float = 0.2,
        key_momentum: float = 0.99,
        lambda_c: float = 0.5,
        lr: float = 0.01,
        max_epochs: int = 200,
        batch_size: int = 128,
        optimizer: type = torch.optim.SGD,
        optimizer__momentum: float = 0.9,
        optimizer__weight_decay: float = 5e-4,
        lr_milestones: tuple[float, ...] | None = (0.6, 0.8),
        lr_gamma: float = 0.1,
        weak_augment: Augment | str = "auto",
        strong_augment: Augment | str = "auto",
        normalize: str | tuple | None = "auto",
        unlabeled_label: int | None = -1,
        random_state: int | np.random.RandomState | None = None,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        channels_last: bool = False,
        train_split: Callable | None = None,
        verbose: int = 0,
        module: type = MoBYv2Network,
        criterion: type = nn.CrossEntropyLoss,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            verbose=verbose,
            device=device,
            optimizer__momentum=optimizer__momentum,
            optimizer__weight_decay=optimizer__weight_decay,
            **kwargs,
        )
        self.backbone = backbone
        self.projection_dim = projection_dim
        self.queue_size = queue_size
        self.temperature = temperature
        self.key_momentum = key_momentum
        self.lambda_c = lambda_c
        self.lr_milestones = lr_milestones
        self.lr_gamma = lr_gamma
        self.weak_augment = weak_augment
        self.strong_augment = strong_augment
        self.normalize = normalize
        self.unlabeled_label = unlabeled_label
        self.random_state = random_state
        self.precision = precision
        self.channels_last = channels_last

    # ------------------------------------------------------------------ skorch setup
    def __setattr__(self, name, attr):
        # A module given as `backbone` is a hyperparameter (copied at each fit), not a
        # component skorch should track and move; bypass skorch's component checks.
        if name == "backbone":
            object.__setattr__(self, name, attr)
        else:
            super().__setattr__(name, attr)

    def _get_param_names(self):
        # skorch lists every public attribute; its private bookkeeping is no parameter.
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    @property
    def _default_callbacks(self):
        callbacks = []
        for name, cb in super()._default_callbacks:
            if name == "valid_acc":
                cb = EpochScoring(_valid_accuracy, name="valid_acc", lower_is_better=False)
            callbacks.append((name, cb))
        callbacks.insert(1, ("lr_schedule", LRStepSchedule()))
        return callbacks

    def _check_hyperparameters(self) -> None:
        def positive_int(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0:
                raise ValueError(f"{name} must be a positive int; got {v!r}")

        def positive(name, allow_zero=False):
            v = getattr(self, name)
            ok = isinstance(v, int | float | np.number) and not isinstance(v, bool)
            if not ok or not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
                what = "a non-negative" if allow_zero else "a positive"
                raise ValueError(f"{name} must be {what} number; got {v!r}")

        for name in ("projection_dim", "queue_size", "max_epochs"):
            positive_int(name)
        if not (self.batch_size == -1 or (isinstance(self.batch_size, int | np.integer)
                                          and self.batch_size > 1)):
            raise ValueError(f"batch_size must be an int > 1 (or -1 for all); "
                             f"got {self.batch_size!r}")
        positive("temperature")
        positive("lr")
        positive("lambda_c", allow_zero=True)
        positive("optimizer__weight_decay", allow_zero=True)
        positive("optimizer__momentum", allow_zero=True)
        if not 0.0 <= float(self.key_momentum) <= 1.0:
            raise ValueError(f"key_momentum must be in [0, 1]; got {self.key_momentum!r}")
        positive("lr_gamma")
        if self.lr_milestones is not None and any(
            not 0.0 <= float(f) <= 1.0 for f in self.lr_milestones
        ):
            raise ValueError(
                f"lr_milestones must hold fractions of max_epochs in [0, 1]; "
                f"got {self.lr_milestones!r}"
            )
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16'; got {self.precision!r}")
        for name in ("weak_augment", "strong_augment"):
            v = getattr(self, name)
            if not (v == "auto" if isinstance(v, str) else callable(v)):
                raise TypeError(f"{name} must be 'auto' or a callable; got {v!r}")
        if not (isinstance(self.backbone, nn.Module | str)):
            raise TypeError(
                f"backbone must be a name or a torch.nn.Module; got {type(self.backbone)}"
            )

    def _seed(self) -> int:
        rs = self.random_state
        if rs is None:
            return secrets.randbits(62)
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(np.iinfo(np.int32).max))
        if isinstance(rs, int | np.integer) and not isinstance(rs, bool):
            return int(rs)
        raise TypeError(
            f"random_state must be None, an int or a numpy RandomState; got {type(rs)}"
        )

    def _generator(self, *salt: int, device: Any = "cpu") -> torch.Generator:
        seed = np.random.SeedSequence([self.seed_, *salt]).generate_state(1, np.uint64)[0]
        return torch.Generator(device=device).manual_seed(int(seed) & (2**63 - 1))

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
        """Initialise the network, optimizer and callbacks; ``fit`` calls this."""
        if not hasattr(self, "sample_shape_"):
            raise RuntimeError(
                f"{type(self).__name__} learns its input shape from data; call fit() "
                "instead of initialize()."
            )
        self._check_hyperparameters()
        self.device_ = _resolve_device(self.device)
        self.seed_ = self._seed()
        self.key_step_ = 0
        with self._device_resolved():
            return super().initialize()

    def set_params(self, **kwargs):
        if not getattr(self, "initialized_", False):
            return super().set_params(**kwargs)
        with self._device_resolved():
            out = super().set_params(**kwargs)
        if "device" in kwargs:
            self.device_ = _resolve_device(self.device)
        return out

    def _build_encoder(self) -> tuple[nn.Module, int]:
        if isinstance(self.backbone, nn.Module):
            import copy

            encoder = copy.deepcopy(self.backbone)
        else:
            encoder = make_backbone(self.backbone, self.sample_shape_)
        dim = getattr(encoder, "feature_dim", None)
        if not isinstance(dim, int | np.integer):
            was_training = encoder.training
            encoder.eval()
            probe = torch.zeros((2, *self.sample_shape_))
            with torch.no_grad():
                out = encoder(probe)
            encoder.train(was_training)
            if not isinstance(out, torch.Tensor) or out.ndim != 2:
                raise ValueError(
                    "backbone must map a batch to features of shape (n, d); got output "
                    f"of shape {getattr(out, 'shape', type(out))}. Wrap it, e.g. "
                    "nn.Sequential(model, nn.AdaptiveAvgPool2d(1), nn.Flatten())."
                )
            dim = out.shape[1]
        return encoder, int(dim)

    def initialize_module(self):
        """Build the MoBYv2 network for the data seen by ``fit``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed_)
            encoder, dim = self._build_encoder()
            kwargs = self.get_params_for("module")
            self.module_ = self.module(
                encoder, dim, len(self.classes_), projection_dim=self.projection_dim,
                queue_size=self.queue_size, **kwargs,
            )
        self.feature_dim_ = dim
        if self.channels_last and len(self.sample_shape_) == 3:
            self.module_ = self.module_.to(memory_format=torch.channels_last)
        return self

    def get_all_learnable_params(self):
        """The query branch and classifier; the key branch follows by EMA."""
        for name, p in self.module_.named_parameters():
            if p.requires_grad:
                yield name, p

    # ------------------------------------------------------------ data validation
    @property
    def _is_image(self) -> bool:
        return len(self.sample_shape_) == 3

    def _check_X(self, X: Any, name: str, reset: bool) -> np.ndarray:
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        from sklearn.utils import check_array

        check = dict(dtype="numeric", allow_nd=True, ensure_all_finite=True)
        if name == "X" and getattr(X, "ndim", 2) == 2:
            # Tabular data: scikit-learn's bookkeeping of n_features_in_ / feature names.
            X = validate_data(self, X, reset=reset, **check)
        else:
            X = check_array(X, input_name=name, **check)
            if name == "X" and reset:
                self.n_features_in_ = X.shape[1] if X.ndim == 4 else 1
                self.__dict__.pop("feature_names_in_", None)
        if X.ndim > 4:
            raise ValueError(
                f"{name} must have shape (n, d), (n, H, W) or (n, C, H, W); got {X.shape}"
            )
        if X.ndim == 3:
            X = X[:, None]
        if X.ndim == 4:
            if X.shape[1] not in (1, 3):
                hint = ""
                if X.shape[-1] in (1, 3):
                    hint = " It looks channels-last: pass np.moveaxis(X, -1, 1)."
                raise ValueError(
                    f"{name} must hold images of shape (n, C, H, W) with C = 1 or 3; got "
                    f"{X.shape}.{hint}"
                )
            if min(X.shape[2:]) < 8:
                raise ValueError(f"{name} must hold images of at least 8x8; got {X.shape}")
            if X.dtype != np.uint8:
                lo, hi = (float(X.min()), float(X.max())) if X.size else (0.0, 0.0)
                if lo < 0.0 or hi > 1.0:
                    raise ValueError(
                        f"{name} holds images with values in [{lo:.3g}, {hi:.3g}]; "
                        "pass floats in [0, 1] or uint8 in [0, 255] (normalisation is "
                        "done by the classifier, see `normalize`)"
                    )
        if X.dtype != np.uint8 or X.ndim == 2:
            X = X.astype(np.float32, copy=False)
        if not reset or name != "X":
            expected = self.sample_shape_
            if tuple(X.shape[1:]) != tuple(expected):
                ref = "the training data" if name == "X" else "X"
                raise ValueError(
                    f"{name} has samples of shape {tuple(X.shape[1:])} but {ref} has "
                    f"{tuple(expected)}"
                )
        return X

    def _unlabeled_mask(self, y: np.ndarray) -> np.ndarray:
        ul = self.unlabeled_label
        if ul is None:
            return np.zeros(len(y), dtype=bool)
        if y.dtype.kind in "US":
            return np.zeros(len(y), dtype=bool)
        if y.dtype == object:
            return np.array([type(v) is not str and v == ul for v in y], dtype=bool)
        return y == ul

    def _prepare_fit_data(self, X, y, X_unlabeled, reset: bool, classes=None):
        """Validate inputs; return labelled X, encoded y and unlabelled X (or None)."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None "
                "(mark unlabelled rows with unlabeled_label instead)"
            )
        if isinstance(X_unlabeled, UnlabeledData):
            X_unlabeled = X_unlabeled.data
        if isinstance(y, torch.Tensor):
            y = y.detach().cpu().numpy()
        y = column_or_1d(y, warn=True)
        if reset:
            for attr in ("sample_shape_", "classes_inferred_"):
                self.__dict__.pop(attr, None)
        X = self._check_X(X, "X", reset=reset)
        if X.shape[0] != len(y):
            raise ValueError(f"X and y have different lengths: {X.shape[0]} and {len(y)}")
        if reset:
            self.sample_shape_ = tuple(int(s) for s in X.shape[1:])
        unl = self._unlabeled_mask(y)
        X_l, y_l = X[~unl], y[~unl]
        parts = [X[unl]] if unl.any() else []
        if X_unlabeled is not None:
            if isinstance(X_unlabeled, torch.Tensor):
                X_unlabeled = X_unlabeled.detach().cpu().numpy()
            if len(X_unlabeled):
                U = self._check_X(X_unlabeled, "X_unlabeled", reset=False)
                # After _check_X only images stay uint8 (0-255); float images are in [0, 1].
                if U.dtype != X.dtype:
                    if X.dtype == np.uint8:
                        raise ValueError(
                            "X_unlabeled holds floats but X holds uint8 images; pass both as "
                            "uint8 or both as floats in [0, 1]"
                        )
                    U = U.astype(np.float32) / np.float32(255.0)
                parts.append(U)
        U_all = np.concatenate(parts) if parts else None
        if len(y_l) == 0:
            raise ValueError("y has no labelled rows; at least 2 classes are needed")
        check_classification_targets(y_l)
        if reset:
            if classes is None and self.classes is not None:
                classes = self.classes
            found = np.unique(y_l)
            cls = found if classes is None else np.asarray(classes)
            if classes is not None and not np.isin(found, cls).all():
                raise ValueError(
                    f"y has labels {found[~np.isin(found, cls)]!r} outside classes {cls!r}"
                )
            if len(cls) < 2:
                note = ""
                if unl.any():
                    note = (f"; the {int(unl.sum())} rows labelled {self.unlabeled_label!r} "
                            "count as unlabelled (set unlabeled_label=None if that is a "
                            "class)")
                raise ValueError(
                    f"{type(self).__name__} needs at least 2 classes in the labelled y; "
                    f"got 1 class ({cls[0]!r}){note}"
                )
            self.classes_inferred_ = cls
        cls = self.classes_
        y_enc = np.searchsorted(cls, y_l)
        bad = (y_enc >= len(cls)) | (cls[np.minimum(y_enc, len(cls) - 1)] != y_l)
        if bad.any():
            raise ValueError(f"y has labels {np.unique(y_l[bad])!r} not seen in the first fit "
                             f"(classes_ = {cls!r})")
        if reset:
            self._fit_normalization(X_l if U_all is None else np.concatenate([X_l, U_all]))
        return X_l, y_enc.astype(np.int64), U_all

    def _fit_normalization(self, X: np.ndarray) -> None:
        axes = (0, 2, 3) if X.ndim == 4 else (0,)
        if isinstance(self.normalize, str) and self.normalize == "auto":
            scale = 255.0 if X.dtype == np.uint8 and X.ndim == 4 else 1.0
            mean = np.zeros(X.shape[1])
            sq = np.zeros(X.shape[1])
            for start in range(0, len(X), 4096):  # chunked: uint8 images stay small
                chunk = X[start:start + 4096].astype(np.float64) / scale
                mean += chunk.sum(axis=axes)
                sq += (chunk**2).sum(axis=axes)
            count = len(X) * (int(np.prod(X.shape[2:])) if X.ndim == 4 else 1)
            mean /= count
            std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
            self.mean_, self.std_ = mean, np.where(std > 1e-8, std, 1.0)
        elif self.normalize is None:
            self.mean_ = self.std_ = None
        else:
            try:
                mean, std = (np.asarray(v, dtype=np.float64).reshape(-1) for v in self.normalize)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"normalize must be 'auto', None or (mean, std); got {self.normalize!r}"
                ) from exc
            for arr in (mean, std):
                if arr.size not in (1, X.shape[1]):
                    raise ValueError(
                        f"normalize needs 1 or {X.shape[1]} values for mean and std; "
                        f"got {arr.size}"
                    )
            if (std <= 0).any():
                raise ValueError("normalize: std must be positive")
            self.mean_ = np.broadcast_to(mean, (X.shape[1],)).copy()
            self.std_ = np.broadcast_to(std, (X.shape[1],)).copy()

    # ---------------------------------------------------------------- fitting
    def fit(self, X, y, X_unlabeled=None):
        """Fit the network on labelled and unlabelled data (from scratch).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n, C, H, W), (n, H, W) or (n, d)
            Training samples: images as floats in ``[0, 1]`` or ``uint8``; tabular rows.
        y : array-like of shape (n,)
            Labels of any type scikit-learn accepts. Rows whose label equals
            ``unlabeled_label`` are used as unlabelled data.
        X_unlabeled : array-like, torch.Tensor or UnlabeledData, optional
            Unlabelled samples with the per-sample shape of ``X``.
        Returns
        -------
        self : MoBYv2Classifier

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> y_semi = y[:300].copy()
        >>> y_semi[100:] = -1                      # rows 100-299 are unlabelled
        >>> clf.fit(X[:300], y_semi).classes_.tolist() == list(range(10))
        True

        Raises
        ------
        ValueError
            On NaN/inf, mismatched lengths or shapes, fewer than 2 classes, an empty
            ``X``, an unknown backbone, or invalid hyperparameters.
        """
        reset = not (self.warm_start and getattr(self, "initialized_", False))
        X_l, y_enc, U = self._prepare_fit_data(X, y, X_unlabeled, reset=reset)
        if reset:
            self.initialize()
        return self._partial_fit_checked(X_l, y_enc, U, "fit")

    def partial_fit(self, X, y=None, classes=None, X_unlabeled=None):
        """Continue training for ``max_epochs`` more epochs (initialising on first call).

        Parameters
        ----------
        X, y, X_unlabeled
            As in :meth:`fit`.
        classes : array-like, optional
            All class labels, for a first call whose ``y`` does not contain every class.

        Returns
        -------
        self : MoBYv2Classifier

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> clf = clf.partial_fit(X[:100], y[:100], X_unlabeled=X[100:300])
        >>> clf = clf.partial_fit(X[:100], y[:100], X_unlabeled=X[100:300])
        >>> len(clf.history)                       # two epochs in all
        2
        """
        reset = not getattr(self, "initialized_", False)
        X_l, y_enc, U = self._prepare_fit_data(X, y, X_unlabeled, reset=reset, classes=classes)
        if reset:
            self.initialize()
        return self._partial_fit_checked(X_l, y_enc, U, "partial_fit")

    def _partial_fit_checked(self, X, y, U, routing):
        out = super().partial_fit(X, y, _routing_method=routing, X_unlabeled=U)
        self._warn_if_collapsed(X)
        return out

    def _warn_if_collapsed(self, X: np.ndarray, n: int = 256) -> None:
        """Warn when training ended with the encoder giving every sample the same features.

        That happens when, for instance, a learning rate too high for a backbone without
        batch norm kills all its ReLUs: the loss stays finite, but every prediction is
        the same class. Checked on up to ``n`` distinct training samples, in eval mode.
        """
        sample = X[:n]
        if len(sample) < 2 or np.ptp(sample.reshape(len(sample), -1), axis=0).max() == 0:
            return
        with torch.random.fork_rng(devices=[]):  # the data loader draws a base seed
            features = self.transform(sample)
        if np.ptp(features, axis=0).max() == 0:
            warnings.warn(
                f"{type(self).__name__} training collapsed: the encoder maps every training "
                "sample to the same features, so all predictions are one class (dead ReLUs "
                f"after too large steps, for example). Try a lower lr (now {self.lr}), a "
                "backbone with batch norm, or fewer epochs at the initial rate.",
                ConvergenceWarning, stacklevel=4,
            )

    def check_data(self, X, y):
        """Data is validated by :meth:`fit`; classes are kept in the user's label type."""

    def fit_loop(self, X, y=None, epochs=None, *, X_unlabeled=None, **fit_params):
        """skorch's fit loop, with the unlabelled data taken out of the fit parameters."""
        self._unlabeled_ = X_unlabeled
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        finally:
            self._unlabeled_ = None

    def get_iterator(self, dataset, training=False):
        """Training: labelled and unlabelled batches in turn; otherwise skorch's loader."""
        if not training:
            return super().get_iterator(dataset, training=False)
        kwargs = self.get_params_for("iterator_train")
        kwargs.setdefault("batch_size", self.batch_size)
        kwargs.setdefault("shuffle", True)
        step = getattr(self, "key_step_", 0)

        def loader(ds, salt):
            kw = dict(kwargs)
            if kw["batch_size"] == -1:
                kw["batch_size"] = len(ds)
            kw.setdefault("drop_last", _drops_lone_last(len(ds), kw["batch_size"]))
            kw.setdefault("generator", self._generator(step, salt))
            return self.iterator_train(ds, **kw)

        labelled = loader(dataset, 1)
        U = getattr(self, "_unlabeled_", None)
        iterator = labelled
        if U is not None and len(U):
            fill = np.full(len(U), -1, dtype=np.int64)
            iterator = _Alternating(labelled, loader(self.get_dataset(U, fill), 2))
        self.steps_per_epoch_ = len(iterator)
        self.total_steps_ = max(1, self.steps_per_epoch_ * self.max_epochs)
        self._aug_generator_ = self._generator(step, 3, device=self.device_)
        return iterator

    def _autocast(self):
        if self.precision != "bf16":
            return nullcontext()
        return torch.autocast(device_type=torch.device(self.device_).type, dtype=torch.bfloat16)

    def _to_unit(self, x) -> torch.Tensor:
        """Move a raw batch to the device as float32 (uint8 images scaled to [0, 1])."""
        x = torch.as_tensor(x).to(self.device_, non_blocking=True)
        if x.dtype == torch.uint8 and self._is_image:
            return x.float().div_(255.0)
        return x.float()

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean_ is not None:
            shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
            mean = torch.as_tensor(self.mean_, dtype=x.dtype, device=x.device).view(shape)
            std = torch.as_tensor(self.std_, dtype=x.dtype, device=x.device).view(shape)
            x = (x - mean) / std
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _augmenters(self) -> tuple[Augment, Augment]:
        image = self._is_image
        weak = self.weak_augment
        strong = self.strong_augment
        if isinstance(weak, str):
            weak = WeakAugment() if image else TabularWeakAugment()
        if isinstance(strong, str):
            strong = StrongAugment() if image else TabularStrongAugment()
        return weak, strong

    def _views(self, raw, generator, *, strong: bool = True) -> tuple[torch.Tensor, ...]:
        """Weak and strong normalised views of a raw batch (the weak one alone with
        ``strong=False``); the weak view draws from ``generator`` first either way."""
        x = self._to_unit(raw)
        weak_fn, strong_fn = self._augmenters()
        fns = (weak_fn, strong_fn) if strong else (weak_fn,)
        if self._is_image:
            return tuple(self._normalized(fn(x, generator)) for fn in fns)
        x = self._normalized(x)
        return tuple(fn(x, generator) for fn in fns)

    def infer(self, x, **fit_params):
        """Class logits (float32) of a raw batch: scaling and normalisation happen here."""
        with self._autocast():
            out = self.module_(self._normalized(self._to_unit(x)), **fit_params)
        return out.float()

    def get_loss(self, y_pred, y_true, *args, **kwargs):
        """Cross-entropy over the rows with a label (unlabelled rows carry -1)."""
        y_true = torch.as_tensor(y_true, device=y_pred.device)
        labelled = y_true >= 0
        if not bool(labelled.any()):
            return y_pred.sum() * 0.0
        return self.criterion_(y_pred[labelled], y_true[labelled])

    def train_step_single(self, batch, **fit_params):
        """One MoBYv2AL step: contrastive loss on two views, plus CE if labelled."""
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        if self.lambda_c == 0:
            # Supervised only: the contrastive term would be multiplied by zero, so the
            # strong view, the key branch and the queues are skipped. Unlabelled batches
            # still make an (all-zero gradient) optimizer step, as with lambda_c > 0.
            (weak,) = self._views(Xi, self._aug_generator_, strong=False)
            with self._autocast():
                y_pred = self.module_(weak).float()
            loss = self.get_loss(y_pred, yi)
            loss.backward()
            self._keys_ = None
            return {"loss": loss, "y_pred": y_pred}
        weak, strong = self._views(Xi, self._aug_generator_)
        with self._autocast():
            con, f_weak, k_weak, k_strong = self.module_.contrastive_terms(
                weak, strong, self.temperature
            )
            y_pred = self.module_.head(f_weak).float()
        loss = self.lambda_c * con.float().mean() + self.get_loss(y_pred, yi)
        loss.backward()
        self._keys_ = (k_weak, k_strong)
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch, **fit_params):
        """Optimizer step, then the key branch's EMA update and the queue update."""
        step = super().train_step(batch, **fit_params)
        if self._keys_ is not None:  # None when lambda_c == 0 (no contrastive branch)
            m = cosine_momentum(self.key_step_, self.total_steps_, self.key_momentum)
            self.module_.update_keys(m)
            self.module_.enqueue(*self._keys_)
            self._keys_ = None
        self.key_step_ += 1
        return step

    # -------------------------------------------------------------- prediction
    def _check_predict_X(self, X):
        if not getattr(self, "initialized_", False) or not hasattr(self, "module_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call 'fit' first."
            )
        if isinstance(X, Dataset):  # skorch's own callers pass datasets
            return X
        return self._check_X(X, "X", reset=False)

    def predict_proba(self, X):
        """Class probabilities, shape ``(n, n_classes)``, columns ordered as ``classes_``.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Samples shaped like the training data.

        Returns
        -------
        ndarray of shape (n, n_classes)

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> P = clf.fit(X[:200], y[:200]).predict_proba(X[200:205])
        >>> P.shape, bool(abs(P.sum(axis=1) - 1).max() < 1e-5)
        ((5, 10), True)
        """
        return super().predict_proba(self._check_predict_X(X))

    def predict(self, X):
        """Predicted labels, in the type of the training labels.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Samples shaped like the training data.

        Returns
        -------
        ndarray of shape (n,)

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> names = np.array(list("abcdefghij"))[y]  # string labels come back as strings
        >>> clf.fit(X[:200], names[:200]).predict(X[200:203]).dtype.kind
        'U'
        """
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def score(self, X, y, sample_weight=None):
        """Accuracy on the labelled rows (rows labelled ``unlabeled_label`` are ignored).

        Parameters
        ----------
        X : array-like
            Samples.
        y : array-like of shape (n,)
            True labels; unlabelled rows are skipped.
        sample_weight : array-like of shape (n,), optional
            Weights of the rows.

        Returns
        -------
        float

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> clf = clf.fit(X[:200], y[:200])
        >>> y_test = y[200:400].copy()
        >>> y_test[:100] = -1                      # these rows do not count
        >>> clf.score(X[200:400], y_test) == clf.score(X[300:400], y[300:400])
        True
        """
        from sklearn.metrics import accuracy_score

        y = column_or_1d(to_numpy(y) if isinstance(y, torch.Tensor) else y)
        keep = ~self._unlabeled_mask(y)
        if not keep.any():
            raise ValueError("y has no labelled rows to score")
        X = self._check_predict_X(X)
        sw = None if sample_weight is None else np.asarray(sample_weight)[keep]
        return float(accuracy_score(y[keep], self.predict(X[keep]), sample_weight=sw))

    def _batches(self, X) -> Iterator[torch.Tensor]:
        loader = super().get_iterator(self.get_dataset(X), training=False)
        for batch in loader:
            yield unpack_data(batch)[0]

    @torch.no_grad()
    def transform(self, X) -> np.ndarray:
        """Query-encoder features ``f_q(x)`` (eval mode, no augmentation).

        These are the features CoreSet selects in.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Samples shaped like the training data.

        Returns
        -------
        ndarray of shape (n, d), float32
            ``d`` is ``feature_dim_``.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> clf.fit(X[:200], y[:200]).transform(X[:4]).shape  # (n, feature_dim_)
        (4, 128)
        """
        X = self._check_predict_X(X)
        self.module_.eval()
        out = []
        for xb in self._batches(X):
            with self._autocast():
                f = self.module_.features(self._normalized(self._to_unit(xb)))
            out.append(f.float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.feature_dim_), np.float32)

    @torch.no_grad()
    def contrastive_loss(self, X) -> np.ndarray:
        """Per-sample MoBYv2 contrastive loss, without changing weights or queues.

        Each sample gets a weak and a strong view drawn from a generator seeded by
        ``random_state`` (so repeated calls agree), and the loss
        ``NCE(q', k, Q_weak) + NCE(q, k', Q_strong)`` is computed in eval mode against
        the current queues. Used by the high-contrastive-loss selection strategy and to
        pick the lowest-loss unlabelled subset of the next cycle.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Samples shaped like the training data.

        Returns
        -------
        ndarray of shape (n,), float32

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> clf = clf.fit(X[:200], y[:200], X_unlabeled=X[200:400])
        >>> loss = clf.contrastive_loss(X[400:410])
        >>> loss.shape, bool((loss == clf.contrastive_loss(X[400:410])).all())  # seeded
        ((10,), True)
        """
        X = self._check_predict_X(X)
        self.module_.eval()
        g = self._generator(10**6, device=self.device_)
        out = []
        for xb in self._batches(X):
            weak, strong = self._views(xb, g)
            with self._autocast():
                loss, *_ = self.module_.contrastive_terms(weak, strong, self.temperature)
            out.append(loss.float().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    def fit_transform(self, X, y, X_unlabeled=None) -> np.ndarray:
        """Fit, then return :meth:`transform` of ``X``.

        Parameters
        ----------
        X, y, X_unlabeled
            As in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n, d), float32
            ``d`` is ``feature_dim_``.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> clf.fit_transform(X[:200], y[:200]).shape
        (200, 128)
        """
        return self.fit(X, y, X_unlabeled=X_unlabeled).transform(X)

    def __sklearn_tags__(self):
        from sklearn.utils import TransformerTags

        tags = super().__sklearn_tags__()
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.non_deterministic = self.random_state is None
        return tags
