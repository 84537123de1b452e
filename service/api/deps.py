"""What the routes are given, one dependency each: the running service, or the model named in the path
together with the service and how to answer (JSON, PNG or .npy; which `fields`). One dependency per route keeps
the per-request cost of FastAPI's dependency solving low. The inference routes go further: they call
`image_model_call` or `array_model_call` themselves, which read `name`, `upscale` and `fields` from the request
(FastAPI's dependency solving and per-parameter validation cost the hot path about a sixth of its requests/s), and
their OpenAPI parameters are written out here, beside the code that checks them."""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request

from service.catalog.registry import (
    MODEL_NAME_MAX_LENGTH,
    MODEL_NAME_PATTERN,
    NoJudge,
    Registry,
    ServedJudge,
    ServedModel,
    UnknownModel,
    is_model_name,
)
from service.catalog.reloading import Reloader
from service.codec.arrays import NPY, BulkSlots
from service.codec.errors import SHUTTING_DOWN, ApiError
from service.codec.inputs import DecodePool
from service.codec.render import BASE64_IMAGE_OUTPUT, JSON, ImageOutput, choose_image_output, require_json_accepted
from service.engine.inference import InferenceEngine
from service.settings import Settings


@dataclass
class Service:
    """Everything a request needs, built once by the lifespan."""

    settings: Settings
    registry: Registry
    engine: InferenceEngine
    reloader: Reloader
    bulk_slots: BulkSlots = field(init=False)
    decode_pool: DecodePool = field(init=False)  # shut down by the lifespan, with the engine

    def __post_init__(self) -> None:
        self.bulk_slots = BulkSlots(self.settings.max_concurrent_bulk)
        self.decode_pool = DecodePool(self.settings.decode_concurrency)


@dataclass(frozen=True, slots=True)
class ModelCall:
    """A request to one model: the service, the model, and the form of the answer."""

    service: Service
    model: ServedModel
    output: ImageOutput

    @property
    def engine(self) -> InferenceEngine:
        return self.service.engine

    @property
    def settings(self) -> Settings:
        return self.service.settings

    @property
    def validation_context(self) -> dict[str, Any]:
        """The validation context for request bodies: the caps, and the model's latent size."""
        return {"settings": self.service.settings, "latent_dim": self.model.latent_dim}


def served_model(service: Service, name: str) -> ServedModel:
    """The model named in the path, or 404 listing the known ones."""
    try:
        return service.registry.get(name)
    except UnknownModel as exc:
        raise ApiError(404, str(exc)) from None


def served_judge(service: Service) -> ServedJudge:
    """The digit classifier, or 404 saying that none is served."""
    try:
        return service.registry.get_judge()
    except NoJudge as exc:
        raise ApiError(404, str(exc)) from None


def running_service(request: Request) -> Service:
    service: Service | None = request.app.state.service
    if service is None:
        if request.app.state.drain.draining:
            raise ApiError(503, "the service is shutting down; send requests to another replica", code=SHUTTING_DOWN)
        raise ApiError(503, "the models are not loaded yet (or the service has stopped); retry shortly")
    return service


NAME_DESCRIPTION = "a model's name, as listed by GET /v1/models"
NAME_EXAMPLES = {
    "ae-6": {"summary": "auto-encoder, 6-dimensional latent", "value": "ae-6"},
    "vae-2": {"summary": "variational auto-encoder, 2-dimensional latent", "value": "vae-2"},
    "ae-2": {"summary": "auto-encoder, 2-dimensional latent", "value": "ae-2"},
}
UPSCALE_LIMIT = 64  # the most any deployment allows; DIGITAE_MAX_UPSCALE sets this one's cap (at most this)
UPSCALE_DESCRIPTION = "each pixel becomes an upscale x upscale block (at most max_upscale)"
FIELDS_MAX_LENGTH = 512
FIELDS_DESCRIPTION = (
    "the top-level fields of the answer to compute and send, comma-separated (e.g. `loss,latent`); default: all. "
    "For a batch, the fields of each result; for an `application/x-npy` answer, the one array to send. Images not "
    "asked for are never encoded. An unknown field is a 422 naming the valid ones."
)

ModelName = Annotated[
    str,
    Path(
        pattern=MODEL_NAME_PATTERN,
        max_length=MODEL_NAME_MAX_LENGTH,
        description=NAME_DESCRIPTION,
        openapi_examples=NAME_EXAMPLES,
    ),
]
Fields = Annotated[str | None, Query(max_length=FIELDS_MAX_LENGTH, description=FIELDS_DESCRIPTION)]

