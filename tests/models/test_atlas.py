"""atlas.json in checkpoints: the held-out digits' codes the explorer maps, covered by the card's sha256 like
every other file, and `add_files`, which adds such a file to an existing checkpoint without touching the rest."""

from __future__ import annotations

import json
import shutil
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
from models.checkpoint_edits import add_files
from tests.support import build_checkpoints

ATLAS_PER_DIGIT = 200  # training.atlas's: what the committed checkpoints carry


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoints(tmp_path_factory.mktemp("atlas") / "models")


def test_an_atlas_is_loaded_and_a_tampered_one_is_refused(models_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "vae-2"
    shutil.copytree(models_dir / "vae-2", folder)
    atlas = {"latent_dim": 2, "source": {"set": "test"}, "labels": [3, 7], "codes": [[0.5, -1.0], [1.5, 2.0]]}
    add_files(folder, {ATLAS_FILE: json.dumps(atlas).encode()})
    assert load_checkpoint(folder).atlas == atlas
    (folder / ATLAS_FILE).write_text(json.dumps({**atlas, "labels": [3, 8]}))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(folder)


def test_an_atlas_of_the_wrong_shape_is_refused(models_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "vae-2"
    shutil.copytree(models_dir / "vae-2", folder)
    bad = {"latent_dim": 2, "source": {}, "labels": [1, 2], "codes": [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]}
    add_files(folder, {ATLAS_FILE: json.dumps(bad).encode()})
    with pytest.raises(CheckpointError, match="as many 'codes' of 2 numbers"):
        load_checkpoint(folder)


def test_add_files_changes_only_the_cards_file_list_and_refuses_a_damaged_checkpoint(
    models_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "ae-6"
    shutil.copytree(models_dir / "ae-6", folder)
    card_before = read_card(folder)
    weights_before = sha256_of(folder / WEIGHTS_FILE)
    add_files(folder, {"extra.json": b"{}\n"})
    card_after = read_card(folder)
    assert card_after["files"] == {**card_before["files"], "extra.json": sha256_of(folder / "extra.json")}
    assert {k: v for k, v in card_after.items() if k != "files"} == {
        k: v for k, v in card_before.items() if k != "files"
    }
    assert sha256_of(folder / WEIGHTS_FILE) == weights_before
    load_checkpoint(folder)
    (folder / WEIGHTS_FILE).write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        add_files(folder, {ATLAS_FILE: b"{}"})
    with pytest.raises(CheckpointError, match="not a file"):
        add_files(folder, {CARD_FILE: b"{}"})


@pytest.mark.parametrize("name", ["ae-2", "ae-6", "vae-2", "vae-6"])
def test_the_committed_checkpoints_carry_an_atlas_of_real_held_out_digits(name: str) -> None:
    checkpoint = load_checkpoint(DEFAULT_CHECKPOINTS_DIR / name)
    atlas = checkpoint.atlas
    assert atlas is not None
    labels = np.array(atlas["labels"])
    assert len(labels) >= 1000 and np.bincount(labels, minlength=10).min() == ATLAS_PER_DIGIT
    assert atlas["source"]["set"] == "test_data" and atlas["source"]["data"]["images"] == 10_000
    # the codes are the model's own: its atlas agrees with its centroids about where each digit lives
    codes = np.array(atlas["codes"])
    centroids = checkpoint.centroids.numpy()
    nearest = np.linalg.norm(codes[:, None, :] - centroids[None], axis=-1).argmin(axis=1)
    assert float((nearest == labels).mean()) > 0.3  # chance is 0.1
