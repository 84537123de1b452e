"""The inference routes: encode, reconstruct and decode, each a single operation and a `/batch` one (JSON batches
and bulk `.npy` arrays); classify is models.py's.

Each reads the request (codec), runs the engine, and answers in the format chosen once (codec/formats.py); a bulk
`.npy` body goes to api/bulk.py's one handler. The single operations still answer their old batch forms (a batch or
`.npy` body) for one release, marked deprecated with their successor (`declarations.successor_of`).
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from models.corruptions import corrupt_all
from service.api import examples
from service.api import openapi as docs
from service.api.bulk import BulkOperation, takes_bulk
from service.api.declarations import BODY_ERRORS, successor_of
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
from service.codec.corruption_request import CorruptionSpec
from service.codec.formats import answer_format
from service.codec.inputs import (
    ImageSource,
    batch_names,
    load_images,
    read_image_batch,
    read_image_request,
    read_json,
    read_json_or_batch,
)
from service.codec.render import DECODING, ENCODING, RECONSTRUCTION, Reconstructed, corruption_view
from service.codec.schemas import (
    DecodeBatchRequest,
    DecodeRequest,
    EncodeBatchRequest,
    EncodeRequest,
    ReconstructBatchRequest,
    ReconstructRequest,
)
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

SINGLE_IMAGE_INPUTS = (
    "Send JSON (`image` as base64, or `pixels` with `scale`), upload the file as multipart field `file`, or post the "
    "file itself with its type (`Content-Type: image/png`, ...)."
)
BATCH_FORM_DEPRECATED = (
    "A batch (`images`) or a `.npy` body sent here is still answered as before, for one release, with "
    "`Deprecation: true` and a `Link` to the `/batch` operation: send them there."
)
BATCH_IMAGE_INPUTS = (
    "Send JSON `images` (up to max_batch, each `{image}` or `{pixels, scale}`), answered with `results` in order, "
    "each the same as its single call; or a `.npy` array (`application/x-npy`, N x 28 x 28, up to max_bulk images), "
    "answered in chunks, streamed."
)


@v1.post(
    "/models/{name}/encode",
    tags=["inference"],
    summary="Encode an image into the latent space",
    description="One image -> its `latent` code (for a VAE the posterior mean mu, with `logvar` beside it), the "
    f"`nearest_digit` by centroid and the ten `centroid_distances`. {SINGLE_IMAGE_INPUTS} `fields` trims the "
    f"answer. Several images: `POST /v1/models/{{name}}/encode/batch`. {BATCH_FORM_DEPRECATED}",
    response_model=EncodeResult,
    responses={
        **docs.ok_response(
            examples.ENCODE_RESPONSE,
            npy="one array of one row: `latent` (1 x m float32, the default), `logvar`, `nearest_digit` or "
            "`centroid_distances`, chosen by `fields`.",
            deprecated_forms=True,
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(EncodeRequest, examples.ENCODE_EXAMPLES, form_fields={}, raw_images=True)
    | array_call_parameters(),
)
@takes_bulk(ENCODE_BULK, array_model_call, deprecated=True)
async def encode(request: Request, call: ModelCall) -> Response:
    answer = answer_format(call.output, ENCODING, call.model, bulk=False)
    body, sources = await read_image_request(request, EncodeRequest, EncodeBatchRequest, call.validation_context)
    response = answer.answer(await _encode(call, sources, body.is_batch), body.is_batch)
    return successor_of(request, response) if body.is_batch else response


@v1.post(
    "/models/{name}/encode/batch",
    tags=["inference"],
    summary="Encode images into the latent space",
    description=f"Each image -> its encoding, as `/encode` answers it. {BATCH_IMAGE_INPUTS} `fields` trims each "
    "result (for a `.npy` answer, it names the one array).",
    response_model=EncodeBatchResult,
    responses={
        **docs.ok_response(
            examples.batch_of(examples.ENCODE_RESPONSE),
            npy="one array: `latent` (N x m float32, the default), `logvar`, `nearest_digit` (N uint8) or "
            "`centroid_distances` (N x 10), chosen by `fields`.",
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(EncodeBatchRequest, examples.ENCODE_BATCH_EXAMPLES, npy=docs.NPY_IMAGES)
    | array_call_parameters(),
)
@takes_bulk(ENCODE_BULK, array_model_call)
async def encode_batch(request: Request, call: ModelCall) -> Response:
    answer = answer_format(call.output, ENCODING, call.model, bulk=False)
    _, sources = await read_image_batch(request, EncodeBatchRequest, call.validation_context)
    return answer.answer(await _encode(call, sources, True), True)


async def _encode(call: ModelCall, sources: list[ImageSource], is_batch: bool) -> list[Encoding]:
    images = await load_images(sources, call.settings, batch_names(len(sources), is_batch), call.service.decode_pool)
    return await call.engine.encode(call.model, images)


RECONSTRUCT_DESCRIPTION = (
    "the reconstruction (`image`), what the model saw (`input`: preprocessed, then corrupted if asked), the "
    "`latent`, and the `loss` against the clean preprocessed input: `mse` and `bce` per pixel, plus `kl` and `elbo` "
    "(nats) for a VAE. `corruption` runs the report's robustness experiment: `occlusion` (a random rectangle by "
    "`area`/`aspect`, or an explicit `rectangle`) then gaussian `noise`, both drawn from `seed` (echoed back; the "
    "same seed gives the same corruption). `fields` trims the answer: images not asked for are never encoded."
)


@v1.post(
    "/models/{name}/reconstruct",
    tags=["inference"],
    summary="Reconstruct an image, optionally corrupted first",
    description=f"One image -> {RECONSTRUCT_DESCRIPTION} {SINGLE_IMAGE_INPUTS} In a multipart upload, send "
    "`corruption` as JSON text in its own field; a raw image body takes no corruption. Several images: `POST "
    f"/v1/models/{{name}}/reconstruct/batch`. {BATCH_FORM_DEPRECATED}",
    response_model=ReconstructResult,
    responses={
        **docs.ok_response(
            examples.RECONSTRUCT_RESPONSE,
            png="the reconstruction.",
            npy="one array of one row: `image` (1 x 28 x 28 float32, the default), `input`, `latent`, `logvar`, "
            "`nearest_digit` or `loss` (1 x 2: mse, bce; 1 x 4 for a VAE: + kl, elbo; header X-Array-Columns), "
            "chosen by `fields`.",
            deprecated_forms=True,
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(
        ReconstructRequest,
        examples.RECONSTRUCT_EXAMPLES,
        form_fields={"corruption": 'optional, as JSON text, e.g. {"noise": {"std": 0.5}, "seed": 7}'},
        raw_images=True,
    )
    | image_call_parameters(),
)
@takes_bulk(RECONSTRUCT_BULK, image_model_call, deprecated=True)
async def reconstruct(request: Request, call: ModelCall) -> Response:
    answer = answer_format(call.output, RECONSTRUCTION, call.model, bulk=False)
    body, sources = await read_image_request(
        request, ReconstructRequest, ReconstructBatchRequest, call.validation_context, ("corruption",)
    )
    results = await _reconstruct(call, sources, body.corruption, body.is_batch)
    response = answer.answer(results, body.is_batch)
    return successor_of(request, response) if body.is_batch else response


@v1.post(
    "/models/{name}/reconstruct/batch",
    tags=["inference"],
    summary="Reconstruct images, optionally corrupted first",
    description=f"Each image -> {RECONSTRUCT_DESCRIPTION} {BATCH_IMAGE_INPUTS} `corruption` applies to every image "
    "of a JSON batch (a `.npy` array takes none).",
    response_model=ReconstructBatchResult,
    responses={
        **docs.ok_response(
            examples.batch_of(examples.RECONSTRUCT_RESPONSE),
            png="the reconstructions, as a grid.",
            npy="one array: `image` (N x 28 x 28 float32, the default), `input`, `latent`, `logvar`, "
            "`nearest_digit` or `loss` (N x 2: mse, bce; N x 4 for a VAE: + kl, elbo; header X-Array-Columns), "
            "chosen by `fields`.",
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(ReconstructBatchRequest, examples.RECONSTRUCT_BATCH_EXAMPLES, npy=docs.NPY_IMAGES)
    | image_call_parameters(),
)
@takes_bulk(RECONSTRUCT_BULK, image_model_call)
async def reconstruct_batch(request: Request, call: ModelCall) -> Response:
    answer = answer_format(call.output, RECONSTRUCTION, call.model, bulk=False)
    body, sources = await read_image_batch(request, ReconstructBatchRequest, call.validation_context)
    return answer.answer(await _reconstruct(call, sources, body.corruption, True), True)


async def _reconstruct(
    call: ModelCall, sources: list[ImageSource], corruption: CorruptionSpec | None, is_batch: bool
) -> list[Reconstructed]:
    names = batch_names(len(sources), is_batch)
    clean = await load_images(sources, call.settings, names, call.service.decode_pool)
    plan = corruption.plan() if corruption is not None else None
    seen, applied = corrupt_all(clean, plan)
    results = await call.engine.reconstruct(call.model, list(zip(seen, clean, strict=True)))
    corruptions = [corruption_view(plan, rectangle) for rectangle in applied]
    return list(zip(results, seen, corruptions, strict=True))


@v1.post(
    "/models/{name}/decode",
    tags=["inference"],
    summary="Decode a latent vector into an image",
    description="`latent` (exactly latent_dim finite numbers, each within ±1e6) -> the decoded `image`. Several "
    f"latents: `POST /v1/models/{{name}}/decode/batch`. {BATCH_FORM_DEPRECATED.replace('`images`', '`latents`')}",
    response_model=DecodeResult,
    responses={
        **docs.ok_response(
            examples.DECODE_RESPONSE,
            png="the image.",
            npy="the image, 1 x 28 x 28 float32.",
            deprecated_forms=True,
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(DecodeRequest, examples.DECODE_EXAMPLES) | image_call_parameters(),
)
@takes_bulk(DECODE_BULK, image_model_call, deprecated=True)
async def decode(request: Request, call: ModelCall) -> Response:
    answer = answer_format(call.output, DECODING, call.model, bulk=False)
    body = await read_json_or_batch(request, DecodeRequest, DecodeBatchRequest, call.validation_context)
    response = answer.answer(await _decode(call, body.latents), body.is_batch)
    return successor_of(request, response) if body.is_batch else response


@v1.post(
    "/models/{name}/decode/batch",
    tags=["inference"],
    summary="Decode latent vectors into images",
    description="`latents` (up to max_batch, each exactly latent_dim finite numbers within ±1e6) -> `results`, in "
    "order, each the same as its single call; or a `.npy` array of N x latent_dim float32 (`application/x-npy`, up "
    "to max_bulk), answered in chunks, streamed.",
    response_model=DecodeBatchResult,
    responses={
        **docs.ok_response(
            examples.batch_of(examples.DECODE_RESPONSE),
            png="the images, as a grid.",
            npy="the images, N x 28 x 28 float32.",
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(DecodeBatchRequest, examples.DECODE_BATCH_EXAMPLES, npy=docs.NPY_LATENTS)
    | image_call_parameters(),
)
@takes_bulk(DECODE_BULK, image_model_call)
async def decode_batch(request: Request, call: ModelCall) -> Response:
    answer = answer_format(call.output, DECODING, call.model, bulk=False)
    body = await read_json(request, DecodeBatchRequest, call.validation_context)
    return answer.answer(await _decode(call, body.latents), True)


async def _decode(call: ModelCall, latents: list[list[float]]) -> list[np.ndarray]:
    return await call.engine.decode(call.model, [np.asarray(z, dtype=np.float32) for z in latents])
