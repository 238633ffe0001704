import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

# Each pytest-xdist worker compiles KeOps formulas into its own cache folder.
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and "KEOPS_CACHE_FOLDER" not in os.environ:
    os.environ["KEOPS_CACHE_FOLDER"] = os.path.join(
        os.path.expanduser("~"), ".cache", f"keops-skmoby-{_worker}"
    )

# The Ray clusters the tests start themselves run their workers on this interpreter:
# under "uv run pytest", Ray would otherwise sync a fresh environment for each cluster.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits as (n, 8, 8) float32 images in [0, 1] and int labels."""
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).reshape(-1, 8, 8).astype(np.float32), y


def small_clf(**kwargs):
    from skmoby import MoBYv2Classifier

    params = dict(
        backbone="cnn", max_epochs=2, batch_size=32, queue_size=64, random_state=0, device="cpu"
    )
    params.update(kwargs)
    return MoBYv2Classifier(**params)


@pytest.fixture(scope="module")
def fitted(digits):
    """One small classifier fitted on 300 labelled and 300 unlabelled digits; read only."""
    X, y = digits
    return small_clf().fit(X[:300], y[:300], X_unlabeled=X[300:600])
