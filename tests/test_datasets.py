import gzip
import pickle
import struct

import numpy as np
import pytest

from skmoby.datasets import DATASETS, load_dataset


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
    for i, (Xb, yb) in enumerate(zip(np.array_split(X_all, n_batch),
                                     np.array_split(y_all, n_batch), strict=True)):
        with open(base / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump({"data": Xb, "labels": list(yb)}, f)
    X_test, y_test = X_all[:50], list(y_all[:50])
    with open(base / "test_batch", "wb") as f:
        pickle.dump({"data": X_test, "labels": y_test}, f)

    imb = load_dataset("cifar10-imbalanced", root=tmp_path)
    counts = np.bincount(imb.y_train, minlength=10)
    assert counts[0::2].tolist() == [500] * 5 and counts[1::2].tolist() == [per_class] * 5
    assert len(imb.y_train) == 5 * 500 + 5 * per_class
    # The kept images of a reduced class are its first 500 in file order.
    original = X_all[:, 0].astype(int) + 256 * X_all[:, 1].astype(int)
    kept = imb.X_train[:, 0, 0, 0].astype(int) + 256 * imb.X_train[:, 0, 0, 1].astype(int)
    for c in (0, 4):
        np.testing.assert_array_equal(kept[imb.y_train == c],
                                      original[y_all == c][:500])
    np.testing.assert_array_equal(imb.y_test, y_test)
    assert imb.name == "cifar10-imbalanced"


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


def test_digits_and_unknown():
    ds = load_dataset("digits")
    assert ds.X_train.dtype == np.float32 and ds.X_train.max() <= 1.0
    assert set(DATASETS) >= {"digits", "fashionmnist", "cifar10", "svhn"}
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_dataset("imagenet")


def test_real_fashionmnist_if_present():
    import os
    import shutil
    import tempfile

    src = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "fashion-mnist")
    if not os.path.isdir(src):
        pytest.skip("FashionMNIST files not present")
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "FashionMNIST", "raw")
        shutil.copytree(src, raw)
        ds = load_dataset("fashionmnist", root=tmp)
    assert ds.X_train.shape == (60000, 1, 28, 28) and ds.X_test.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
