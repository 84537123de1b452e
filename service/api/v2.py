"""The Open Inference Protocol (KServe's "V2" REST protocol; Triton's binary tensor data extension): what tritonclient,
the kserve SDK and KServe's InferenceService speak, beside /v1.

Each auto-encoder is a model with two alternative inputs (one per request): `images` ([N, 28, 28], UINT8 0-255 or
FP32 0-1, taken as already preprocessed like /v1's `pixels`) gives `latent`, `logvar` (VAE), `nearest_digit`,
`centroid_distances` (/v1's encode) and `reconstruction`, `mse`, `bce`, `kl`, `elbo` (VAE; /v1's reconstruct); `latent`
([N, latent_dim] FP32) gives `images` (/v1's decode). The judge takes `images` and gives `digit` and `probabilities`
(/v1's classify). Only the outputs asked for are computed (encode alone unless a reconstruction output is asked for)
and sent. Requests run through the same engine as /v1: up to max_batch rows through the micro-batcher, more (up to
max_bulk) through the bulk path holding a bulk slot; errors have the protocol's shape, `{"error": "..."}`, with
/v1's statuses (service/codec/errors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from models.networks import SIDE
from service.api.bulk import bulk_chunk_rows
from service.api.deps import Service, running_service
from service.api.examples import EXAMPLE_PIXELS
from service.api.v2_tensors import DECODED, RECONSTRUCTED, inputs_of, model_metadata_of, outputs_of
from service.catalog.registry import ServedJudge, ServedModel, is_model_name
from service.codec.arrays import Release, in_chunks
from service.codec.errors import ApiError, clip
from service.codec.render import encoding_array, json_response
from service.codec.schemas import LATENT_LIMIT
from service.codec.tensors import (
    BINARY_TYPE,
    HEADER_LENGTH,
    InferenceResponse,
    InferRequest,
    InputTensor,
    ModelMetadata,
    ModelReady,
    ProtocolError,
    ServerLive,
    ServerMetadata,
    ServerReady,
    infer_response,
    parse_infer_request,
)
from service.engine.inference import Encoding, Reconstruction, Verdict

TAG = "open inference protocol"
health = APIRouter(prefix="/v2", tags=[TAG])  # probes: never behind a key, like /healthz and /readyz
v2 = APIRouter(prefix="/v2", tags=[TAG])  # create_app adds the API-key check when keys are set

EXTENSIONS = ["binary_tensor_data"]

_ERRORS = {
    401: "Missing or wrong API key (`Authorization: Bearer <key>`), when keys are configured.",
    404: "Unknown model (the message lists the served ones), version (it names the one served) or route.",
    413: "The body, or a tensor's rows or elements, over its cap.",
    422: "The request is well-formed but invalid: its JSON, an input's name, shape, datatype or values, an output.",
    503: "The models are not loaded (yet), the service is stopping, or (bulk) all bulk slots are busy.",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a /v2 route: each error status with the protocol's error shape."""
    return {status: {"model": ProtocolError, "description": _ERRORS[status]} for status in statuses}


