"""Attacks through request bodies, against a real `python -m service` on 127.0.0.1: each reproduces a finding of
the "bounded by construction" issue and asserts the bound that now holds (status, response size, the server's
memory growth, /healthz latency measured while the attack runs).

Findings covered: 1 (validation errors without bound, /v2's JSON tensors too), 2 (decoding on the event loop, judged
by compressed size), 3 (concurrent large decodes), 9 (errors echoing whole headers), 10 (a JPEG whose header lies);
round 2: 8 (two Content-Type headers), 13 (a trailing-slash redirect built from the Host header).
"""

from __future__ import annotations

import io
import json
import threading
from functools import cache

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.support import ServerProcess, b64, example_digit, png_bytes
from tests.support.attacks import HealthProbe, RssSampler

ENCODE = "/v1/models/ae-6/encode"
DECODE = "/v1/models/ae-6/decode"
ENCODE_BATCH, DECODE_BATCH = f"{ENCODE}/batch", f"{DECODE}/batch"
JSON_TYPE = {"content-type": "application/json"}
# What /healthz may take while an attack runs. The bugs held the event loop for seconds at a stretch (31 s;
# 0.7 s per image, three per request here: 2.1 s and more); an unloaded server answers in a millisecond. These
# leave room for a shared machine at a load of 6 per core, where the probe alone takes 0.2 s.
HEALTHZ_WORST_S = 1.5
HEALTHZ_MEDIAN_S = 0.5
MiB = 2**20


pytestmark = pytest.mark.server_settings(decode_concurrency=2, max_header_bytes=65536)


def error_of(response: httpx.Response) -> dict:
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]


@cache
def drawn_digit(side: int, fmt: str, mode: str = "L", noise: int = 0) -> bytes:
    """A large image of a drawn ring: a few KB compressed (more with a `noise` x `noise` patch of random gray),
    `side` x `side` pixels decoded."""
    image = Image.new("L", (side, side), 255)
    ImageDraw.Draw(image).ellipse((side * 0.3, side * 0.2, side * 0.7, side * 0.8), outline=0, width=side // 20)
    if noise:
        patch = np.random.default_rng(0).integers(200, 256, (noise, noise), dtype=np.uint8)
        image.paste(Image.fromarray(patch), (0, 0))
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


# -- finding 1: validation errors without bound -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (ENCODE_BATCH, b'{"images":[' + b",".join([b"{}"] * 1_000_000) + b"]}"),
        (DECODE_BATCH, b'{"latents":[' + b",".join([b"[]"] * 1_000_000) + b"]}"),
    ],
    ids=["a million empty images", "a million empty latents"],
)
def test_a_million_empty_batch_items_get_one_small_error_at_once(
    server: ServerProcess, client: httpx.Client, path: str, body: bytes
) -> None:
    """Was: a 120 MB 422 after 32 s, the event loop blocked throughout, RSS +3 GB."""
    assert len(body) == pytest.approx(3_000_000, rel=0.01)
    with HealthProbe(server.url) as probe, RssSampler(server.process.pid) as rss:
        response = client.post(path, content=body, headers=JSON_TYPE)
    assert response.status_code == 422
    assert len(response.content) < 1024
    assert "holds 1,000,000 values" in error_of(response)["message"]
    assert response.elapsed.total_seconds() < 2.0
    assert probe.worst < HEALTHZ_WORST_S, probe.latencies
    assert not probe.failures
    assert rss.growth_mib < 100, f"RSS grew {rss.growth_mib:.0f} MiB"


def test_a_million_json_tensor_values_on_v2_get_one_small_error_at_once(
    server: ServerProcess, client: httpx.Client
) -> None:
    """The Open Inference Protocol's JSON tensors are held to the same JSON caps, before parsing."""
    values = b",".join([b"0"] * 1_000_000)
    body = b'{"inputs":[{"name":"images","shape":[1000000],"datatype":"UINT8","data":[' + values + b"]}]}"
    with HealthProbe(server.url) as probe, RssSampler(server.process.pid) as rss:
        response = client.post("/v2/models/ae-6/infer", content=body, headers=JSON_TYPE)
    assert response.status_code == 422 and len(response.content) < 1024
    assert "holds 1,000,003 values" in response.json()["error"], "the protocol's error: a string"
    assert response.elapsed.total_seconds() < 2.0
    assert probe.worst < HEALTHZ_WORST_S, probe.latencies
    assert not probe.failures
    assert rss.growth_mib < 100, f"RSS grew {rss.growth_mib:.0f} MiB"


