"""One JSON shape for every error, the handlers that produce it, and its OpenAPI documentation.

    {"error": {"code": "invalid_request", "message": "latent[3]: Input should be a finite number",
               "detail": [...], "request_id": "…"}}

`code` is stable and machine-readable, `message` is for a person, `detail` (optional) holds the
per-field problems of a 422.

An error body stays small whatever the request held: the message is at most MAX_MESSAGE_CHARS characters
(anything echoed from the request is clipped), and `detail` lists at most MAX_ERROR_DETAILS problems, the
message saying how many more there were. So every error body is at most a few KB.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic_core
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Send

from service.imaging import ImageInputError

MAX_MESSAGE_CHARS = 500
MAX_ERROR_DETAILS = 10
MAX_DETAIL_TEXT = 200  # each string inside a listed problem (a location part, a message)

CODES = {
    400: "bad_request",
    401: "unauthorized",
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


def json_bytes(payload: Any) -> bytes:
    """Fast JSON; NaN and infinity (never valid JSON) become null."""
    return pydantic_core.to_json(payload, inf_nan_mode="null")


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text`, cut to about `limit` characters saying how long it was: what a request sent is never echoed whole."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters in all)"


def error_body(code: str, message: str, detail: Any = None, request_id: str | None = None) -> bytes:
    """The one error shape, as JSON bytes: every error answer's body is built here, and bounded here (the
    message clipped, at most MAX_ERROR_DETAILS problems listed)."""
    if isinstance(detail, list) and len(detail) > MAX_ERROR_DETAILS:
        detail = detail[:MAX_ERROR_DETAILS]
    return json_bytes({"error": {"code": code, "message": clip(message), "detail": detail, "request_id": request_id}})


def error_response(
    request: Request | None,
    status_code: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    request_id = request.scope.get("state", {}).get("request_id") if request is not None else None
    body = error_body(code, message, detail, request_id)
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


async def send_error(send: Send, status: int, message: str, request_id: Any, close: bool = False) -> None:
    """The error envelope sent straight through ASGI, for middleware that answers before the app runs."""
    body = error_body(CODES.get(status, "error"), message, request_id=request_id)
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


def _http_message(request: Request, exc: StarletteHTTPException) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    if exc.status_code == 404:
        return f"no route {request.method} {clip(request.url.path, 200)}; the API is listed at /docs"
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        path = clip(request.url.path, 200)
        return f"{request.method} is not allowed on {path}" + (f"; use {allowed}" if allowed else "")
    if exc.status_code == 413:
        return "the request body is too large"
    return str(exc.detail)


async def handle_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    code = exc.code if isinstance(exc, ApiError) else CODES.get(exc.status_code, "error")
    detail = exc.extra if isinstance(exc, ApiError) else None
    return error_response(request, exc.status_code, code, _http_message(request, exc), detail, exc.headers)


async def handle_validation_error(request: Request, exc: RequestValidationError) -> Response:
    problems = problems_of(exc.errors())
    return error_response(request, 422, CODES[422], summarize(problems), problems[:MAX_ERROR_DETAILS])


async def handle_image_error(request: Request, exc: ImageInputError) -> Response:
    return error_response(request, exc.status_code, CODES.get(exc.status_code, "error"), exc.message)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, handle_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, handle_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(ImageInputError, handle_image_error)  # type: ignore[arg-type]


# -- OpenAPI ----------------------------------------------------------------------------------------

_DESCRIPTIONS = {
    401: "Missing or wrong API key (`Authorization: Bearer <key>`), when keys are configured.",
    404: "Unknown model (the message lists the known ones) or route.",
    405: "Method not allowed on this route.",
    406: "The Accept header asks for a type this route cannot produce.",
    413: "The body, the image file or the image's pixel count is over its cap.",
    415: "Wrong Content-Type, or the upload is not a decodable PNG, JPEG, BMP, GIF or WebP image.",
    422: "The request is well-formed but invalid (field, range, length, NaN, extra field, empty body...).",
    500: "Unexpected server error; nothing is leaked, quote the request id.",
    503: "The models are not loaded (yet).",
}
_EXAMPLE_MESSAGES = {
    401: "missing API key: send 'Authorization: Bearer <key>'",
    404: "unknown model 'ae-7'; known models: ae-2, ae-6, vae-2",
    405: "DELETE is not allowed on /v1/models; use GET",
    406: "this route answers application/json only; the Accept header asked for image/png",
    413: "the image is 6,291,456 bytes; the limit is 5,242,880 bytes",
    415: "the data is a PDF document, which is not supported; send a PNG, JPEG, BMP, GIF or WebP image",
    422: "latent: expected 6 numbers (the model's latent_dim), got 5",
    500: "internal error; quote the request id when reporting it",
    503: "the models are not loaded yet",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status documented with the error schema and an example."""
    return {
        status: {
            "model": ErrorResponse,
            "description": _DESCRIPTIONS[status],
            "content": {
                "application/json": {
                    "example": {
                        "error": {
                            "code": CODES[status],
                            "message": _EXAMPLE_MESSAGES[status],
                            "detail": None,
                            "request_id": "3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b",
                        }
                    }
                }
            },
        }
        for status in statuses
    }
