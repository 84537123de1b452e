"""The atlas is written by training (the held-out digits' codes, for the explorer's map) and added to existing
checkpoints by `python -m training atlas` without retraining."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.checkpoint import (
    ATLAS_FILE,
    CARD_FILE,
    DEFAULT_CHECKPOINTS_DIR,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    read_card,
    sha256_of,
)
from tests.support import REPO_ROOT
from training.atlas import ATLAS_PER_DIGIT, add_atlases
from training.data import Digits
from training.train import make_config, train


@pytest.mark.parametrize("name", ["ae-2", "vae-6"])
def test_the_committed_atlases_are_the_models_own_codes_of_the_test_set(name: str, mnist_test_dir: Path) -> None:
    from training.centroids import encode
    from training.data import load_digits

    checkpoint = load_checkpoint(DEFAULT_CHECKPOINTS_DIR / name)
    atlas = checkpoint.atlas
    assert atlas is not None
    test = load_digits(mnist_test_dir)
    keep = np.sort(np.concatenate([np.flatnonzero(test.labels == d)[:ATLAS_PER_DIGIT] for d in range(10)]))
    images, labels = test.tensors()
    assert atlas["labels"] == labels[keep].tolist()
    assert np.array(atlas["codes"]) == pytest.approx(encode(checkpoint.network, images[keep]).numpy(), abs=2e-3)


def test_training_writes_an_atlas_of_held_out_digits(tiny_digits: Digits, tmp_path: Path) -> None:
    config = make_config("ae", latent_dim=2, channels=(4, 8, 8), hidden=16, batch_size=32, epochs=1)
    result = train(config, tiny_digits, tmp_path, verbose=False)
    atlas = load_checkpoint(result.path).atlas
    assert atlas is not None and atlas["source"]["set"] == "validation+test split"
    split = read_card(result.path)["split"]["sizes"]
    assert len(atlas["labels"]) == split["validation"] + split["test"]  # every held-out image (fewer than 200/digit)


def test_the_atlas_command_adds_atlases_without_retraining(tiny_digits: Digits, tiny_npz: Path, tmp_path: Path) -> None:
    config = make_config("ae", latent_dim=2, channels=(4, 8, 8), hidden=16, batch_size=32, epochs=1)
    result = train(config, tiny_digits, tmp_path / "models", verbose=False)
    card = read_card(result.path)
    del card["files"][ATLAS_FILE]  # as a checkpoint from before atlases
    (result.path / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (result.path / ATLAS_FILE).unlink()
    weights = sha256_of(result.path / WEIGHTS_FILE)
    command = [sys.executable, "-m", "training", "atlas", str(tmp_path / "models"), "--test-data", str(tiny_npz)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ae-2: atlas.json written" in done.stdout
    atlas = load_checkpoint(result.path).atlas
    assert atlas is not None and atlas["source"]["set"] == "test_data" and len(atlas["labels"]) == 200
    assert sha256_of(result.path / WEIGHTS_FILE) == weights
    with pytest.raises(CheckpointError, match="held-out digits"):
        add_atlases(tmp_path / "models", None, None)
