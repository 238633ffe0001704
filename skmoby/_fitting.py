"""Training entry points of :class:`~skmoby.MoBYv2Classifier`: ``fit`` and
``partial_fit``, the training run each starts or continues (the span of the learning
rate and key momentum schedules), and the checks around them: ``X_unlabeled`` refused
behind ``Pipeline`` steps that would not transform it, and a warning when training
collapsed.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

from .threads import limit_threads

__all__ = ["Fitting"]


class Fitting:
    """The estimator's ``fit`` and ``partial_fit``. A mixin placed before skorch's
    ``NeuralNetClassifier`` in the bases of :class:`~skmoby.MoBYv2Classifier`, so that
    its methods override skorch's; skorch's ``partial_fit`` and ``fit_loop`` do the
    training.
    """

    def fit(self, X, y, X_unlabeled=None, sample_weight=None):
        """Fit the network on labelled and unlabelled data (from scratch).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n, C, H, W), (n, H, W) or (n, d)
            Training samples: images as floats in ``[0, 1]`` or ``uint8``; tabular rows.
            Values must be finite and within float32's range (magnitude at most about
            3.4e38): the network computes in float32.
        y : array-like of shape (n,)
            Labels of any type scikit-learn accepts. Rows whose label equals
            ``unlabeled_label`` are used as unlabelled data.
        X_unlabeled : array-like, torch.Tensor or UnlabeledData, optional
            Unlabelled samples with the per-sample shape and value range of ``X``.
            Inside a ``Pipeline`` with steps before the classifier it is refused (those
            steps would not transform it): pass
            ``pipe.fit(*stack_unlabeled(X, y, X_unlabeled))``.
        sample_weight : array-like of shape (n,), optional
            Non-negative weights of the rows of ``X``, weighting their cross-entropy.
            The weights of unlabelled rows are ignored (the contrastive loss is not
            weighted), and the labelled rows' weights are rescaled to average 1, so
            their scale does not change the step size: any finite weights, up to
            1e308, train the model of their ratios (NaN or infinity are refused).
            Batches then carry the weights and (on CUDA) labelled steps run eagerly
            rather than as a captured graph.
            With scikit-learn's metadata routing, request it with
            ``set_fit_request(sample_weight=True)``.

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
            On an unknown or absent ``device`` (checked first, before any work);
            NaN/inf or values beyond float32's range in ``X`` or ``X_unlabeled``,
            mismatched lengths or shapes, fewer than 2 classes, an empty
            ``X``, an unknown backbone or one that fails on the data's shape, invalid
            ``sample_weight`` or hyperparameters; and when training diverges (a
            non-finite loss, checked once per epoch; the message names the epoch).
        TypeError
            When ``X`` or ``X_unlabeled`` is not an array-like of samples.

        Notes
        -----
        Training losses are read from the device once per epoch: during an epoch the
        batch rows of ``history`` hold them as 0-d tensors, and floats afterwards.

        **Ctrl-C** (``KeyboardInterrupt``) during training is caught by skorch: ``fit``
        returns normally, with ``interrupted_`` set to True. The estimator is then
        fitted with the weights of the last completed step: ``history`` holds the
        finished epochs, plus a last row for an epoch interrupted after its first batch
        (its batch losses as floats, no ``train_batch_count``); callbacks'
        ``on_train_end`` has run (so ``TrainEndCheckpoint`` saved that state); and a
        later ``partial_fit`` (or ``fit`` with ``warm_start=True``) continues the
        interrupted run, training the interrupted epoch again. Code that must not
        mistake an interrupted fit for a finished one checks ``interrupted_``.
        """
        self._check_hyperparameters()  # the device first: before any work on the data
        with limit_threads(self.n_threads):
            return self._fit_checked(X, y, X_unlabeled, sample_weight)

    def _fit_checked(self, X, y, X_unlabeled, sample_weight):
        if X_unlabeled is not None:
            self._refuse_unlabelled_behind_pipeline_steps()
        reset = not (self.warm_start and self.initialized_)
        X_l, y_enc, U, w = self._prepare_fit_data(
            X, y, X_unlabeled, reset=reset, sample_weight=sample_weight
        )
        if reset:
            self.initialize()
        return self._partial_fit_checked(X_l, y_enc, U, w, "fit")

    def partial_fit(self, X, y=None, classes=None, X_unlabeled=None, sample_weight=None):
        """Train for one more training run of ``max_epochs`` epochs (initialising on the
        first call), from the current weights.

        A *training run* is what the two schedules span: the learning rate's
        milestones (``lr_milestones``, fractions of ``max_epochs``) and the key
        momentum's cosine rise from ``key_momentum`` to 1 over the run's steps. Each
        ``fit`` starts a run; each ``partial_fit`` call, and each ``fit`` with
        ``warm_start=True``, starts a new run from the current weights, queues and
        optimizer state, so both schedules start again (the learning rate from ``lr``,
        the momentum from ``key_momentum``) rather than staying at their end values.
        A call whose ``history`` ends in an unfinished run (after Ctrl-C, or with a
        checkpoint restored by skorch's ``LoadInitState``) continues that run instead:
        it trains the run's remaining epochs with both schedules where they stopped.

        Parameters
        ----------
        X, y, X_unlabeled, sample_weight
            As in :meth:`fit`.
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
        self._check_hyperparameters()
        with limit_threads(self.n_threads):
            return self._partial_fit_unchecked(X, y, classes, X_unlabeled, sample_weight)

    def _partial_fit_unchecked(self, X, y, classes, X_unlabeled, sample_weight):
        if X_unlabeled is not None:
            self._refuse_unlabelled_behind_pipeline_steps()
        reset = not self.initialized_
        if (
            not reset
            and classes is not None
            and not np.array_equal(np.unique(np.asarray(classes)), self.classes_)
        ):
            raise ValueError(
                f"classes={np.asarray(classes).tolist()!r} differs from the "
                f"fitted classes {self.classes_.tolist()!r}; a fitted network's "
                "classes cannot change (call fit to start afresh)"
            )
        X_l, y_enc, U, w = self._prepare_fit_data(
            X, y, X_unlabeled, reset=reset, classes=classes, sample_weight=sample_weight
        )
        if reset:
            self.initialize()
        return self._partial_fit_checked(X_l, y_enc, U, w, "partial_fit")

    def _partial_fit_checked(self, X, y, U, w, routing):
        if w is not None and not hasattr(self.criterion_, "reduction"):
            raise TypeError(
                f"sample_weight needs a criterion with a `reduction` "
                f"argument; {type(self.criterion_).__name__} has none"
            )
        out = super().partial_fit(X, y, _routing_method=routing, X_unlabeled=U, sample_weight=w)
        self._warn_if_collapsed(X)
        return out

    def _refuse_unlabelled_behind_pipeline_steps(self) -> None:
        """Refuse ``X_unlabeled`` handed over by a ``Pipeline`` whose earlier steps
        transform ``X``: they would not transform ``X_unlabeled``. Detected from the
        caller's frame (the first one that is not a method of this estimator)."""
        frame = sys._getframe(1)
        while frame is not None and frame.f_locals.get("self") is self:
            frame = frame.f_back
        owner = frame.f_locals.get("self") if frame is not None else None
        if not isinstance(owner, Pipeline) or owner.steps[-1][1] is not self:
            return
        before = [
            name
            for name, step in owner.steps[:-1]
            if step is not None and not (isinstance(step, str) and step == "passthrough")
        ]
        if before:
            raise ValueError(
                f"X_unlabeled reached {type(self).__name__} through a Pipeline without "
                f"passing its steps {before}, which transform X only. Pass the unlabelled "
                "rows in X, marked in y with unlabeled_label, so that every step sees "
                "them: pipe.fit(*skmoby.stack_unlabeled(X, y, X_unlabeled))."
            )

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
            features = self._transform_checked(sample)
        if np.ptp(features, axis=0).max() == 0:
            warnings.warn(
                f"{type(self).__name__} training collapsed: the encoder maps every training "
                "sample to the same features, so all predictions are one class (dead ReLUs "
                f"after too large steps, for example). Try a lower lr (now {self.lr}), a "
                "backbone with batch norm, or fewer epochs at the initial rate.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _run_position(self) -> tuple[int, int]:
        """``(epochs, steps)`` done in the training run that the next training call
        continues, from the finished epochs in ``history``; ``(0, 0)`` when it starts a
        new run (the last run is complete, or there is none)."""
        rows = [row for row in self.history if "train_batch_count" in row]
        if not rows or rows[-1].get("run_epoch", self.max_epochs) >= self.max_epochs:
            return 0, 0
        done = int(rows[-1]["run_epoch"])
        return done, sum(int(row["train_batch_count"]) for row in rows[-done:])

    def _start_run(self) -> int:
        """Set the schedules' position for this training call; return its epochs."""
        history = self.history
        while history and "train_batch_count" not in history[-1]:
            history.pop()  # an epoch interrupted before its end is trained again
        done, steps = self._run_position()
        self._run_epoch_ = done
        self.key_step_ = steps
        self._steps_before_ = sum(int(row["train_batch_count"]) for row in history)
        return self.max_epochs - done
