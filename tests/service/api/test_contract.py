"""The contract in process: what the OpenAPI document allows is what the service accepts, rule by rule, where a rule
used to live only in a validator (schemathesis' positive and negative checks found each). The schema side is checked
with a JSON Schema validator on the served document, the service side by sending the same body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from service.api.examples import EXAMPLE_DIGIT_PNG_BASE64, EXAMPLE_PIXELS
from service.app import create_app
from service.settings import Settings
from tests.support import assert_error, build_checkpoints, example_digit, png_bytes

IMAGE = {"image": EXAMPLE_DIGIT_PNG_BASE64}
PIXELS = {"pixels": EXAMPLE_PIXELS, "scale": "0-255"}
DIGIT_PNG = png_bytes(example_digit())
RECONSTRUCT = "/v1/models/ae-2/reconstruct"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    models_dir: Path = build_checkpoints(tmp_path_factory.mktemp("contract") / "models")
    with TestClient(create_app(Settings(models_dir=models_dir))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def allows(spec: dict[str, Any], schema: str, body: Any) -> bool:
    """Whether the served document's `schema` (a component) allows `body`."""
    bundle = {"$defs": spec["components"]["schemas"], "$ref": f"#/$defs/{schema}"}
    text = json.dumps(bundle).replace("#/components/schemas/", "#/$defs/")
    return bool(jsonschema_rs.validator_for(json.loads(text)).is_valid(body))


# (schema, path, body, whether both the schema and the service take it)
BODIES = [
    ("EncodeRequest", "/v1/models/ae-2/encode", IMAGE, True),
    ("EncodeRequest", "/v1/models/ae-2/encode", {**IMAGE, "images": [IMAGE]}, False),  # a batch goes to /batch
    ("EncodeRequest", "/v1/models/ae-2/encode", {**IMAGE, **PIXELS}, False),
    ("EncodeRequest", "/v1/models/ae-2/encode", {"pixels": EXAMPLE_PIXELS}, False),  # scale goes with pixels
    ("EncodeRequest", "/v1/models/ae-2/encode", {**IMAGE, "scale": "0-1"}, False),
    ("EncodeRequest", "/v1/models/ae-2/encode", {"pixels": EXAMPLE_PIXELS, "scale": "0-1"}, False),  # 0-255 values
    ("EncodeBatchRequest", "/v1/models/ae-2/encode/batch", {"images": [IMAGE, PIXELS]}, True),
    ("EncodeBatchRequest", "/v1/models/ae-2/encode/batch", {"images": [{**IMAGE, **PIXELS}]}, False),
    ("EncodeBatchRequest", "/v1/models/ae-2/encode/batch", {"images": [IMAGE], "image": None}, False),
    ("DecodeRequest", "/v1/models/ae-2/decode", {"latent": [0.5, 1], "latents": [[0, 0]]}, False),
    ("DecodeRequest", "/v1/models/ae-2/decode", {"latent": [0.5, 1]}, True),
    ("DecodeBatchRequest", "/v1/models/ae-2/decode/batch", {"latents": [[0.5, 1]]}, True),
    ("DecodeBatchRequest", "/v1/models/ae-2/decode/batch", {"latents": [[0.5, 1]], "latent": None}, False),
    ("SampleRequest", "/v1/models/ae-2/sample", {"digit": 3.0, "n": 2.0, "seed": 4.0}, True),  # 3.0 is 3
    ("SampleRequest", "/v1/models/ae-2/sample", {"digit": "3", "n": 2}, False),
    ("SampleRequest", "/v1/models/ae-2/sample", {"digit": 3, "n": 2.5}, False),
    ("SampleRequest", "/v1/models/ae-2/sample", {"digit": 3, "seed": -1}, False),
    ("SampleRequest", "/v1/models/vae-2/sample", {"n": 2}, False),  # a digit, for a VAE too
    ("PriorSampleRequest", "/v1/models/vae-2/prior/sample", {"n": 2, "seed": 0}, True),
    ("PriorSampleRequest", "/v1/models/vae-2/prior/sample", {"n": 2, "digit": 3}, False),
    ("InterpolateRequest", "/v1/models/ae-2/interpolate", {"from": {"digit": 1}, "to": IMAGE}, True),
    ("InterpolateRequest", "/v1/models/ae-2/interpolate", {"from": {"digit": 1, **IMAGE}, "to": IMAGE}, False),
    ("ReconstructRequest", RECONSTRUCT, {**IMAGE, "corruption": {"seed": 1}}, False),  # noise and/or occlusion
    ("ReconstructRequest", RECONSTRUCT, {**IMAGE, "corruption": {"noise": None, "occlusion": {}}}, True),
    ("ReconstructRequest", RECONSTRUCT, {**IMAGE, "corruption": {"occlusion": {"area": [0.3, 0.1]}}}, True),  # a range
]


