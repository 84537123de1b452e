"""Checkpoint tampering, seen from a real `python -m service`: a damaged or lying checkpoint stops the start with a
message naming the file, or (DIGITAE_SKIP_BAD_CHECKPOINTS=true) is left out while the rest is served.

test_startup.py covers a flipped weights byte, a card lying about latent_dim and skipping a damaged
weights file; these add the other files of a checkpoint, the judge, and skipping a lying card.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from models.checkpoint import CARD_FILE, CENTROIDS_FILE, WEIGHTS_FILE
from tests.support import StartServer, build_checkpoints, run_service


def flip_a_byte(path: Path) -> None:
    """One bit in the middle of the file (tensor data, not the header)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def edit_card(folder: Path, **fields: object) -> None:
    card = json.loads((folder / CARD_FILE).read_text())
    card.update(fields)
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2))


def lie_about_latent_size(folder: Path) -> None:
    edit_card(folder, latent_dim=json.loads((folder / CARD_FILE).read_text())["latent_dim"] + 1)


def nudge_a_centroid(folder: Path) -> None:
    data = json.loads((folder / CENTROIDS_FILE).read_text())
    data["centroids"]["3"][0] += 0.5
    (folder / CENTROIDS_FILE).write_text(json.dumps(data))


TAMPERING: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (what is done to the ae-6 folder, the file the message must name, what else it must say)
    "edited centroids": (nudge_a_centroid, CENTROIDS_FILE, "sha256 mismatch"),
    "card with a nonsense latent_dim": (
        lambda folder: edit_card(folder, latent_dim="six"),
        CARD_FILE,
        "latent_dim is 'six', expected a positive integer",
    ),
    "card that drops its weights' hash": (lambda folder: edit_card(folder, files={}), CARD_FILE, "lists no sha256"),
    "card whose weights do not fit its network": (
        lambda folder: edit_card(folder, architecture={"channels": [4, 8, 16], "hidden": 16, "batch_norm": True}),
        WEIGHTS_FILE,
        "the card's network needs",
    ),
}


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return build_checkpoints(tmp_path / "models")


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_tampered_checkpoint_stops_the_start_naming_the_file(models_dir: Path, case: str) -> None:
    tamper, named_file, also_says = TAMPERING[case]
    tamper(models_dir / "ae-6")
    result = run_service(models_dir)
    assert result.returncode == 1, result.stderr[-2000:]
    message = next(line for line in result.stderr.splitlines() if line.startswith("digitae: cannot start"))
    assert f"ae-6/{named_file}" in message and also_says in message, message
    assert "DIGITAE_SKIP_BAD_CHECKPOINTS=true" in message  # the message says how to start anyway
    assert "Traceback" not in result.stderr


def test_a_tampered_judge_is_refused_too(models_dir: Path) -> None:
    flip_a_byte(models_dir / "classifier" / WEIGHTS_FILE)
    result = run_service(models_dir)
    assert result.returncode == 1
    assert f"classifier/{WEIGHTS_FILE}: sha256 mismatch" in result.stderr, result.stderr[-2000:]


def test_with_skip_bad_checkpoints_the_rest_is_served(models_dir: Path, start_server: StartServer) -> None:
    flip_a_byte(models_dir / "ae-6" / WEIGHTS_FILE)
    lie_about_latent_size(models_dir / "vae-2")
    server = start_server(models_dir, skip_bad_checkpoints="true", admin_key="admin-key-for-tests-0123")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert [model["name"] for model in http.get("/v1/models").json()] == ["ae-2"]
            ready = http.get("/readyz", headers={"Authorization": "Bearer admin-key-for-tests-0123"}).json()
            assert ready["models"] == ["ae-2"]
            assert sorted(ready["skipped"]) == ["ae-6", "vae-2"]
            assert f"ae-6/{WEIGHTS_FILE}: sha256 mismatch" in ready["skipped"]["ae-6"]
            assert f"vae-2/{WEIGHTS_FILE}" in ready["skipped"]["vae-2"]
            refused = http.post("/v1/models/ae-6/decode", json={"latent": [0.0] * 6})
            assert refused.status_code == 404
            assert refused.json()["error"]["message"] == "unknown model 'ae-6'; known models: ae-2"
            assert http.post("/v1/models/ae-2/decode", json={"latent": [0.0, 0.0]}).status_code == 200
    finally:
        server.stop()
    log = server.log()
    assert "WARNING digitae.registry: skipping checkpoint" in log and f"ae-6/{WEIGHTS_FILE}" in log
