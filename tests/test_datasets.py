import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.svhn as tv_svhn

from skmoby.datasets import (
    DATASETS,
    DatasetCorruptedError,
    DatasetNotFoundError,
    imbalance,
    load_dataset,
)

REAL_CHECK_INTEGRITY = tv_cifar.check_integrity


@pytest.fixture(autouse=True)
def accept_fake_files(monkeypatch):
    """torchvision checks CIFAR and SVHN files against the official MD5 sums; the small
    fake files written here only need to exist."""

    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(tv_cifar, "check_integrity", exists)
    monkeypatch.setattr(tv_svhn, "check_integrity", exists)


def _write_idx(path, arr, compress):
    header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}i", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("compress", [True, False])
def test_fashionmnist_from_files(tmp_path, compress):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.RandomState(0)
    Xtr, Xte = rng.randint(0, 256, (30, 28, 28)), rng.randint(0, 256, (10, 28, 28))
    ytr, yte = rng.randint(0, 10, 30), rng.randint(0, 10, 10)
    _write_idx(raw / "train-images-idx3-ubyte", Xtr, compress)
    _write_idx(raw / "train-labels-idx1-ubyte", ytr, compress)
    _write_idx(raw / "t10k-images-idx3-ubyte", Xte, compress)
    _write_idx(raw / "t10k-labels-idx1-ubyte", yte, compress)
    ds = load_dataset("fashionmnist", root=tmp_path)
    assert ds.X_train.shape == (30, 1, 28, 28) and ds.X_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.X_train[:, 0], Xtr)
    np.testing.assert_array_equal(ds.y_test, yte)
    assert len(ds.classes) == 10 and len(ds.normalize[0]) == 1


def _write_cifar(root, n_classes):
    rng = np.random.RandomState(1)
    if n_classes == 10:
        base = root / "cifar-10-batches-py"
        names, key = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels"
    else:
        base = root / "cifar-100-python"
        names, key = ["train", "test"], "fine_labels"
    base.mkdir(parents=True)
    data = {}
    for name in names:
        X = rng.randint(0, 256, (20, 3072)).astype(np.uint8)
        y = list(rng.randint(0, n_classes, 20))
        if n_classes == 10 and name != "test_batch":
            y = [i % 10 for i in range(20)]
        data[name] = (X, y)
        with open(base / name, "wb") as f:
            pickle.dump({"data": X, key: y}, f)
    meta_name, meta_key = (
        ("batches.meta", "label_names") if n_classes == 10 else ("meta", "fine_label_names")
    )
    with open(base / meta_name, "wb") as f:
        pickle.dump({meta_key: [f"class{i}" for i in range(n_classes)]}, f)
    return data


def test_cifar10_and_imbalanced_from_files(tmp_path):
    data = _write_cifar(tmp_path, 10)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.X_train.shape == (100, 3, 32, 32) and ds.X_test.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(ds.X_train[0].reshape(-1), data["data_batch_1"][0][0])
    imb = load_dataset("cifar10-imbalanced", root=tmp_path)
    counts = np.bincount(imb.y_train, minlength=10)
    assert (counts[5:] == 10).all() and (counts[:5] == 10).all()  # fewer than 500 each


def test_imbalanced_cifar10_is_the_authors_split(tmp_path):
    """Even classes 0, 2, 4, 6, 8 keep their first 500 training images (the authors'
    cifar10im: counts [500, 5000] * 5); odd classes and the test set stay whole."""
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.RandomState(3)
    per_class, n_batch = 600, 5
    y_all = rng.permutation(np.repeat(np.arange(10), per_class))
    X_all = rng.randint(0, 256, (len(y_all), 3072)).astype(np.uint8)
    X_all[:, 0], X_all[:, 1] = np.arange(len(y_all)) % 256, np.arange(len(y_all)) // 256
    for i, (Xb, yb) in enumerate(
        zip(np.array_split(X_all, n_batch), np.array_split(y_all, n_batch), strict=True)
    ):
        with open(base / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump({"data": Xb, "labels": list(yb)}, f)
    X_test, y_test = X_all[:50], list(y_all[:50])
    with open(base / "test_batch", "wb") as f:
        pickle.dump({"data": X_test, "labels": y_test}, f)
    with open(base / "batches.meta", "wb") as f:  # torchvision's reader needs the names
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)

    imb = load_dataset("cifar10-imbalanced", root=tmp_path)
    counts = np.bincount(imb.y_train, minlength=10)
    assert counts[0::2].tolist() == [500] * 5 and counts[1::2].tolist() == [per_class] * 5
    assert len(imb.y_train) == 5 * 500 + 5 * per_class
    # The kept images of a reduced class are its first 500 in file order.
    original = X_all[:, 0].astype(int) + 256 * X_all[:, 1].astype(int)
    kept = imb.X_train[:, 0, 0, 0].astype(int) + 256 * imb.X_train[:, 0, 0, 1].astype(int)
    for c in (0, 4):
        np.testing.assert_array_equal(kept[imb.y_train == c], original[y_all == c][:500])
    np.testing.assert_array_equal(imb.y_test, y_test)
    assert imb.name == "cifar10-imbalanced"


