"""The routes. Each one reads its body, asks the engine, and renders the answer; nothing else."""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from models.corruptions import GaussianNoise, Occlusion
from service import docs
from service.deps import ImageModelCall, JsonModelCall, JsonServiceDep, ModelCall, ServiceDep
from service.errors import ApiError, error_responses
from service.inference import CorruptionPlan, corrupt, sample_latents, straight_path
from service.inputs import ImageSource, batch_names, load_images, read_image_request, read_json
from service.observability import metrics_text
from service.reloading import signal_other_workers
from service.render import (
    encoding_view,
    json_response,
    model_detail,
    model_summary,
    reconstruction_view,
)
from service.schemas import (
    Atlas,
    ClassifyBatchResult,
    ClassifyRequest,
    ClassifyResult,
    CorruptionSpec,
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
    OcclusionSpec,
    PathEnd,
    Readiness,
    ReconstructBatchResult,
    ReconstructRequest,
    ReconstructResult,
    ReloadResult,
    SampleRequest,
    SampleResult,
)

READ_ERRORS = (401, 404, 406, 422, 503)
BODY_ERRORS = (401, 404, 406, 413, 415, 422, 503)

v1 = APIRouter(prefix="/v1")  # create_app adds the API-key check when keys are set
ops = APIRouter(tags=["operations"])
admin = APIRouter(prefix="/admin", tags=["admin"])  # create_app mounts it, with its key check, when a key is set


# -- models ---------------------------------------------------------------------------------------------


