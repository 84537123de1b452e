"""The Open Inference Protocol on /v2, driven by tritonclient (its HTTP client, binary tensors by default) and raw
HTTP against a real `python -m service`: health, metadata, every output of every model in JSON and binary tensors,
the answers equal to /v1's, the bad inputs answered in the protocol's error shape with /v1's statuses, the caps."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from models.checkpoint import JUDGE_NAME
from tests.support import ServerProcess, StartServer

MAX_BATCH, MAX_BULK = 8, 300
pytestmark = pytest.mark.server_settings(max_batch=MAX_BATCH, max_bulk=MAX_BULK, max_concurrent_bulk=1)
NPY = "application/x-npy"
TOLERANCE = 1e-5
AE_ENCODE = ["latent", "nearest_digit", "centroid_distances"]
AE_RECONSTRUCT = ["reconstruction", "mse", "bce"]
VAE_EXTRA = ["logvar", "kl", "elbo"]


@pytest.fixture(scope="module")
def triton_client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=60)


def digits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def npy_call(client: httpx.Client, path: str, array: np.ndarray, fields: str) -> np.ndarray:
    buffer = io.BytesIO()
    np.save(buffer, array)
    response = client.post(
        path, params={"fields": fields}, content=buffer.getvalue(), headers={"Content-Type": NPY, "Accept": NPY}
    )
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


def triton_infer(
    client: triton.InferenceServerClient,
    model: str,
    array: np.ndarray,
    outputs: list[str] | None,
    binary: bool = True,
    input_name: str = "images",
    version: str = "",
) -> triton.InferResult:
    tensor = triton.InferInput(input_name, list(array.shape), "UINT8" if array.dtype == np.uint8 else "FP32")
    tensor.set_data_from_numpy(array, binary_data=binary)
    requested = [triton.InferRequestedOutput(name, binary_data=binary) for name in outputs] if outputs else None
    return client.infer(model, [tensor], outputs=requested, model_version=version)


def error_of(response: httpx.Response, status: int, says: str) -> str:
    """The protocol's error shape: the status, JSON `{"error": "<message>"}` and nothing else, the message saying
    `says`; the request id still in its header."""
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    assert says in body["error"], body["error"]
    assert response.headers["x-request-id"]
    return str(body["error"])


# -- server and models --------------------------------------------------------------------------------------------


def test_health_and_server_metadata(triton_client: triton.InferenceServerClient, client: httpx.Client) -> None:
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    metadata = triton_client.get_server_metadata()
    assert metadata["name"] == "digitae" and "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_lists_every_input_and_output(
    triton_client: triton.InferenceServerClient, client: httpx.Client
) -> None:
    versions = client.get("/readyz").json()["versions"]
    for name, kind_outputs in (("ae-6", AE_ENCODE + AE_RECONSTRUCT), ("vae-2", AE_ENCODE + AE_RECONSTRUCT + VAE_EXTRA)):
        metadata = triton_client.get_model_metadata(name)
        assert metadata["versions"] == [versions[name]]
        inputs = {t["name"]: t for t in metadata["inputs"]}
        assert inputs["images"]["shape"] == [-1, 28, 28] and "UINT8" in inputs["images"]["parameters"]["description"]
        assert inputs["latent"]["shape"] == [-1, int(name[-1])]
        outputs = {t["name"] for t in metadata["outputs"]}
        assert outputs == {*kind_outputs, "images"}
        assert triton_client.is_model_ready(name)
        assert triton_client.is_model_ready(name, model_version=versions[name])
        by_version = client.get(f"/v2/models/{name}/versions/{versions[name]}").json()
        assert by_version == metadata
    judge = triton_client.get_model_metadata(JUDGE_NAME)
    assert [t["name"] for t in judge["outputs"]] == ["digit", "probabilities"] and judge["versions"][0]
    assert not triton_client.is_model_ready("ae-7")
    assert not triton_client.is_model_ready("ae-6", model_version="19700101-000000000000")


# -- answers equal to /v1's ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", ["ae-6", "vae-2"])
def test_every_output_equals_v1(
    triton_client: triton.InferenceServerClient, client: httpx.Client, model: str, binary: bool
) -> None:
    images = digits(5)
    v1 = f"/v1/models/{model}"
    expected = {
        name: npy_call(client, f"{v1}/encode", images, name)
        for name in ["latent", "nearest_digit", "centroid_distances"] + (["logvar"] if model == "vae-2" else [])
    }
    expected["reconstruction"] = npy_call(client, f"{v1}/reconstruct", images, "image")
    loss = npy_call(client, f"{v1}/reconstruct", images, "loss")
    for column, name in enumerate(["mse", "bce", "kl", "elbo"][: loss.shape[1]]):
        expected[name] = loss[:, column]
    result = triton_infer(triton_client, model, images, None, binary)  # no outputs named: every one
    assert {o["name"] for o in result.get_response()["outputs"]} == set(expected)
    for name, want in expected.items():
        got = result.as_numpy(name)
        assert got is not None and got.shape == want.shape, name
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), atol=TOLERANCE, err_msg=name)
    # float 0-1 images are the same digits
    as_float = triton_infer(triton_client, model, (images / 255).astype(np.float32), ["latent"], binary)
    np.testing.assert_allclose(as_float.as_numpy("latent"), expected["latent"], atol=TOLERANCE)
    # decode: the latent input gives images
    latents = expected["latent"]
    decoded = triton_infer(triton_client, model, latents, ["images"], binary, input_name="latent")
    np.testing.assert_allclose(
        decoded.as_numpy("images"), npy_call(client, f"{v1}/decode", latents, "image"), atol=TOLERANCE
    )


def test_judge_equals_classify(triton_client: triton.InferenceServerClient, client: httpx.Client) -> None:
    images = digits(3, seed=1)
    result = triton_infer(triton_client, JUDGE_NAME, images, ["digit", "probabilities"])
    pixels = [{"pixels": image.tolist(), "scale": "0-255"} for image in images]
    v1 = client.post("/v1/classify", json={"images": pixels}).json()["results"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), [r["probabilities"] for r in v1], atol=TOLERANCE)
    assert result.as_numpy("digit").tolist() == [r["digit"] for r in v1]


def test_only_the_outputs_asked_for_are_sent_in_the_form_asked(client: httpx.Client) -> None:
    request = {
        "id": "req-1",
        "inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "UINT8", "data": digits(1).ravel().tolist()}],
        "outputs": [{"name": "nearest_digit"}, {"name": "latent", "parameters": {"binary_data": True}}],
    }
    response = client.post("/v2/models/ae-2/infer", json=request)
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    assert header["id"] == "req-1" and header["model_name"] == "ae-2"
    assert [o["name"] for o in header["outputs"]] == ["nearest_digit", "latent"]
    nearest, latent = header["outputs"]
    assert nearest["datatype"] == "UINT8" and nearest["shape"] == [1] and 0 <= nearest["data"][0] <= 9
    assert latent["parameters"] == {"binary_data_size": 2 * 4} and len(response.content) == length + 8
    assert response.headers["x-model-name"] == "ae-2"


def test_over_a_batch_goes_through_the_bulk_path(
    triton_client: triton.InferenceServerClient, client: httpx.Client
) -> None:
    images = digits(MAX_BULK, seed=2)  # over max_batch: one bulk slot, chunks through the engine's bulk path
    result = triton_infer(triton_client, "ae-6", images, ["latent", "mse"])
    np.testing.assert_allclose(
        result.as_numpy("latent"), npy_call(client, "/v1/models/ae-6/encode", images, "latent"), atol=TOLERANCE
    )
    assert result.as_numpy("mse").shape == (MAX_BULK,)
    metrics = client.get("/metrics").text
    assert 'route="/v2/models/{name}/infer"' in metrics, "requests are counted by the route template"


# -- bad inputs ---------------------------------------------------------------------------------------------------


def test_tritonclient_exception_prints_the_message(triton_client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        triton_infer(triton_client, "ae-6", digits(2)[:, :, :27].copy(), ["latent"])
    assert "images: shape [N, 28, 28]" in str(caught.value) and caught.value.status() == "422"
    with pytest.raises(InferenceServerException) as caught:
        triton_infer(triton_client, "ae-6", digits(1), ["colour"])
    assert "unknown output 'colour'" in str(caught.value) and "latent" in str(caught.value)
    with pytest.raises(InferenceServerException) as caught:
        triton_infer(triton_client, "ae-7", digits(1), None)
    assert "unknown model 'ae-7'" in str(caught.value) and caught.value.status() == "404"


def infer_json(inputs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"inputs": inputs, **extra}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (infer_json([{"name": "images", "shape": [1, 28], "datatype": "UINT8", "data": [0] * 28}]), 422, "shape"),
        (infer_json([{"name": "images", "shape": [1, 28, 28], "datatype": "INT32", "data": [0] * 784}]), 422, "UINT8"),
        (infer_json([{"name": "images", "shape": [1, 28, 28], "datatype": "BYTES", "data": ["a"]}]), 422, "datatype"),
        (infer_json([{"name": "images", "shape": [1, 28, 28], "datatype": "UINT8", "data": [0] * 783}]), 422, "783"),
        (infer_json([{"name": "images", "shape": [1, 28, 28], "datatype": "UINT8", "data": [256] * 784}]), 422, "255"),
        (infer_json([{"name": "images", "shape": [1, 28, 28], "datatype": "FP32", "data": [2.0] * 784}]), 422, "0-1"),
        (
            infer_json([{"name": "images", "shape": [1, 28, 28], "datatype": "UINT8", "data": ["x"] * 784}]),
            422,
            "numbers",
        ),
        (infer_json([{"name": "latent", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}]), 422, "latent_dim"),
        (infer_json([{"name": "pixels", "shape": [1], "datatype": "FP32", "data": [0]}]), 422, "takes one input"),
        (
            infer_json([{"name": "images", "shape": [MAX_BULK + 1, 28, 28], "datatype": "UINT8", "data": [0]}]),
            413,
            "limit",
        ),
        ({"inputs": []}, 422, "inputs"),
        (
            infer_json([{"name": "images", "shape": [12, 28, 28], "datatype": "UINT8", "data": [0] * 12 * 784}]),
            422,
            "a valid request holds",
        ),
    ],
    ids=[
        "shape",
        "dtype",
        "bytes",
        "count",
        "range",
        "float-range",
        "strings",
        "latent-dim",
        "name",
        "rows",
        "empty",
        "json-over-a-batch",
    ],
)
def test_bad_json_requests(client: httpx.Client, body: dict[str, Any], status: int, says: str) -> None:
    error_of(client.post("/v2/models/ae-6/infer", json=body), status, says)


def test_bad_binary_requests(client: httpx.Client) -> None:
    header = json.dumps(
        {
            "inputs": [
                {"name": "images", "shape": [2, 28, 28], "datatype": "UINT8", "parameters": {"binary_data_size": 1568}}
            ]
        }
    ).encode()
    good = header + digits(2).tobytes()
    ok = client.post(
        "/v2/models/ae-6/infer", content=good, headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert ok.status_code == 200 and json.loads(ok.content)["outputs"], ok.text
    short = client.post(
        "/v2/models/ae-6/infer", content=good[:-1], headers={"Inference-Header-Content-Length": str(len(header))}
    )
    error_of(short, 422, "binary data ends")
    length = {"Inference-Header-Content-Length": str(len(header))}
    error_of(client.post("/v2/models/ae-6/infer", content=good + b"x", headers=length), 422, "after the JSON header")
    error_of(
        client.post("/v2/models/ae-6/infer", content=good, headers={"Inference-Header-Content-Length": "x"}),
        422,
        "Inference-Header",
    )


def test_unknown_model_version_and_route(client: httpx.Client) -> None:
    error_of(client.get("/v2/models/ae-7"), 404, "known models: ae-2, ae-6, vae-2, " + JUDGE_NAME)
    error_of(client.get("/v2/models/ae-6/versions/1"), 404, "the version served is")
    error_of(client.post("/v2/models/ae-6/versions/1/infer", json={}), 404, "has no version")
    error_of(client.get("/v2/repository/index"), 404, "no route")


def test_oversized_bodies_are_refused_before_reading(server: ServerProcess) -> None:
    """The binary cap is the bulk cap (max_bulk float32 images); a JSON body keeps the ordinary cap."""
    binary_cap = MAX_BULK * 28 * 28 * 4 + 4096
    with httpx.Client(base_url=server.url) as client:
        too_big = client.post(
            "/v2/models/ae-6/infer", content=b"\0" * (binary_cap + 1), headers={"Inference-Header-Content-Length": "10"}
        )
        error_of(too_big, 413, f"the limit is {binary_cap:,} bytes")
    with httpx.Client(base_url=server.url) as client:
        spaces = b" " * (8 * 1024 * 1024)
        response = client.post("/v2/models/ae-6/infer", content=spaces, headers={"Content-Type": "application/json"})
        error_of(response, 413, "the limit is")


def test_api_keys_guard_v2_but_not_its_health(start_server: StartServer, served_models: Path) -> None:
    key = "v2-test-key-123"
    server = start_server(served_models, api_keys=key)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/health/live").status_code == 200 and client.get("/v2/health/ready").status_code == 200
        error_of(client.get("/v2/models/ae-6"), 401, "missing API key")
        error_of(client.post("/v2/models/ae-6/infer", json={}), 401, "missing API key")
        keyed = triton.InferenceServerClient(server.url.removeprefix("http://"))
        auth = {"Authorization": f"Bearer {key}"}
        tensor = triton.InferInput("images", [1, 28, 28], "UINT8")
        tensor.set_data_from_numpy(digits(1))
        assert keyed.infer("ae-6", [tensor], headers=auth).as_numpy("latent").shape == (1, 6)
        with pytest.raises(InferenceServerException, match="wrong API key"):
            keyed.infer("ae-6", [tensor], headers={"Authorization": "Bearer not-the-key"})


def binary_request(images: np.ndarray, outputs: list[str]) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "shape": list(images.shape),
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": images.nbytes},
                }
            ],
            "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
        }
    ).encode()
    return header + images.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def test_bulk_requests_share_the_bulk_slots_with_npy(client: httpx.Client) -> None:
    """max_concurrent_bulk=1: while a bulk-sized binary body (streamed: no Content-Length) holds the slot, another
    request over max_batch is refused 503 at once, a batch-sized one is served, and the slot comes back."""
    body, headers = binary_request(digits(200), ["latent"])
    started, release = threading.Event(), threading.Event()
    first: list[httpx.Response] = []

    def slow_body() -> Iterator[bytes]:
        yield body[:100]
        started.set()
        release.wait(20)
        yield body[100:]

    def send_slowly() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as other:
            first.append(other.post("/v2/models/ae-6/infer", content=slow_body(), headers=headers))

    sender = threading.Thread(target=send_slowly)
    sender.start()
    try:
        started.wait(10)
        over_a_batch, over_headers = binary_request(digits(MAX_BATCH + 1), ["latent"])
        deadline = time.monotonic() + 10
        while True:
            busy = client.post("/v2/models/ae-6/infer", content=over_a_batch, headers=over_headers)
            if busy.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        error_of(busy, 503, "DIGITAE_MAX_CONCURRENT_BULK")
        assert busy.headers["retry-after"] == "1"
        batch, batch_headers = binary_request(digits(MAX_BATCH), ["latent"])
        assert client.post("/v2/models/ae-6/infer", content=batch, headers=batch_headers).status_code == 200
    finally:
        release.set()
        sender.join(30)
    assert first[0].status_code == 200, first[0].text[:300]
    length = int(first[0].headers["inference-header-content-length"])
    assert json.loads(first[0].content[:length])["outputs"][0]["shape"] == [200, 2 * 3]
    assert client.post("/v2/models/ae-6/infer", content=over_a_batch, headers=over_headers).status_code == 200