def test_imbalance_cuts_the_chosen_classes_to_their_first_images():
    digits = load_dataset("digits")
    imb = imbalance(digits, classes=(1, 7), keep=5)
    for c in range(10):
        first = np.flatnonzero(digits.y_train == c)
        want = first[:5] if c in (1, 7) else first
        np.testing.assert_array_equal(imb.X_train[imb.y_train == c], digits.X_train[want])
    np.testing.assert_array_equal(imb.X_test, digits.X_test)
    np.testing.assert_array_equal(imb.y_test, digits.y_test)
    assert (imb.name, imb.classes, imb.normalize) == (
        "digits-imbalanced",
        digits.classes,
        digits.normalize,
    )


def test_cifar100_from_files(tmp_path):
    _write_cifar(tmp_path, 100)
    ds = load_dataset("cifar100", root=tmp_path)
    assert ds.X_train.shape == (20, 3, 32, 32) and ds.y_train.max() < 100


def test_svhn_from_files(tmp_path):
    from scipy.io import savemat

    rng = np.random.RandomState(2)
    for split in ("train", "test"):
        X = rng.randint(0, 256, (32, 32, 3, 6)).astype(np.uint8)
        y = np.array([[10], [1], [2], [3], [10], [9]])
        savemat(tmp_path / f"{split}_32x32.mat", {"X": X, "y": y})
    ds = load_dataset("svhn", root=tmp_path)
    assert ds.X_train.shape == (6, 3, 32, 32)
    assert ds.y_train.tolist() == [0, 1, 2, 3, 0, 9]


@pytest.mark.parametrize("name", ["fashionmnist", "cifar10", "cifar100", "svhn"])
def test_missing_files_say_where_to_put_them(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="Put them here") as err:
        load_dataset(name, root=tmp_path)
    assert str(tmp_path) in str(err.value) and "download=True" in str(err.value)


@pytest.mark.parametrize(
    ("name", "title", "first"),
    [
        ("fashionmnist", "FashionMNIST", "FashionMNIST/raw/train-images-idx3-ubyte.gz"),
        ("cifar10", "CIFAR-10", "cifar-10-batches-py/data_batch_1"),
        ("svhn", "SVHN", "train_32x32.mat"),
    ],
)
def test_missing_files_error_carries_them_apart_from_the_advice(tmp_path, name, title, first):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, root=tmp_path)
    exc = err.value
    assert exc.dataset == title and exc.root == tmp_path and exc.files[0] == tmp_path / first
    assert "Put them here" in exc.problem and "download=True" not in exc.problem
    advice = "or pass download=True (needs internet) to fetch them."
    assert str(exc) == exc.problem + advice
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is DatasetNotFoundError and str(again) == str(exc)
    assert again.files == exc.files


def test_digits_and_unknown():
    ds = load_dataset("digits")
    assert ds.X_train.dtype == np.float32 and ds.X_train.max() <= 1.0
    assert set(DATASETS) >= {"digits", "fashionmnist", "cifar10", "svhn"}
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_dataset("imagenet")


