"""OpenAPI for the request bodies the routes read themselves (JSON, multipart, raw images, `.npy`), with the
examples of `examples` (real digits: "Try it out" in /docs works as it is), and what makes the document one contract
whatever the settings.

The routes parse their bodies by hand (one route takes JSON or an upload, with caps checked while
reading), so FastAPI cannot see the body models; `request_body` documents them and
`add_request_schemas` puts their schemas into the components.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from pydantic import BaseModel

from service.api.deps import NAME_EXAMPLES
from service.api.errors import ERROR_DESCRIPTIONS
from service.catalog.registry import MODEL_NAME_MAX_LENGTH, MODEL_NAME_PATTERN
from service.codec.arrays import NPY
from service.codec.inputs import UPLOAD_FIELD, UPLOAD_TYPES, non_optional_model
from service.codec.schemas import (
    ClassifyBatchRequest,
    ClassifyRequest,
    DecodeBatchRequest,
    DecodeRequest,
    EncodeBatchRequest,
    EncodeRequest,
    InterpolateRequest,
    PriorSampleRequest,
    ReconstructBatchRequest,
    ReconstructRequest,
    SampleRequest,
)
from service.codec.tensors import InferenceRequest
from service.settings import Settings

REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    EncodeRequest,
    EncodeBatchRequest,
    ReconstructRequest,
    ReconstructBatchRequest,
    DecodeRequest,
    DecodeBatchRequest,
    SampleRequest,
    PriorSampleRequest,
    InterpolateRequest,
    ClassifyRequest,
    ClassifyBatchRequest,
    InferenceRequest,  # the Open Inference Protocol's (service/api/v2.py)
)
_REF = "#/components/schemas/{model}"

RAW_IMAGE = {"schema": {"type": "string", "format": "binary"}}
# A media type object has no `description` (OpenAPI 3.1): it lives in the schema.
NPY_IMAGES = {
    "schema": {
        "type": "string",
        "format": "binary",
        "contentMediaType": NPY,
        "description": "a .npy file (numpy.save) of N x 28 x 28 images, uint8 (0-255) or float32 (0-1), already laid "
        "out like MNIST (used as given, like `pixels`); N up to max_bulk. Answered in chunks, streamed: JSON "
        "`results`, or with `Accept: application/x-npy` one array (see `fields`).",
    }
}
NPY_LATENTS = {
    "schema": {
        "type": "string",
        "format": "binary",
        "contentMediaType": NPY,
        "description": "a .npy file of N x latent_dim float32 latents; N up to max_bulk. Answered in chunks, streamed.",
    }
}


def request_body(
    model: type[BaseModel],
    examples: dict[str, Any],
    form_fields: dict[str, str] | None = None,
    *,
    raw_images: bool = False,
    npy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`openapi_extra` for a route reading `model` as JSON, (with `form_fields`: name -> description) a multipart
    upload, (with `raw_images`) the image itself as the body, and (with `npy`) a .npy array.

    In the multipart body, `file` declares the media types it may be sent as, and each of `form_fields` is that
    field of `model` (an object) sent as a JSON part."""
    content: dict[str, Any] = {
        "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}, "examples": examples}
    }
    if form_fields is not None:
        properties: dict[str, Any] = {
            "file": {
                "type": "string",
                "format": "binary",  # what generated clients need to send a file, not text
                "description": "the image file: PNG, JPEG, BMP, GIF or WebP, any size and mode; sent as its image "
                "type (the file must be of that format) or as application/octet-stream",
            },
        }
        encoding: dict[str, Any] = {UPLOAD_FIELD: {"contentType": ", ".join(UPLOAD_TYPES)}}
        for name, description in form_fields.items():
            spec = non_optional_model(model.model_fields[name].annotation)
            properties[name] = {"$ref": _REF.format(model=spec.__name__), "description": description}
            encoding[name] = {"contentType": "application/json"}
        content["multipart/form-data"] = {
            "schema": {"type": "object", "properties": properties, "required": ["file"], "additionalProperties": False},
            "encoding": encoding,
        }
    if raw_images:
        for kind in ("image/png", "image/jpeg", "image/bmp", "image/gif", "image/webp"):
            content[kind] = RAW_IMAGE
    if npy is not None:
        content[NPY] = npy
    return {"requestBody": {"required": True, "content": content}}


