"""The routes. Each one reads its body, asks the engine, and renders the answer; nothing else."""

from __future__ import annotations

import secrets
from functools import partial

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from service import docs
from service.arrays import (
    NPY,
    Release,
    images_from_npy,
    in_chunks,
    latents_from_npy,
    npy_response,
    read_npy,
    stream_answer,
)
from service.deps import (
    Fields,
    JsonModelCall,
    JsonServiceDep,
    ModelCall,
    ServiceDep,
    array_call_parameters,
    array_model_call,
    image_call_parameters,
    image_model_call,
    served_judge,
)
from service.errors import ApiError, error_responses
from service.inference import Reconstruction, corrupt_all, corruption_plan, path_ends, sample_latents, straight_path
from service.inputs import ImageSource, batch_names, load_images, media_type, read_image_request, read_json
from service.observability import metrics_text
from service.reloading import signal_other_workers
from service.render import (
    CLASSIFY_FIELDS,
    DECODE_FIELDS,
    ENCODE_ARRAYS,
    ENCODE_FIELDS,
    INTERPOLATE_FIELDS,
    JSON,
    PNG,
    RECONSTRUCT_ARRAYS,
    RECONSTRUCT_FIELDS,
    SAMPLE_FIELDS,
    array_headers,
    corruption_view,
    encoding_array,
    encoding_view,
    json_response,
    model_detail,
    model_summary,
    reconstruction_array,
    reconstruction_view,
    selected_fields,
    verdict_view,
)
from service.schemas import (
    LATENT_LIMIT,
    Atlas,
    ClassifyBatchResult,
    ClassifyRequest,
    ClassifyResult,
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
    ReloadResult,
    SampleRequest,
    SampleResult,
)

READ_ERRORS = (401, 404, 406, 422, 503)
BODY_ERRORS = (401, 404, 406, 413, 415, 422, 503)
# each inference route's answer fields, for `fields` (written into the OpenAPI document by the app)
FIELDS_BY_PATH = {
    "/v1/classify": CLASSIFY_FIELDS,
    "/v1/models/{name}/encode": ENCODE_FIELDS,
    "/v1/models/{name}/reconstruct": RECONSTRUCT_FIELDS,
    "/v1/models/{name}/decode": DECODE_FIELDS,
    "/v1/models/{name}/sample": SAMPLE_FIELDS,
    "/v1/models/{name}/interpolate": INTERPOLATE_FIELDS,
}

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
    "or a batch `images` answered with `results`); `fields` trims the answer. 404 when no classifier checkpoint is "
    "served.",
    response_model=ClassifyResult | ClassifyBatchResult,
    responses={**docs.ok_response(docs.CLASSIFY_RESPONSE), **error_responses(*BODY_ERRORS)},
    openapi_extra=docs.request_body(ClassifyRequest, docs.ENCODE_EXAMPLES, form_fields={}),
)
async def classify(request: Request, service: JsonServiceDep, fields: Fields = None) -> Response:
    judge = served_judge(service)
    want = selected_fields(fields, CLASSIFY_FIELDS) if fields is not None else frozenset(CLASSIFY_FIELDS)
    context = {"settings": service.settings}
    body, sources = await read_image_request(request, ClassifyRequest, context)
    images = await load_images(sources, service.settings, batch_names(len(sources), body.is_batch))
    views = [verdict_view(v, want) for v in await service.engine.classify(judge, images)]
    return json_response({"results": views} if body.is_batch else views[0])


# -- encode, reconstruct, decode ---------------------------------------------------------------------------


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
        field = checked_array_field(call, ENCODE_ARRAYS, ENCODE_FIELDS)
        array, release = await read_bulk(request, call, "images")
        want = output.fields(ENCODE_FIELDS)
        chunks = in_chunks(array, bulk_chunk(call), partial(call.engine.in_bulk, model, "encode"))
        return stream_answer(
            chunks, len(array), npy=output.npy, to_array=partial(encoding_array, field=field),
            to_view=partial(encoding_view, want=want), release=release, headers=array_headers(field, model.kind),
        )  # fmt: skip
    body, sources = await read_image_request(request, EncodeRequest, call.validation_context)
    images = await load_images(sources, call.settings, batch_names(len(sources), body.is_batch))
    encodings = await call.engine.encode(model, images)
    if output.npy:
        field = checked_array_field(call, ENCODE_ARRAYS, ENCODE_FIELDS)
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
    clean = await load_images(sources, call.settings, batch_names(len(sources), body.is_batch))
    plan = corruption_plan(body.corruption)
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
        **docs.ok_response(
            docs.SAMPLE_RESPONSE,
            png="all samples in one grid (rows of 10).",
            npy="`images` (n x 28 x 28 float32, the default) or `latents`, chosen by `fields`.",
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(SampleRequest, docs.SAMPLE_EXAMPLES) | image_call_parameters(),
)
async def sample(request: Request) -> Response:
    call = image_model_call(request)
    body = await read_json(request, SampleRequest, call.validation_context)
    model, output = call.model, call.output
    if body.digit is None and model.kind != "vae":
        raise ApiError(422, f"digit: required for {model.name}, an auto-encoder without a prior; give a digit 0-9")
    seed = body.seed if body.seed is not None else secrets.randbits(63)
    latents = sample_latents(model, body.digit, body.sigma, body.n, seed)
    if output.npy:
        field = checked_array_field(call, ("images", "latents"), SAMPLE_FIELDS)
        images = await call.engine.decode(model, list(latents)) if field == "images" else []
        return npy_response(np.stack(images) if field == "images" else latents, {"X-Array-Field": field})
    want = output.fields(SAMPLE_FIELDS) if not output.png else frozenset(("images",))
    images = await call.engine.decode(model, list(latents)) if "images" in want else []
    if output.png:
        return output.png_response(images)
    answer = {"images": [output.b64(image) for image in images], "latents": latents.tolist(), "digit": body.digit,
              "sigma": body.sigma, "seed": seed}  # fmt: skip
    return json_response({k: v for k, v in answer.items() if k in want} if output.fields_text else answer)


