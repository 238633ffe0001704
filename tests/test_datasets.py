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
