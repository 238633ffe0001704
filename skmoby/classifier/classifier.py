"""``MoBYv2Classifier``: MoBYv2AL's joint contrastive + cross-entropy learner as a
scikit-learn estimator built on skorch. Here are the class, its constructor, ``fit`` and
``partial_fit`` and skorch's training hooks down to ``train_step``; the step itself is
in ``_step.py``, a training call's batches and schedules in ``_run.py``, its epoch
losses in ``_history.py``, the set-up (``initialize``, the network, the optimizer) in
``_setup.py``, inference in ``_inference.py`` and pickling in ``_persistence.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..network import MoBYv2Network
from ..threads import limit_threads
from ._history import divergence_error, read_batch_losses
from ._inference import Inference, warn_if_collapsed
from ._inputs import (
    normalization_stats,
    prepare_fit_data,
    refuse_new_classes,
    refuse_unlabeled_behind_pipeline_steps,
)
from ._params import DEFAULT_MOMENTUM, check_epochs, validate_params
from ._persistence import Persistence
from ._run import start_run, training_batches
from ._setup import NetSetup, refuse_valid_monitors
from ._step import (
    FitState,
    check_weighted_criterion,
    follow_query,
    reads_batch_rows,
    scaled_step,
    step_loss,
    weighted_loss,
)
from ._views import Augment, autocast, network_input

__all__ = ["MoBYv2Classifier"]


class MoBYv2Classifier(Inference, Persistence, NetSetup):
    """MoBYv2AL's self-supervised classifier (Caramalau et al., BMVC 2022).

    A backbone ``f_q`` and a linear classifier are trained on alternating labelled and
    unlabelled batches with ``L = CE + lambda_c * L_con`` (labelled; cross-entropy on the
    weak view) and ``L = lambda_c * L_con`` (unlabelled), ``L_con`` being MoBY's
    symmetric contrastive loss on a weak and a strong view. Unlabelled data comes as
    ``fit(X, y, X_unlabeled=U)``, as rows of ``X`` whose label is ``unlabeled_label``
    (scikit-learn's semi-supervised convention), or both; without any, the contrastive
    loss runs on the labelled batches.

    All defaults are the paper's. Every hyperparameter is a constructor argument, so
    ``clone``, ``set_params`` and ``GridSearchCV`` work as for any estimator; other skorch
    arguments (``callbacks``, ...) pass through, except ``iterator_train__*``: training
    batches come from the device-resident data path (see ``resident_data``).

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="resnet18"
        The encoder ``f_q``: one of ``"vgg16"``, ``"resnet18"``, ``"wrn28"``, ``"lenet5"``,
        ``"cnn"`` (images), ``"mlp"`` (tabular data or flattened images), or a module
        mapping a batch to feature vectors ``(n, d)``, deep-copied by every ``fit``. Its
        ``d`` is its integer ``feature_dim`` attribute if it has one, else read from a
        forward pass (eval mode) on two training samples.
    projection_dim : int, default=128
        Output size of the projector and predictor (the contrastive embedding).
    queue_size : int, default=4096
        Number of keys in each of the two queues (weak and strong views).
    temperature : float, default=0.2
        InfoNCE temperature ``tau``.
    key_momentum : float, default=0.99
        Initial EMA momentum of the key branch; it rises to 1 by a cosine schedule over
        the steps of a training run (see :meth:`partial_fit`).
    lambda_c : float, default=0.5
        Weight of the contrastive loss. ``0`` trains supervised-only (the paper's
        baselines), several times cheaper per step: the strong view, the key branch and
        the queues are skipped, and :meth:`contrastive_loss` is then not meaningful.
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
    optimizer__momentum : float or None, default=0.9
        SGD momentum. The default is passed only to optimizers that take a
        ``momentum`` argument (not to ``torch.optim.Adam`` or ``AdamW``); ``None`` passes
        none, leaving the optimizer's own default.
    optimizer__weight_decay : float, default=5e-4
        Weight decay of the optimizer.
    lr_milestones : tuple of float or None, default=(0.6, 0.8)
        Fractions of ``max_epochs`` (within a training run) at which the learning rate is
        multiplied by ``lr_gamma`` (epochs 120 and 160 of 200); ``None`` or ``()`` keeps
        ``lr`` constant; applied by the default callback ``lr_scheduler`` (:class:`MilestoneLR`).
    lr_gamma : float, default=0.1
        Learning-rate decay factor at each milestone.
    weak_augment, strong_augment : callable or "auto", default="auto"
        Callables ``(batch, generator) -> batch`` giving the weak and strong views of a
        float batch on the training device, in its shape; wrap a function of the batch
        alone (a torchvision transform) as ``lambda x, g: t(x)`` (``random_state`` then
        does not fix its draws). ``"auto"``: :class:`~skmoby.augment.WeakAugment` and
        :class:`~skmoby.augment.StrongAugment` on images' ``[0, 1]`` pixels, before
        normalisation; :class:`~skmoby.augment.TabularWeakAugment` and
        :class:`~skmoby.augment.TabularStrongAugment` on standardised tabular data.
    normalize : "auto", None or tuple of (mean, std), default="auto"
        Input normalisation: ``"auto"`` by the per-channel (images) or per-feature
        (tabular) mean and std of all training data; an explicit ``(mean, std)`` pair
        (one value per channel or feature; for images on the ``[0, 1]`` scale, so a mean
        outside ``[0, 1]`` or a std above 1 is refused); ``None``: none.
    unlabeled_label : int, float, str or None, default=-1
        Label that marks unlabelled rows of ``y``; ``np.nan`` follows scikit-activeml's
        convention (NaN for missing labels); ``None`` treats every row as labelled.
        Labels are compared like with like: among string labels a ``"-1"`` is refused
        as ambiguous (``ValueError``); pass ``"-1"`` or ``None`` to say what it is.
        scikit-learn's ``check_classifiers_classes`` uses ``-1`` as a class and so fails
        with the default (see :func:`expected_failed_checks`).
    random_state : int, numpy.random.RandomState or None, default=None
        Seeds weight initialisation, batch order and augmentations. With an int, fits on
        the CPU are reproducible (same data and seed give the same predictions).
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU, resolved by each ``fit`` (the
        fitted ``device_``). ``fit`` checks it first and raises ``ValueError`` for one
        that is unknown (``"tpu"``) or absent (``"cuda"`` without a GPU).
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        Autocast precision of the forward passes. ``"auto"``: bfloat16 on GPUs that
        support it, float32 elsewhere. ``"bf16"`` on a GPU without bfloat16 raises
        ``ValueError``; ``"fp16"`` (CUDA only) uses dynamic loss scaling
        (``torch.amp.GradScaler``).
    channels_last : bool or "auto", default="auto"
        Channels-last memory format for images (faster convolutions on GPUs);
        ``"auto"`` uses it on CUDA.
    resident_data : bool or "auto", default="auto"
        Move the training data to the device once per ``fit``, in its stored dtype, and
        draw batches there. ``"auto"`` does so when it takes at most a quarter of the
        device's free memory, else streams batches from (pinned) host memory with one
        ``RuntimeWarning``; ``False`` always streams. The same seed trains the same model.
    capture : bool or "auto", default="auto"
        Replay the whole training step as a captured CUDA graph (a few launches per step
        instead of hundreds; "Performance" in the user guide says what runs eagerly).
        ``"auto"`` captures on CUDA with SGD unless a callback implements
        ``on_grad_computed`` or ``precision="fp16"``; ``True`` raises where capture cannot
        work (CPU, another optimizer). The fitted ``capture_`` says whether it was used.
    n_threads : int or None, default=None
        CPU threads torch uses in ``fit``, ``partial_fit``, ``predict_proba``,
        ``transform`` and ``contrastive_loss`` (the caller's setting is restored
        afterwards). ``None`` keeps torch's current count capped at the CPUs this
        process may use (:func:`skmoby.threads.available_cpus`); see "Shared CPUs" in
        the user guide.
    input_shape : tuple of int or None, default=None
        Shape of one sample, ``(C, H, W)``, ``(H, W)`` or ``(d,)``; ``fit`` refuses data
        of another. With ``classes`` it lets :meth:`initialize` build the network without
        data, to load saved parameters into a new estimator (see :meth:`load_params`).
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
        Further skorch ``NeuralNetClassifier`` arguments: ``callbacks``,
        ``warm_start`` (see :meth:`partial_fit`), ``classes`` (all class labels), ...

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
    precision_, channels_last_, capture_, resident_data_ : str, bool, bool, bool
        The resolved ``precision``, ``channels_last``, ``capture`` and
        ``resident_data`` of the last fit.
    n_features_in_ : int
        ``X.shape[1]`` of the training data in its canonical shape: features of tabular
        data, channels of images (1 for ``(n, H, W)`` images).
    key_step_ : int
        Optimizer steps taken in the current training run (the key momentum's schedule).
    interrupted_ : bool
        Whether the last training call was stopped by Ctrl-C (see :meth:`fit`).

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
        optimizer__momentum: float | None = DEFAULT_MOMENTUM,
        optimizer__weight_decay: float = 5e-4,
        lr_milestones: tuple[float, ...] | None = (0.6, 0.8),
        lr_gamma: float = 0.1,
        weak_augment: Augment | str = "auto",
        strong_augment: Augment | str = "auto",
        normalize: str | tuple | None = "auto",
        unlabeled_label: float | str | None = -1,
        random_state: int | np.random.RandomState | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        channels_last: bool | str = "auto",
        resident_data: bool | str = "auto",
        capture: bool | str = "auto",
        n_threads: int | None = None,
        input_shape: tuple[int, ...] | None = None,
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
        self.resident_data = resident_data
        self.capture = capture
        self.n_threads = n_threads
        self.input_shape = input_shape
        # scikit-learn's contract: __init__ stores parameters only. skorch's __init__
        # also sets these three; the class attributes below stand in until initialize().
        for name in ("history_", "initialized_", "virtual_params_"):
            self.__dict__.pop(name, None)

    #: The working state of a training call in progress (:class:`FitState`), else None.
    _fit_state: FitState | None = None

    def fit(self, X, y=None, X_unlabeled=None, sample_weight=None, *, epochs=None):
        """Fit the network on labelled and unlabelled data (from scratch).

        Parameters
        ----------
        X : array-like, torch.Tensor, Dataset or dict
            Training samples of shape (n, C, H, W), (n, H, W) or (n, d): images as
            floats in ``[0, 1]`` or ``uint8``; tabular rows. Finite, within float32's
            range (magnitude up to about 3.4e38). As in skorch, also a torch or skorch
            ``Dataset`` (its items ``(x, y)``, or ``x`` with ``y`` given; read once,
            in order, into arrays) or a dict (skorch's ``SliceDict``) holding one array.
        y : array-like of shape (n,), optional
            Labels of any type scikit-learn accepts. Rows whose label equals
            ``unlabeled_label`` are used as unlabelled data; with every row unlabelled,
            the encoder trains on the contrastive loss alone (``classes`` must then be
            given). ``None`` only where ``X`` is a ``Dataset`` whose items carry the
            labels.
        X_unlabeled : array-like, torch.Tensor or UnlabeledData, optional
            Unlabelled samples with the per-sample shape and value range of ``X``;
            refused inside a ``Pipeline`` whose earlier steps would not transform it
            (pass ``pipe.fit(*stack_unlabeled(X, y, X_unlabeled))``).
        sample_weight : array-like of shape (n,), optional
            Non-negative weights of the cross-entropy of the rows of ``X`` (unlabelled
            rows' weights are ignored), rescaled to average 1 over the labelled rows:
            any finite weights up to 1e308 train the model of their ratios (NaN or
            infinity are refused). On CUDA, labelled steps then run eagerly. With
            metadata routing, request it with ``set_fit_request(sample_weight=True)``.
        epochs : int, optional
            Epochs to train in this call instead of ``max_epochs`` (skorch's
            ``fit(X, y, epochs=n)``). The learning-rate and momentum schedules still
            count a training run of ``max_epochs`` epochs: a shorter call leaves the
            run unfinished for the next ``partial_fit`` to continue, and epochs past
            its end keep the schedules' final values.

        Returns
        -------
        self : MoBYv2Classifier

        Examples
        --------
        >>> from skmoby import MoBYv2Classifier
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
            On an unknown or absent ``device`` (checked first, before any work); NaN,
            inf or values beyond float32's range in ``X`` or ``X_unlabeled``, mismatched
            lengths or shapes, fewer than 2 classes, an empty ``X``, an unknown backbone or
            one that fails on the data's shape, invalid ``sample_weight`` or
            hyperparameters; a non-finite loss (checked once per epoch, naming it).
        TypeError
            When ``X`` or ``X_unlabeled`` is not an array-like of samples.

        Notes
        -----
        Training losses are read from the device once per epoch: during an epoch the
        batch rows of ``history`` hold them as 0-d tensors, and floats afterwards.
        Where a callback implements ``on_batch_begin`` or ``on_batch_end`` (skorch's
        ``ProgressBar``, ``BatchScoring``, a user's), batch rows hold floats at once,
        as in skorch, at the price of one host synchronisation per step.

        **Ctrl-C** (``KeyboardInterrupt``) is caught by skorch: ``fit`` returns normally
        with ``interrupted_`` set to True and the weights of the last completed step; a
        later ``partial_fit`` continues the run (see "Training runs" in the user guide).
        """
        validate_params(self)  # the device first: before any work on the data
        with limit_threads(self.n_threads):
            return self._train(X, y, X_unlabeled, sample_weight, "fit", epochs=epochs)

    def partial_fit(
        self, X, y=None, classes=None, X_unlabeled=None, sample_weight=None, *, epochs=None
    ):
        """Train for one more training run of ``max_epochs`` epochs (initialising on the
        first call), from the current weights.

        A *training run* is what the two schedules span: the learning rate's
        ``lr_milestones`` and the key momentum's cosine rise from ``key_momentum`` to 1.
        Each call (and each ``fit`` with ``warm_start=True``) starts a new run from the
        current weights, queues and optimizer state, so both schedules start again; a
        call whose ``history`` ends in an unfinished run (after Ctrl-C, or a restored
        checkpoint) trains that run's remaining epochs instead.

        Parameters
        ----------
        X, y, X_unlabeled, sample_weight, epochs
            As in :meth:`fit`; ``epochs`` counts from where the call starts in its
            training run (skorch's ``partial_fit(X, y, epochs=n)``: n more epochs).
        classes : array-like, optional
            All class labels, for a first call whose ``y`` does not contain every class.
            A later call may repeat them; other classes raise ``ValueError``.

        Returns
        -------
        self : MoBYv2Classifier

        Examples
        --------
        >>> from skmoby import MoBYv2Classifier
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
        validate_params(self)
        with limit_threads(self.n_threads):
            return self._train(
                X, y, X_unlabeled, sample_weight, "partial_fit", classes, epochs=epochs
            )

    def _train(self, X, y, X_unlabeled, sample_weight, routing, classes=None, epochs=None):
        """Check the data, initialise when a new model starts, train one run."""
        check_epochs(epochs)
        if X_unlabeled is not None:
            refuse_unlabeled_behind_pipeline_steps(self)
        if routing == "fit":
            reset = not (self.warm_start and self.initialized_)
        else:
            reset = not self.initialized_
            if not reset and classes is not None:
                refuse_new_classes(classes, self.classes_)
        if reset:  # a failed check leaves no data-derived state of an earlier fit
            for attr in ("sample_shape_", "classes_inferred_"):
                self.__dict__.pop(attr, None)
        data = prepare_fit_data(
            self, X, y, X_unlabeled, reset=reset, classes=classes, sample_weight=sample_weight
        )
        if reset:
            self._learn_from(data)
            self.initialize()
        elif self._stats_pending:  # initialize() without data: normalize="auto" now
            both = data.X if data.U is None else np.concatenate([data.X, data.U])
            self._set_normalization(*normalization_stats(self.normalize, both))
        if data.w is not None:
            check_weighted_criterion(self.criterion_)
        run = {} if epochs is None else {"epochs": int(epochs)}
        super().partial_fit(
            data.X,
            data.y,
            _routing_method=routing,
            X_unlabeled=data.U,
            sample_weight=data.w,
            **run,
        )
        seen = data.X if len(data.X) or data.U is None else data.U
        warn_if_collapsed(seen, self._transform_checked, type(self).__name__, self.lr)
        return self

    # ------------------------------------------------- training (skorch's loop)
    def check_data(self, X, y):
        """Data is validated by :meth:`fit`; classes are kept in the user's label type."""

    def fit_loop(
        self, X, y=None, epochs=None, *, X_unlabeled=None, sample_weight=None, **fit_params
    ):
        """skorch's fit loop over the epochs left in the training run (see
        :meth:`partial_fit`), with the unlabelled data and the weights taken out of the
        fit parameters."""
        refuse_valid_monitors(self)
        self._fit_state = FitState(
            unlabeled=X_unlabeled,
            sample_weight=sample_weight,
            batch_floats=reads_batch_rows(self.callbacks_),
        )
        self.interrupted_ = False
        remaining = start_run(self, self._fit_state)
        try:
            epochs = remaining if epochs is None else epochs
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt:
            self.interrupted_ = True
            if self.history and not self.history[-1]["batches"]:
                self.history.pop()  # an epoch interrupted before its first batch
            raise
        finally:
            if self._fit_state.captured is not None:
                self._fit_state.captured.close()
            self._fit_state = None

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """skorch's new history row, plus the epoch's position in the training run
        (``run_epoch``, from 1)."""
        super().on_epoch_begin(
            net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs
        )
        self._fit_state.run_epoch += 1
        self.history.record("run_epoch", self._fit_state.run_epoch)

    def get_iterator(self, dataset, training=False):
        """Training: :class:`~skmoby.classifier._batches.TrainingBatches` (labelled and
        unlabelled batches in turn, drawn on the device), and the step loop set up for
        them; otherwise skorch's loader."""
        if not training:
            return super().get_iterator(dataset, training=False)
        return training_batches(self, self._fit_state, dataset, self._eager_step)

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """skorch's epoch, without a host synchronisation per training batch.

        Training losses stay on the device (as tensors in the history's batch rows) and
        are read once at the epoch's end, unless a callback reads batch rows during
        the epoch (it then gets floats, at one synchronisation per step); a non-finite
        loss raises ``ValueError`` at the epoch's end, naming the epoch. An interrupted
        epoch (Ctrl-C) has its losses read too, and no ``train_batch_count``: it is
        unfinished.
        """
        if not training or iterator is None:
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        key = prefix + "_loss"
        per_batch = self._fit_state.batch_floats
        n_batches = 0
        try:
            for batch in iterator:
                self.notify("on_batch_begin", batch=batch, training=training)
                step = step_fn(batch, **fit_params)
                loss = step["loss"].detach()
                self.history.record_batch(key, loss.item() if per_batch else loss)
                self.history.record_batch(prefix + "_batch_size", len(batch[0]))
                n_batches += 1
                self.notify("on_batch_end", batch=batch, training=training, **step)
        finally:
            losses = read_batch_losses(self.history, key)  # one host sync
        self.history.record(prefix + "_batch_count", n_batches)
        if not np.isfinite(losses).all():
            momentum = self.get_params().get("optimizer__momentum")
            raise divergence_error(losses, len(self.history), self.lr, momentum)

    def infer(self, x, **fit_params):
        """Class logits (float32) of a raw batch: scaling and normalisation happen here."""
        with autocast(self):
            out = self.module_(network_input(self, x), **fit_params)
        return out.float()

    def get_loss(self, y_pred, y_true, *args, **kwargs):
        """The criterion (cross-entropy) on a labelled batch (training batches are never
        mixed, so no rows are masked); with ``sample_weight``, the batch's mean of the
        weighted per-row losses (the weights average 1 over the labelled data)."""
        y_true = torch.as_tensor(y_true, device=y_pred.device)
        w = None if self._fit_state is None else self._fit_state.batch_weight
        if w is None:
            return self.criterion_(y_pred, y_true)
        return weighted_loss(self.criterion_, y_pred, y_true, w)

    def train_step_single(self, batch, **fit_params):
        """One MoBYv2AL step: contrastive loss on two views, plus CE if labelled."""
        state = self._fit_state
        self._set_training(True)
        loss, y_pred, state.keys = step_loss(self, *batch[:2], state.aug_generator)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch, **fit_params):
        """Optimizer step, then the key branch's EMA update and the queue update (as
        one replayed CUDA graph when steps are captured)."""
        state = self._fit_state
        state.batch_weight = batch[2] if len(batch) > 2 else None
        try:
            captured = state.captured
            out = captured.step(batch) if captured is not None else None  # None: eager
            if out is None:
                out = self._eager_step(batch, **fit_params)
        finally:
            state.batch_weight = None
        self.key_step_ += 1
        return out

    def _eager_step(self, batch, **fit_params):
        """skorch's step (fp16: with loss scaling), then the key branch's EMA and the
        enqueue."""
        state = self._fit_state
        if self.precision_ == "fp16":
            out = scaled_step(self, state, batch)
        else:
            out = super().train_step(batch, **fit_params)
        follow_query(self, state)
        return out