@v1.post(
    "/models/{name}/interpolate",
    tags=["generation"],
    summary="Walk the straight line between two points of the latent space",
    description="`from` and `to` are each a `digit` (its centroid), a `latent`, or an image (`image` base64, or "
    "`pixels` with `scale`; encoded first). The answer has `steps` `images` decoded at evenly spaced points, ends "
    "included, with their `latents` and position `t` (the report's Figs. 5 and 7 as a request).",
    response_model=InterpolateResult,
    responses={
        **docs.ok_response(
            docs.INTERPOLATE_RESPONSE,
            png="the images in one row.",
            npy="`images` (steps x 28 x 28 float32, the default), `latents` or `t`, chosen by `fields`.",
        ),
        **error_responses(*BODY_ERRORS),
    },
    openapi_extra=docs.request_body(InterpolateRequest, docs.INTERPOLATE_EXAMPLES) | image_call_parameters(),
)
async def interpolate(request: Request) -> Response:
    call = image_model_call(request)
    body = await read_json(request, InterpolateRequest, call.validation_context)
    output, model = call.output, call.model
    ends = {"from": body.start, "to": body.end}
    given = {name: ImageSource.of(end) for name, end in ends.items() if end.is_image}
    images = await load_images(list(given.values()), call.settings, list(given))
    start, end = await path_ends(call.engine, model, ends, dict(zip(given, images, strict=True)))
    t, latents = straight_path(start, end, body.steps)
    if output.npy:
        field = checked_array_field(call, INTERPOLATE_FIELDS, INTERPOLATE_FIELDS)
        arrays = {"latents": latents, "t": t}
        if field == "images":
            arrays["images"] = np.stack(await call.engine.decode(model, list(latents)))
        return npy_response(arrays[field], {"X-Array-Field": field})
    want = output.fields(INTERPOLATE_FIELDS) if not output.png else frozenset(("images",))
    path = await call.engine.decode(model, list(latents)) if "images" in want else []
    if output.png:
        return output.png_response(path, columns=len(path))
    answer = {"images": [output.b64(image) for image in path], "latents": latents.tolist(), "t": t.tolist()}
    return json_response({k: v for k, v in answer.items() if k in want} if output.fields_text else answer)


# -- pieces of the routes --------------------------------------------------------------------------------------


def checked_array_field(call: ModelCall, arrays: tuple[str, ...], valid: tuple[str, ...]) -> str:
    """The one field an application/x-npy answer holds (for a JSON answer, the `fields` are checked instead),
    checked before any work is done."""
    if call.output.png:
        raise ApiError(406, f"a .npy request is answered with {JSON} or {NPY}, not {PNG}")
    if not call.output.npy:
        call.output.fields(valid)
        return arrays[0]
    field = call.output.array_field(arrays, valid)
    if field == "logvar" and call.model.kind != "vae":
        raise ApiError(422, f"fields: logvar belongs to a VAE's answer; {call.model.name} is an auto-encoder")
    return field


async def read_bulk(request: Request, call: ModelCall, what: str) -> tuple[np.ndarray, Release]:
    """The `.npy` body as float32 images in [0, 1] or latents, checked, holding one of the bulk slots."""
    if what == "images":
        convert = images_from_npy
    else:
        convert = partial(latents_from_npy, latent_dim=call.model.latent_dim, limit=LATENT_LIMIT)
    max_rows = call.settings.max_bulk
    return await read_npy(request, call.service.bulk_slots, what=what, max_rows=max_rows, convert=convert)


def bulk_chunk(call: ModelCall) -> int:
    """Rows per chunk of a bulk request: a few micro-batches per hand-off to the inference thread (fewer hand-offs,
    more images/s), few enough that single requests queued behind a chunk wait tens of milliseconds, not seconds."""
    return 4 * call.settings.microbatch_max_size


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
