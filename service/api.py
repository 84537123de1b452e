"""The routes. Each one reads its body, asks the engine, and renders the answer; nothing else."""

from __future__ import annotations

import secrets

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from service import docs
from service.deps import ImageModelCall, JsonModelCall, JsonServiceDep, ServiceDep
from service.errors import ApiError, error_responses
from service.inference import corrupt_all, corruption_plan, path_ends, sample_latents, straight_path
from service.inputs import ImageSource, batch_names, load_images, read_image_request, read_json
from service.observability import metrics_text
from service.render import (
    corruption_view,
    encoding_view,
    json_response,
    model_detail,
    model_summary,
    reconstruction_view,
)
from service.schemas import (
    DecodeBatchResult,
    DecodeRequest,
    DecodeResult,
    EncodeBatchResult,
    EncodeRequest,
    EncodeResult,
    Health,
    InterpolateRequest,
    InterpolateResult,
    ModelDetail,
    ModelSummary,
    Readiness,
    ReconstructBatchResult,
    ReconstructRequest,
    ReconstructResult,
    SampleRequest,
    SampleResult,
)

READ_ERRORS = (401, 404, 406, 422, 503)
BODY_ERRORS = (401, 404, 406, 413, 415, 422, 503)

v1 = APIRouter(prefix="/v1")  # create_app adds the API-key check when keys are set
ops = APIRouter(tags=["operations"])


# -- models ---------------------------------------------------------------------------------------------


@v1.get(
    "/models",
    tags=["models"],
    summary="List the models",
    description="Every auto-encoder being served: its `name` (use it in the other routes), `kind` (`ae` or `vae`), "
    "`latent_dim` and the metrics from its model card. The digit classifier that judged the experiments is "
    "verified at startup but not served, so it is not listed.",
    response_model=list[ModelSummary],
    responses=error_responses(401, 406),
)
async def list_models(service: JsonServiceDep) -> Response:
    return json_response([model_summary(m) for m in service.registry.models.values()])


@v1.get(
    "/models/{name}",
    tags=["models"],
    summary="Describe one model",
    description="The model's summary plus its per-digit `centroids` (digit -> mean latent vector, what "
    "`nearest_digit` and `/sample` use), the `spread` around them, and its whole model card.",
    response_model=ModelDetail,
    responses=error_responses(*READ_ERRORS),
)
async def describe_model(call: JsonModelCall) -> Response:
    return json_response(model_detail(call.model))


# -- encode, reconstruct, decode ---------------------------------------------------------------------------


@v1.post(
    "/models/{name}/encode",
    tags=["inference"],
    summary="Encode an image into the latent space",
    description="One image -> its `latent` code (for a VAE the posterior mean mu, with `logvar` beside it), the "
    "`nearest_digit` by centroid and the ten `centroid_distances`. Send JSON (`image` as base64, or `pixels` with "
    "`scale`), or upload the file as multipart field `file`. A batch (`images`: up to max_batch) is answered with "
    "`results`, in order, each the same as its single call.",
    response_model=EncodeResult | EncodeBatchResult,
    responses={**docs.ok_response(docs.ENCODE_RESPONSE), **error_responses(*BODY_ERRORS)},
    openapi_extra=docs.request_body(EncodeRequest, docs.ENCODE_EXAMPLES, form_fields={}),
)
async def encode(request: Request, call: JsonModelCall) -> Response:
    body, sources = await read_image_request(request, EncodeRequest, call.validation_context)
    images = await load_images(sources, call.settings, batch_names(len(sources), body.is_batch))
    views = [encoding_view(e) for e in await call.engine.encode(call.model, images)]
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
    "`corruption` as JSON text in its own field. A batch (`images`) is answered with `results`.",
    response_model=ReconstructResult | ReconstructBatchResult,
    responses={
        **docs.ok_response(docs.RECONSTRUCT_RESPONSE, png="the reconstruction (a grid of them for a batch)."),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(
        ReconstructRequest,
        docs.RECONSTRUCT_EXAMPLES,
        form_fields={"corruption": 'optional, as JSON text, e.g. {"noise": {"std": 0.5}, "seed": 7}'},
    ),
)
async def reconstruct(request: Request, call: ImageModelCall) -> Response:
    body, sources = await read_image_request(request, ReconstructRequest, call.validation_context, ("corruption",))
    clean = await load_images(sources, call.settings, batch_names(len(sources), body.is_batch))
    plan = corruption_plan(body.corruption)
    seen, applied = corrupt_all(clean, plan)
    results = await call.engine.reconstruct(call.model, list(zip(seen, clean, strict=True)))
    output = call.output
    if output.png:
        return output.png_response([r.image for r in results])
    views = [
        reconstruction_view(r, s, output, corruption_view(plan, rectangle))
        for r, s, rectangle in zip(results, seen, applied, strict=True)
    ]
    return json_response({"results": views} if body.is_batch else views[0])


