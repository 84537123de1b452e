"""A trained checkpoint loads back bit-exact; a damaged or mismatched one is refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from models.checkpoint import (
    CARD_FILE,
    CENTROIDS_FILE,
    HISTORY_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
)
from models.storage import atomic_torch_save, atomic_write_bytes, sha256_of
from training.train import TrainResult, make_config, train


@pytest.fixture(scope="module")
def trained(tiny_digits, tmp_path_factory) -> TrainResult:
    config = make_config("vae", latent_dim=2, channels=(4, 8, 8), hidden=16, epochs=2)
    return train(config, tiny_digits, tmp_path_factory.mktemp("models"), test_data=tiny_digits, verbose=False)


@pytest.fixture
def copy(trained: TrainResult, tmp_path: Path) -> Path:
    """A private copy of the trained checkpoint for a test to damage."""
    return Path(shutil.copytree(trained.path, tmp_path / trained.path.name))


def _edit_card(folder: Path, **changes) -> None:
    card = json.loads((folder / CARD_FILE).read_text())
    card.update(changes)
    (folder / CARD_FILE).write_text(json.dumps(card))


def test_save_then_load_is_bit_exact(trained: TrainResult) -> None:
    loaded = load_checkpoint(trained.path)
    saved_state, loaded_state = trained.model.state_dict(), loaded.network.state_dict()
    assert saved_state.keys() == loaded_state.keys()
    for key, tensor in saved_state.items():
        assert torch.equal(tensor, loaded_state[key]), key
    assert torch.equal(loaded.centroids, trained.centroids.means)
    assert torch.equal(loaded.spread, trained.centroids.spread)
    assert loaded.history == trained.history and [r["epoch"] for r in loaded.history] == [1, 2]
    assert loaded.kind == "vae" and loaded.latent_dim == 2 and not loaded.network.training
    trained.model.eval()
    images = torch.rand((3, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.network(images)[0], trained.model(images)[0])


def test_card_records_provenance_split_config_and_metrics(trained: TrainResult) -> None:
    card = load_checkpoint(trained.path).card
    assert card["name"] == "vae-2" and card["architecture"] == {"channels": [4, 8, 8], "hidden": 16, "batch_norm": True}
    assert set(card["versions"]) == {"python", "torch", "numpy", "safetensors"}
    assert card["data"]["files"][0]["sha256"] == card["test_data"]["files"][0]["sha256"]
    assert card["split"] == {
        "seed": 0,
        "val_fraction": 0.1,
        "test_fraction": 0.1,
        "sizes": {"train": 160, "validation": 20, "test": 20},
    }
    assert card["config"]["epochs"] == 2 and card["config"]["channels"] == [4, 8, 8]
    assert card["epochs_run"] == 2 and 1 <= card["best_epoch"] <= 2 and card["wall_time_s"] > 0
    assert set(card["metrics"]) == {"validation", "test_split", "heldout"}
    heldout = card["metrics"]["heldout"]
    assert heldout["images"] == 200
    assert set(heldout) >= {"mse", "bce", "recon", "kl", "elbo", "nearest_centroid_accuracy"}
    assert heldout["elbo"] == pytest.approx(-(heldout["recon"] + heldout["kl"]))
    assert card["files"][WEIGHTS_FILE] == sha256_of(trained.path / WEIGHTS_FILE)
    assert "weights_sha256" not in card  # `files` holds it; older cards carry a copy, which loading ignores
    assert set(card["files"]) == {WEIGHTS_FILE, CENTROIDS_FILE, HISTORY_FILE, "atlas.json"}


def test_a_changed_byte_in_the_weights_is_refused(copy: Path) -> None:
    weights = copy / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one bit of one float
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch") as caught:
        load_checkpoint(copy)
    assert caught.value.path == weights and WEIGHTS_FILE in str(caught.value)


@pytest.mark.parametrize("rehash", [False, True], ids=["as-is", "card-rehashed"])
def test_a_truncated_weights_file_is_refused(copy: Path, rehash: bool) -> None:
    weights = copy / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-100])
    if rehash:  # even with a matching hash, the file itself must parse
        digest = sha256_of(weights)
        card = json.loads((copy / CARD_FILE).read_text())
        _edit_card(copy, files={**card["files"], WEIGHTS_FILE: digest})
    with pytest.raises(CheckpointError, match="not a readable safetensors" if rehash else "sha256 mismatch") as caught:
        load_checkpoint(copy)
    assert caught.value.path == weights


@pytest.mark.parametrize(
    "changes",
    [{"latent_dim": 3}, {"architecture": {"channels": [8, 16, 32], "hidden": 16, "batch_norm": True}}],
    ids=["latent_dim", "channels"],
)
def test_a_card_that_disagrees_with_the_weights_is_refused(copy: Path, changes: dict) -> None:
    _edit_card(copy, **changes)
    with pytest.raises(CheckpointError, match="has shape") as caught:
        load_checkpoint(copy)
    assert caught.value.path == copy / WEIGHTS_FILE


def test_a_damaged_card_or_missing_centroids_are_refused(copy: Path) -> None:
    (copy / CENTROIDS_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing") as caught:
        load_checkpoint(copy)
    assert caught.value.path == copy / CENTROIDS_FILE
    (copy / CARD_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON") as caught:
        load_checkpoint(copy)
    assert caught.value.path == copy / CARD_FILE


def test_retraining_replaces_the_folder_whole_and_leaves_no_debris(copy: Path, tiny_digits) -> None:
    out = copy.parent
    config = make_config("vae", latent_dim=2, channels=(4, 8, 8), hidden=16, epochs=1, seed=1)
    again = train(config, tiny_digits, out, verbose=False)
    assert load_checkpoint(again.path).card["config"]["seed"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["vae-2"]  # no staging, old or resume files left
    assert list_checkpoints(out) == [again.path]


def test_an_older_card_with_weights_sha256_still_loads(copy: Path) -> None:
    """Cards written before `files` became the one place for the weights' hash also carry `weights_sha256`."""
    digest = json.loads((copy / CARD_FILE).read_text())["files"][WEIGHTS_FILE]
    _edit_card(copy, weights_sha256=digest)
    assert load_checkpoint(copy).card["weights_sha256"] == digest


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "state.pt"
    atomic_write_bytes(target, b"old")
    with pytest.raises(Exception, match=r"(?i)pickle"):
        atomic_torch_save(target, lambda: None)  # a lambda cannot be pickled: torch.save fails half-way
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    atomic_torch_save(target, {"epoch": 3})
    assert torch.load(target, weights_only=True) == {"epoch": 3}
