"""The registry: a damaged checkpoint is named (or skipped when so configured); an empty folder is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.checkpoint import WEIGHTS_FILE
from service.catalog.registry import StartupError, load_registry
from tests.support import build_checkpoints


def test_a_damaged_checkpoint_is_named_or_skipped(tmp_path: Path) -> None:
    root = build_checkpoints(tmp_path / "models")
    weights = root / "ae-6" / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(StartupError, match=r"ae-6/weights\.safetensors.*sha256"):
        load_registry(root, torch.device("cpu"), skip_bad=False)
    registry = load_registry(root, torch.device("cpu"), skip_bad=True)
    assert list(registry.models) == ["ae-2", "vae-2"]
    assert "weights.safetensors" in registry.skipped["ae-6"]


def test_a_folder_without_a_card_or_models_is_refused(tmp_path: Path) -> None:
    (tmp_path / "stray").mkdir()
    with pytest.raises(StartupError, match=r"stray/card\.json: missing"):
        load_registry(tmp_path, torch.device("cpu"), skip_bad=False)
    with pytest.raises(StartupError, match="nothing to serve"):
        load_registry(tmp_path, torch.device("cpu"), skip_bad=True)
    with pytest.raises(StartupError, match="does not exist"):
        load_registry(tmp_path / "absent", torch.device("cpu"), skip_bad=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_device_torch_does_not_have_stops_the_start_naming_the_setting(tmp_path: Path) -> None:
    root = build_checkpoints(tmp_path / "models")
    with pytest.raises(StartupError, match=r"DIGITAE_DEVICE: .*no CUDA GPU here; use cpu or auto"):
        load_registry(root, "cuda", skip_bad=False)
    assert list(load_registry(root, "auto", skip_bad=False).models) == ["ae-2", "ae-6", "vae-2"]
