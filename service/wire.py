"""The bytes every layer writes: JSON (`json_bytes`, which serialises every answer) and the error envelope
(`error_body`), so the answers the app gives and those the HTTP server writes straight to a socket (a timeout, a
refused connection) share one shape, bounded in one place.

    {"error": {"code": "invalid_request", "message": "latent[3]: Input should be a finite number",
               "detail": [...], "request_id": "…"}}

The message is at most MAX_MESSAGE_CHARS characters (anything echoed from the request is clipped), and `detail`
lists at most MAX_ERROR_DETAILS problems, so every error body is at most a few KB.
"""

from __future__ import annotations

from typing import Any

import pydantic_core

MAX_MESSAGE_CHARS = 500
MAX_ERROR_DETAILS = 10


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