_MODEL_ERRORS = _errors(401, 404, 503)
_INFER_ERRORS = _errors(401, 404, 413, 422, 503)
_BINARY_BODY = {  # the description in the schema: a media type object has none (OpenAPI 3.1)
    "schema": {
        "type": "string",
        "format": "binary",
        "description": "Triton's binary tensor data extension: the JSON header (InferenceRequest), its length in the "
        "Inference-Header-Content-Length header, then each binary input's `binary_data_size` bytes, little-endian.",
    }
}
_INFER_DOCS: dict[str, Any] = {
    "response_model": InferenceResponse,
    "responses": {
        200: {"content": {BINARY_TYPE: _BINARY_BODY}, "description": "The outputs; binary ones after the header."},
        **_INFER_ERRORS,
    },
    "openapi_extra": {
        "parameters": [
            {
                "name": "Inference-Header-Content-Length",
                "in": "header",
                "required": False,
                "schema": {"type": "integer", "minimum": 1},
                "description": "With a binary body (the binary tensor data extension): the length in bytes of its "
                "JSON header, which the binary tensors follow. Without it the whole body is the JSON request.",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/InferenceRequest"},
                    "examples": {
                        "digit": {
                            "summary": "one digit (UINT8, 0-255): its latent and nearest digit",
                            "value": {
                                "inputs": [
                                    {
                                        "name": "images",
                                        "shape": [1, SIDE, SIDE],
                                        "datatype": "UINT8",
                                        "data": [EXAMPLE_PIXELS],
                                    }
                                ],
                                "outputs": [{"name": "latent"}, {"name": "nearest_digit"}],
                            },
                        }
                    },
                },
                BINARY_TYPE: _BINARY_BODY,
            },
        },
    },
    "description": "One input, `images` ([N, 28, 28], UINT8 0-255 or FP32 0-1) or `latent` ([N, latent_dim] FP32), "
    "as JSON `data` or binary; the `outputs` named (default: every output of that input, see the model's metadata) "
    "are the only ones computed and sent. N up to max_batch through the micro-batcher, up to max_bulk through the "
    "bulk path.",
}


def _served(service: Service, request: Request, name: str, version: str | None) -> ServedModel | ServedJudge:
    """The model (or the judge) named in the path, at the version named (if any); 404 naming what is served."""
    registry = service.registry
    judge = registry.judge
    model: ServedModel | ServedJudge | None = registry.models.get(name) if is_model_name(name) else None
    if model is None and judge is not None and judge.name == name:
        model = judge
    if model is None:
        known = [*registry.models, *([judge.name] if judge is not None else [])]
        raise ApiError(404, f"unknown model {clip(name, 64)!r}; known models: {', '.join(known) or '(none)'}")
    if version is not None and version != model.version:
        raise ApiError(
            404, f"model {model.name!r} has no version {clip(version, 64)!r}; the version served is {model.version!r}"
        )
    request.scope["state"]["model"] = model  # X-Model-Name and X-Model-Version, as on /v1 (see `answering`)
    return model


# -- server -------------------------------------------------------------------------------------------------------


@health.get(
    "/health/live",
    summary="Server live (Open Inference Protocol)",
    description="200 while the process runs (as /healthz); never needs a key.",
    response_model=ServerLive,
)
async def server_live() -> Response:
    return json_response({"live": True})


@health.get(
    "/health/ready",
    summary="Server ready (Open Inference Protocol)",
    description="200 once every model is loaded and verified; 503 before, and while draining (as /readyz).",
    response_model=ServerReady,
    responses=_errors(503),
)
async def server_ready(request: Request) -> Response:
    running_service(request)  # 503 until the models are loaded, and once stopping
    if request.app.state.drain.draining:
        raise ApiError(503, "the service is stopping (draining after SIGTERM); send requests to another replica")
    return json_response({"ready": True})


@v2.get(
    "",
    summary="Server metadata (Open Inference Protocol)",
    description="The server's name, version and protocol extensions (binary_tensor_data).",
    response_model=ServerMetadata,
    responses=_errors(401),
)
async def server_metadata(request: Request) -> Response:
    return json_response({"name": request.app.title, "version": request.app.version, "extensions": EXTENSIONS})


# -- models -------------------------------------------------------------------------------------------------------


@v2.get(
    "/models/{name}",
    summary="Model metadata: its inputs and outputs (Open Inference Protocol)",
    description="An auto-encoder or the judge (`classifier`): its served version, its inputs (alternatives: one per "
    "request) and every output, each with a description of what it is and which input gives it.",
    response_model=ModelMetadata,
    responses=_MODEL_ERRORS,
)
async def model_metadata(request: Request, name: str) -> Response:
    return json_response(model_metadata_of(_served(running_service(request), request, name, None)))


