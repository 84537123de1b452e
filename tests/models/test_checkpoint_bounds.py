"""What loading a checkpoint may cost: the card is checked against `CheckpointBounds` before anything is allocated,
every file's size before it is hashed, hashing is bounded in time, and links out of the models folder are refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from models.checkpoint import CARD_FILE, WEIGHTS_FILE, CheckpointError, check_card_bounds, load_checkpoint, read_card
from models.checkpoint_bounds import DEFAULT_BOUNDS, MAX_LATENT_DIM, CheckpointBounds
from models.networks import Architecture, build_model
from tests.support import build_checkpoints

COMMITTED = Path(__file__).resolve().parents[2] / "models" / "checkpoints"


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return build_checkpoints(tmp_path / "models")


def edit_card(folder: Path, **fields: object) -> None:
    card = json.loads((folder / CARD_FILE).read_text())
    card.update(fields)
    (folder / CARD_FILE).write_text(json.dumps(card))


@pytest.mark.parametrize("kind, latent_dim", [("ae", 6), ("vae", 2), ("classifier", None)])
def test_the_parameter_count_is_what_the_network_holds(kind: str, latent_dim: int | None) -> None:
    arch = Architecture(channels=(32, 64, 128), hidden=128)
    network = build_model(kind, latent_dim, arch)
    card = {"kind": kind, "latent_dim": latent_dim, "architecture": arch.to_dict() if latent_dim else None}
    assert check_card_bounds(Path("."), card) == sum(t.numel() for t in network.state_dict().values())


def test_every_committed_checkpoint_is_within_the_default_bounds() -> None:
    folders = [folder for folder in sorted(COMMITTED.iterdir()) if (folder / CARD_FILE).exists()]
    assert folders, "no committed checkpoints"
    largest_file = max(path.stat().st_size for folder in folders for path in folder.iterdir())
    largest_network = max(check_card_bounds(folder, read_card(folder)) for folder in folders)
    print(f"\ncommitted: largest network {largest_network} parameters, largest file {largest_file} bytes")
    assert largest_network * 10 < DEFAULT_BOUNDS.max_parameters and largest_file * 10 < DEFAULT_BOUNDS.max_file_bytes
    assert all((read_card(folder).get("latent_dim") or 0) <= MAX_LATENT_DIM for folder in folders)


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"latent_dim": 10**9}, "over the bound of 784"),
        ({"architecture": {"channels": [4, 8, 8], "hidden": 600_000, "batch_norm": True}}, "1 to 4096 wide"),
        ({"architecture": {"channels": [4, -8, 8], "hidden": 16, "batch_norm": True}}, "1 to 4096 wide"),
        ({"architecture": {"channels": 8, "hidden": 16, "batch_norm": True}}, "cannot build the network it describes"),
        ({"architecture": {"channels": [8, 8, 2048], "hidden": 4096, "batch_norm": True}}, "parameters, over"),
    ],
)
def test_a_card_over_the_bounds_is_refused_at_the_card(models: Path, fields: dict, says: str) -> None:
    edit_card(models / "ae-2", **fields)
    with pytest.raises(CheckpointError, match=says) as refused:
        load_checkpoint(models / "ae-2")
    assert refused.value.path.name == CARD_FILE


def test_a_file_over_the_size_bound_is_refused_before_it_is_read(models: Path) -> None:
    with open(models / "ae-2" / "padding.bin", "wb") as f:
        f.truncate(20 << 30)  # sparse: no disk used; hashing it would take most of a minute
    card = json.loads((models / "ae-2" / CARD_FILE).read_text())
    edit_card(models / "ae-2", files={**card["files"], "padding.bin": "0" * 64})
    with pytest.raises(CheckpointError, match=r"padding\.bin: 21474836480 bytes, over the bound of"):
        load_checkpoint(models / "ae-2")


def test_a_json_file_is_bounded_tighter_than_the_weights(models: Path) -> None:
    """Parsed whole into Python objects, a JSON file costs several times its size: 16 MiB at most."""
    history = models / "ae-2" / "history.json"
    history.write_text(json.dumps([{"epoch": 1, "train_loss": 0.1}] * 600_000))  # 19 MB
    card = json.loads((models / "ae-2" / CARD_FILE).read_text())
    edit_card(
        models / "ae-2", files={**card["files"], "history.json": hashlib.sha256(history.read_bytes()).hexdigest()}
    )
    with pytest.raises(CheckpointError, match=r"history\.json: \d+ bytes, over the bound of 16777216 for this file"):
        load_checkpoint(models / "ae-2")


def test_hashing_is_bounded_in_time(models: Path) -> None:
    with pytest.raises(CheckpointError, match="longer than its time bound"):
        load_checkpoint(models / "ae-2", bounds=CheckpointBounds(read_timeout_s=0.0))
    assert load_checkpoint(models / "ae-2").card["latent_dim"] == 2


def test_links_out_of_the_models_folder_are_refused_but_links_inside_it_are_not(models: Path, tmp_path: Path) -> None:
    shutil.copytree(models / "ae-2", tmp_path / "elsewhere")
    (models / "ae-9").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(CheckpointError, match="a link out of the models folder"):
        load_checkpoint(models / "ae-9")

    shutil.copytree(models / "ae-2", models / "ae-3")
    (models / "ae-3" / WEIGHTS_FILE).unlink()
    (models / "ae-3" / WEIGHTS_FILE).symlink_to(tmp_path / "elsewhere" / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="a link out of the models folder"):
        load_checkpoint(models / "ae-3")
    (models / "ae-3" / WEIGHTS_FILE).unlink()
    (models / "ae-3" / WEIGHTS_FILE).symlink_to(models / "ae-2" / WEIGHTS_FILE)  # shared within the folder: fine
    assert load_checkpoint(models / "ae-3").card["latent_dim"] == 2
    (models / "ae-3" / CARD_FILE).unlink()
    (models / "ae-3" / CARD_FILE).symlink_to(tmp_path / "elsewhere" / CARD_FILE)
    with pytest.raises(CheckpointError, match="a link out of the models folder"):
        load_checkpoint(models / "ae-3")


def test_the_card_itself_is_bounded(models: Path) -> None:
    (models / "ae-2" / CARD_FILE).write_text(json.dumps({"notes": "x" * (2 << 20)}))
    with pytest.raises(CheckpointError, match="over the bound of 1048576 for a card"):
        load_checkpoint(models / "ae-2")
