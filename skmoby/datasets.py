"""Datasets of the paper, in their published layouts, plus scikit-learn's digits.

Images come back as ``uint8`` arrays of shape ``(n, C, H, W)`` (digits: float32 in
``[0, 1]``), labels as int64, together with the per-dataset normalisation. The CIFAR and
SVHN files are read by torchvision's dataset classes (``CIFAR10``, ``CIFAR100``,
``SVHN``), so any folder torchvision accepts works; the FashionMNIST files are read here
(gzipped files are decompressed in memory: nothing is written into the data folder).
``download=True`` fetches missing files.

Where the files go, for ``root=ROOT``:

* ``fashionmnist``: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, gzipped (``.gz``, as
  published) or not, either directly in ``ROOT/`` (the files as downloaded) or in
  ``ROOT/FashionMNIST/raw/`` (torchvision's layout, where ``download=True`` puts them);
* ``cifar10`` and ``cifar10-imbalanced``: ``ROOT/cifar-10-batches-py/`` holding
  ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and ``batches.meta``;
* ``cifar100``: ``ROOT/cifar-100-python/`` holding ``train``, ``test`` and ``meta``;
* ``svhn``: ``ROOT/train_32x32.mat`` and ``ROOT/test_32x32.mat`` (reading them needs
  SciPy).

torchvision checks the MD5 sums of the CIFAR and SVHN files against the official
releases; a file that differs is reported as corrupted. A FashionMNIST file is checked
for the format, the image size, the number of labels and their range.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import socket
import struct
import urllib.error
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

__all__ = [
    "DATASETS",
    "DatasetCorruptedError",
    "DatasetNotFoundError",
    "ImageDataset",
    "imbalance",
    "load_dataset",
]

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
        return (
            f"ImageDataset({self.name!r}, train={self.X_train.shape}, "
            f"test={self.X_test.shape}, classes={len(self.classes)})"
        )


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; ``load_dataset(..., download=True)`` fetches them.

    The message is :attr:`problem` followed by that advice.

    Parameters
    ----------
    problem : str
        What is missing and where to put it by hand, without the advice to download.
    dataset : str
        The dataset's name as written in messages (``"CIFAR-10"``).
    root : Path
        The data root searched.
    files : sequence of Path
        Where the files go (for FashionMNIST, the paths of torchvision's layout, where a
        download puts them).

    Attributes
    ----------
    problem, dataset, root, files
        As passed, ``files`` as a tuple.

    Examples
    --------
    >>> import tempfile
    >>> try:
    ...     load_dataset("fashionmnist", root=tempfile.mkdtemp())
    ... except DatasetNotFoundError as exc:
    ...     print(exc.dataset, len(exc.files), "download=True" in str(exc))
    FashionMNIST 4 True
    """

    def __init__(self, problem: str, dataset: str, root: Path, files: Sequence[Path]) -> None:
        self.problem, self.dataset, self.root = problem, dataset, Path(root)
        self.files = tuple(files)
        super().__init__(f"{problem}or pass download=True (needs internet) to fetch them.")

    def __reduce__(self):  # pickled with the arguments its __init__ takes
        return type(self), (self.problem, self.dataset, self.root, self.files)


class DatasetCorruptedError(ValueError):
    """A dataset's files differ from the official release; deleting them and passing
    ``download=True`` to ``load_dataset`` fetches good ones.

    The message is :attr:`problem` followed by that advice.

    Parameters
    ----------
    problem : str
        What differs, without the advice to download.
    dataset : str
        The dataset's name as written in messages (``"CIFAR-10"``).
    root : Path
        The folder holding the files.
    files : sequence of Path
        The file found to differ, or all of the dataset's files where the check does
        not say which.

    Attributes
    ----------
    problem, dataset, root, files
        As passed, ``files`` as a tuple.

    Examples
    --------
    >>> from pathlib import Path
    >>> exc = DatasetCorruptedError("cifar-10-batches-py/data_batch_1 has the wrong checksum.",
    ...                             "CIFAR-10", Path("data"), [Path("data_batch_1")])
    >>> str(exc).endswith("Replace it, or delete it and pass download=True.")
    True
    """

    def __init__(self, problem: str, dataset: str, root: Path, files: Sequence[Path]) -> None:
        self.problem, self.dataset, self.root = problem, dataset, Path(root)
        self.files = tuple(files)
        them = "it" if len(self.files) == 1 else "them"
        super().__init__(f"{problem} Replace {them}, or delete {them} and pass download=True.")

    def __reduce__(self):  # pickled with the arguments its __init__ takes
        return type(self), (self.problem, self.dataset, self.root, self.files)


