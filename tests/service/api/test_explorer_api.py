"""What the explorer needs from the rest of digitae: POST /v1/classify, GET /v1/models/{name}/atlas, atlas.json in
checkpoints (written by training, added to old checkpoints by `python -m training atlas`), and the page at GET /."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from models.checkpoint import (
    ATLAS_FILE,
    JUDGE_NAME,
    load_checkpoint,
)
from service.api.explorer import STATIC_DIR
from service.app import create_app
from service.settings import Settings
from tests.support import REPO_ROOT, b64, build_checkpoints, example_digit, png_bytes
from training.atlas import write_atlas


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_checkpoints(tmp_path_factory.mktemp("explorer-api") / "models")
    # vae-2 gets an atlas: 30 random codes with labels; the others stay as older checkpoints are
    checkpoint = load_checkpoint(root / "vae-2")
    write_atlas(root / "vae-2", checkpoint.network, torch.rand(30, 1, 28, 28), torch.arange(30) % 10, {"set": "test"})
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
    assert answer.headers["x-model-name"] == JUDGE_NAME, "the judge names itself, as the other models do"
    assert answer.headers["x-model-version"], "and its version"
    upload = client.post("/v1/classify", files={"file": ("two.png", png_bytes(example_digit()))})
    assert upload.json() == body
    listed = client.post("/v1/classify?fields=digit&fields=confidence", json={"image": DIGIT})
    assert set(listed.json()) == {"digit", "confidence"}, "a list sent as generated clients do: fields=a&fields=b"
    pixels = client.post("/v1/classify", json={"pixels": example_digit().tolist(), "scale": "0-255"})
    assert pixels.json()["digit"] == body["digit"]


def test_classify_a_batch_answers_results_in_order(client: TestClient) -> None:
    blank = b64(png_bytes(np.zeros((28, 28), np.uint8)))
    single = [client.post("/v1/classify", json={"image": image}).json() for image in (DIGIT, blank)]
    batch = client.post("/v1/classify/batch", json={"images": [{"image": DIGIT}, {"image": blank}]})
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
    too_many = client.post("/v1/classify/batch", json={"images": [{"image": DIGIT}] * 65})
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
    assert {"api/static/*", "api/static/examples/*"} <= set(package_data["service"])
