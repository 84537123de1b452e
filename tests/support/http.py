"""What every answer of the API promises, checked in one place."""

from __future__ import annotations

from typing import Any

import httpx


def assert_error(
    response: httpx.Response, status: int, *, says: str, code: str | None = None, max_bytes: int | None = None
) -> dict[str, Any]:
    """The one error shape: the exact status, JSON, the four fields, the `code` (when given), a message that
    contains `says` (always given: every error a test provokes states what it must tell the person), the request's
    id, and (with `max_bytes`) a body under that size. Returns the error object."""
    assert says, "assert_error needs the words the message must contain"
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "detail", "request_id"}
    if code is not None:
        assert error["code"] == code
    assert says in error["message"], error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    if max_bytes is not None:
        assert len(response.content) < max_bytes, "an error never echoes a large input back"
    return error
