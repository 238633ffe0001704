"""Inference of :class:`~skmoby.MoBYv2Classifier`: class probabilities and labels,
accuracy, encoder features and the per-sample contrastive loss of a fitted estimator,
each computed over large batches on the device and copied back once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils import TransformerTags
from sklearn.utils.validation import column_or_1d
from skorch.utils import to_numpy

from ..threads import check_n_threads, limit_threads
from ._batches import inference_batches
from ._inputs import check_X
from ._step import seeded_generator
from ._unlabeled import unlabeled_mask
from ._views import autocast, network_input, views

__all__ = ["Inference", "check_predict_X", "map_batches", "warn_if_collapsed"]


def check_predict_X(est: Any, X: Any) -> Any:
    """``X`` checked against the fitted estimator ``est``; a ``Dataset`` (as skorch's own
    callers pass, a validation split for one) is read into an array first."""
    if not getattr(est, "initialized_", False) or not hasattr(est, "module_"):
        raise NotFittedError(
            f"This {type(est).__name__} instance is not fitted yet; call 'fit' first."
        )
    return check_X(est, X, "X", reset=False, sample_shape=est.sample_shape_)


@torch.no_grad()
def map_batches(est: Any, X: np.ndarray, fn: Callable, width: int | None) -> np.ndarray:
    """``fn`` over large device batches of ``X`` in eval mode; one copy back."""
    est.module_.eval()
    with limit_threads(check_n_threads(getattr(est, "n_threads", None))):
        out = [fn(xb) for xb in inference_batches(X, torch.device(est.device_))]
    if not out:
        return np.zeros((0,) if width is None else (0, width), np.float32)
    return torch.cat(out).float().cpu().numpy()


def warn_if_collapsed(
    X: np.ndarray, features: Callable, name: str, lr: float, n: int = 256
) -> None:
    """Warn when training ended with the encoder giving every sample the same features.

    That happens when, for instance, a learning rate too high for a backbone without
    batch norm kills all its ReLUs: the loss stays finite, but every prediction is
    the same class. Checked on up to ``n`` distinct training samples of ``X``, mapped
    by ``features`` to the fitted encoder's features (in eval mode); ``name`` and
    ``lr``, the estimator's class name and learning rate, go into the message.
    """
    sample = X[:n]
    if len(sample) < 2 or np.ptp(sample.reshape(len(sample), -1), axis=0).max() == 0:
        return
    with torch.random.fork_rng(devices=[]):  # the data loader draws a base seed
        encoded = features(sample)
    if np.ptp(encoded, axis=0).max() == 0:
        warnings.warn(
            f"{name} training collapsed: the encoder maps every training "
            "sample to the same features, so all predictions are one class (dead ReLUs "
            f"after too large steps, for example). Try a lower lr (now {lr}), a "
            "backbone with batch norm, or fewer epochs at the initial rate.",
            ConvergenceWarning,
            stacklevel=4,
        )


class Inference(ClassNamePrefixFeaturesOutMixin, TransformerMixin):
    """The estimator's inference methods: a base of :class:`~skmoby.MoBYv2Classifier`
    placed before skorch's ``NeuralNetClassifier``, so that its methods override
    skorch's. Each checks ``X`` (:func:`check_predict_X`) and maps the network over
    device batches (:func:`map_batches`); the estimator's ``infer`` gives the logits.

    As a transformer (its features, :meth:`transform`) it has scikit-learn's
    ``get_feature_names_out`` (``mobyv2classifier0``, ...) and ``set_output``.
    """

    @property
    def _n_features_out(self) -> int:
        """Width of :meth:`transform`'s output (scikit-learn's feature-name mixin)."""
        return self.feature_dim_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # features are float32 whatever the input's dtype
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        return tags

    def predict_proba(self, X):
        """Class probabilities, shape ``(n, n_classes)``, columns ordered as ``classes_``.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Samples shaped like the training data, with finite values within float32's
            range (``ValueError`` otherwise).

        Returns
        -------
        ndarray of shape (n, n_classes)

        Examples
        --------
        >>> from skmoby import MoBYv2Classifier
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> P = clf.fit(X[:200], y[:200]).predict_proba(X[200:205])
        >>> P.shape, bool(abs(P.sum(axis=1) - 1).max() < 1e-5)
        ((5, 10), True)
        """
        return self._predict_proba_checked(check_predict_X(self, X))

    def _predict_proba_checked(self, X):
        """:meth:`predict_proba` of an ``X`` that passed ``_check_predict_X`` (checking
        it again would take a data frame's converted array for one without names)."""
        nonlin = self._get_predict_nonlinearity()
        return map_batches(self, X, lambda xb: nonlin(self.infer(xb)), len(self.classes_))

    def predict(self, X):
        """Predicted labels, in the type of the training labels.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Samples shaped like the training data, with finite values within float32's
            range (``ValueError`` otherwise).

        Returns
        -------
        ndarray of shape (n,)

        Examples
        --------
        >>> import numpy as np
        >>> from skmoby import MoBYv2Classifier
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> names = np.array(list("abcdefghij"))[y]  # string labels come back as strings
        >>> clf.fit(X[:200], names[:200]).predict(X[200:203]).dtype.kind
        'U'
        """
        return self._predict_checked(check_predict_X(self, X))

    def _predict_checked(self, X):
        return self.classes_[self._predict_proba_checked(X).argmax(axis=1)]

    def score(self, X, y, sample_weight=None):
        """Accuracy on the labelled rows (rows labelled ``unlabeled_label`` are ignored).

        Parameters
        ----------
        X : array-like
            Samples shaped like the training data, with finite values within float32's
            range (``ValueError`` otherwise).
        y : array-like of shape (n,)
            True labels; unlabelled rows are skipped.
        sample_weight : array-like of shape (n,), optional
            Weights of the rows.

        Returns
        -------
        float

        Examples
        --------
        >>> from skmoby import MoBYv2Classifier
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
        keep = ~unlabeled_mask(y, self.unlabeled_label)
        if not keep.any():
            raise ValueError("y has no labelled rows to score")
        X = check_predict_X(self, X)
        sw = None if sample_weight is None else np.asarray(sample_weight)[keep]
        return float(accuracy_score(y[keep], self._predict_checked(X[keep]), sample_weight=sw))

    @torch.no_grad()
    def transform(self, X) -> np.ndarray:
        """Query-encoder features ``f_q(x)`` (eval mode, no augmentation).

        These are the features CoreSet selects in.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Samples shaped like the training data, with finite values within float32's
            range (``ValueError`` otherwise).

        Returns
        -------
        ndarray of shape (n, d), float32
            ``d`` is ``feature_dim_``.

        Examples
        --------
        >>> from skmoby import MoBYv2Classifier
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> clf.fit(X[:200], y[:200]).transform(X[:4]).shape  # (n, feature_dim_)
        (4, 128)
        """
        return self._transform_checked(check_predict_X(self, X))

    def _transform_checked(self, X) -> np.ndarray:
        def features(xb):
            with autocast(self):
                return self.module_.features(network_input(self, xb))

        return map_batches(self, X, features, self.feature_dim_)

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
            Samples shaped like the training data, with finite values within float32's
            range (``ValueError`` otherwise).

        Returns
        -------
        ndarray of shape (n,), float32

        Examples
        --------
        >>> from skmoby import MoBYv2Classifier
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
        X = check_predict_X(self, X)
        g = seeded_generator(self.seed_, 10**6, device=self.device_)

        def loss(xb):
            weak, strong = views(self, xb, g)
            with autocast(self):
                return self.module_.contrastive_terms(weak, strong, self.temperature)[0]

        return map_batches(self, X, loss, None)

    def fit_transform(self, X, y, X_unlabeled=None, sample_weight=None) -> np.ndarray:
        """Fit, then return :meth:`transform` of ``X``.

        Parameters
        ----------
        X, y, X_unlabeled, sample_weight
            As in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n, d), float32
            ``d`` is ``feature_dim_``.

        Examples
        --------
        >>> from skmoby import MoBYv2Classifier
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> X = (X / 16).reshape(-1, 8, 8).astype("float32")
        >>> clf = MoBYv2Classifier("cnn", max_epochs=1, batch_size=32, queue_size=64,
        ...                        random_state=0, device="cpu")
        >>> clf.fit_transform(X[:200], y[:200]).shape
        (200, 128)
        """
        return self.fit(X, y, X_unlabeled=X_unlabeled, sample_weight=sample_weight).transform(X)