def _missing(name: str, root: Path, files: list[Path], note: str = "") -> DatasetNotFoundError:
    listing = "\n  ".join(str(f) for f in files)
    return DatasetNotFoundError(
        f"{name} files not found under {root}. Put them here:\n  {listing}\n{note}",
        name,
        root,
        files,
    )


def _corrupted(
    name: str,
    root: Path,
    files: list[Path],
    exc: BaseException,
    how: str = "torchvision checks their MD5 sums",
) -> DatasetCorruptedError:
    return DatasetCorruptedError(
        f"{name} files under {root} do not match the official release ({how}): {exc}.",
        name,
        root,
        files,
    )


@contextlib.contextmanager
def _network_errors(title: str, url: str, by_hand: str) -> Iterator[None]:
    """Turn what urllib raises without a network into a ConnectionError saying what to do.

    ``by_hand`` says which files to put where instead.
    """
    try:
        yield
    except (
        urllib.error.URLError,
        socket.gaierror,
        ConnectionError,
        TimeoutError,
        http.client.HTTPException,
    ) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ConnectionError(
            f"could not download {title} from {urlsplit(url).netloc}: {reason}. "
            f"Without network access, place the files under the data root by hand: "
            f"{by_hand}"
        ) from exc


_FASHIONMNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# The names of labels 0-9 in the official release (and in torchvision).
_FASHIONMNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _fashionmnist_layouts(root: Path) -> list[tuple[str, Path]]:
    return [("torchvision's layout", root / "FashionMNIST" / "raw"), ("flat, as downloaded", root)]


def _fashionmnist_files(root: Path) -> list[Path] | None:
    """The four files of the first layout holding all of them (each as is or .gz)."""
    for _, folder in _fashionmnist_layouts(root):
        found = [
            next(
                (folder / name for name in (stem, f"{stem}.gz") if (folder / name).is_file()), None
            )
            for stem in _FASHIONMNIST_FILES
        ]
        if None not in found:
            return found
    return None


def _fashionmnist_missing(root: Path) -> DatasetNotFoundError:
    layouts = "".join(
        f"\n {how}:" + "".join(f"\n  {folder / stem}.gz" for stem in _FASHIONMNIST_FILES)
        for how, folder in reversed(_fashionmnist_layouts(root))
    )
    raw = _fashionmnist_layouts(root)[0][1]
    return DatasetNotFoundError(
        f"FashionMNIST files not found under {root}. Put them here, gzipped or not "
        f"(with or without .gz), in one of two layouts:{layouts}\n",
        "FashionMNIST",
        root,
        [raw / f"{stem}.gz" for stem in _FASHIONMNIST_FILES],
    )


def _damaged_idx(path: Path, why: str) -> DatasetCorruptedError:
    return DatasetCorruptedError(
        f"FashionMNIST file {path} does not match the official release ({why}).",
        "FashionMNIST",
        path.parent,
        [path],
    )


