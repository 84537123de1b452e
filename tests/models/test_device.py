"""The device rule that training and the service share (models/device.py)."""

from __future__ import annotations

import pytest
import torch

from models.device import resolve_device


def test_auto_is_cuda_exactly_when_torch_sees_a_gpu() -> None:
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_a_named_device_is_that_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu", ""])
def test_an_unknown_device_is_refused_by_name(name: str) -> None:
    with pytest.raises(ValueError, match=f"unknown device {name!r}"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_refused_with_what_to_use_instead(name: str) -> None:
    with pytest.raises(ValueError, match="torch sees no CUDA GPU here; use cpu or auto"):
        resolve_device(name)
