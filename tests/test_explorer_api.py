"""What the explorer needs from the rest of digitae: POST /v1/classify, GET /v1/models/{name}/atlas, atlas.json in
checkpoints (written by training, added to old checkpoints by `python -m training atlas`), and the page at GET /."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from service_support import REPO_ROOT, b64, build_checkpoints, example_digit, png_bytes

from models.checkpoint import (
    ATLAS_FILE,
    CARD_FILE,
    DEFAULT_CHECKPOINTS_DIR,
    WEIGHTS_FILE,
    CheckpointError,
    add_files,
    load_checkpoint,
    read_card,
    sha256_of,
)
from service.app import create_app
from service.explorer import STATIC_DIR
from service.registry import StartupError, load_registry
from service.settings import Settings
from training.atlas import ATLAS_PER_DIGIT, add_atlases, write_atlas
from training.data import Digits
from training.train import make_config, train


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_checkpoints(tmp_path_factory.mktemp("explorer-api") / "models")
    # vae-2 gets an atlas: 30 random codes with labels; the others stay as older checkpoints are
    checkpoint = load_checkpoint(root / "vae-2")
    write_atlas(root / "vae-2", checkpoint.model, torch.rand(30, 1, 28, 28), torch.arange(30) % 10, {"set": "test"})
    return root


@pytest.fixture(scope="module")
def client(models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=models_dir))) as test_client:
        yield test_client


DIGIT = b64(png_bytes(example_digit()))


# -- POST /v1/classify -------------------------------------------------------------------------------


def test_classify_one_image_as_json_or_upload(client: TestClient) -> None:
    answer = client.post("/v1/classify", json={"image": DIGIT})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"digit", "confidence", "probabilities"}
    assert len(body["probabilities"]) == 10 and sum(body["probabilities"]) == pytest.approx(1, abs=1e-5)
    assert body["digit"] == int(np.argmax(body["probabilities"]))
    assert body["confidence"] == pytest.approx(max(body["probabilities"]))
    upload = client.post("/v1/classify", files={"file": ("two.png", png_bytes(example_digit()))})
    assert upload.json() == body
    pixels = client.post("/v1/classify", json={"pixels": example_digit().tolist(), "scale": "0-255"})
    assert pixels.json()["digit"] == body["digit"]


def test_classify_a_batch_answers_results_in_order(client: TestClient) -> None:
    blank = b64(png_bytes(np.zeros((28, 28), np.uint8)))
    single = [client.post("/v1/classify", json={"image": image}).json() for image in (DIGIT, blank)]
    batch = client.post("/v1/classify", json={"images": [{"image": DIGIT}, {"image": blank}]})
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert [r["digit"] for r in results] == [r["digit"] for r in single]
    for got, alone in zip(results, single, strict=True):  # batched: the same up to float rounding
        assert got["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-6)


def test_classify_refuses_what_the_other_operations_refuse(client: TestClient) -> None:
    text = client.post("/v1/classify", files={"file": ("notes.txt", b"not an image at all")})
    assert text.status_code == 415 and text.json()["error"]["code"] == "unsupported_media_type"
    empty = client.post("/v1/classify", json={})
    assert empty.status_code == 422 and "give exactly one of" in empty.json()["error"]["message"]
    too_many = client.post("/v1/classify", json={"images": [{"image": DIGIT}] * 65})
    assert too_many.status_code == 422 and "max_batch" in too_many.text.lower()
    wrong_type = client.post("/v1/classify", content=b"x", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415


def test_classify_without_a_classifier_is_a_clear_404(tmp_path: Path) -> None:
    root = build_checkpoints(tmp_path / "models", models=(("ae-2", "ae", 2),), judge=False)
    with TestClient(create_app(Settings(models_dir=root))) as client:
        answer = client.post("/v1/classify", json={"image": DIGIT})
    assert answer.status_code == 404
    assert "no digit classifier" in answer.json()["error"]["message"]


# -- GET /v1/models/{name}/atlas -----------------------------------------------------------------------


def test_atlas_serves_the_checkpoints_codes_and_labels(client: TestClient, models_dir: Path) -> None:
    answer = client.get("/v1/models/vae-2/atlas")
    assert answer.status_code == 200
    atlas = answer.json()
    stored = json.loads((models_dir / "vae-2" / ATLAS_FILE).read_text())
    assert atlas == stored
    assert atlas["latent_dim"] == 2 and atlas["labels"] == [d % 10 for d in range(30)]
    assert len(atlas["codes"]) == len(atlas["labels"]) == 30
    assert all(len(code) == 2 for code in atlas["codes"])


def test_a_checkpoint_without_an_atlas_still_serves_and_its_atlas_is_a_clear_404(client: TestClient) -> None:
    assert client.post("/v1/models/ae-2/decode", json={"latent": [0.0, 0.0]}).status_code == 200
    answer = client.get("/v1/models/ae-2/atlas")
    assert answer.status_code == 404
    assert "python -m training atlas" in answer.json()["error"]["message"]
    assert client.get("/v1/models/nope/atlas").status_code == 404


def test_the_new_operations_are_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    classify = schema["paths"]["/v1/classify"]["post"]
    assert "multipart/form-data" in classify["requestBody"]["content"]
    assert {"200", "415", "422"} <= set(classify["responses"])
    atlas = schema["paths"]["/v1/models/{name}/atlas"]["get"]
    assert "held-out" in atlas["description"] and "404" in atlas["responses"]
    assert "ClassifyRequest" in schema["components"]["schemas"]
    assert "](/)" in schema["info"]["description"]  # /docs links to the explorer


# -- atlas.json in checkpoints ---------------------------------------------------------------------------


def test_a_tampered_atlas_is_refused_like_any_checkpoint_file(models_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(models_dir / "vae-2", copy / "vae-2")
    atlas = copy / "vae-2" / ATLAS_FILE
    atlas.write_text(atlas.read_text().replace('"labels":[0', '"labels":[1'))
    with pytest.raises(StartupError, match=r"atlas\.json: sha256 mismatch"):
        load_registry(copy, torch.device("cpu"), skip_bad=False)


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
    assert np.array(atlas["codes"]) == pytest.approx(encode(checkpoint.model, images[keep]).numpy(), abs=2e-3)


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


# -- the page ---------------------------------------------------------------------------------------------


def test_the_page_and_its_assets_are_served_and_packaged(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in page.text
    for asset in ("main.js", "api.js", "map.js", "pad.js", "style.css", "favicon.svg", "examples/7.png"):
        answer = client.get(f"/explorer/{asset}")
        assert answer.status_code == 200, asset
    assert client.get("/explorer/main.js").headers["content-type"].startswith("text/javascript")
    # nothing from a CDN: every URL the page loads is its own
    for path in STATIC_DIR.glob("*.*"):
        text = path.read_text(errors="ignore")
        assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text, path
    package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"static/*", "static/examples/*"} <= set(package_data["service"])
