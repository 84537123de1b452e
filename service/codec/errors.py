"""One JSON shape for every error: the error a route raises (`ApiError`), its codes, and its answer.

    {"error": {"code": "invalid_request", "message": "latent[3]: Input should be a finite number",
               "detail": [...], "request_id": "…"}}

`code` is stable and machine-readable, `message` is for a person, `detail` (optional) holds the
per-field problems of a 422.

The envelope's bytes, and their bounds, are built by `service.wire` (the HTTP server writes the same shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Send

from service.codec.imaging import ImageInputError
from service.wire import MAX_ERROR_DETAILS, MAX_MESSAGE_CHARS, clip, error_body, json_bytes

__all__ = [  # the envelope's bounds and builder are used through this module too
    "MAX_ERROR_DETAILS",
    "MAX_MESSAGE_CHARS",
    "clip",
    "error_body",
]

MAX_DETAIL_TEXT = 200  # each string inside a listed problem (a location part, a message)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "request_timeout",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    431: "headers_too_large",
    500: "internal_error",
    503: "not_ready",
}
# A 503 for another reason than readiness, given with `ApiError(503, ..., code=BUSY)`: the service is up but this
# kind of work is at its limit right now (see Retry-After).
BUSY = "busy"
# The 503 of a worker that is stopping (after SIGTERM): the client should go to another replica, not wait here.
SHUTTING_DOWN = "shutting_down"


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable name of the problem", examples=["invalid_request"])
    message: str = Field(description="what is wrong and how to fix it", examples=["digit: at most 9"])
    detail: Any | None = Field(None, description="per-field problems (422) or other structured detail")
    request_id: str | None = Field(None, description="the X-Request-ID of the request, to quote in a report")


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer has this shape."""

    error: ErrorBody


class ApiError(StarletteHTTPException):
    """An error with a status, a message a person can act on, and optional structured detail."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        code: str | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.message = message
        self.code = code or CODES.get(status_code, "error")
        self.extra = detail


PROTOCOL_PREFIX = "/v2"  # the Open Inference Protocol's paths: their errors take its shape, {"error": "<message>"}


def speaks_protocol(path: str) -> bool:
    """Whether `path` is one of the Open Inference Protocol's, whose clients read an error as a string."""
    return path == PROTOCOL_PREFIX or path.startswith(PROTOCOL_PREFIX + "/")


def protocol_error_body(message: str) -> bytes:
    """The protocol's error shape, `{"error": "<message>"}`, clipped like the envelope (the request id is in
    X-Request-ID)."""
    return json_bytes({"error": clip(message)})


def error_response(
    request: Request | None,
    status_code: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    request_id = request.scope.get("state", {}).get("request_id") if request is not None else None
    if request is not None and speaks_protocol(request.url.path):
        body = protocol_error_body(message)
    else:
        body = error_body(code, message, detail, request_id)
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


async def send_error(
    send: Send, status: int, message: str, request_id: Any, close: bool = False, path: str = "", code: str = ""
) -> None:
    """The error envelope (the protocol's shape on its `path`s) sent straight through ASGI, for middleware that
    answers before the app runs."""
    if speaks_protocol(path):
        body = protocol_error_body(message)
    else:
        body = error_body(code or CODES.get(status, "error"), message, request_id=request_id)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- turning problems into ApiError -------------------------------------------------------------------


def format_location(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'images', 2, 'pixels') -> 'images[2].pixels'."""
    text = ""
    for part in loc:
        if part == "body" and not text:
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def problems_of(errors: list[dict[str, Any]] | Any) -> list[dict[str, Any]]:
    """Pydantic's error list without the echoed input (which can be megabytes) or internals; each text clipped."""
    return [
        {
            "loc": [p if isinstance(p, int) else clip(str(p), MAX_DETAIL_TEXT) for p in e.get("loc", ())],
            "msg": clip(str(e.get("msg", "")).removeprefix("Value error, "), MAX_DETAIL_TEXT),
            "type": e.get("type", ""),
        }
        for e in errors
    ]


def summarize(problems: list[dict[str, Any]]) -> str:
    first = problems[0]
    where = format_location(first["loc"])
    message = f"{where}: {first['msg']}" if where else first["msg"]
    if first["type"] == "json_invalid":
        message = f"the body is not valid JSON ({first['msg']})"
    more = len(problems) - 1
    if more > MAX_ERROR_DETAILS - 1:
        message += f" (and {more:,} more problems; detail lists the first {MAX_ERROR_DETAILS})"
    elif more:
        message += f" (and {more} more problem{'s' if more > 1 else ''}, see detail)"
    return message


def invalid(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> ApiError:
    """A pydantic ValidationError as a 422 ApiError; `prefix` says where the validated part sits."""
    problems = problems_of(exc.errors(include_url=False, include_context=False, include_input=False))
    for problem in problems:
        problem["loc"] = [*prefix, *problem["loc"]]
    return ApiError(422, summarize(problems), detail=problems[:MAX_ERROR_DETAILS])


def image_problem(exc: ImageInputError, where: str | None = None) -> ApiError:
    message = f"{where}: {exc.message}" if where else exc.message
    return ApiError(exc.status_code, message)


# -- handlers -------------------------------------------------------------------------------------
