"""The inference routes: classify, encode, reconstruct and decode, single, batched or bulk `.npy`."""

from __future__ import annotations

from functools import partial

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from models.corruptions import corrupt_all
from service.api import openapi as docs
from service.api.bulk import bulk_chunk, checked_array_field, read_bulk
from service.api.declarations import BODY_ERRORS
from service.api.deps import (
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
from service.codec.arrays import (
    NPY,
    in_chunks,
    npy_response,
    stream_answer,
)
from service.codec.inputs import batch_names, load_images, media_type, read_image_request, read_json
from service.codec.render import (
    DECODE_FIELDS,
    ENCODE_FIELDS,
    RECONSTRUCT_ARRAYS,
    RECONSTRUCT_FIELDS,
    array_headers,
    corruption_view,
    encoding_array,
    encoding_view,
    json_response,
    reconstruction_array,
    reconstruction_view,
)
from service.codec.schemas import DecodeRequest, EncodeRequest, ReconstructRequest
from service.engine.inference import Reconstruction

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
async def encode(request: Request) -> Response:
    call = array_model_call(request)
    output, model = call.output, call.model
    if media_type(request) == NPY:
        field = checked_array_field(call, ENCODE_FIELDS, ENCODE_FIELDS)
        array, release = await read_bulk(request, call, "images")
        want = output.fields(ENCODE_FIELDS)
        chunks = in_chunks(array, bulk_chunk(call), partial(call.engine.in_bulk, model, "encode"))
        return stream_answer(
            chunks, len(array), npy=output.npy, to_array=partial(encoding_array, field=field),
            to_view=partial(encoding_view, want=want), release=release, headers=array_headers(field, model.kind),
        )  # fmt: skip
    body, sources = await read_image_request(request, EncodeRequest, call.validation_context)
    images = await load_images(
        sources, call.settings, batch_names(len(sources), body.is_batch), call.service.decode_pool
    )
    encodings = await call.engine.encode(model, images)
    if output.npy:
        field = checked_array_field(call, ENCODE_FIELDS, ENCODE_FIELDS)
        return npy_response(encoding_array(encodings, field), array_headers(field, model.kind))
    want = output.fields(ENCODE_FIELDS)
    views = [encoding_view(e, want) for e in encodings]
    return json_response({"results": views} if body.is_batch else views[0])


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
async def reconstruct(request: Request) -> Response:
    call = image_model_call(request)
    output, model = call.output, call.model
    if media_type(request) == NPY:
        field = checked_array_field(call, RECONSTRUCT_ARRAYS, RECONSTRUCT_FIELDS)
        array, release = await read_bulk(request, call, "images")
        want = output.fields(RECONSTRUCT_FIELDS)

        async def clean_pairs(part: list[np.ndarray]) -> list[tuple[Reconstruction, np.ndarray]]:
            results = await call.engine.in_bulk(model, "reconstruct", [(image, image) for image in part])
            return list(zip(results, part, strict=True))

        return stream_answer(
            in_chunks(array, bulk_chunk(call), clean_pairs), len(array), npy=output.npy,
            to_array=lambda pairs: reconstruction_array([r for r, _ in pairs], [s for _, s in pairs], field),
            to_view=lambda pair: reconstruction_view(pair[0], pair[1], output, None, want),
            release=release, headers=array_headers(field, model.kind),
        )  # fmt: skip
    body, sources = await read_image_request(request, ReconstructRequest, call.validation_context, ("corruption",))
    clean = await load_images(
        sources, call.settings, batch_names(len(sources), body.is_batch), call.service.decode_pool
    )
    plan = body.corruption.plan() if body.corruption is not None else None
    seen, applied = corrupt_all(clean, plan)
    results = await call.engine.reconstruct(model, list(zip(seen, clean, strict=True)))
    if output.png:
        return output.png_response([r.image for r in results])
    if output.npy:
        field = checked_array_field(call, RECONSTRUCT_ARRAYS, RECONSTRUCT_FIELDS)
        return npy_response(reconstruction_array(results, seen, field), array_headers(field, model.kind))
    want = output.fields(RECONSTRUCT_FIELDS)
    views = [
        reconstruction_view(r, s, output, corruption_view(plan, rectangle), want)
        for r, s, rectangle in zip(results, seen, applied, strict=True)
    ]
    return json_response({"results": views} if body.is_batch else views[0])


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
async def decode(request: Request) -> Response:
    call = image_model_call(request)
    output, model = call.output, call.model
    want = output.fields(DECODE_FIELDS)
    if media_type(request) == NPY:
        checked_array_field(call, DECODE_FIELDS, DECODE_FIELDS)
        array, release = await read_bulk(request, call, "latents")
        return stream_answer(
            in_chunks(array, bulk_chunk(call), partial(call.engine.in_bulk, model, "decode")), len(array),
            npy=output.npy,
            to_array=np.stack, to_view=lambda image: {"image": output.b64(image)} if want else {},
            release=release, headers=array_headers("image", model.kind),
        )  # fmt: skip
    body = await read_json(request, DecodeRequest, call.validation_context)
    latents = body.latents if body.latents is not None else [body.latent]
    images = await call.engine.decode(model, [np.asarray(z, dtype=np.float32) for z in latents])
    if output.png:
        return output.png_response(images)
    if output.npy:
        return npy_response(np.stack(images), array_headers("image", model.kind))
    views = [{"image": output.b64(image)} for image in images]
    return json_response({"results": views} if body.latents is not None else views[0])