@v2.get(
    "/models/{name}/versions/{version}",
    summary="Model metadata at a version (Open Inference Protocol)",
    description="As the model's metadata, when `version` is the one served; 404 naming it otherwise.",
    response_model=ModelMetadata,
    responses=_MODEL_ERRORS,
)
async def model_version_metadata(request: Request, name: str, version: str) -> Response:
    return json_response(model_metadata_of(_served(running_service(request), request, name, version)))


@v2.get(
    "/models/{name}/ready",
    summary="Model ready (Open Inference Protocol)",
    description="200 when the model is served; 404 naming the served models otherwise.",
    response_model=ModelReady,
    responses=_MODEL_ERRORS,
)
async def model_ready(request: Request, name: str) -> Response:
    return json_response({"name": _served(running_service(request), request, name, None).name, "ready": True})


@v2.get(
    "/models/{name}/versions/{version}/ready",
    summary="Model ready at a version (Open Inference Protocol)",
    description="200 when the model is served at `version`; 404 naming the version served otherwise.",
    response_model=ModelReady,
    responses=_MODEL_ERRORS,
)
async def model_version_ready(request: Request, name: str, version: str) -> Response:
    return json_response({"name": _served(running_service(request), request, name, version).name, "ready": True})


# -- inference ----------------------------------------------------------------------------------------------------


@v2.post("/models/{name}/infer", summary="Inference (Open Inference Protocol; JSON or binary tensors)", **_INFER_DOCS)
async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@v2.post(
    "/models/{name}/versions/{version}/infer", summary="Inference at a version (Open Inference Protocol)", **_INFER_DOCS
)
async def infer_version(request: Request, name: str, version: str) -> Response:
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    service = running_service(request)
    model = _served(service, request, name, version)
    settings = service.settings
    release: Release | None = None
    header_length = request.headers.get(HEADER_LENGTH)
    declared = request.headers.get("content-length")
    if header_length is not None and not (
        declared and declared.isdigit() and int(declared) <= settings.max_request_bytes
    ):
        release = service.bulk_slots.take()  # a bulk-sized binary body: a slot before it is read, as for .npy
    try:
        body = await request.body()
        parsed = parse_infer_request(body, header_length, settings)
        tensor = _one_input(parsed, model)
        rows = len(tensor.array)
        if rows > settings.max_bulk:
            raise ApiError(
                413, f"{tensor.name}: {rows:,} rows; the limit is {settings.max_bulk:,} (the service's cap, "
                "DIGITAE_MAX_BULK)",
            )  # fmt: skip
        wanted = _wanted_outputs(parsed, model, tensor.name)
        if rows > settings.max_batch and release is None:
            release = service.bulk_slots.take()  # more than a batch: the bulk path, holding a slot like .npy bulk
        arrays = await _compute(service, model, tensor, wanted, bulk=release is not None)
        outputs = {name: (arrays[name], parsed.binary(name)) for name in wanted}
        return infer_response(model.name, model.version, parsed.id, outputs)
    finally:
        if release is not None:
            release()