def _read_idx(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) whose shape after the first axis is
    ``shape[1:]``, read into memory."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # cut short, or no gzip
            raise _damaged_idx(path, f"not a complete gzip file: {exc}") from exc
    ndim = len(shape)
    header = 4 + 4 * ndim
    # The magic number: two zero bytes, 0x08 for unsigned bytes, then the number of axes.
    if len(data) < header or data[:4] != bytes((0, 0, 8, ndim)):
        raise _damaged_idx(path, f"no header of an IDX file of bytes with {ndim} axes")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if dims[1:] != shape[1:]:
        raise _damaged_idx(path, f"images of {dims[1:]} pixels, not {shape[1:]}")
    if len(data) != header + int(np.prod(dims)):
        raise _damaged_idx(
            path,
            f"{len(data) - header} bytes of data where its header "
            f"announces {int(np.prod(dims))}, cut short or padded",
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()


def _download_fashionmnist(root: Path) -> None:
    """Fetch the four .gz files into torchvision's layout (only the .gz files are kept)."""
    from torchvision.datasets import FashionMNIST
    from torchvision.datasets.utils import download_url

    raw = root / "FashionMNIST" / "raw"
    by_hand = (
        f"{', '.join(f'{stem}.gz' for stem in _FASHIONMNIST_FILES)} (from "
        f"https://github.com/zalandoresearch/fashion-mnist), directly in {root} or "
        f"in {raw}."
    )
    for filename, md5 in FashionMNIST.resources:
        target = raw / filename
        if target.is_file():
            continue
        url = FashionMNIST.mirrors[0] + filename  # torchvision lists one mirror
        try:
            with _network_errors("FashionMNIST", url, by_hand):
                download_url(url, str(raw), filename, md5)
        except BaseException:
            target.unlink(missing_ok=True)  # never leave a partial file to be read later
            raise


def _fashionmnist(root: Path, download: bool) -> ImageDataset:
    files = _fashionmnist_files(root)
    if files is None and download:
        _download_fashionmnist(root)
        files = _fashionmnist_files(root)
    if files is None:
        raise _fashionmnist_missing(root)
    X_train, y_train, X_test, y_test = (
        _read_idx(path, shape) for path, shape in zip(files, [(0, 28, 28), (0,)] * 2, strict=True)
    )
    n_classes = len(_FASHIONMNIST_CLASSES)
    for images, labels, X, y in ((*files[:2], X_train, y_train), (*files[2:], X_test, y_test)):
        if len(X) != len(y):
            raise ValueError(
                f"FashionMNIST files {images} and {labels} hold {len(X)} images "
                f"but {len(y)} labels; they do not match the official release"
            )
        if len(y) and y.max() >= n_classes:
            i = int(np.argmax(y >= n_classes))
            raise _damaged_idx(
                labels,
                f"label {y[i]} at position {i}; the labels are 0 to {n_classes - 1}, one per class",
            )
    return ImageDataset(
        "fashionmnist",
        X_train[:, None],
        y_train.astype(np.int64),
        X_test[:, None],
        y_test.astype(np.int64),
        list(_FASHIONMNIST_CLASSES),
        _NORMALIZE["fashionmnist"],
    )


def _cifar(root: Path, download: bool, n_classes: int) -> ImageDataset:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, name, title = (
        (CIFAR10, "cifar10", "CIFAR-10") if n_classes == 10 else (CIFAR100, "cifar100", "CIFAR-100")
    )
    base = root / cls.base_folder
    files = [base / f for f, _ in cls.train_list + cls.test_list] + [base / cls.meta["filename"]]
    if not download and not all(f.exists() for f in files):
        raise _missing(title, root, files)
    by_hand = (
        f"extract {cls.filename} (from {cls.url}) in {root}, which gives {base} "
        f"holding {', '.join(f.name for f in files)}."
    )
    try:
        with _network_errors(title, cls.url, by_hand):
            train, test = [cls(str(root), train=t, download=download) for t in (True, False)]
    except RuntimeError as exc:  # torchvision: "not found or corrupted"
        if all(f.exists() for f in files):
            raise _corrupted(title, root, files, exc) from exc
        raise

    def arrays(part):  # torchvision holds (n, H, W, C) images
        X = np.ascontiguousarray(part.data.transpose(0, 3, 1, 2), dtype=np.uint8)
        return X, np.asarray(part.targets, dtype=np.int64)

    (Xtr, ytr), (Xte, yte) = arrays(train), arrays(test)
    return ImageDataset(name, Xtr, ytr, Xte, yte, list(train.classes), _NORMALIZE[name])


def _svhn(root: Path, download: bool) -> ImageDataset:
    from torchvision.datasets import SVHN

    files = [root / SVHN.split_list[split][1] for split in ("train", "test")]
    if not download and not all(f.exists() for f in files):
        raise _missing("SVHN", root, files)
    urls = [SVHN.split_list[split][0] for split in ("train", "test")]
    by_hand = f"{' and '.join(str(f) for f in files)} (from {' and '.join(urls)})."
    try:
        with _network_errors("SVHN", urls[0], by_hand):
            train, test = [SVHN(str(root), split=s, download=download) for s in ("train", "test")]
    except RuntimeError as exc:
        if all(f.exists() for f in files):
            raise _corrupted("SVHN", root, files, exc) from exc
        raise

    def arrays(part):  # torchvision maps the digit 0, stored as label 10, to 0
        X = np.ascontiguousarray(part.data, dtype=np.uint8)
        return X, np.asarray(part.labels, dtype=np.int64).reshape(-1)

    (Xtr, ytr), (Xte, yte) = arrays(train), arrays(test)
    return ImageDataset("svhn", Xtr, ytr, Xte, yte, [str(i) for i in range(10)], _NORMALIZE["svhn"])


def _digits() -> ImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(
        X, y.astype(np.int64), test_size=0.3, random_state=0, stratify=y
    )
    return ImageDataset("digits", Xtr, ytr, Xte, yte, [str(i) for i in range(10)], "auto")


def imbalance(
    ds: ImageDataset, classes: tuple[int, ...] = (0, 2, 4, 6, 8), keep: int = 500
) -> ImageDataset:
    """The imbalanced pool of the paper's CIFAR-10 experiment (Section 4.3): the training
    images of ``classes`` cut to their first ``keep`` (in file order), the test set whole.

    The defaults are the authors' split (MoBYv2AL's ``load_dataset.py``, ``cifar10im``:
    counts ``[500, 5000] * 5`` over classes 0-9, each class's first images kept), a pool
    of 5 x 500 + 5 x 5000 = 27,500 images.

    Parameters
    ----------
    ds : ImageDataset
        The balanced dataset.
    classes : tuple of int, default=(0, 2, 4, 6, 8)
        The classes whose training images are cut.
    keep : int, default=500
        Training images kept of each class in ``classes``.

    Returns
    -------
    ImageDataset
        Named ``"<name>-imbalanced"``.

    Examples
    --------
    >>> ds = imbalance(load_dataset("digits"), classes=(0,), keep=10)
    >>> ds.name, int((ds.y_train == 0).sum()), len(ds.X_test) == len(load_dataset("digits").X_test)
    ('digits-imbalanced', 10, True)
    """
    idx = []
    for c in np.unique(ds.y_train):
        members = np.flatnonzero(ds.y_train == c)
        if c in classes:
            members = members[:keep]
        idx.append(members)
    idx = np.sort(np.concatenate(idx))
    return ImageDataset(
        f"{ds.name}-imbalanced",
        ds.X_train[idx],
        ds.y_train[idx],
        ds.X_test,
        ds.y_test,
        ds.classes,
        ds.normalize,
    )


#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "fashionmnist", "cifar10", "cifar100", "svhn", "cifar10-imbalanced")


def load_dataset(
    name: str, root: str | os.PathLike | None = None, download: bool = False
) -> ImageDataset:
    """Load one of the paper's datasets (or the embedded digits).

    Parameters
    ----------
    name : str
        One of ``"digits"`` (scikit-learn's 8x8 digits, no files needed),
        ``"fashionmnist"``, ``"cifar10"``, ``"cifar100"``, ``"svhn"`` and
        ``"cifar10-imbalanced"`` (CIFAR-10 with the even classes 0, 2, 4, 6, 8 cut to
        their first 500 training images, a pool of 27,500, as in the authors' code).
    root : path, optional
        Folder holding the files (see the module docstring for the layouts read);
        default ``$SKMOBY_DATA`` or ``~/.cache/skmoby``. A leading ``~`` is expanded.
    download : bool, default=False
        Fetch missing files (with torchvision's downloader).

    Returns
    -------
    ImageDataset

    Raises
    ------
    ValueError
        For an unknown name, and for files that differ from the official release
        (damaged or cut short): :class:`DatasetCorruptedError` where fetching the
        files again would fix them.
    TypeError
        For a ``root`` that is not a path.
    DatasetNotFoundError
        A ``FileNotFoundError``, when files are missing and ``download`` is False; the
        message lists where to put them.
    ConnectionError
        When ``download`` is True and the files cannot be fetched (no network, host not
        found); the message says which files to put where by hand.

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
    if root is None:
        root = os.environ.get("SKMOBY_DATA") or Path.home() / ".cache" / "skmoby"
    if not isinstance(root, str | os.PathLike):
        raise TypeError(f"root must be a path (str or os.PathLike) or None; got {root!r}")
    root = Path(root).expanduser()  # "~/data", as torchvision accepts it
    if name == "fashionmnist":
        return _fashionmnist(root, download)
    if name == "cifar10":
        return _cifar(root, download, 10)
    if name == "cifar100":
        return _cifar(root, download, 100)
    if name == "svhn":
        return _svhn(root, download)
    return imbalance(_cifar(root, download, 10))
