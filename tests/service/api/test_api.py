"""The service over real HTTP: `python -m service` on 127.0.0.1, driven by httpx.

One server (tiny untrained checkpoints) serves the whole module. Every endpoint, every promised
error, images in several formats, batches against single calls, seeds, micro-batching under 64
concurrent distinct requests, `Accept: image/png`, request ids and metrics.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.api.examples import EXAMPLE_DIGIT_PNG_BASE64, EXAMPLE_PIXELS
from service.codec.answers import (
    DecodeResult,
    EncodeBatchResult,
    EncodeResult,
    InterpolateResult,
    ModelDetail,
    ModelSummary,
    Readiness,
    ReconstructBatchResult,
    ReconstructResult,
    SampleResult,
)
from tests.support import (
    ServerProcess,
    assert_error,
    b64,
    decode_png,
    example_digit,
    png_bytes,
    shifted_digits,
)

MAX_UPLOAD = 256 * 1024
MAX_BATCH = 8
DIGIT = example_digit()
DIGIT_PNG = png_bytes(DIGIT)
IMAGE = {"image": EXAMPLE_DIGIT_PNG_BASE64}


pytestmark = pytest.mark.server_settings(
    max_upload_bytes=MAX_UPLOAD, max_batch=MAX_BATCH, microbatch_wait_ms=5, max_samples=16
)


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


# -- models, health ---------------------------------------------------------------------------------------


def test_health_and_readiness(client: httpx.Client) -> None:
    assert ok(client.get("/healthz")) == {"status": "ok"}
    ready = Readiness.model_validate(ok(client.get("/readyz")))
    assert ready.models == ["ae-2", "ae-6", "vae-2"]
    assert ready.judges == ["classifier"]
    assert ready.skipped == {}


def test_models_are_listed_and_described(client: httpx.Client) -> None:
    listed = [ModelSummary.model_validate(m) for m in ok(client.get("/v1/models"))]
    assert [(m.name, m.kind, m.latent_dim) for m in listed] == [
        ("ae-2", "ae", 2),
        ("ae-6", "ae", 6),
        ("vae-2", "vae", 2),
    ]
    assert listed[0].metrics["test_mse"] == 0.05
    detail = ModelDetail.model_validate(ok(client.get("/v1/models/vae-2")))
    assert sorted(detail.centroids, key=int) == [str(d) for d in range(10)]
    assert all(len(vector) == 2 for vector in detail.centroids.values())
    assert detail.card["kind"] == "vae" and detail.card["architecture"]["channels"] == [4, 8, 8]


# -- encode ------------------------------------------------------------------------------------------------


def test_every_image_input_form_gives_the_same_latent(client: httpx.Client) -> None:
    """An MNIST-like 28x28 image passes preprocessing unchanged, so base64, upload and pixels agree exactly."""
    answers = [
        ok(client.post("/v1/models/ae-6/encode", json=IMAGE)),
        ok(client.post("/v1/models/ae-6/encode", files={"file": ("digit.png", DIGIT_PNG, "image/png")})),
        ok(client.post("/v1/models/ae-6/encode", json={"pixels": DIGIT.tolist(), "scale": "0-255"})),
        ok(client.post("/v1/models/ae-6/encode", json={"pixels": (DIGIT / 255).tolist(), "scale": "0-1"})),
        ok(client.post("/v1/models/ae-6/encode", json={"image": "data:image/png;base64," + b64(DIGIT_PNG)})),
    ]
    first = EncodeResult.model_validate(answers[0])
    assert len(first.latent) == 6 and first.logvar is None and "logvar" not in answers[0]
    assert len(first.centroid_distances) == 10
    assert first.nearest_digit == int(np.argmin(first.centroid_distances))
    for answer in answers[1:]:
        assert answer == answers[0]


def test_vae_encoding_has_mu_and_logvar(client: httpx.Client) -> None:
    answer = EncodeResult.model_validate(ok(client.post("/v1/models/vae-2/encode", json=IMAGE)))
    assert len(answer.latent) == 2 and answer.logvar is not None and len(answer.logvar) == 2
    centroids = ok(client.get("/v1/models/vae-2"))["centroids"]
    expected = [np.linalg.norm(np.array(answer.latent) - np.array(centroids[str(d)])) for d in range(10)]
    np.testing.assert_allclose(answer.centroid_distances, expected, rtol=1e-5, atol=1e-6)


def test_images_in_other_formats_modes_and_polarities(client: httpx.Client) -> None:
    """PNG, JPEG, RGBA on transparency, black-on-white, and a large photo-like image all preprocess to a digit."""
    big = np.array(Image.fromarray(DIGIT).resize((1400, 1400), Image.Resampling.BILINEAR))
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 255, DIGIT  # white ink whose shape is only in the alpha channel
    uploads = {
        "jpeg": png_bytes(DIGIT, "RGB", "JPEG", quality=95),
        "rgba": png_bytes(rgba),
        "inverted": png_bytes(255 - DIGIT),
        "large": png_bytes(255 - big, "RGB"),
        "palette": png_bytes(DIGIT, "P"),
        "bmp": png_bytes(DIGIT, None, "BMP"),
    }
    clean = ok(client.post("/v1/models/ae-6/reconstruct", json={"image": b64(DIGIT_PNG)}))
    np.testing.assert_array_equal(decode_png(clean["input"]), DIGIT)  # MNIST-like: unchanged
    for name, data in uploads.items():
        answer = ok(client.post("/v1/models/ae-6/reconstruct", files={"file": (f"digit.{name}", data)}))
        seen = decode_png(answer["input"]).astype(np.float64)
        assert seen.shape == (28, 28)
        border = np.concatenate([seen[0], seen[-1], seen[:, 0], seen[:, -1]])
        assert border.max() < 40, f"{name}: the background should be black"
        rows, cols = np.indices(seen.shape)
        center = (rows * seen).sum() / seen.sum(), (cols * seen).sum() / seen.sum()
        assert abs(center[0] - 14) < 1.5 and abs(center[1] - 14) < 1.5, f"{name}: centered by mass, got {center}"
        correlation = np.corrcoef(seen.ravel(), DIGIT.ravel())[0, 1]
        assert correlation > 0.7, f"{name}: should still look like the digit (correlation {correlation:.2f})"


def test_batch_answers_match_single_calls(client: httpx.Client) -> None:
    items = [
        {"image": EXAMPLE_DIGIT_PNG_BASE64},
        {"pixels": EXAMPLE_PIXELS, "scale": "0-255"},
        {"pixels": (255 - DIGIT).tolist(), "scale": "0-255"},
    ]
    batch = EncodeBatchResult.model_validate(ok(client.post("/v1/models/vae-2/encode/batch", json={"images": items})))
    singles = [EncodeResult.model_validate(ok(client.post("/v1/models/vae-2/encode", json=item))) for item in items]
    assert len(batch.results) == 3
    for together, alone in zip(batch.results, singles, strict=True):
        np.testing.assert_allclose(together.latent, alone.latent, rtol=1e-5, atol=1e-6)  # float rounding only
        np.testing.assert_allclose(together.logvar, alone.logvar, rtol=1e-5, atol=1e-6)
        assert together.nearest_digit == alone.nearest_digit

    recon_batch = ReconstructBatchResult.model_validate(
        ok(client.post("/v1/models/ae-2/reconstruct/batch", json={"images": items}))
    )
    for joined, item in zip(recon_batch.results, items, strict=True):
        single = ReconstructResult.model_validate(ok(client.post("/v1/models/ae-2/reconstruct", json=item)))
        assert joined.input == single.input
        pixel_gap = np.abs(decode_png(joined.image).astype(int) - decode_png(single.image).astype(int)).max()
        assert pixel_gap <= 1
        assert joined.loss.mse == pytest.approx(single.loss.mse, rel=1e-5)

    latents = [[0.0, 0.0], [1.0, -1.0], [-2.0, 0.5]]
    decoded = ok(client.post("/v1/models/ae-2/decode/batch", json={"latents": latents}))["results"]
    for in_batch, latent in zip(decoded, latents, strict=True):
        by_itself = DecodeResult.model_validate(ok(client.post("/v1/models/ae-2/decode", json={"latent": latent})))
        assert np.abs(decode_png(in_batch["image"]).astype(int) - decode_png(by_itself.image).astype(int)).max() <= 1


SUCCESSORS = {
    "/v1/models/ae-2/encode": {"images": [{"image": EXAMPLE_DIGIT_PNG_BASE64}]},
    "/v1/models/ae-2/reconstruct": {"images": [{"image": EXAMPLE_DIGIT_PNG_BASE64}], "corruption": {"noise": {}}},
    "/v1/models/ae-2/decode": {"latents": [[0.0, 1.0]]},
    "/v1/classify": {"images": [{"image": EXAMPLE_DIGIT_PNG_BASE64}]},
}


@pytest.mark.parametrize("path", list(SUCCESSORS))
def test_a_batch_sent_to_a_single_operation_is_answered_as_before_and_marked_deprecated(
    client: httpx.Client, path: str
) -> None:
    old = client.post(path, json=SUCCESSORS[path])
    assert len(ok(old)["results"]) == 1, "the deprecated form is answered as before, for one release"
    assert old.headers["Deprecation"] == "true"
    assert old.headers["Link"] == f'<{path}/batch>; rel="successor-version"'
    new = client.post(f"{path}/batch", json=SUCCESSORS[path])
    assert len(ok(new)["results"]) == 1 and "Deprecation" not in new.headers and "Link" not in new.headers
    assert set(ok(new)["results"][0]) == set(ok(old)["results"][0])


def test_a_npy_body_sent_to_a_single_operation_is_answered_as_before_and_marked_deprecated(
    client: httpx.Client,
) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.stack([DIGIT, 255 - DIGIT]).astype(np.uint8))
    headers = {"Content-Type": "application/x-npy"}
    old = client.post("/v1/models/ae-2/encode", content=buffer.getvalue(), headers=headers)
    new = client.post("/v1/models/ae-2/encode/batch", content=buffer.getvalue(), headers=headers)
    assert ok(old) == ok(new) and len(ok(new)["results"]) == 2
    assert old.headers["Link"] == '</v1/models/ae-2/encode/batch>; rel="successor-version"'
    assert old.headers["Deprecation"] == "true" and "Deprecation" not in new.headers


def test_single_answers_are_never_batches_and_batch_answers_always_are(client: httpx.Client) -> None:
    one = ok(client.post("/v1/models/ae-2/encode/batch", json={"images": [{"image": EXAMPLE_DIGIT_PNG_BASE64}]}))
    assert set(one) == {"results"}, "a batch of one is still a batch"
    single = ok(client.post("/v1/models/ae-2/encode", json={"image": EXAMPLE_DIGIT_PNG_BASE64}))
    assert "results" not in single and single["nearest_digit"] == one["results"][0]["nearest_digit"]
    verdict = ok(client.post("/v1/classify", json={"image": EXAMPLE_DIGIT_PNG_BASE64}))
    trimmed = ok(client.post("/v1/classify/batch?fields=digit", json={"images": [{"image": EXAMPLE_DIGIT_PNG_BASE64}]}))
    assert trimmed == {"results": [{"digit": verdict["digit"]}]}, "fields trims each result of a batch"


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/v1/models/ae-2/encode/batch", {"image": EXAMPLE_DIGIT_PNG_BASE64}, "images"),
        ("/v1/models/ae-2/reconstruct/batch", {"pixels": EXAMPLE_PIXELS, "scale": "0-255"}, "images"),
        ("/v1/models/ae-2/decode/batch", {"latent": [0.0, 1.0]}, "latents"),
        ("/v1/classify/batch", {"image": EXAMPLE_DIGIT_PNG_BASE64}, "images"),
        ("/v1/models/ae-2/encode/batch", {"images": [{"image": EXAMPLE_DIGIT_PNG_BASE64, "scale": "0-1"}]}, "scale"),
        ("/v1/models/ae-2/encode", {"image": EXAMPLE_DIGIT_PNG_BASE64, "images": []}, "exactly one input"),
    ],
)
def test_a_batch_operation_refuses_a_single_input(client: httpx.Client, path: str, body: dict, says: str) -> None:
    assert_error(client.post(path, json=body), 422, code="invalid_request", says=says)


def test_batch_operations_take_json_and_npy_only(client: httpx.Client) -> None:
    for path in ("/v1/models/ae-2/encode/batch", "/v1/models/ae-2/reconstruct/batch", "/v1/classify/batch"):
        assert_error(client.post(path, files={"file": ("d.png", DIGIT_PNG)}), 415, says="JSON")
        assert_error(client.post(path, content=DIGIT_PNG, headers={"Content-Type": "image/png"}), 415, says="JSON")


# -- reconstruct -------------------------------------------------------------------------------------------


def test_reconstruct_reports_the_losses_against_the_clean_input(client: httpx.Client) -> None:
    answer = ReconstructResult.model_validate(ok(client.post("/v1/models/ae-6/reconstruct", json=IMAGE)))
    recon = decode_png(answer.image) / 255
    clean = DIGIT / 255
    assert answer.loss.mse == pytest.approx(((recon - clean) ** 2).mean(), abs=2e-3)  # PNG rounds to 1/255
    assert answer.loss.kl is None and answer.loss.elbo is None and answer.corruption is None
    vae = ReconstructResult.model_validate(ok(client.post("/v1/models/vae-2/reconstruct", json=IMAGE)))
    assert vae.loss.kl is not None and vae.loss.kl >= 0 and vae.logvar is not None
    assert vae.loss.elbo is not None and vae.loss.elbo == pytest.approx(-(vae.loss.bce * 784 + vae.loss.kl), rel=1e-3)


def test_corruption_is_reproducible_from_its_seed(client: httpx.Client) -> None:
    body: dict[str, Any] = {
        "image": EXAMPLE_DIGIT_PNG_BASE64,
        "corruption": {"noise": {"mean": 0.0, "std": 0.3}, "occlusion": {"area": [0.1, 0.3]}, "seed": 11},
    }
    first = ReconstructResult.model_validate(ok(client.post("/v1/models/ae-6/reconstruct", json=body)))
    again = ReconstructResult.model_validate(ok(client.post("/v1/models/ae-6/reconstruct", json=body)))
    other = ok(
        client.post("/v1/models/ae-6/reconstruct", json={**body, "corruption": {**body["corruption"], "seed": 12}})
    )
    assert first == again
    assert other["input"] != first.input
    assert first.corruption is not None and first.corruption.seed == 11 and first.corruption.occlusion is not None
    assert first.corruption.noise == {"mean": 0.0, "std": 0.3}
    clean = ok(client.post("/v1/models/ae-6/reconstruct", json=IMAGE))
    assert first.loss.mse != clean["loss"]["mse"]

    drawn = ok(
        client.post(
            "/v1/models/ae-6/reconstruct",
            json={"image": EXAMPLE_DIGIT_PNG_BASE64, "corruption": {"noise": {"std": 0.1}}},
        )
    )
    assert isinstance(drawn["corruption"]["seed"], int)  # drawn, and echoed so it can be replayed


def test_an_explicit_occlusion_rectangle_is_painted_where_asked(client: httpx.Client) -> None:
    rectangle = {"top": 6, "left": 5, "height": 10, "width": 12}
    body = {
        "pixels": EXAMPLE_PIXELS,
        "scale": "0-255",
        "corruption": {"occlusion": {"rectangle": rectangle, "fill": 1.0}, "seed": 0},
    }
    answer = ok(client.post("/v1/models/ae-6/reconstruct", json=body))
    seen = decode_png(answer["input"])
    assert (seen[6:16, 5:17] == 255).all()
    outside = np.ones_like(seen, dtype=bool)
    outside[6:16, 5:17] = False
    np.testing.assert_array_equal(seen[outside], np.asarray(EXAMPLE_PIXELS, np.uint8)[outside])
    assert answer["corruption"]["occlusion"] == {**rectangle, "fill": 1.0}


def test_an_upload_can_carry_a_corruption(client: httpx.Client) -> None:
    corruption = json.dumps({"noise": {"std": 0.2}, "seed": 5})
    upload = ok(
        client.post(
            "/v1/models/ae-6/reconstruct", files={"file": ("d.png", DIGIT_PNG)}, data={"corruption": corruption}
        )
    )
    as_json = ok(
        client.post("/v1/models/ae-6/reconstruct", json={"image": b64(DIGIT_PNG), "corruption": json.loads(corruption)})
    )
    assert upload == as_json
    bad = client.post(
        "/v1/models/ae-6/reconstruct",
        files={"file": ("d.png", DIGIT_PNG)},
        data={"corruption": '{"noise": {"std": -1}}'},
    )
    assert_error(bad, 422, says="corruption.noise.std")


# -- decode, sample, interpolate ------------------------------------------------------------------------------


def test_decode_returns_an_image(client: httpx.Client) -> None:
    answer = DecodeResult.model_validate(ok(client.post("/v1/models/ae-6/decode", json={"latent": [0.1] * 6})))
    assert decode_png(answer.image).shape == (28, 28)


def test_same_seed_same_samples(client: httpx.Client) -> None:
    body = {"digit": 3, "sigma": 0.7, "n": 5, "seed": 42}
    first = SampleResult.model_validate(ok(client.post("/v1/models/ae-6/sample", json=body)))
    again = SampleResult.model_validate(ok(client.post("/v1/models/ae-6/sample", json=body)))
    other = SampleResult.model_validate(ok(client.post("/v1/models/ae-6/sample", json={**body, "seed": 43})))
    assert first == again
    assert other.latents != first.latents
    assert len(first.images) == len(first.latents) == 5 and first.seed == 42 and first.digit == 3


def test_samples_spread_around_the_centroid(client: httpx.Client) -> None:
    centroid = ok(client.get("/v1/models/ae-6"))["centroids"]["4"]
    still = ok(client.post("/v1/models/ae-6/sample", json={"digit": 4, "sigma": 0, "n": 3}))
    for latent in still["latents"]:
        np.testing.assert_allclose(latent, centroid, rtol=1e-6)
    assert len(set(still["images"])) == 1
    wide = ok(client.post("/v1/models/ae-6/sample", json={"digit": 4, "sigma": 2.0, "n": 16, "seed": 1}))
    spread = np.std(np.array(wide["latents"]) - centroid)
    assert 1.0 < spread < 3.0


def test_a_vae_samples_its_prior_with_its_own_operation_and_an_ae_has_none(client: httpx.Client) -> None:
    prior = ok(client.post("/v1/models/vae-2/prior/sample", json={"n": 4, "seed": 0}))
    assert set(prior) == {"images", "latents", "seed"} and len(prior["images"]) == 4 and prior["seed"] == 0
    again = ok(client.post("/v1/models/vae-2/prior/sample", json={"n": 4, "seed": 0}))
    assert again["latents"] == prior["latents"]
    around = ok(client.post("/v1/models/vae-2/sample", json={"digit": 3, "sigma": 0.0, "n": 2, "seed": 0}))
    assert around["latents"] != prior["latents"][:2]  # the prior is N(0, I), not a centroid
    grid = client.post("/v1/models/vae-2/prior/sample", json={"n": 12, "seed": 0}, headers={"accept": "image/png"})
    assert grid.status_code == 200 and decode_png(grid.content).shape == (2 * 28 + 2, 10 * 28 + 9 * 2)
    assert_error(client.post("/v1/models/ae-2/prior/sample", json={"n": 4}), 404, says="ae-2 is an auto-encoder")
    assert_error(client.post("/v1/models/vae-2/prior/sample", json={"n": 4, "sigma": 1}), 422, says="sigma")
    # a digit is required on /sample, for a VAE too: the message points to the prior's operation
    for model in ("ae-2", "vae-2"):
        assert_error(client.post(f"/v1/models/{model}/sample", json={"n": 4}), 422, says="/prior/sample")


def test_interpolation_runs_between_any_two_kinds_of_end(client: httpx.Client) -> None:
    centroids = ok(client.get("/v1/models/ae-2"))["centroids"]
    digits = InterpolateResult.model_validate(
        ok(client.post("/v1/models/ae-2/interpolate", json={"from": {"digit": 1}, "to": {"digit": 7}, "steps": 5}))
    )
    assert len(digits.images) == len(digits.latents) == 5 and digits.t == [0.0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(digits.latents[0], centroids["1"], rtol=1e-6)
    np.testing.assert_allclose(digits.latents[-1], centroids["7"], rtol=1e-6)
    middle = (np.array(centroids["1"]) + np.array(centroids["7"])) / 2
    np.testing.assert_allclose(digits.latents[2], middle, rtol=1e-5, atol=1e-6)

    encoded = ok(client.post("/v1/models/ae-2/encode", json=IMAGE))["latent"]
    mixed = ok(
        client.post(
            "/v1/models/ae-2/interpolate",
            json={"from": {"image": EXAMPLE_DIGIT_PNG_BASE64}, "to": {"latent": [3.0, -1.0]}, "steps": 3},
        )
    )
    np.testing.assert_allclose(mixed["latents"][0], encoded, rtol=1e-6)
    assert mixed["latents"][-1] == [3.0, -1.0]
    pixels_end = ok(
        client.post(
            "/v1/models/ae-2/interpolate",
            json={"from": {"pixels": EXAMPLE_PIXELS, "scale": "0-255"}, "to": {"digit": 0}},
        )
    )
    assert len(pixels_end["images"]) == 10  # the default steps


# -- PNG answers ------------------------------------------------------------------------------------------------


def test_accept_png_answers_with_the_image_itself(client: httpx.Client) -> None:
    png = {"accept": "image/png"}
    single = client.post("/v1/models/ae-6/decode", json={"latent": [0.0] * 6}, headers=png)
    assert single.status_code == 200 and single.headers["content-type"] == "image/png"
    as_json = ok(client.post("/v1/models/ae-6/decode", json={"latent": [0.0] * 6}))
    np.testing.assert_array_equal(decode_png(single.content), decode_png(as_json["image"]))

    big = client.post("/v1/models/ae-6/decode", params={"upscale": 3}, json={"latent": [0.0] * 6}, headers=png)
    assert decode_png(big.content).shape == (84, 84)
    grid = client.post("/v1/models/ae-6/sample", json={"digit": 2, "n": 12, "seed": 0}, headers=png)
    assert decode_png(grid.content).shape == (2 * 28 + 2, 10 * 28 + 9 * 2)  # rows of 10, 2 px gaps
    row = client.post(
        "/v1/models/ae-2/interpolate", json={"from": {"digit": 0}, "to": {"digit": 9}, "steps": 12}, headers=png
    )
    assert decode_png(row.content).shape == (28, 12 * 28 + 11 * 2)
    recon = client.post("/v1/models/ae-6/reconstruct", files={"file": ("d.png", DIGIT_PNG)}, headers=png)
    assert recon.headers["content-type"] == "image/png" and decode_png(recon.content).shape == (28, 28)
    scaled = ok(client.post("/v1/models/ae-6/decode", params={"upscale": 2}, json={"latent": [0.0] * 6}))
    assert decode_png(scaled["image"]).shape == (56, 56)


def test_content_negotiation_errors(client: httpx.Client) -> None:
    png = {"accept": "image/png"}
    assert_error(
        client.post("/v1/models/ae-6/encode", json=IMAGE, headers=png),
        406,
        code="not_acceptable",
        says="answers application/json or application/x-npy",
    )
    assert_error(client.get("/v1/models", headers=png), 406, says="answers application/json only")
    assert_error(
        client.post("/v1/models/ae-6/decode", json={"latent": [0.0] * 6}, headers={"accept": "text/html"}),
        406,
        says="asked for text/html",
    )
    wildcard = client.post("/v1/models/ae-6/decode", json={"latent": [0.0] * 6}, headers={"accept": "*/*"})
    assert wildcard.headers["content-type"] == "application/json"
    preferred = client.post(
        "/v1/models/ae-6/decode", json={"latent": [0.0] * 6}, headers={"accept": "application/json;q=0.5, image/png"}
    )
    assert preferred.headers["content-type"] == "image/png"
    assert_error(
        client.post("/v1/models/ae-6/decode", params={"upscale": 0}, json={"latent": [0.0] * 6}), 422, says="upscale"
    )
    assert_error(
        client.post("/v1/models/ae-6/decode", params={"upscale": 17}, json={"latent": [0.0] * 6}),
        422,
        says="DIGITAE_MAX_UPSCALE",
    )


# -- bad input ------------------------------------------------------------------------------------------------------


def test_unknown_models_and_routes(client: httpx.Client) -> None:
    error = assert_error(client.post("/v1/models/ae-7/encode", json=IMAGE), 404, code="not_found", says="unknown model")
    assert "ae-2, ae-6, vae-2" in error["message"]
    for path in ("/v1/models/..%2F..%2Fetc%2Fpasswd/decode", "/v1/models/../../etc/passwd", "/v1/nothing"):
        assert client.get(path).status_code == 404
    assert client.get("/v1/models/ae-6%00.json").status_code in (404, 422)
    assert_error(client.get("/v1/models/" + "a" * 70), 422, says="at most 64 characters")
    assert_error(client.get("/v1/models/classifier"), 404, says="unknown model")
    assert_error(
        client.delete("/v1/models"), 405, code="method_not_allowed", says="DELETE is not allowed on /v1/models; use GET"
    )
    assert_error(
        client.get("/v1/models/ae-6/encode"), 405, says="GET is not allowed on /v1/models/ae-6/encode; use POST"
    )


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"latent": [0.0] * 5}, "expected 6 numbers"),
        ({"latent": [0.0] * 7}, "expected 6 numbers"),
        ({"latent": []}, "latent"),
        ({"latent": [1e7] + [0.0] * 5}, "latent[0]"),
        ({"latent": ["1"] + [0.0] * 5}, "latent[0]"),
        ({"latents": [[0.0] * 6] * (MAX_BATCH + 1)}, "DIGITAE_MAX_BATCH"),  # the deprecated batch form
        ({"latents": [[0.0] * 6, [0.0] * 2]}, "latents[1]"),
        ({"latent": [0.0] * 6, "latents": [[0.0] * 6]}, "exactly one input"),
        ({}, "latent"),
        ({"latent": [0.0] * 6, "extra": 1}, "extra"),
        ({"latent": {"nested": [0.0] * 6}}, "latent"),
    ],
)
def test_decode_refuses_bad_latents(client: httpx.Client, body: dict, where: str) -> None:
    error = assert_error(client.post("/v1/models/ae-6/decode", json=body), 422, code="invalid_request", says=where)
    assert error["detail"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused(client: httpx.Client, literal: str) -> None:
    body = f'{{"latent": [{literal}, 0, 0, 0, 0, 0]}}'  # JSON parsers accept these literals: we must not
    response = client.post("/v1/models/ae-6/decode", content=body, headers={"content-type": "application/json"})
    assert_error(response, 422, says="finite")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"digit": 10}, "digit"),
        ({"digit": -1}, "digit"),
        ({"digit": 1.5}, "digit"),
        ({"digit": 3, "sigma": -0.1}, "sigma"),
        ({"digit": 3, "sigma": 1e30}, "DIGITAE_MAX_SIGMA"),
        ({"digit": 3, "n": 0}, "n"),
        ({"digit": 3, "n": 10**6}, "DIGITAE_MAX_SAMPLES"),
        ({"digit": 3, "seed": -1}, "seed"),
        ({"digit": 3, "colour": "red"}, "colour"),
    ],
)
def test_sample_refuses_bad_parameters(client: httpx.Client, body: dict, where: str) -> None:
    assert_error(client.post("/v1/models/ae-6/sample", json=body), 422, says=where)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"from": {"digit": 1}, "to": {"digit": 2}, "steps": 1}, "steps"),
        ({"from": {"digit": 1}, "to": {"digit": 2}, "steps": 65}, "DIGITAE_MAX_INTERPOLATION_STEPS"),
        ({"from": {"digit": 1}, "to": {"latent": [1.0]}}, "to.latent"),
        ({"from": {"digit": 1, "latent": [0.0, 0.0]}, "to": {"digit": 2}}, "exactly one"),
        ({"from": {"digit": 1}}, "to"),
        ({"start": {"digit": 1}, "to": {"digit": 2}}, "from: Field required"),
        ({"from": {"image": "bm90IGFuIGltYWdl"}, "to": {"digit": 2}}, "from:"),
    ],
)
def test_interpolate_refuses_bad_ends(client: httpx.Client, body: dict, where: str) -> None:
    response = client.post("/v1/models/ae-2/interpolate", json=body)
    assert response.status_code in (415, 422)
    assert_error(response, response.status_code, says=where)


def test_bodies_that_are_not_what_a_route_reads(client: httpx.Client) -> None:
    url = "/v1/models/ae-6/encode"
    assert_error(client.post(url, content=b"", headers={"content-type": "application/json"}), 422, says="empty")
    assert_error(
        client.post(url, content=b"{not json", headers={"content-type": "application/json"}), 422, says="not valid JSON"
    )
    assert_error(client.post(url, json=[1, 2, 3]), 422, says="Input should be an object")
    assert_error(client.post(url, json="a string"), 422, says="Input should be an object")
    assert_error(
        client.post(url, content=b'{"image": "x"}', headers={"content-type": "text/plain"}),
        415,
        code="unsupported_media_type",
        says="application/json",
    )
    assert_error(
        client.post(url, content=b'{"image": "x"}'), 415, says="send 'Content-Type: application/json'"
    )  # no content type at all
    assert_error(
        client.post("/v1/models/ae-6/decode", files={"file": ("d.png", DIGIT_PNG)}), 415, says="send a JSON body"
    )
    assert_error(client.post(url, json={"pixels": EXAMPLE_PIXELS}), 422, says="scale")
    assert_error(
        client.post(url, json={"image": EXAMPLE_DIGIT_PNG_BASE64, "pixels": EXAMPLE_PIXELS, "scale": "0-255"}),
        422,
        says="exactly one",
    )
    assert_error(client.post(url, json={"pixels": [[0] * 28] * 27, "scale": "0-255"}), 422, says="pixels")
    assert_error(client.post(url, json={"pixels": [[300] * 28] * 28, "scale": "0-255"}), 422, says="pixels")
    assert_error(client.post(url, json={"pixels": EXAMPLE_PIXELS, "scale": "0-1"}), 422, says="0-255")
    assert_error(client.post(f"{url}/batch", json={"images": []}), 422, says="images")
    assert_error(
        client.post(f"{url}/batch", json={"images": [{"image": EXAMPLE_DIGIT_PNG_BASE64}] * (MAX_BATCH + 1)}),
        422,
        says="DIGITAE_MAX_BATCH",
    )
    nested = {"image": {"image": {"image": EXAMPLE_DIGIT_PNG_BASE64}}}
    assert_error(client.post(url, json=nested), 422, says="image")
    deep = "[" * 5000 + "]" * 5000
    assert_error(
        client.post(url, content=deep.encode(), headers={"content-type": "application/json"}),
        422,
        says="a valid request holds at most",
    )


def test_images_that_cannot_be_used(client: httpx.Client) -> None:
    url = "/v1/models/ae-6/encode"
    cases = {
        "truncated": (DIGIT_PNG[: len(DIGIT_PNG) // 2], 415, "truncated"),
        "empty": (b"", 415, "empty"),
        "pdf": (b"%PDF-1.4\n%...", 415, "PDF"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>', 415, "SVG"),
        "text": (b"hello, this is not an image", 415, "not a"),
    }
    for name, (data, status, says) in cases.items():
        assert_error(client.post(url, files={"file": (f"{name}.png", data, "image/png")}), status, says=says)
    lying = bytearray(png_bytes(np.zeros((1, 1), np.uint8)))
    lying[16:24] = (100_000).to_bytes(4, "big") * 2  # the header claims 100000 x 100000 pixels ...
    lying[29:33] = zlib.crc32(bytes(lying[12:29])).to_bytes(4, "big")  # ... with a valid checksum
    assert_error(
        client.post(url, files={"file": ("bomb.png", bytes(lying))}),
        413,
        code="payload_too_large",
        says="too many pixels",
    )
    assert_error(client.post(url, json={"image": "not base64 at all!"}), 422, says="base64")
    error = assert_error(
        client.post(f"{url}/batch", json={"images": [{"image": EXAMPLE_DIGIT_PNG_BASE64}, {"image": b64(b"xx")}]}),
        415,
        says="images[1]: the data is not a PNG",
    )
    assert error["message"].startswith("images[1]:")
    assert_error(client.post(url, files={"upload": ("d.png", DIGIT_PNG)}), 422, says="unknown multipart field")
    assert_error(
        client.post(url, data={"file": "text"}, files={"other": ("x", b"1")}),
        422,
        says="unknown multipart field 'other'",
    )
    assert_error(
        client.post(url, content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}),
        422,
        says="the multipart field 'file' is missing",
    )
    tiny = client.post(url, files={"file": ("1x1.png", png_bytes(np.full((1, 1), 255, np.uint8)))})
    assert tiny.status_code == 200
    blank = ok(
        client.post(
            "/v1/models/ae-6/reconstruct", files={"file": ("white.png", png_bytes(np.full((50, 50), 255, np.uint8)))}
        )
    )
    assert decode_png(blank["input"]).max() == 0  # no ink: an empty image, not an error


def test_oversized_bodies_are_refused_before_they_are_read(server_client: httpx.Client, server: ServerProcess) -> None:
    big = np.random.default_rng(0).integers(0, 256, (560, 560), dtype=np.uint8)  # noise: PNG cannot compress it
    over_image_cap = png_bytes(big)
    assert MAX_UPLOAD < len(over_image_cap) < MAX_UPLOAD * 4 / 3  # under the body cap, over the image cap
    assert_error(
        server_client.post("/v1/models/ae-6/encode", files={"file": ("big.png", over_image_cap)}), 413, says="limit"
    )
    huge = b"\0" * (8 * MAX_UPLOAD)
    assert_error(server_client.post("/v1/models/ae-6/encode", files={"file": ("huge.png", huge)}), 413, says="limit")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the running count must stop it
        for _ in range(64):
            yield b" " * (64 * 1024)

    streamed = httpx.post(
        f"{server.url}/v1/models/ae-6/encode", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(streamed, 413, says="the limit is 415,062 bytes")
    assert ok(server_client.get("/healthz"))  # the server is fine


# -- request ids, logs, metrics ---------------------------------------------------------------------------------------


def test_request_ids_are_echoed_and_logged(server_client: httpx.Client, server: ServerProcess) -> None:
    mine = server_client.get("/v1/models", headers={"x-request-id": "trace-abc.123"})
    assert mine.headers["x-request-id"] == "trace-abc.123"
    for weird in ("has spaces in it", "x" * 200, "new\u00e9line"):
        response = server_client.get("/healthz", headers={"x-request-id": weird.encode("utf-8")})
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    failed = server_client.get("/v1/models/nope", headers={"x-request-id": "trace-404"})
    assert failed.json()["error"]["request_id"] == "trace-404"

    def logged(method_path_status: str, request_id: str) -> bool:
        return any(
            method_path_status in line and f"request_id={request_id}" in line for line in server.log().splitlines()
        )

    deadline = time.monotonic() + 10  # the log is written by a background thread: give it a moment
    while not (logged("GET /v1/models 200", "trace-abc.123") and logged("GET /v1/models/nope 404", "trace-404")):
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.05)


def test_metrics_count_requests_by_route_template(client: httpx.Client) -> None:
    client.post("/v1/models/ae-2/decode", json={"latent": [0.0, 0.0]})
    text = client.get("/metrics").text
    assert re.search(
        r'digitae_http_requests_total\{method="POST",route="/v1/models/\{name\}/decode",status="200"\} '
        r"[1-9]",
        text,
    )
    assert 'digitae_http_request_duration_seconds_bucket{le="0.01",method="POST"' in text
    assert re.search(r'digitae_inference_seconds_count\{model="ae-2",operation="decode"\} [1-9]', text)


# -- micro-batching ---------------------------------------------------------------------------------------------


def _batch_stats(text: str, model: str, operation: str) -> tuple[float, float]:
    labels = rf'\{{model="{model}",operation="{operation}"\}}'
    total = re.search(rf"digitae_microbatch_size_sum{labels} (\S+)", text)
    count = re.search(rf"digitae_microbatch_size_count{labels} (\S+)", text)
    return (float(total.group(1)), float(count.group(1))) if total and count else (0.0, 0.0)


def test_concurrent_requests_share_forward_passes_and_each_gets_its_own_answer(
    server_client: httpx.Client, server: ServerProcess
) -> None:
    images = shifted_digits(64)
    bodies = [{"pixels": image.tolist(), "scale": "0-255"} for image in images]
    alone = [ok(server_client.post("/v1/models/vae-2/reconstruct", json=body)) for body in bodies]
    before = _batch_stats(server_client.get("/metrics").text, "vae-2", "reconstruct")

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=64)) as http:
            return await asyncio.gather(*(http.post("/v1/models/vae-2/reconstruct", json=b) for b in bodies))

    together = [ok(response) for response in asyncio.run(all_at_once())]
    after = _batch_stats(server_client.get("/metrics").text, "vae-2", "reconstruct")
    items, batches = after[0] - before[0], after[1] - before[1]
    assert items == 64
    assert batches < 64, "some forward passes should have carried several requests"

    for mine, reference, image in zip(together, alone, images, strict=True):
        np.testing.assert_array_equal(decode_png(mine["input"]), image)  # each caller got its own input back
        np.testing.assert_allclose(mine["latent"], reference["latent"], rtol=1e-5, atol=1e-6)
        assert mine["loss"]["mse"] == pytest.approx(reference["loss"]["mse"], rel=1e-5)
        pixel_gap = np.abs(decode_png(mine["image"]).astype(int) - decode_png(reference["image"]).astype(int)).max()
        assert pixel_gap <= 1


@pytest.fixture(scope="module")
def client(app_client: TestClient) -> TestClient:
    """In process: this module's requests need no socket (those that do ask for `server_client`)."""
    return app_client