@v1.get(
    "/models",
    tags=["models"],
    summary="List the models",
    description="Every auto-encoder being served: its `name` (use it in the other routes), `version` (what "
    "`X-Model-Version` names in every answer), `trained_at`, `kind` (`ae` or `vae`), `latent_dim` and the metrics "
    "from its model card. The digit classifier that judged the experiments is served by `POST /v1/classify`, not "
    "as a model, so it is not listed.",
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


@v1.get(
    "/models/{name}/atlas",
    tags=["models"],
    summary="The held-out digits' codes (the explorer's map)",
    description="Where real digits the model never trained on land in its latent space: `labels` (each point's "
    "true digit) and `codes` (its latent vector; a VAE's posterior mean mu), 200 of each digit, and the `source` of "
    "the digits (the real MNIST test set when training had it, else the held-out validation and test parts of the "
    "training data). Written by training into the checkpoint (atlas.json, covered by the card's sha256); "
    "`python -m training atlas` adds it to an older checkpoint. 404 when the checkpoint has none.",
    response_model=Atlas,
    responses=error_responses(*READ_ERRORS),
)
async def model_atlas(call: JsonModelCall) -> Response:
    if call.model.atlas is None:
        raise ApiError(
            404,
            f"{call.model.name} has no atlas (its checkpoint predates atlas.json): "
            "run 'python -m training atlas <checkpoints folder>' to add one without retraining",
        )
    return json_response(call.model.atlas)


@v1.post(
    "/classify",
    tags=["inference"],
    summary="Name the digit in an image",
    description="The digit classifier that judges the report's experiments: one image -> the `digit` it sees, its "
    "`confidence` and all ten `probabilities`. Use it on decoded or sampled images to ask whether a point of the "
    "latent space looks like a digit. The same inputs as `/encode` (JSON `image` or `pixels`, a multipart `file`, "
    "or a batch `images` answered with `results`). 404 when no classifier checkpoint is served.",
    response_model=ClassifyResult | ClassifyBatchResult,
    responses={**docs.ok_response(docs.CLASSIFY_RESPONSE), **error_responses(*BODY_ERRORS)},
    openapi_extra=docs.request_body(ClassifyRequest, docs.ENCODE_EXAMPLES, form_fields={}),
)
async def classify(request: Request, service: JsonServiceDep) -> Response:
    judge = service.registry.get_judge()
    context = {"settings": service.settings}
    body, sources = await read_image_request(request, ClassifyRequest, context)
    images = await load_images(sources, service.settings, batch_names(len(sources), body.is_batch))
    views = [
        {"digit": v.digit, "confidence": float(v.probabilities[v.digit]), "probabilities": v.probabilities.tolist()}
        for v in await service.engine.classify(judge, images)
    ]
    return json_response({"results": views} if body.is_batch else views[0])


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
    seen, applied = clean, [None] * len(clean)
    if plan is not None:
        seen, applied = map(list, zip(*(corrupt(image, plan) for image in clean), strict=True))
    results = await call.engine.reconstruct(call.model, list(zip(seen, clean, strict=True)))
    output = call.output
    if output.png:
        return output.png_response([r.image for r in results])
    views = [
        reconstruction_view(r, s, output, applied_corruption(plan, rectangle))
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
    start, end = await path_ends(call, {"from": body.start, "to": body.end})
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
    description="200 once every model is loaded and verified, with the served models and their versions, the "
    "verified judges, the checkpoints skipped at startup and those refused by a reload (damaged: the previous "
    "version serves on); 503 before that, and from SIGTERM on (draining, then stopping).",
    response_model=Readiness,
    responses=error_responses(503),
)
async def readyz(request: Request, service: ServiceDep) -> Response:
    if request.app.state.drain.draining:
        raise ApiError(503, "the service is stopping (draining after SIGTERM); send requests to another replica")
    registry = service.registry
    return json_response(
        {
            "status": "ready",
            "models": list(registry.models),
            "versions": {name: model.version for name, model in registry.models.items()},
            "judges": registry.judges,
            "skipped": registry.skipped,
            "refused": registry.refused,
        }
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


# -- admin ------------------------------------------------------------------------------------------------------


@admin.post(
    "/reload",
    summary="Reload the models now",
    description="Looks for new, changed and removed checkpoint folders and swaps them in, as the periodic poll "
    "does, and answers what changed in the worker process that took the request. The other workers of the server "
    "are sent SIGHUP and reload too. A damaged checkpoint is refused (listed in `refused`) and the version already "
    "loaded serves on. Needs `Authorization: Bearer <DIGITAE_ADMIN_KEY>`; without that setting this route does "
    "not exist.",
    response_model=ReloadResult,
    responses=error_responses(401, 503),
)
async def reload_models(service: ServiceDep) -> Response:
    assert service.reloader is not None  # the lifespan always makes one
    report = await service.reloader.reload("admin")
    signal_other_workers()
    return json_response(report.as_dict())


# -- pieces of the routes --------------------------------------------------------------------------------------


def corruption_plan(spec: CorruptionSpec | None) -> CorruptionPlan | None:
    if spec is None:
        return None
    occlusion = None
    rectangle = None
    if spec.occlusion is not None:
        o = spec.occlusion
        occlusion = Occlusion(area=OcclusionSpec.as_range(o.area), aspect=OcclusionSpec.as_range(o.aspect), fill=o.fill)
        if o.rectangle is not None:
            rectangle = (o.rectangle.top, o.rectangle.left, o.rectangle.height, o.rectangle.width)
    noise = GaussianNoise(mean=spec.noise.mean, std=spec.noise.std) if spec.noise is not None else None
    seed = spec.seed if spec.seed is not None else secrets.randbits(63)
    return CorruptionPlan(seed=seed, noise=noise, occlusion=occlusion, rectangle=rectangle)


def applied_corruption(plan: CorruptionPlan | None, rectangle: tuple[int, int, int, int] | None) -> dict | None:
    if plan is None:
        return None
    applied: dict[str, Any] = {"seed": plan.seed, "noise": None, "occlusion": None}
    if plan.noise is not None:
        applied["noise"] = {"mean": plan.noise.mean, "std": plan.noise.std}
    if plan.occlusion is not None and rectangle is not None:
        top, left, height, width = rectangle
        applied["occlusion"] = {"top": top, "left": left, "height": height, "width": width, "fill": plan.occlusion.fill}
    return applied


async def path_ends(call: ModelCall, ends: dict[str, PathEnd]) -> list[np.ndarray]:
    """Each end as a latent: a centroid, the latent given, or the encoding of the image given."""
    latents: dict[str, np.ndarray] = {}
    images: dict[str, ImageSource] = {}
    for name, end in ends.items():
        if end.digit is not None:
            latents[name] = call.model.centroids_cpu[end.digit].numpy()
        elif end.latent is not None:
            latents[name] = np.asarray(end.latent, dtype=np.float32)
        else:
            images[name] = ImageSource.of(end)
    if images:
        arrays = await load_images(list(images.values()), call.settings, list(images))
        for name, encoding in zip(images, await call.engine.encode(call.model, arrays), strict=True):
            latents[name] = encoding.latent
    return [latents[name] for name in ends]