@pytest.mark.parametrize(("schema", "path", "body", "valid"), BODIES, ids=range(len(BODIES)))
def test_the_schema_allows_what_the_service_accepts(
    client: TestClient, spec: dict[str, Any], schema: str, path: str, body: Any, valid: bool
) -> None:
    assert allows(spec, schema, body) == valid, f"the schema {'refuses' if valid else 'allows'} {body}"
    response = client.post(path, json=body)
    assert (response.status_code == 200) == valid, f"{path} answered {response.status_code}: {response.text[:300]}"
    if not valid:
        assert response.status_code == 422, response.text[:300]


def test_an_occlusion_rectangle_reaching_past_the_image_is_clipped_to_it(client: TestClient) -> None:
    corruption = {"occlusion": {"rectangle": {"top": 20, "left": 4, "height": 10, "width": 27}}, "seed": 3}
    answer = client.post(RECONSTRUCT, json={**IMAGE, "corruption": corruption})
    assert answer.status_code == 200, answer.text
    applied = answer.json()["corruption"]["occlusion"]
    assert (applied["top"], applied["left"], applied["height"], applied["width"]) == (20, 4, 8, 24), applied


def test_the_multipart_file_is_sent_as_an_image_type_or_octet_stream(client: TestClient, spec: dict[str, Any]) -> None:
    multipart = spec["paths"]["/v1/models/{name}/reconstruct"]["post"]["requestBody"]["content"]["multipart/form-data"]
    declared = [kind.strip() for kind in multipart["encoding"]["file"]["contentType"].split(",")]
    assert {"image/png", "image/jpeg", "application/octet-stream"} <= set(declared), declared
    assert multipart["schema"]["properties"]["corruption"]["$ref"].endswith("/CorruptionSpec")
    assert multipart["encoding"]["corruption"] == {"contentType": "application/json"}
    for kind in ("image/png", "application/octet-stream"):
        sent = client.post(RECONSTRUCT, files={"file": ("digit", DIGIT_PNG, kind)})
        assert sent.status_code == 200, f"{kind}: {sent.text}"
    pdf = client.post(RECONSTRUCT, files={"file": ("a.pdf", b"%PDF-1.4 not an image", "application/pdf")})
    assert_error(pdf, 415, says="sent as application/pdf; send the image as one of image/png")
    mislabelled = client.post(RECONSTRUCT, files={"file": ("digit.jpg", DIGIT_PNG, "image/jpeg")})
    assert_error(mislabelled, 415, says="is a PNG but its Content-Type says image/jpeg")


def test_the_multipart_corruption_is_a_json_part_and_an_empty_one_is_refused(client: TestClient) -> None:
    upload = {"file": ("digit.png", DIGIT_PNG, "image/png")}
    noise = json.dumps({"noise": {"std": 0.5}, "seed": 7})
    with_noise = client.post(RECONSTRUCT, files={**upload, "corruption": (None, noise, "application/json")})
    assert with_noise.status_code == 200 and with_noise.json()["corruption"]["seed"] == 7, with_noise.text
    empty = client.post(RECONSTRUCT, files={**upload, "corruption": (None, "", "application/json")})
    assert_error(empty, 422, says="'corruption' is empty")


def test_v2_inputs_declare_their_datatypes_and_the_binary_header(client: TestClient, spec: dict[str, Any]) -> None:
    declared = spec["components"]["schemas"]["RequestInput"]["properties"]["datatype"]
    assert declared["enum"] == ["UINT8", "FP32"], declared
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]
    headers = [p for p in infer["parameters"] if p["in"] == "header"]
    assert [h["name"] for h in headers] == ["Inference-Header-Content-Length"], headers
    empty = {"inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "", "data": [0] * 784}]}
    refused = client.post("/v2/models/ae-2/infer", json=empty)
    assert refused.status_code == 422 and "UINT8" in refused.json()["error"], refused.text