def document_fields(openapi: dict[str, Any], fields_by_path: dict[str, tuple[str, ...]]) -> None:
    """Name each operation's valid `fields` in its parameter, and let its JSON answer be trimmed: no field of a
    result is required (a batch's `results` are), so one schema types a whole answer and a trimmed one alike."""
    schemas = openapi["components"]["schemas"]
    for path, valid in fields_by_path.items():
        for operation in openapi["paths"].get(path, {}).values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "fields":  # a list of named values, sent as today's `?fields=a,b`
                    parameter["description"] += f" This answer's fields: {', '.join(valid)}."
                    parameter["schema"] = {
                        "type": "array",
                        "items": {"type": "string", "enum": list(valid)},
                        "minItems": 1,  # a field named twice is sent once: no uniqueItems to refuse it
                    }
                    parameter["style"], parameter["explode"] = "form", False
                    parameter["example"] = list(valid[:2])
            answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
            result = schemas[_name(answer)]
            batch_items = result.get("properties", {}).get("results", {}).get("items")
            if batch_items is not None:
                result = schemas[_name(batch_items)]
            if result.pop("required", None) is not None:
                result["description"] = (
                    f"{result.get('description', '')} Every field is sent unless `fields` names others.".strip()
                )


def _name(reference: dict[str, Any]) -> str:
    return str(reference["$ref"]).rsplit("/", 1)[-1]