def test_a_batch_over_the_cap_is_refused_before_its_items_are_validated(client: httpx.Client) -> None:
    body: dict[str, list[list[float]]] = {"latents": [[]] * 65}
    error = error_of(client.post(DECODE_BATCH, json=body))
    assert error["message"] == "latents: at most 64 (the service's cap, DIGITAE_MAX_BATCH)"
    assert len(error["detail"]) == 1


def test_many_invalid_items_are_listed_a_few_and_counted(client: httpx.Client) -> None:
    """64 pixel arrays of 784 bad values each: the first 10 problems in detail, the message says how many more."""
    bad = {"pixels": [[-1] * 28] * 28, "scale": "0-255"}
    response = client.post(ENCODE_BATCH, json={"images": [bad] * 64})
    assert response.status_code == 422
    error = error_of(response)
    assert len(error["detail"]) == 10
    assert "(and 63 more problems; detail lists the first 10)" in error["message"]
    assert len(response.content) < 4096


def test_the_schema_caps_the_batch_lists(client: httpx.Client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model, field in (("EncodeBatchRequest", "images"), ("DecodeBatchRequest", "latents")):
        assert schemas[model]["properties"][field]["maxItems"] == 64


def test_a_key_too_long_is_clipped_in_the_error(client: httpx.Client) -> None:
    response = client.post(DECODE, content=json.dumps({"latent": [0.0] * 6, "k" * 100_000: 1}), headers=JSON_TYPE)
    assert response.status_code == 422
    assert len(response.content) < 2048
    assert "characters in all" in error_of(response)["message"]


# -- finding 2: decoding on the event loop, judged by compressed size ----------------------------------------


def test_a_small_file_with_many_pixels_is_decoded_off_the_event_loop(server: ServerProcess) -> None:
    """A 4000x4000 lossless WebP is ~8 KB: it used to be decoded on the event loop (0.7 s each), stalling
    /healthz for every client. Two clients send three each; /healthz stays fast."""
    webp = b64(drawn_digit(4000, "WEBP"))
    assert len(webp) < 64 * 1024
    answers: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            answers.append(http.post(ENCODE_BATCH, json={"images": [{"image": webp}] * 3}).status_code)

    with HealthProbe(server.url) as probe:
        senders = [threading.Thread(target=send) for _ in range(2)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
    assert answers == [200, 200]
    assert probe.worst < HEALTHZ_WORST_S, probe.latencies
    assert probe.median < HEALTHZ_MEDIAN_S, probe.latencies


def test_the_pixels_of_a_whole_request_are_capped_before_decoding(client: httpx.Client) -> None:
    """Four 16-megapixel images (64 Mpx, over the 50 Mpx default) are refused from their headers alone."""
    webp = b64(drawn_digit(4000, "WEBP"))
    response = client.post(ENCODE_BATCH, json={"images": [{"image": webp}] * 4})
    assert response.status_code == 413
    assert "DIGITAE_MAX_REQUEST_PIXELS" in error_of(response)["message"]
    assert response.elapsed.total_seconds() < 1.0


# -- finding 3: concurrent large decodes without a bound --------------------------------------------------------


def test_concurrent_large_decodes_are_bounded_in_memory(server: ServerProcess) -> None:
    """16 uploads of a 100 KB, 3000x3000 RGBA PNG, all at once. Unbounded, all 16 decode together (about 90 MB
    each: ~1.4 GB); with DIGITAE_DECODE_CONCURRENCY=2 at most two do and the rest wait their turn."""
    png = drawn_digit(3000, "PNG", "RGBA", noise=200)
    assert len(png) > 64 * 1024  # was decoded in the thread pool (smaller files, on the event loop: finding 2)
    count = 16
    answers: list[int] = []
    clients = [httpx.Client(base_url=server.url, timeout=120) for _ in range(count)]
    together = threading.Barrier(count)

    def send(http: httpx.Client) -> None:
        together.wait()
        answers.append(http.post(ENCODE, files={"file": ("big.png", png, "image/png")}).status_code)

    try:
        with RssSampler(server.process.pid) as rss:
            senders = [threading.Thread(target=send, args=(http,)) for http in clients]
            for thread in senders:
                thread.start()
            for thread in senders:
                thread.join()
    finally:
        for http in clients:
            http.close()
    print(f"RSS growth with {count} concurrent 3000x3000 RGBA decodes: {rss.growth_mib:.0f} MiB")
    assert answers == [200] * count
    assert rss.growth_mib < 400, f"RSS grew {rss.growth_mib:.0f} MiB"


# -- finding 9: errors echo whole headers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"accept": "text/" + "x" * 60_000}, 406),
        ({"content-type": "application/" + "x" * 60_000}, 415),
    ],
    ids=["Accept", "Content-Type"],
)
def test_an_error_never_echoes_a_whole_header(client: httpx.Client, headers: dict, status: int) -> None:
    """Was: a 1.4 MB Accept header got a 1.4 MB 406 body."""
    response = client.post(ENCODE, content=b"{}", headers={**JSON_TYPE, **headers})
    assert response.status_code == status
    assert len(response.content) < 1024
    assert "characters in all" in error_of(response)["message"]