def _fake_fashionmnist(root, n_train=30, n_test=10, compress=False):
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.RandomState(3)
    arrays = {
        "train-images-idx3-ubyte": rng.randint(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.randint(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.randint(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.randint(0, 10, n_test),
    }
    for name, arr in arrays.items():
        _write_idx(raw / name, arr, compress)
    return raw, arrays


def _listing(root):
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
    )


@pytest.mark.parametrize("compress", [True, False])
def test_fashionmnist_flat_as_downloaded(tmp_path, compress):
    """The four files side by side in the data root, as the official release ships them."""
    raw, arrays = _fake_fashionmnist(tmp_path / "tv", compress=compress)
    for path in raw.iterdir():
        path.rename(tmp_path / path.name)
    ds = load_dataset("fashionmnist", root=tmp_path)
    np.testing.assert_array_equal(ds.X_train[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.classes[0] == "T-shirt/top" and ds.y_train.dtype == np.int64


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_fashionmnist_gz_is_read_without_writing_into_the_data_folder(tmp_path, layout):
    raw, arrays = _fake_fashionmnist(tmp_path / "data", compress=True)
    root = tmp_path / "data"
    if layout == "flat":
        for path in raw.iterdir():
            path.rename(root / path.name)
        raw.parent.joinpath("raw").rmdir()
        raw.parent.rmdir()
    before = _listing(root)
    ds = load_dataset("fashionmnist", root=root)
    assert _listing(root) == before
    np.testing.assert_array_equal(ds.X_test[:, 0], arrays["t10k-images-idx3-ubyte"])
    assert ds.X_train.flags.writeable and ds.y_train.flags.writeable


def test_fashionmnist_missing_files_list_both_layouts(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashionmnist", root=tmp_path)
    text = str(err.value)
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in text
    assert str(tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz") in text
    assert "gzipped or not" in text


def test_fashionmnist_with_fewer_labels_than_images_is_refused(tmp_path):
    raw, _ = _fake_fashionmnist(tmp_path)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(7), compress=False)
    with pytest.raises(ValueError, match="10 images but 7 labels"):
        load_dataset("fashionmnist", root=tmp_path)


@pytest.mark.parametrize("n_classes", [10, 100])
def test_cifar_arrays_and_class_names(tmp_path, n_classes):
    data = _write_cifar(tmp_path, n_classes)
    ds = load_dataset(f"cifar{n_classes}", root=tmp_path)
    test_name = "test_batch" if n_classes == 10 else "test"
    X, y = data[test_name]
    assert ds.X_test.flags.c_contiguous and ds.X_test.dtype == np.uint8
    # CIFAR stores each image as 1024 red, then green, then blue values, row by row
    np.testing.assert_array_equal(ds.X_test.reshape(len(X), -1), X)
    np.testing.assert_array_equal(ds.X_test[:, 1, 0, 0], X[:, 1024])
    np.testing.assert_array_equal(ds.y_test, y)
    assert ds.y_test.dtype == np.int64 and ds.classes[:2] == ["class0", "class1"]


def test_cifar_without_its_meta_file_names_it(tmp_path):
    _write_cifar(tmp_path, 10)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(FileNotFoundError, match=r"batches\.meta"):
        load_dataset("cifar10", root=tmp_path)


def test_files_that_fail_the_checksums_are_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(tv_cifar, "check_integrity", REAL_CHECK_INTEGRITY)
    _write_cifar(tmp_path, 10)
    with pytest.raises(DatasetCorruptedError, match="do not match the official release") as err:
        load_dataset("cifar10", root=tmp_path)
    assert len(err.value.files) == 7 and str(err.value).endswith(
        "Replace them, or delete them and pass download=True."
    )


def test_svhn_that_fails_the_checksums_is_reported(tmp_path, monkeypatch):
    from scipy.io import savemat

    monkeypatch.setattr(tv_svhn, "check_integrity", REAL_CHECK_INTEGRITY)
    for split in ("train", "test"):
        savemat(
            tmp_path / f"{split}_32x32.mat",
            {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [2]])},
        )
    with pytest.raises(ValueError, match=r"SVHN files .* do not match"):
        load_dataset("svhn", root=tmp_path)


def _read_gz_idx(path):
    """Independent reference: an IDX file of unsigned bytes, parsed with NumPy."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}i", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_real_fashionmnist_if_present(tmp_path, layout):
    # A folder with the four published .gz files: $SKMOBY_TEST_FASHIONMNIST, or the
    # shared data folder next to the repository. Read in place (flat), or linked into
    # torchvision's layout.
    src = os.environ.get("SKMOBY_TEST_FASHIONMNIST") or os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "data", "fashion-mnist"
    )
    if not os.path.isdir(src):
        pytest.skip("FashionMNIST files not present")
    raw = root = Path(src).resolve()
    if layout == "torchvision":
        root, raw = tmp_path, tmp_path / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for name in os.listdir(src):
            if name.endswith(".gz"):
                (raw / name).symlink_to(os.path.abspath(os.path.join(src, name)))
    ds = load_dataset("fashionmnist", root=root)
    assert ds.X_train.shape == (60000, 1, 28, 28) and ds.X_test.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    np.testing.assert_array_equal(
        ds.X_train[:, 0], _read_gz_idx(raw / "train-images-idx3-ubyte.gz")
    )
    np.testing.assert_array_equal(ds.y_test, _read_gz_idx(raw / "t10k-labels-idx1-ubyte.gz"))


def test_a_root_with_a_tilde_is_the_home_folder(tmp_path, monkeypatch):
    _fake_fashionmnist(tmp_path / "fm")
    monkeypatch.setenv("HOME", str(tmp_path))
    a = load_dataset("fashionmnist", root="~/fm")
    monkeypatch.setenv("SKMOBY_DATA", "~/fm")
    b = load_dataset("fashionmnist")
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert len(a.X_train) == 30


def test_a_root_that_is_no_path_is_a_type_error():
    with pytest.raises(TypeError, match="root must be a path"):
        load_dataset("fashionmnist", root=3)


@pytest.mark.parametrize("cut", ["gz", "raw"])
def test_a_fashionmnist_file_cut_short_is_named_as_damaged(tmp_path, cut):
    raw, _ = _fake_fashionmnist(tmp_path, compress=cut == "gz")
    name = "train-images-idx3-ubyte" + (".gz" if cut == "gz" else "")
    data = (raw / name).read_bytes()
    (raw / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"FashionMNIST file .*/{name} does not match"):
        load_dataset("fashionmnist", root=tmp_path)


@pytest.mark.parametrize("labels", ["train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"])
def test_a_fashionmnist_label_outside_the_classes_is_refused(tmp_path, labels):
    raw, arrays = _fake_fashionmnist(tmp_path)
    y = arrays[labels].copy()
    y[3] = 200
    _write_idx(raw / labels, y, compress=False)
    with pytest.raises(ValueError, match=rf"{labels}.*label 200.*0 to 9"):
        load_dataset("fashionmnist", root=tmp_path)


@pytest.mark.parametrize("name", ["t10k-labels-idx1-ubyte", "train-images-idx3-ubyte"])
@pytest.mark.parametrize("compress", [True, False])
def test_a_garbage_fashionmnist_file_is_named(tmp_path, name, compress):
    raw, _ = _fake_fashionmnist(tmp_path, compress=compress)
    garbage = np.random.RandomState(0).bytes(5000)
    if compress:
        with gzip.open(raw / (name + ".gz"), "wb") as f:
            f.write(garbage)
    else:
        (raw / name).write_bytes(garbage)
    with pytest.raises(ValueError, match=rf"{name}.* does not match the official release") as err:
        load_dataset("fashionmnist", root=tmp_path)
    exc = err.value
    assert isinstance(exc, DatasetCorruptedError)
    assert exc.files == (raw / (name + ".gz" if compress else name),)
    assert "download=True" not in exc.problem
    assert str(exc) == f"{exc.problem} Replace it, or delete it and pass download=True."


@pytest.fixture
def no_network(monkeypatch):
    """What urllib raises where the host name cannot be resolved (no network)."""
    import socket
    import urllib.error
    import urllib.request

    def urlopen(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


@pytest.mark.parametrize(
    "name, host, expected",
    [
        (
            "fashionmnist",
            "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
            ["FashionMNIST", "train-images-idx3-ubyte.gz", "FashionMNIST/raw"],
        ),
        ("cifar10", "www.cs.toronto.edu", ["CIFAR-10", "cifar-10-batches-py", "data_batch_1"]),
        ("svhn", "ufldl.stanford.edu", ["SVHN", "train_32x32.mat"]),
    ],
)
def test_download_without_network_is_a_connection_error(tmp_path, no_network, name, host, expected):
    with pytest.raises(ConnectionError) as err:
        load_dataset(name, root=tmp_path, download=True)
    text = str(err.value)
    assert host in text and "Name or service not known" in text and "by hand" in text
    assert str(tmp_path) in text
    for word in expected:
        assert word in text, word
    # Nothing half-downloaded is left to be mistaken for a damaged file next time.
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
