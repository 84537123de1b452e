"""The generation routes' answers, byte for byte, in process: `sample` and `interpolate` answer JSON, one PNG (sample:
a grid in rows of 10; interpolate: one row) and `.npy` (one field, named in `X-Array-Field`) exactly as they did
before they went through `answer_format` (the expected hashes were taken from the routes that branched by hand)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.support import build_checkpoints

PNG = {"accept": "image/png"}
NPY = {"accept": "application/x-npy"}
SAMPLE = "/v1/models/{}/sample"
INTERPOLATE = "/v1/models/{}/interpolate"
PATH = {"from": {"digit": 1}, "to": {"latent": [0.5, -0.25]}, "steps": 5}

# (route, model, body, query, headers): the sha256 of the answer's body, and its X-Array-Field
CASES: dict[str, tuple[str, str, dict, str, dict[str, str]]] = {
    "sample json": (SAMPLE, "ae-2", {"digit": 3, "sigma": 0.5, "n": 12, "seed": 7}, "", {}),
    "sample json fields": (SAMPLE, "vae-2", {"digit": 3, "n": 3, "seed": 7}, "?fields=latents,seed", {}),
    "sample json upscaled": (SAMPLE, "ae-2", {"digit": 0, "n": 2, "seed": 1}, "?upscale=2", {}),
    "sample png grid": (SAMPLE, "ae-2", {"digit": 3, "sigma": 0.5, "n": 12, "seed": 7}, "", PNG),
    "sample npy images": (SAMPLE, "ae-2", {"digit": 5, "n": 4, "seed": 2}, "", NPY),
    "sample npy latents": (SAMPLE, "ae-2", {"digit": 5, "n": 4, "seed": 2}, "?fields=latents", NPY),
    "interpolate json": (INTERPOLATE, "ae-2", PATH, "", {}),
    "interpolate json fields": (INTERPOLATE, "vae-2", PATH, "?fields=t,latents", {}),
    "interpolate png row": (INTERPOLATE, "ae-2", PATH, "?upscale=3", PNG),
    "interpolate npy images": (INTERPOLATE, "ae-2", PATH, "", NPY),
    "interpolate npy t": (INTERPOLATE, "ae-2", PATH, "?fields=t", NPY),
    "interpolate npy latents": (INTERPOLATE, "vae-2", PATH, "?fields=latents", NPY),
}
EXPECTED: dict[str, tuple[str, str | None]] = {
    "interpolate json": ("7cc7f62a6cdbcacbb3549df42beaed89ea0f642a91d46867ea8385fbb859d63f", None),
    "interpolate json fields": ("30454ee4034c571b01a4427bcbfdec16d2283ee9a7ed6ab36f81194cab80f7cb", None),
    "interpolate npy images": ("19cfcc81fd181e8b70d3e6ccdf28cbf702900c204d05249796631a1fb5f81d81", "images"),
    "interpolate npy latents": ("98c167a38488c77cadbe42295930572ab46513fd32980efb08a023c315e6911d", "latents"),
    "interpolate npy t": ("6bd739891f63d92df69911f551b5e26e053a56a8e1c8fffdcd61b470dd05512f", "t"),
    "interpolate png row": ("e656760fff1d11b9a24be1bdf0dfac6537c2272503d11df3c56cddb485ad540c", None),
    "sample json": ("c0563e4bd8f88733e8338a1ca01d409e049e0f12ca6820a37b32ec7952d66d51", None),
    "sample json fields": ("48bc2209c5be37e223fd1374bd391a7706f8e8033595fb9060220dc1c66ce312", None),
    "sample json upscaled": ("9a4b487d1622a311b6705acc6f96d011583a3bf81c6e5150540f71278324f469", None),
    "sample npy images": ("24b57cb6d2f8b1a659420801049a0956b4238f841c65863ede74357d20fd6b75", "images"),
    "sample npy latents": ("6b13169099c8b735f1144d9586450012df3f601fed96e1edf5712d6cfb2a3c16", "latents"),
    "sample png grid": ("16c05bdc5b36a9a018429947b84388ec4c9aa1271066baf6397445aeff8b1792", None),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    models_dir: Path = build_checkpoints(tmp_path_factory.mktemp("generation") / "models")
    with TestClient(create_app(Settings(models_dir=models_dir))) as test_client:
        yield test_client


@pytest.mark.parametrize("case", sorted(CASES))
def test_generation_answers_are_unchanged(client: TestClient, case: str) -> None:
    route, model, body, query, headers = CASES[case]
    response = client.post(route.format(model) + query, json=body, headers=headers)
    assert response.status_code == 200, response.text
    got = (hashlib.sha256(response.content).hexdigest(), response.headers.get("x-array-field"))
    assert got == EXPECTED[case], f"{case}: the answer changed (sha256, X-Array-Field) {got}"