def test_an_unknown_long_path_is_clipped_in_the_404(client: httpx.Client) -> None:
    response = client.get("/" + "p" * 50_000)
    assert response.status_code == 404
    assert len(response.content) < 1024


# -- finding 10: a JPEG whose header lies ------------------------------------------------------------------------------


def lying_jpeg(width: int, height: int) -> bytes:
    """A real 28x28 JPEG whose frame header (SOF0) claims `width` x `height`."""
    data = bytearray(png_bytes(example_digit(), fmt="JPEG", quality=90))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_a_jpeg_whose_header_lies_is_refused_like_a_png(client: httpx.Client) -> None:
    """Was: 200 and an answer about gray padding; the PNG equivalent already got 415."""
    response = client.post(ENCODE, files={"file": ("liar.jpg", lying_jpeg(4999, 5000), "image/jpeg")})
    assert response.status_code == 415
    assert "far too short" in error_of(response)["message"]
    honest = png_bytes(example_digit(), fmt="JPEG", quality=90)
    assert client.post(ENCODE, files={"file": ("digit.jpg", honest, "image/jpeg")}).status_code == 200


# -- round 2, finding 8: one reading of Content-Type; finding 13: no redirect built from the Host header -------------


@pytest.mark.parametrize(
    "types", [("application/json", "application/x-npy"), ("application/x-npy", "application/json")]
)
def test_two_content_types_are_refused_before_the_body_is_read(server: ServerProcess, types: tuple[str, str]) -> None:
    """Was: the body cap read the last Content-Type (.npy: 31 MB) and the route the first (JSON), so a 26 MB JSON
    body was parsed instead of refused (24 at once: +421 MB). Now a request with two is 400, whatever their order."""
    body = b'{"latent": [' + b"0," * (4 * MiB) + b"0]}"  # 8 MB: over the JSON cap, under the .npy one
    headers = [("content-type", types[0]), ("content-type", types[1])]
    assert server.process is not None
    with RssSampler(server.process.pid) as rss:
        response = httpx.post(f"{server.url}{DECODE}", content=body, headers=headers, timeout=30)
    assert response.status_code == 400, response.text[:300]
    error = error_of(response)
    assert error["code"] == "bad_request"
    assert error["message"] == "the request has 2 Content-Type headers; send exactly one"
    assert rss.growth_mib < 20, f"the server grew by {rss.growth_mib:.0f} MiB reading a body it refuses"


def test_a_trailing_slash_is_not_redirected_to_the_host_header(client: httpx.Client) -> None:
    """Was: GET /v1/models/ answered 307 to http://<the request's Host header>/v1/models, an open redirect for
    anyone who can set the header (a cache poisoned by it sends others away). Now an unknown path is 404."""
    response = client.get("/v1/models/", headers={"host": "evil.example"})
    assert response.status_code == 404, response.headers
    assert "location" not in response.headers
    assert "evil.example" not in response.text
