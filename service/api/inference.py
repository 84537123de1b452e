"""The inference routes: encode, reconstruct and decode, single, batched or bulk `.npy` (classify is models.py's).

Each reads the request (codec), runs the engine, and answers in the format chosen once (codec/formats.py); a bulk
`.npy` body goes to api/bulk.py's one handler.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from models.corruptions import corrupt_all
from service.api import openapi as docs
from service.api.bulk import BulkOperation, takes_bulk
from service.api.declarations import BODY_ERRORS
from service.api.deps import (
    ModelCall,
    array_call_parameters,
    array_model_call,
    image_call_parameters,
    image_model_call,
)
from service.api.errors import error_responses
from service.codec.answers import (
    DecodeBatchResult,
    DecodeResult,
    EncodeBatchResult,
    EncodeResult,
    ReconstructBatchResult,
    ReconstructResult,
)
from service.codec.formats import answer_format
from service.codec.inputs import batch_names, load_images, read_image_request, read_json
from service.codec.render import DECODING, ENCODING, RECONSTRUCTION, Reconstructed, corruption_view
from service.codec.schemas import DecodeRequest, EncodeRequest, ReconstructRequest
from service.engine.inference import Encoding


async def _encode_chunk(call: ModelCall, images: list[np.ndarray]) -> list[Encoding]:
    return await call.engine.in_bulk(call.model, "encode", images)


async def _reconstruct_chunk(call: ModelCall, images: list[np.ndarray]) -> list[Reconstructed]:
    """Clean reconstructions: the model sees each image as it is, and is scored against it."""
    results = await call.engine.in_bulk(call.model, "reconstruct", [(image, image) for image in images])
    return [(result, image, None) for result, image in zip(results, images, strict=True)]


async def _decode_chunk(call: ModelCall, latents: list[np.ndarray]) -> list[np.ndarray]:
    return await call.engine.in_bulk(call.model, "decode", latents)


ENCODE_BULK = BulkOperation("images", _encode_chunk, ENCODING)
RECONSTRUCT_BULK = BulkOperation("images", _reconstruct_chunk, RECONSTRUCTION)
DECODE_BULK = BulkOperation("latents", _decode_chunk, DECODING)

v1 = APIRouter(prefix="/v1")  # create_app adds the API-key check when keys are set


@v1.post(
    "/models/{name}/encode",
    tags=["inference"],
    summary="Encode an image into the latent space",
    description="One image -> its `latent` code (for a VAE the posterior mean mu, with `logvar` beside it), the "
    "`nearest_digit` by centroid and the ten `centroid_distances`. Send JSON (`image` as base64, or `pixels` with "
    "`scale`), upload the file as multipart field `file`, or post the file itself with its type (`Content-Type: "
    "image/png`, ...). A batch (`images`: up to max_batch) is answered with `results`, in order, each the same as its "
    "single call; a `.npy` array (`application/x-npy`, up to max_bulk images) is answered in chunks, streamed. "
    "`fields` trims the answer.",
    response_model=EncodeResult | EncodeBatchResult,
    responses={
        **docs.ok_response(
            docs.ENCODE_RESPONSE,
            npy="one array: `latent` (N x m float32, the default), `logvar`, "
            "`nearest_digit` (N uint8) or `centroid_distances` (N x 10), chosen by `fields`.",
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(
        EncodeRequest, docs.ENCODE_EXAMPLES, form_fields={}, raw_images=True, npy=docs.NPY_IMAGES
    )
    | array_call_parameters(),
)
@takes_bulk(ENCODE_BULK, array_model_call)
async def encode(request: Request, call: ModelCall) -> Response:
    answer = answer_format(call.output, ENCODING, call.model, bulk=False)
    body, sources = await read_image_request(request, EncodeRequest, call.validation_context)
    images = await load_images(
        sources, call.settings, batch_names(len(sources), body.is_batch), call.service.decode_pool
    )
    return answer.answer(await call.engine.encode(call.model, images), body.is_batch)


@v1.post(
    "/models/{name}/reconstruct",
    tags=["inference"],
    summary="Reconstruct an image, optionally corrupted first",
    description="One image -> the reconstruction (`image`), what the model saw (`input`: preprocessed, then "
    "corrupted if asked), the `latent`, and the `loss` against the clean preprocessed input: `mse` and `bce` per "
    "pixel, plus `kl` and `elbo` (nats) for a VAE. `corruption` runs the report's robustness experiment: "
    "`occlusion` (a random rectangle by `area`/`aspect`, or an explicit `rectangle`) then gaussian `noise`, both "
    "drawn from `seed` (echoed back; the same seed gives the same corruption). In a multipart upload, send "
    "`corruption` as JSON text in its own field. The file itself may also be the body (`Content-Type: image/png`, "
    "...; no corruption then). A batch (`images`) is answered with `results`; a `.npy` array (`application/x-npy`, "
    "up to max_bulk images, no corruption) in chunks, streamed. `fields` trims the answer: images not asked for "
    "are never encoded.",
    response_model=ReconstructResult | ReconstructBatchResult,
    responses={
        **docs.ok_response(
            docs.RECONSTRUCT_RESPONSE,
            png="the reconstruction (a grid of them for a batch).",
            npy="one array: `image` (N x 28 x 28 float32, the default), `input`, `latent`, `logvar`, "
            "`nearest_digit` or `loss` (N x 2: mse, bce; N x 4 for a VAE: + kl, elbo; header X-Array-Columns), "
            "chosen by `fields`.",
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(
        ReconstructRequest,
        docs.RECONSTRUCT_EXAMPLES,
        form_fields={"corruption": 'optional, as JSON text, e.g. {"noise": {"std": 0.5}, "seed": 7}'},
        raw_images=True,
        npy=docs.NPY_IMAGES,
    )
    | image_call_parameters(),
)
@takes_bulk(RECONSTRUCT_BULK, image_model_call)
async def reconstruct(request: Request, call: ModelCall) -> Response:
    answer = answer_format(call.output, RECONSTRUCTION, call.model, bulk=False)
    body, sources = await read_image_request(request, ReconstructRequest, call.validation_context, ("corruption",))
    clean = await load_images(
        sources, call.settings, batch_names(len(sources), body.is_batch), call.service.decode_pool
    )
    plan = body.corruption.plan() if body.corruption is not None else None
    seen, applied = corrupt_all(clean, plan)
    results = await call.engine.reconstruct(call.model, list(zip(seen, clean, strict=True)))
    corruptions = [corruption_view(plan, rectangle) for rectangle in applied]
    return answer.answer(list(zip(results, seen, corruptions, strict=True)), body.is_batch)


@v1.post(
    "/models/{name}/decode",
    tags=["inference"],
    summary="Decode a latent vector into an image",
    description="`latent` (exactly latent_dim finite numbers, each within ±1e6) -> the decoded `image`. A batch "
    "(`latents`: up to max_batch) is answered with `results`; a `.npy` array of N x latent_dim float32 "
    "(`application/x-npy`, up to max_bulk) in chunks, streamed.",
    response_model=DecodeResult | DecodeBatchResult,
    responses={
        **docs.ok_response(
            docs.DECODE_RESPONSE, png="the image (a grid for a batch).", npy="the images, N x 28 x 28 float32."
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(DecodeRequest, docs.DECODE_EXAMPLES, npy=docs.NPY_LATENTS)
    | image_call_parameters(),
)
@takes_bulk(DECODE_BULK, image_model_call)
async def decode(request: Request, call: ModelCall) -> Response:
    answer = answer_format(call.output, DECODING, call.model, bulk=False)
    body = await read_json(request, DecodeRequest, call.validation_context)
    latents = body.latents if body.latents is not None else [body.latent]
    images = await call.engine.decode(call.model, [np.asarray(z, dtype=np.float32) for z in latents])
    return answer.answer(images, body.latents is not None)