def add_request_schemas(openapi: dict[str, Any]) -> dict[str, Any]:
    """Put the request models' JSON schemas (and the models they use) into `components.schemas`."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in REQUEST_MODELS:
        schema = model.model_json_schema(ref_template=_REF, mode="validation")
        for name, definition in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if name in schemas and schemas[name] != definition:
                raise RuntimeError(f"two different OpenAPI schemas are named {name!r}")
            schemas[name] = definition
    return openapi


# The request lists a deployment caps at DIGITAE_MAX_BATCH (their `maxItems`), as (schema, property).
BATCH_FIELDS = (
    ("EncodeBatchRequest", "images"),
    ("ReconstructBatchRequest", "images"),
    ("DecodeBatchRequest", "latents"),
    ("ClassifyBatchRequest", "images"),
)


def document_deployment(openapi: dict[str, Any], settings: Settings) -> None:
    """Write this deployment's caps into the schema, so what it documents is exactly what it accepts. The model
    names are not: a client generated today names a model added tomorrow (`name` is a string with its pattern)."""
    schemas = openapi["components"]["schemas"]
    for sampling in ("SampleRequest", "PriorSampleRequest"):
        schemas[sampling]["properties"]["n"]["maximum"] = settings.max_samples
    schemas["SampleRequest"]["properties"]["sigma"]["maximum"] = settings.max_sigma
    schemas["InterpolateRequest"]["properties"]["steps"]["maximum"] = settings.max_interpolation_steps
    for model, field in BATCH_FIELDS:
        schemas[model]["properties"][field]["maxItems"] = settings.max_batch
    for operations in openapi["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "upscale":
                    parameter["schema"]["maximum"] = settings.max_upscale


# -- one contract whatever the settings ---------------------------------------------------------------

# Short and stable: what generated clients name their functions after (FastAPI's default names the path).
OPERATION_IDS = {
    ("get", "/healthz"): "getHealth",
    ("get", "/readyz"): "getReadiness",
    ("get", "/metrics"): "getMetrics",
    ("get", "/v1/models"): "listModels",
    ("get", "/v1/models/{name}"): "getModel",
    ("get", "/v1/models/{name}/atlas"): "getAtlas",
    ("post", "/v1/models/{name}/encode"): "encode",
    ("post", "/v1/models/{name}/encode/batch"): "encodeBatch",
    ("post", "/v1/models/{name}/reconstruct"): "reconstruct",
    ("post", "/v1/models/{name}/reconstruct/batch"): "reconstructBatch",
    ("post", "/v1/models/{name}/decode"): "decode",
    ("post", "/v1/models/{name}/decode/batch"): "decodeBatch",
    ("post", "/v1/models/{name}/sample"): "sample",
    ("post", "/v1/models/{name}/prior/sample"): "samplePrior",
    ("post", "/v1/models/{name}/interpolate"): "interpolate",
    ("post", "/v1/classify"): "classify",
    ("post", "/v1/classify/batch"): "classifyBatch",
    ("post", "/admin/reload"): "reloadModels",
    ("get", "/v2"): "getServerMetadata",
    ("get", "/v2/health/live"): "getServerLive",
    ("get", "/v2/health/ready"): "getServerReady",
    ("get", "/v2/models/{name}"): "getModelMetadata",
    ("get", "/v2/models/{name}/versions/{version}"): "getModelVersionMetadata",
    ("get", "/v2/models/{name}/ready"): "getModelReady",
    ("get", "/v2/models/{name}/versions/{version}/ready"): "getModelVersionReady",
    ("post", "/v2/models/{name}/infer"): "infer",
    ("post", "/v2/models/{name}/versions/{version}/infer"): "inferVersion",
}
BEARER = "HTTPBearer"  # FastAPI's name for service/api/security.py's scheme
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "/v1 and /v2 take one of DIGITAE_API_KEYS when the service has keys (else no key is needed); "
    "/admin takes DIGITAE_ADMIN_KEY. The probes (/healthz, /readyz, /metrics, /v2/health/*) never take a key.",
}
Security = list[dict[str, list[str]]]
KEY_WHEN_CONFIGURED: Security = [{BEARER: []}, {}]  # a key, or none when the service has no keys
ADMIN_KEY: Security = [{BEARER: []}]
NO_KEY: Security = []


def security_of(path: str) -> Security:
    """Whether an operation takes a key, from its path alone: the same document whatever the settings."""
    if path.startswith("/admin/"):
        return ADMIN_KEY
    if path.startswith("/v2/health/") or not path.startswith(("/v1", "/v2")):
        return NO_KEY
    return KEY_WHEN_CONFIGURED


# Answered for any operation by the server or the middleware, before (or around) the route.
ANSWERED_ANYWHERE = (405, 408, 431, 500)
_HEADER = {"schema": {"type": "string"}}
REQUEST_ID = {**_HEADER, "required": True, "description": "the request's id (the client's X-Request-ID, or a new one)"}
MODEL_HEADERS = {
    "X-Model-Name": {**_HEADER, "required": True, "description": "the model that answered"},
    "X-Model-Version": {**_HEADER, "required": True, "description": "its version (a checkpoint's content hash)"},
}
ARRAY_HEADERS = {
    "X-Array-Field": {**_HEADER, "description": "with an application/x-npy answer: the field the array holds"},
    "X-Array-Columns": {**_HEADER, "description": "with a `loss` array: its columns, comma-separated"},
}
RETRY_AFTER = {"Retry-After": {**_HEADER, "description": "with `busy`: the seconds to wait before retrying"}}
ANSWERED_BY_A_MODEL = ("/v1/classify", "/v1/models/{name}/")  # the inference and generation routes


def _document_answers(path: str, operation: dict[str, Any]) -> None:
    """Every status the service may answer, and the headers each answer carries."""
    responses = operation["responses"]
    for status in ANSWERED_ANYWHERE:
        responses.setdefault(
            str(status),
            {
                "description": ERROR_DESCRIPTIONS[status],
                "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}},
            },
        )
    for status, response in responses.items():
        headers = response.setdefault("headers", {})
        headers["X-Request-ID"] = REQUEST_ID if status not in ("408", "431") else {**REQUEST_ID, "required": False}
        if status == "503":
            headers.update(RETRY_AFTER)
        if status == "200" and path.startswith(ANSWERED_BY_A_MODEL) and path != "/v1/models/{name}/atlas":
            headers.update(MODEL_HEADERS)
            if NPY in response.get("content", {}):
                headers.update(ARRAY_HEADERS)


def document_contract(openapi: dict[str, Any]) -> None:
    """Make the document the same whatever the settings, and usable by client generators: the bearer scheme
    always declared and each operation's security, short operationIds, and no `default: null` (which
    generators read as "always present", making optional request fields required)."""
    openapi["components"].setdefault("securitySchemes", {})[BEARER] = BEARER_SCHEME
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            operation["operationId"] = OPERATION_IDS.get((method, path), operation["operationId"])
            operation["security"] = security_of(path)
            _document_answers(path, operation)
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "name":  # /v2's too: a pattern, not any text
                    parameter["schema"] = {
                        "type": "string",
                        "pattern": MODEL_NAME_PATTERN,
                        "maxLength": MODEL_NAME_MAX_LENGTH,
                    }
                    parameter.setdefault("examples", NAME_EXAMPLES)
    for schema in openapi["components"]["schemas"].values():
        for form in (schema, *schema.get("oneOf", [])):  # a request's single-image forms (schema_rules.IMAGE_FORMS)
            for field in form.get("properties", {}).values():
                if "default" in field and field["default"] is None:
                    del field["default"]


DEPRECATION_HEADERS = {
    "Deprecation": {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "with an answer to a deprecated request form (a batch or `.npy` body sent to a single "
        "operation, still answered for one release): `true`",
    },
    "Link": {
        "schema": {"type": "string"},
        "description": 'with `Deprecation`: the operation to use instead, `</v1/.../batch>; rel="successor-version"`',
    },
}


def ok_response(
    example: Any, *, png: str | None = None, npy: str | None = None, deprecated_forms: bool = False
) -> dict[int | str, dict[str, Any]]:
    """The 200 answer's example, (`png`, `npy`) the image/png and application/x-npy alternatives it offers, and
    (`deprecated_forms`) the headers marking an answer to a deprecated request form."""
    content: dict[str, Any] = {"application/json": {"example": example}}
    description = "The result as JSON; images are base64 PNG strings. `fields` trims it to the fields named."
    if png is not None:
        content["image/png"] = {"schema": {"type": "string", "format": "binary", "contentMediaType": "image/png"}}
        description += f" With `Accept: image/png`: {png}"
    if npy is not None:
        content[NPY] = {"schema": {"type": "string", "format": "binary", "contentMediaType": NPY}}
        description += f" With `Accept: application/x-npy`: {npy}"
    response: dict[str, Any] = {"description": description, "content": content}
    if deprecated_forms:
        response["headers"] = deepcopy(DEPRECATION_HEADERS)
    return {200: response}