# The OpenAPI parameters of the inference routes, which read them from the request themselves (image_model_call).
_NAME_PARAMETER = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": NAME_DESCRIPTION,
    "schema": {"type": "string", "pattern": MODEL_NAME_PATTERN, "maxLength": MODEL_NAME_MAX_LENGTH},
    "examples": NAME_EXAMPLES,
}
_UPSCALE_PARAMETER = {
    "name": "upscale",
    "in": "query",
    "required": False,
    "description": UPSCALE_DESCRIPTION,
    "schema": {"type": "integer", "minimum": 1, "maximum": UPSCALE_LIMIT, "default": 1},
}
_FIELDS_PARAMETER = {
    "name": "fields",
    "in": "query",
    "required": False,
    "description": FIELDS_DESCRIPTION,
    "schema": {"type": "string", "maxLength": FIELDS_MAX_LENGTH},
}


def image_call_parameters() -> dict[str, Any]:
    """`openapi_extra` naming the parameters that `image_model_call` reads (a fresh copy: the schema is edited)."""
    return {"parameters": deepcopy([_NAME_PARAMETER, _UPSCALE_PARAMETER, _FIELDS_PARAMETER])}


def array_call_parameters() -> dict[str, Any]:
    """`openapi_extra` naming the parameters that `array_model_call` reads."""
    return {"parameters": deepcopy([_NAME_PARAMETER, _FIELDS_PARAMETER])}


def _parameter_error(location: str, name: str, message: str) -> ApiError:
    return ApiError(
        422, f"{name}: {message}", detail=[{"loc": [location, name], "msg": message, "type": "value_error"}]
    )


def path_model_name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not is_model_name(name):
        raise _parameter_error(
            "path", "name", f"a model's name matches {MODEL_NAME_PATTERN}, as listed by GET /v1/models"
        )
    return name


def query_upscale(request: Request) -> int:
    text = request.query_params.get("upscale")
    if text is None:
        return 1
    upscale = int(text) if text.isascii() and text.isdigit() and len(text) <= 3 else 0  # digits only: no "1_0"
    if not 1 <= upscale <= UPSCALE_LIMIT:
        raise _parameter_error("query", "upscale", f"a whole number from 1 to {UPSCALE_LIMIT}")
    return upscale


def query_fields(request: Request) -> str | None:
    """`fields=a,b`, or `fields=a&fields=b` (how generated clients send a list), as one comma-separated text."""
    values = request.query_params.getlist("fields")
    if not values:
        return None
    fields = values[0] if len(values) == 1 else ",".join(values)
    if len(fields) > FIELDS_MAX_LENGTH:
        raise _parameter_error("query", "fields", f"at most {FIELDS_MAX_LENGTH} characters")
    return fields


async def get_service(request: Request) -> Service:
    return running_service(request)


async def get_json_service(request: Request) -> Service:
    require_json_accepted(request)
    return running_service(request)


async def get_json_model_call(request: Request, name: ModelName) -> ModelCall:
    """For routes that answer JSON only."""
    require_json_accepted(request)
    service = running_service(request)
    return ModelCall(service, answering(request, served_model(service, name)), BASE64_IMAGE_OUTPUT)


def image_model_call(request: Request) -> ModelCall:
    """For routes that answer images: as base64 in JSON, (Accept: image/png) as the PNG itself, or
    (Accept: application/x-npy) as an array. Reads `name`, `upscale` and `fields` (image_call_parameters).
    Called by the route itself, not through `Depends`: FastAPI's dependency solving cost the hot path a tenth."""
    name, upscale, fields = path_model_name(request), query_upscale(request), query_fields(request)
    service = running_service(request)
    output = choose_image_output(request, upscale, service.settings.max_upscale, fields)
    return ModelCall(service, answering(request, served_model(service, name)), output)


def array_model_call(request: Request) -> ModelCall:
    """For routes that answer numbers only: JSON, or (Accept: application/x-npy) an array. Reads `name` and
    `fields` (array_call_parameters); called by the route itself, like `image_model_call`."""
    name, fields = path_model_name(request), query_fields(request)
    service = running_service(request)
    output = choose_image_output(request, 1, 1, fields, offers=(JSON, NPY))
    return ModelCall(service, answering(request, served_model(service, name)), output)


def answering(request: Request, model: ServedModel) -> ServedModel:
    """Note the model (this very version: a reload meanwhile does not change it) for the response headers."""
    request.scope["state"]["model"] = model
    return model


ServiceDep = Annotated[Service, Depends(get_service)]
JsonServiceDep = Annotated[Service, Depends(get_json_service)]
JsonModelCall = Annotated[ModelCall, Depends(get_json_model_call)]
