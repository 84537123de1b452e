"""The error handlers that answer every failure in the one envelope (service/codec/errors.py), and the
envelope's OpenAPI documentation per status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from service.codec.errors import (
    CODES,
    MAX_ERROR_DETAILS,
    ApiError,
    ErrorResponse,
    clip,
    error_response,
    problems_of,
    summarize,
)
from service.codec.imaging import ImageInputError


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

ERROR_DESCRIPTIONS = {
    401: "Missing or wrong API key (`Authorization: Bearer <key>`), when keys are configured; for an admin "
    "operation, no key sent.",
    403: "Admin operations: a key that is not DIGITAE_ADMIN_KEY, or any key when the service has no admin key (admin "
    "operations are then off).",
    404: "Unknown model (the message lists the known ones) or route.",
    405: "Method not allowed on this route.",
    408: "The headers or the body came in too slowly (the server closes the connection).",
    406: "The Accept header asks for a type this route cannot produce.",
    413: "The body, the image file or the image's pixel count is over its cap.",
    415: "Wrong Content-Type, or the upload is not a decodable PNG, JPEG, BMP, GIF or WebP image.",
    422: "The request is well-formed but invalid (field, range, length, NaN, extra field, empty body...).",
    431: "The request's headers are over the server's cap (the server closes the connection).",
    500: "Unexpected server error; nothing is leaked, quote the request id.",
    503: "The models are not loaded (yet): `not_ready`; the worker is stopping (after SIGTERM): `shutting_down`, go "
    "to another replica; or every bulk slot is taken (a `.npy` request): `busy`, retry after Retry-After.",
}
_EXAMPLE_MESSAGES = {
    401: "missing API key: send 'Authorization: Bearer <key>'",
    403: "wrong admin key",
    404: "unknown model 'ae-7'; known models: ae-2, ae-6, vae-2",
    405: "DELETE is not allowed on /v1/models; use GET",
    408: "the request body did not arrive in time",
    406: "this route answers application/json only; the Accept header asked for image/png",
    413: "the image is 6,291,456 bytes; the limit is 5,242,880 bytes",
    415: "the data is a PDF document, which is not supported; send a PNG, JPEG, BMP, GIF or WebP image",
    422: "latent: expected 6 numbers (the model's latent_dim), got 5",
    431: "the request headers are too large",
    500: "internal error; quote the request id when reporting it",
    503: "the models are not loaded yet",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status documented with the error schema and an example."""
    return {
        status: {
            "model": ErrorResponse,
            "description": ERROR_DESCRIPTIONS[status],
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
