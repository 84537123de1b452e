"""The fast path over real HTTP (`python -m service` on 127.0.0.1): raw image bodies, answers trimmed by `fields`,
`.npy` bulk in and out (the whole real test set in one call when it is present), and DIGITAE_WORKERS=auto."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings, usable_cpus
from tests.support import ServerProcess, b64, example_digit, png_bytes, shifted_digits

MAX_UPLOAD = 64 * 1024
DIGIT = example_digit()
DIGIT_PNG = png_bytes(DIGIT)
NPY = "application/x-npy"


pytestmark = pytest.mark.server_settings(max_upload_bytes=MAX_UPLOAD, max_concurrent_bulk=1)


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def error(response: httpx.Response, status: int, says: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert says.lower() in body["message"].lower(), body["message"]
    return body


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def load_npy(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NPY
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def pixels(digit: np.ndarray) -> dict:
    return {"pixels": digit.tolist(), "scale": "0-255"}


def post_npy(client: httpx.Client, path: str, array: np.ndarray, accept: str = NPY) -> httpx.Response:
    return client.post(path, content=npy(array), headers={"Content-Type": NPY, "Accept": accept})


# -- raw image bodies ----------------------------------------------------------------------------------------


def test_a_raw_image_body_answers_like_json_and_multipart(client: httpx.Client) -> None:
    raw = ok(client.post("/v1/models/vae-2/reconstruct", content=DIGIT_PNG, headers={"Content-Type": "image/png"}))
    upload = ok(client.post("/v1/models/vae-2/reconstruct", files={"file": ("d.png", DIGIT_PNG, "image/png")}))
    as_json = ok(client.post("/v1/models/vae-2/reconstruct", json={"image": b64(DIGIT_PNG)}))
    assert raw == upload == as_json
    jpeg = png_bytes(DIGIT, fmt="JPEG", quality=95)
    from_jpeg = ok(client.post("/v1/models/ae-6/encode", content=jpeg, headers={"Content-Type": "image/jpeg"}))
    assert from_jpeg == ok(client.post("/v1/models/ae-6/encode", json={"image": b64(jpeg)}))


def test_a_raw_body_that_is_not_what_it_says_is_415_and_over_the_cap_413(client: httpx.Client) -> None:
    path = "/v1/models/ae-6/encode"
    error(client.post(path, content=DIGIT_PNG, headers={"Content-Type": "image/jpeg"}), 415, "says image/jpeg")
    error(client.post(path, content=b"%PDF-1.4 not an image", headers={"Content-Type": "image/png"}), 415, "PDF")
    error(client.post(path, content=b"", headers={"Content-Type": "image/png"}), 415, "empty")
    error(client.post(path, content=DIGIT_PNG, headers={"Content-Type": "text/plain"}), 415, "image/png")
    big = DIGIT_PNG + b"\0" * MAX_UPLOAD  # a PNG followed by padding: over the image cap, under the body cap
    error(client.post(path, content=big, headers={"Content-Type": "image/png"}), 413, "limit")


# -- fields -----------------------------------------------------------------------------------------------------


def test_fields_trim_every_inference_answer_to_what_was_asked(client: httpx.Client) -> None:
    png = {"Content-Type": "image/png"}
    full = ok(client.post("/v1/models/vae-2/reconstruct", content=DIGIT_PNG, headers=png))
    trimmed = ok(client.post("/v1/models/vae-2/reconstruct?fields=loss,latent", content=DIGIT_PNG, headers=png))
    assert trimmed == {"latent": full["latent"], "loss": full["loss"]}
    encoded = ok(client.post("/v1/models/ae-6/encode?fields=nearest_digit", content=DIGIT_PNG, headers=png))
    assert set(encoded) == {"nearest_digit"}
    batch = {"images": [{"image": b64(png_bytes(d))} for d in shifted_digits(3)]}
    results = ok(client.post("/v1/models/ae-6/encode/batch?fields=latent", json=batch))["results"]
    assert len(results) == 3 and all(set(r) == {"latent"} for r in results)
    sample = {"digit": 3, "n": 4, "seed": 7}
    latents = ok(client.post("/v1/models/ae-2/sample?fields=latents, seed", json=sample))
    assert latents == {k: v for k, v in ok(client.post("/v1/models/ae-2/sample", json=sample)).items()
                       if k in ("latents", "seed")}  # fmt: skip
    path = {"from": {"digit": 1}, "to": {"digit": 7}, "steps": 5}
    assert ok(client.post("/v1/models/ae-2/interpolate?fields=t", json=path)) == {"t": [0.0, 0.25, 0.5, 0.75, 1.0]}
    assert set(ok(client.post("/v1/models/ae-2/decode?fields=image", json={"latent": [0, 0]}))) == {"image"}
    verdict = ok(client.post("/v1/classify", content=DIGIT_PNG, headers=png))
    assert ok(client.post("/v1/classify?fields=digit,confidence", content=DIGIT_PNG, headers=png)) == {
        "digit": verdict["digit"], "confidence": verdict["confidence"]
    }  # fmt: skip
    verdicts = ok(client.post("/v1/classify?fields=digit", json=batch))["results"]
    assert len(verdicts) == 3 and all(set(v) == {"digit"} for v in verdicts)


def test_the_inference_routes_check_their_own_parameters_and_document_them(client: httpx.Client) -> None:
    """`name`, `upscale` and `fields` are read by the routes' dependency, not by FastAPI: the same checks, the same
    error envelope, and the same OpenAPI parameters."""
    latent = {"latent": [0, 0]}
    for query, says in (
        ("upscale=abc", "upscale"),
        ("upscale=0", "from 1 to 64"),
        ("upscale=1.5", "upscale"),
        ("upscale=1_0", "upscale"),
        ("upscale=-2", "upscale"),
    ):
        body = error(client.post(f"/v1/models/ae-2/decode?{query}", json=latent), 422, says)
        assert body["detail"] == [
            {"loc": ["query", "upscale"], "msg": "a whole number from 1 to 64", "type": "value_error"}
        ]
    error(client.post("/v1/models/ae-2/decode?upscale=17", json=latent), 422, "DIGITAE_MAX_UPSCALE")
    error(client.post("/v1/models/ae-2/encode?fields=" + "a" * 513, json={"image": b64(DIGIT_PNG)}), 422, "512")
    body = error(client.post("/v1/models/-ae/encode", json={"image": b64(DIGIT_PNG)}), 422, "name")
    assert body["detail"][0]["loc"] == ["path", "name"]
    error(client.post(f"/v1/models/{'a' * 65}/reconstruct", json={"image": b64(DIGIT_PNG)}), 422, "name")
    assert ok(client.post("/v1/models/ae-2/decode?upscale=2&fields=image", json=latent))["image"]
    schema = client.get("/openapi.json").json()
    reconstruct = {p["name"]: p for p in schema["paths"]["/v1/models/{name}/reconstruct"]["post"]["parameters"]}
    assert reconstruct["name"]["in"] == "path" and "enum" not in reconstruct["name"]["schema"]  # any model's name
    assert set(reconstruct["name"]["examples"]) >= {"ae-2", "ae-6"} and reconstruct["name"]["schema"]["pattern"]
    assert reconstruct["upscale"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 16, "default": 1}
    encode = [p["name"] for p in schema["paths"]["/v1/models/{name}/encode"]["post"]["parameters"]]
    assert encode == ["name", "fields"]


def test_an_unknown_field_is_a_422_naming_the_valid_ones(client: httpx.Client) -> None:
    body = error(
        client.post("/v1/models/ae-6/reconstruct?fields=loss,losses", json={"image": b64(DIGIT_PNG)}), 422, "'losses'"
    )
    assert "image, input, latent, logvar, nearest_digit, loss, corruption" in body["message"]
    assert body["detail"][0]["loc"] == ["query", "fields"]
    error(client.post("/v1/models/ae-2/decode?fields=", json={"latent": [0, 0]}), 422, "at least one of image")
    error(client.post("/v1/models/ae-2/sample?fields=image", json={"digit": 1}), 422, "images, latents")
    error(client.post("/v1/classify?fields=label", json={"image": b64(DIGIT_PNG)}), 422, "digit, confidence")
    error(
        client.post("/v1/models/ae-2/decode?fields=image", json={"latent": [0, 0]}, headers={"Accept": "image/png"}),
        422,
        "image/png",
    )


def test_images_not_asked_for_are_never_encoded(served_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import service.codec.render

    encoded: list[int] = []
    real = service.codec.render.png_base64

    def counting_png_base64(image: np.ndarray, upscale: int = 1) -> str:
        encoded.append(1)
        return real(image, upscale)

    monkeypatch.setattr(service.codec.render, "png_base64", counting_png_base64)
    decoded: list[int] = []
    with TestClient(create_app(Settings(models_dir=served_models))) as app:
        engine = app.app.state.service.engine  # type: ignore[attr-defined]
        real_decode = engine.decode

        async def counting_decode(model: object, latents: list[np.ndarray]) -> list[np.ndarray]:
            decoded.append(len(latents))
            return await real_decode(model, latents)

        engine.decode = counting_decode
        assert app.post("/v1/models/ae-6/reconstruct?fields=loss,latent", json={"image": b64(DIGIT_PNG)}).is_success
        assert app.post("/v1/models/ae-2/sample?fields=latents", json={"digit": 2, "n": 8}).is_success
        assert app.post("/v1/models/ae-2/interpolate?fields=t,latents", json={"from": {"digit": 1}, "to": {"digit": 2}})
        assert encoded == [] and decoded == []
        assert app.post("/v1/models/ae-6/reconstruct?fields=input", json={"image": b64(DIGIT_PNG)}).is_success
        assert encoded == [1]
        schema = app.get("/openapi.json").json()
    for path in [f"/v1/models/{{name}}/{op}" for op in ("encode", "reconstruct", "decode", "sample", "interpolate")]:
        parameters = schema["paths"][path]["post"]["parameters"]
        fields = next(p for p in parameters if p["name"] == "fields")
        assert "This answer's fields:" in fields["description"]
    classify = next(p for p in schema["paths"]["/v1/classify"]["post"]["parameters"] if p["name"] == "fields")
    assert "digit, confidence, probabilities" in classify["description"]
    reconstruct = schema["paths"]["/v1/models/{name}/reconstruct"]["post"]
    assert "image/png" in reconstruct["requestBody"]["content"] and NPY in reconstruct["responses"]["200"]["content"]
    batch = schema["paths"]["/v1/models/{name}/reconstruct/batch"]["post"]
    assert NPY in batch["requestBody"]["content"] and NPY in batch["responses"]["200"]["content"]
    assert "required" not in schema["components"]["schemas"]["ReconstructResult"], "a trimmed answer matches it"


# -- .npy bulk ----------------------------------------------------------------------------------------------------


def test_npy_images_encode_reconstruct_and_decode_like_single_calls(client: httpx.Client) -> None:
    digits = np.stack(shifted_digits(300))
    latents = load_npy(post_npy(client, "/v1/models/ae-6/encode/batch", digits))
    assert latents.shape == (300, 6) and latents.dtype == np.float32
    singles = [
        ok(client.post("/v1/models/ae-6/encode", json={"pixels": d.tolist(), "scale": "0-255"})) for d in digits[:3]
    ]
    np.testing.assert_allclose(latents[:3], [s["latent"] for s in singles], rtol=1e-4, atol=1e-5)
    as_float = load_npy(post_npy(client, "/v1/models/ae-6/encode/batch", (digits / 255).astype(np.float32)))
    np.testing.assert_allclose(as_float, latents, rtol=1e-4, atol=1e-5)
    nearest = load_npy(post_npy(client, "/v1/models/ae-6/encode?fields=nearest_digit", digits))
    assert nearest.shape == (300,) and [int(n) for n in nearest[:3]] == [s["nearest_digit"] for s in singles]

    response = post_npy(client, "/v1/models/vae-2/reconstruct?fields=loss", digits[:5])
    assert response.headers["x-array-columns"] == "mse,bce,kl,elbo"
    single = ok(client.post("/v1/models/vae-2/reconstruct", json={"pixels": digits[0].tolist(), "scale": "0-255"}))
    np.testing.assert_allclose(load_npy(response)[0], list(single["loss"].values()), rtol=1e-4)
    images = load_npy(post_npy(client, "/v1/models/ae-6/reconstruct", digits[:7]))
    assert images.shape == (7, 28, 28) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1

    decoded = load_npy(post_npy(client, "/v1/models/ae-6/decode", latents))
    assert decoded.shape == (300, 28, 28)
    as_json = ok(post_npy(client, "/v1/models/ae-6/decode?fields=image", latents[:2], accept="application/json"))
    assert len(as_json["results"]) == 2 and set(as_json["results"][0]) == {"image"}


def test_a_bulk_answer_is_streamed_and_can_be_json(client: httpx.Client) -> None:
    digits = np.stack(shifted_digits(600))
    with client.stream(
        "POST", "/v1/models/ae-2/encode?fields=latent,nearest_digit", content=npy(digits),
        headers={"Content-Type": NPY, "Accept": "application/json"},
    ) as response:  # fmt: skip
        assert response.status_code == 200
        assert "content-length" not in response.headers and response.headers["transfer-encoding"] == "chunked"
        body = response.read()
    import json

    results = json.loads(body)["results"]
    assert len(results) == 600 and set(results[0]) == {"latent", "nearest_digit"}


@pytest.mark.parametrize(
    ("array", "says"),
    [
        (np.array([{"x": 1}], dtype=object), "plain numbers"),
        (np.zeros((3, 28, 27), np.uint8), "N x 28 x 28"),
        (np.zeros((3, 28, 28), np.int16), "int16"),
        (np.zeros((0, 28, 28), np.uint8), "no rows"),
        (np.full((2, 28, 28), 2.0, np.float32), "0-1"),
        (np.full((2, 28, 28), np.nan, np.float32), "finite"),
    ],
)
def test_a_bad_npy_body_is_a_clear_422(client: httpx.Client, array: np.ndarray, says: str) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)  # an object array is pickled: the service must refuse, not unpickle
    response = client.post("/v1/models/ae-6/encode/batch", content=buffer.getvalue(), headers={"Content-Type": NPY})
    error(response, 422, says)


def test_truncated_lying_or_oversized_npy_bodies_are_refused(client: httpx.Client, server: ServerProcess) -> None:
    whole = npy(np.zeros((4, 28, 28), np.uint8))
    error(
        client.post("/v1/models/ae-6/encode/batch", content=whole[:-10], headers={"Content-Type": NPY}),
        422,
        "header says",
    )
    error(client.post("/v1/models/ae-6/encode/batch", content=b"not npy", headers={"Content-Type": NPY}), 422, ".npy")
    error(post_npy(client, "/v1/models/ae-6/decode", np.zeros((3, 5), np.float32)), 422, "latent_dim")
    error(post_npy(client, "/v1/models/ae-6/decode", np.full((3, 6), 1e9, np.float32)), 422, "within")
    too_many = np.zeros((10_001, 28, 28), np.uint8)  # over DIGITAE_MAX_BULK (10,000)
    error(post_npy(client, "/v1/models/ae-6/encode/batch", too_many), 413, "10,000")
    error(
        post_npy(client, "/v1/models/ae-6/reconstruct/batch?fields=logvar", np.zeros((1, 28, 28), np.uint8)), 422, "VAE"
    )
    # a body declared over the .npy cap is refused before it is read
    cap = Settings(max_upload_bytes=MAX_UPLOAD).max_npy_request_bytes
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/models/ae-6/encode/batch HTTP/1.1\r\nHost: x\r\nContent-Type: {NPY}\r\n"
            f"Content-Length: {cap + 1}\r\n\r\n".encode()
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")


def test_bulk_requests_beyond_the_concurrency_cap_get_503_and_slots_come_back(client: httpx.Client) -> None:
    """The server allows one bulk request at a time (max_concurrent_bulk=1): a second one, while the first is
    still sending its body, is refused at once, and the slot is free again once the first is answered."""
    body = npy(np.stack(shifted_digits(50)))
    started, release = threading.Event(), threading.Event()
    first: list[httpx.Response] = []

    def slow_body() -> Iterator[bytes]:
        yield body[:100]
        started.set()  # the headers and the first bytes are out: the server holds the slot for this request
        release.wait(20)
        yield body[100:]

    def send_slowly() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as other:
            first.append(other.post("/v1/models/ae-6/encode/batch", content=slow_body(), headers={"Content-Type": NPY}))

    sender = threading.Thread(target=send_slowly)
    sender.start()
    try:
        started.wait(10)
        time.sleep(0.5)
        deadline = time.monotonic() + 10
        while True:
            busy = post_npy(client, "/v1/models/ae-6/encode/batch", np.zeros((1, 28, 28), np.uint8))
            if busy.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        error(busy, 503, "DIGITAE_MAX_CONCURRENT_BULK")
        assert busy.headers["retry-after"] == "1"
        assert client.post("/v1/models/ae-6/encode", json={"image": b64(DIGIT_PNG)}).status_code == 200
    finally:
        release.set()
        sender.join(30)
    assert first[0].status_code == 200 and len(first[0].json()["results"]) == 50
    assert post_npy(client, "/v1/models/ae-6/encode/batch", np.zeros((1, 28, 28), np.uint8)).status_code == 200


def test_the_real_test_set_is_encoded_in_one_call(client: httpx.Client, mnist_test_dir: Path) -> None:
    from training.data import load_idx

    digits = load_idx(mnist_test_dir / "t10k-images-idx3-ubyte.gz", mnist_test_dir / "t10k-labels-idx1-ubyte.gz")
    images = np.ascontiguousarray(digits.images.reshape(-1, 28, 28).astype(np.uint8))
    assert images.shape == (10_000, 28, 28)
    latents = load_npy(post_npy(client, "/v1/models/ae-6/encode/batch", images))
    assert latents.shape == (10_000, 6) and np.isfinite(latents).all()
    spot = [0, 4_321, 9_999]
    singles = ok(client.post("/v1/models/ae-6/encode/batch", json={
        "images": [{"pixels": images[i].tolist(), "scale": "0-255"} for i in spot]}))["results"]  # fmt: skip
    np.testing.assert_allclose(latents[spot], [s["latent"] for s in singles], rtol=1e-4, atol=1e-5)


# -- DIGITAE_WORKERS=auto ------------------------------------------------------------------------------------------


def test_workers_auto_honours_a_cgroup_cpu_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert usable_cpus(tmp_path) == 8  # no cgroup files: every core the process may run on
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == 8
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # docker --cpus 2.5
    assert usable_cpus(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core: still one worker
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 3
    monkeypatch.setenv("DIGITAE_WORKERS", "auto")
    settings = Settings()
    assert settings.workers == "auto" and settings.worker_count == usable_cpus()
    monkeypatch.setenv("DIGITAE_WORKERS", "3")
    assert Settings().worker_count == 3
    monkeypatch.setenv("DIGITAE_WORKERS", "many")
    with pytest.raises(ValueError, match="auto"):
        Settings()
