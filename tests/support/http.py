"""What every answer of the API promises, checked in one place."""

from __future__ import annotations

from typing import Any

import httpx


def assert_error(
    response: httpx.Response, status: int, *, code: str | None = None, says: str = "", max_bytes: int | None = None
) -> dict[str, Any]:
    """The one error shape: the exact status, JSON, the four fields, the `code` (when given), a message that
    contains `says`, the request's id, and (with `max_bytes`) a body under that size. Returns the error object."""
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