@v1.post(
    "/models/{name}/decode",
    tags=["inference"],
    summary="Decode a latent vector into an image",
    description="`latent` (exactly latent_dim finite numbers, each within ±1e6) -> the decoded `image`. A batch "
    "(`latents`: up to max_batch) is answered with `results`.",
    response_model=DecodeResult | DecodeBatchResult,
    responses={
        **docs.ok_response(docs.DECODE_RESPONSE, png="the image (a grid for a batch)."),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(DecodeRequest, docs.DECODE_EXAMPLES),
)
async def decode(request: Request, call: ImageModelCall) -> Response:
    body = await read_json(request, DecodeRequest, call.validation_context)
    latents = body.latents if body.latents is not None else [body.latent]
    images = await call.engine.decode(call.model, [np.asarray(z, dtype=np.float32) for z in latents])
    output = call.output
    if output.png:
        return output.png_response(images)
    views = [{"image": output.b64(image)} for image in images]
    return json_response({"results": views} if body.latents is not None else views[0])


# -- sample, interpolate ------------------------------------------------------------------------------------


@v1.post(
    "/models/{name}/sample",
    tags=["generation"],
    summary="Draw new digits around a centroid",
    description="`n` latents drawn from N(centroid of `digit`, `sigma`² I), decoded into `images` (the report's "
    "sampling experiment: the larger sigma, the further from the digit). A VAE without `digit` samples its prior "
    "N(0, I) (sigma unused). The same `seed` gives the same images; it is drawn when absent and echoed back.",
    response_model=SampleResult,
    responses={
        **docs.ok_response(docs.SAMPLE_RESPONSE, png="all samples in one grid (rows of 10)."),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(SampleRequest, docs.SAMPLE_EXAMPLES),
)
async def sample(request: Request, call: ImageModelCall) -> Response:
    body = await read_json(request, SampleRequest, call.validation_context)
    model, output = call.model, call.output
    if body.digit is None and model.kind != "vae":
        raise ApiError(422, f"digit: required for {model.name}, an auto-encoder without a prior; give a digit 0-9")
    seed = body.seed if body.seed is not None else secrets.randbits(63)
    latents = sample_latents(model, body.digit, body.sigma, body.n, seed)
    images = await call.engine.decode(model, list(latents))
    if output.png:
        return output.png_response(images)
    return json_response(
        {
            "images": [output.b64(image) for image in images],
            "latents": latents.tolist(),
            "digit": body.digit,
            "sigma": body.sigma,
            "seed": seed,
        }
    )


@v1.post(
    "/models/{name}/interpolate",
    tags=["generation"],
    summary="Walk the straight line between two points of the latent space",
    description="`from` and `to` are each a `digit` (its centroid), a `latent`, or an image (`image` base64, or "
    "`pixels` with `scale`; encoded first). The answer has `steps` `images` decoded at evenly spaced points, ends "
    "included, with their `latents` and position `t` (the report's Figs. 5 and 7 as a request).",
    response_model=InterpolateResult,
    responses={
        **docs.ok_response(docs.INTERPOLATE_RESPONSE, png="the images in one row."),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(InterpolateRequest, docs.INTERPOLATE_EXAMPLES),
)
async def interpolate(request: Request, call: ImageModelCall) -> Response:
    body = await read_json(request, InterpolateRequest, call.validation_context)
    ends = {"from": body.start, "to": body.end}
    given = {name: ImageSource.of(end) for name, end in ends.items() if end.is_image}
    images = await load_images(list(given.values()), call.settings, list(given))
    start, end = await path_ends(call.engine, call.model, ends, dict(zip(given, images, strict=True)))
    t, latents = straight_path(start, end, body.steps)
    images = await call.engine.decode(call.model, list(latents))
    output = call.output
    if output.png:
        return output.png_response(images, columns=len(images))
    return json_response(
        {
            "images": [output.b64(image) for image in images],
            "latents": latents.tolist(),
            "t": t.tolist(),
        }
    )


# -- operations ------------------------------------------------------------------------------------------------


@ops.get("/healthz", summary="Liveness", description="200 while the process runs.", response_model=Health)
async def healthz() -> Response:
    return json_response({"status": "ok"})


@ops.get(
    "/readyz",
    summary="Readiness",
    description="200 once every model is loaded and verified (with the served models, the verified judges and "
    "any skipped checkpoints); 503 before that and while stopping.",
    response_model=Readiness,
    responses=error_responses(503),
)
async def readyz(service: ServiceDep) -> Response:
    registry = service.registry
    return json_response(
        {"status": "ready", "models": list(registry.models), "judges": registry.judges, "skipped": registry.skipped}
    )


@ops.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Requests and latency by route template and status, micro-batch sizes and inference time, in "
    "Prometheus text format.",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics() -> Response:
    content, media_type = metrics_text()
    return Response(content, media_type=media_type)
