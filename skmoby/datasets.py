"""Datasets of the paper, in the layout torchvision uses, plus scikit-learn's digits.

Images come back as ``uint8`` arrays of shape ``(n, C, H, W)`` (digits: float32 in
``[0, 1]``), labels as int64, together with the per-dataset normalisation. The files are
read directly (gzipped or not for FashionMNIST), so copies placed by hand or installed by
a system package work; ``download=True`` fetches missing files through torchvision.

Where the files go, for ``root=ROOT``:

* ``fashionmnist``: ``ROOT/FashionMNIST/raw/`` holding ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``
  (each may be gzipped, ``.gz``);
* ``cifar10`` and ``cifar10-imbalanced``: ``ROOT/cifar-10-batches-py/`` holding
  ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``;
* ``cifar100``: ``ROOT/cifar-100-python/`` holding ``train`` and ``test``;
* ``svhn``: ``ROOT/train_32x32.mat`` and ``ROOT/test_32x32.mat``.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "ImageDataset", "load_dataset"]

# Per-channel mean and standard deviation of the training images on the [0, 1] scale
# (the values commonly published for these datasets).
_NORMALIZE = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "fashionmnist": ((0.2860,), (0.3530,)),
}


@dataclass
class ImageDataset:
    """A train/test split of labelled images.

    Attributes
    ----------
    name : str
    X_train, X_test : ndarray of shape (n, C, H, W)
        uint8 images (float32 in [0, 1] for digits).
    y_train, y_test : ndarray of shape (n,), int64
    classes : list of str
    normalize : tuple of (mean, std) or "auto"
        Per-channel statistics to pass to ``MoBYv2Classifier(normalize=...)``.

    Examples
    --------
    >>> ds = load_dataset("digits")
    >>> ds.name, ds.y_train.dtype, len(ds.classes)
    ('digits', dtype('int64'), 10)
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list[str] = field(default_factory=list)
    normalize: tuple | str = "auto"

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, train={self.X_train.shape}, "
                f"test={self.X_test.shape}, classes={len(self.classes)})")


def _missing(name: str, root: Path, files: list[Path]) -> FileNotFoundError:
    listing = "\n  ".join(str(f) for f in files)
    return FileNotFoundError(
        f"{name} files not found under {root}. Put them here:\n  {listing}\n"
        f"or pass download=True (needs internet) to fetch them with torchvision."
    )


def _download(name: str, root: Path) -> None:
    from torchvision import datasets as tvd

    root.mkdir(parents=True, exist_ok=True)
    if name == "fashionmnist":
        for train in (True, False):
            tvd.FashionMNIST(str(root), train=train, download=True)
    elif name == "cifar10":
        tvd.CIFAR10(str(root), download=True)
    elif name == "cifar100":
        tvd.CIFAR100(str(root), download=True)
    elif name == "svhn":
        for split in ("train", "test"):
            tvd.SVHN(str(root), split=split, download=True)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(dims))} values")
    return data.reshape(tuple(int(d) for d in dims))


def _fashionmnist(root: Path, download: bool) -> ImageDataset:
    raw = root / "FashionMNIST" / "raw"
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

    def find(stem):
        for cand in (raw / stem, raw / (stem + ".gz")):
            if cand.exists():
                return cand
        return None

    if download and any(find(s) is None for s in stems):
        _download("fashionmnist", root)
    paths = [find(s) for s in stems]
    if any(p is None for p in paths):
        raise _missing("FashionMNIST", root, [raw / (s + ".gz") for s in stems])
    Xtr, ytr, Xte, yte = (_read_idx(p) for p in paths)
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]
    return ImageDataset("fashionmnist", Xtr[:, None], ytr.astype(np.int64), Xte[:, None],
                        yte.astype(np.int64), classes, _NORMALIZE["fashionmnist"])


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _cifar(root: Path, download: bool, n_classes: int) -> ImageDataset:
    if n_classes == 10:
        base = root / "cifar-10-batches-py"
        train_files = [base / f"data_batch_{i}" for i in range(1, 6)]
        test_files = [base / "test_batch"]
        meta, key, name = base / "batches.meta", "labels", "cifar10"
    else:
        base = root / "cifar-100-python"
        train_files, test_files = [base / "train"], [base / "test"]
        meta, key, name = base / "meta", "fine_labels", "cifar100"
    files = train_files + test_files
    if download and not all(f.exists() for f in files):
        _download(name, root)
    if not all(f.exists() for f in files):
        raise _missing(name.upper().replace("CIFAR", "CIFAR-"), root, files)

    def load(paths):
        parts = [_unpickle(p) for p in paths]
        X = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts])
        y = np.concatenate([np.asarray(p[key], dtype=np.int64) for p in parts])
        return X.reshape(-1, 3, 32, 32), y

    Xtr, ytr = load(train_files)
    Xte, yte = load(test_files)
    classes: list[str] = []
    if meta.exists():
        m = _unpickle(meta)
        classes = list(m.get("label_names") or m.get("fine_label_names") or [])
    classes = classes or [str(i) for i in range(n_classes)]
    return ImageDataset(name, Xtr, ytr, Xte, yte, classes, _NORMALIZE[name])


