"""Shared set-up of the client tests: the idioms of skorch's, modAL's and
scikit-learn's own documentation, run with :class:`~skmoby.MoBYv2Classifier` swapped in.

``make`` builds the estimator as the tests' two users do: ``"default"`` is the default
constructor (``device="auto"``, the default backbone) with only the run shortened;
``"small"`` a small backbone for the slower idioms. ``INPUTS`` are the forms of ``X``
that skorch accepts, each with the backbone that takes it.
"""

import pytest
import torch
from skorch.dataset import Dataset
from skorch.helper import SliceDict

from skmoby import MoBYv2Classifier

SHORT = dict(max_epochs=1, batch_size=32, queue_size=64)


def make(kind="small", **kwargs):
    if kind == "default":
        return MoBYv2Classifier(**{**SHORT, "random_state": 0, **kwargs})
    params = dict(backbone="lenet5", **SHORT, random_state=0, device="cpu")
    params.update(kwargs)
    return MoBYv2Classifier(**params)


def as_form(form, X, y=None):
    """``X`` (``(n, 8, 8)`` digits) in one of the forms of ``INPUTS``, with the ``y``
    the fit then takes (``None`` where a dataset carries the labels)."""
    if form == "n,H,W":
        return X, y
    if form == "n,C,H,W":
        return X[:, None], y
    if form == "flat":
        return X.reshape(len(X), -1), y
    if form == "tensor":
        return torch.from_numpy(X), None if y is None else torch.from_numpy(y)
    if form == "skorch Dataset":
        return Dataset(X, y), None
    if form == "torch Dataset":
        data = [torch.from_numpy(X)] + ([] if y is None else [torch.from_numpy(y)])
        return torch.utils.data.TensorDataset(*data), None
    if form == "dict":
        return {"x": X}, y
    if form == "SliceDict":
        return SliceDict(x=X), y
    raise ValueError(form)


INPUTS = [
    "n,H,W",
    "n,C,H,W",
    "flat",
    "tensor",
    "skorch Dataset",
    "torch Dataset",
    "dict",
    "SliceDict",
]


def backbone_for(form):
    return "mlp" if form == "flat" else "lenet5"


@pytest.fixture(scope="module")
def fitted_hw(digits):
    """A small classifier fitted on (n, H, W) digits; read only."""
    X, y = digits
    return make().fit(X[:200], y[:200], X_unlabeled=X[200:400])