def _one_input(parsed: InferRequest, model: ServedModel | ServedJudge) -> InputTensor:
    """The request's one input, checked against what the model takes: its name, shape, datatype and values."""
    names = [t.name for t in inputs_of(model)]
    takes = " or ".join(names)
    if len(parsed.inputs) != 1 or parsed.inputs[0].name not in names:
        given = ", ".join(clip(t.name, 64) for t in parsed.inputs)
        raise ApiError(422, f"{model.name} takes one input, {takes}; got {given}")
    tensor = parsed.inputs[0]
    array = tensor.array
    if tensor.name == "images":
        if array.ndim != 3 or array.shape[1:] != (SIDE, SIDE) or not len(array):
            raise ApiError(422, f"images: shape [N, {SIDE}, {SIDE}] with N at least 1; got {list(array.shape)}")
        if tensor.datatype == "UINT8":
            return InputTensor(tensor.name, tensor.datatype, array.astype(np.float32) * np.float32(1 / 255))
        if tensor.datatype != "FP32":
            raise ApiError(422, f"images: UINT8 (0-255) or FP32 (0-1); got {tensor.datatype}")
        if not np.isfinite(array).all() or float(array.min()) < 0 or float(array.max()) > 1:
            raise ApiError(422, "images: FP32 pixels are finite and within 0-1 (send UINT8 for 0-255)")
        return tensor
    assert isinstance(model, ServedModel)
    m = model.latent_dim
    if array.ndim != 2 or array.shape[1] != m or not len(array):
        raise ApiError(
            422, f"latent: shape [N, {m}] (the model's latent_dim) with N at least 1; got {list(array.shape)}"
        )
    if tensor.datatype != "FP32":
        raise ApiError(422, f"latent: FP32; got {tensor.datatype}")
    if not np.isfinite(array).all() or float(np.abs(array).max()) > LATENT_LIMIT:
        raise ApiError(422, f"latent: every value is a finite number within ±{LATENT_LIMIT:g}")
    return tensor


def _wanted_outputs(parsed: InferRequest, model: ServedModel | ServedJudge, input_name: str) -> list[str]:
    """The outputs to compute and send: those asked for, else all that the input gives. 422 for any other."""
    outputs = outputs_of(model)
    if input_name == "latent":
        given = list(DECODED)
    else:
        given = [name for name in outputs if name not in DECODED or isinstance(model, ServedJudge)]
    if parsed.outputs is None:
        return given
    for name in parsed.outputs:
        if name not in given:
            raise ApiError(
                422, f"unknown output {clip(name, 64)!r} for input {input_name} of {model.name}; "
                f"its outputs are {', '.join(given)}",
            )  # fmt: skip
    return list(parsed.outputs)


async def _compute(
    service: Service, model: ServedModel | ServedJudge, tensor: InputTensor, wanted: list[str], bulk: bool
) -> dict[str, np.ndarray]:
    """The outputs `wanted`, through the engine: the micro-batcher, or (bulk) its bulk path in chunks."""
    engine = service.engine
    items = tensor.array

    async def run(
        operation: str, batched: Callable[[list[Any]], Any], as_items: Callable[[Any], list[Any]]
    ) -> list[Any]:
        if not bulk:
            results: list[Any] = await batched(as_items(items))
            return results
        chunk = bulk_chunk_rows(service.settings)  # as /v1's bulk
        collected: list[Any] = []
        async for part in in_chunks(items, chunk, lambda rows: engine.in_bulk(model, operation, as_items(rows))):
            collected += part
        return collected

    if isinstance(model, ServedJudge):
        verdicts: list[Verdict] = await run("classify", partial(engine.classify, model), list)
        probabilities = np.stack([v.probabilities for v in verdicts])
        return {"digit": probabilities.argmax(axis=1).astype(np.uint8), "probabilities": probabilities}
    if tensor.name == "latent":
        images: list[np.ndarray] = await run("decode", partial(engine.decode, model), list)
        return {"images": np.stack(images)}
    if not RECONSTRUCTED & set(wanted):
        encodings: list[Encoding] = await run("encode", partial(engine.encode, model), list)
        return {name: encoding_array(encodings, name) for name in wanted}
    results: list[Reconstruction] = await run("reconstruct", partial(engine.reconstruct, model), _clean_pairs)
    arrays: dict[str, np.ndarray] = {}
    for name in wanted:
        if name == "reconstruction":
            arrays[name] = np.stack([r.image for r in results])
        elif name in RECONSTRUCTED:
            arrays[name] = np.array([getattr(r, name) for r in results], dtype=np.float32)
        else:
            arrays[name] = encoding_array([r.encoding for r in results], name)
    return arrays


def _clean_pairs(images: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """A clean reconstruction: the model sees each image, and the losses compare with it."""
    return [(image, image) for image in images]


__all__ = ["health", "v2"]