def _svhn(root: Path, download: bool) -> ImageDataset:
    files = [root / "train_32x32.mat", root / "test_32x32.mat"]
    if download and not all(f.exists() for f in files):
        _download("svhn", root)
    if not all(f.exists() for f in files):
        raise _missing("SVHN", root, files)
    from scipy.io import loadmat

    def load(path):
        mat = loadmat(path)
        X = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)
        y = mat["y"].astype(np.int64).reshape(-1)
        y[y == 10] = 0  # SVHN stores the digit 0 as label 10
        return X, y

    Xtr, ytr = load(files[0])
    Xte, yte = load(files[1])
    return ImageDataset("svhn", Xtr, ytr, Xte, yte, [str(i) for i in range(10)],
                        _NORMALIZE["svhn"])


def _digits() -> ImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y.astype(np.int64), test_size=0.3,
                                          random_state=0, stratify=y)
    return ImageDataset("digits", Xtr, ytr, Xte, yte, [str(i) for i in range(10)], "auto")


def _imbalance(ds: ImageDataset, classes=(0, 2, 4, 6, 8), keep: int = 500) -> ImageDataset:
    """The imbalanced pool of the paper's CIFAR-10 experiment (Section 4.3): the training
    images of ``classes`` cut to their first ``keep`` (in file order), the test set whole.

    The defaults are the authors' split (MoBYv2AL's ``load_dataset.py``, ``cifar10im``:
    counts ``[500, 5000] * 5`` over classes 0-9, each class's first images kept), a pool
    of 5 x 500 + 5 x 5000 = 27,500 images.
    """
    idx = []
    for c in np.unique(ds.y_train):
        members = np.flatnonzero(ds.y_train == c)
        if c in classes:
            members = members[:keep]
        idx.append(members)
    idx = np.sort(np.concatenate(idx))
    return ImageDataset(f"{ds.name}-imbalanced", ds.X_train[idx], ds.y_train[idx], ds.X_test,
                        ds.y_test, ds.classes, ds.normalize)


#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "fashionmnist", "cifar10", "cifar100", "svhn", "cifar10-imbalanced")


def load_dataset(name: str, root: str | os.PathLike | None = None,
                 download: bool = False) -> ImageDataset:
    """Load one of the paper's datasets (or the embedded digits).

    Parameters
    ----------
    name : str
        One of ``"digits"`` (scikit-learn's 8x8 digits, no files needed),
        ``"fashionmnist"``, ``"cifar10"``, ``"cifar100"``, ``"svhn"`` and
        ``"cifar10-imbalanced"`` (CIFAR-10 with the even classes 0, 2, 4, 6, 8 cut to
        their first 500 training images, a pool of 27,500, as in the authors' code).
    root : path, optional
        Folder holding the files in torchvision's layout (see the module docstring);
        default ``$SKMOBY_DATA`` or ``~/.cache/skmoby``.
    download : bool, default=False
        Fetch missing files with torchvision.

    Returns
    -------
    ImageDataset

    Raises
    ------
    ValueError
        For an unknown name.
    FileNotFoundError
        When files are missing and ``download`` is False; the message lists where to
        put them.

    Examples
    --------
    >>> ds = load_dataset("digits")
    >>> ds.X_train.shape, ds.X_test.shape
    ((1257, 1, 8, 8), (540, 1, 8, 8))
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}; got {name!r}")
    if name == "digits":
        return _digits()
    root = Path(root if root is not None
                else os.environ.get("SKMOBY_DATA", Path.home() / ".cache" / "skmoby"))
    if name == "fashionmnist":
        return _fashionmnist(root, download)
    if name == "cifar10":
        return _cifar(root, download, 10)
    if name == "cifar100":
        return _cifar(root, download, 100)
    if name == "svhn":
        return _svhn(root, download)
    return _imbalance(_cifar(root, download, 10))
