"""The cap on request bodies: `BodyLimitMiddleware` refuses a body over its cap with 413, from
`Content-Length` before reading anything, or as soon as the streamed bytes pass the cap, so no route
ever holds more than the cap in memory. A bulk `.npy` body (application/x-npy) has its own, larger cap, chosen
from the Content-Type as the routes read it (`declared_media_type`: several Content-Type headers are 400), and so
does a body of binary tensors (the Open Inference Protocol's binary extension: an Inference-Header-Content-Length
header), which carries as many images."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.codec.arrays import NPY
from service.codec.errors import ApiError, send_error
from service.codec.inputs import declared_media_type


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, npy_max_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.npy_max_bytes = npy_max_bytes if npy_max_bytes is not None else max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            is_npy = declared_media_type(scope.get("headers", ())) == NPY or _has_binary_tensors(scope)
        except ApiError as exc:  # several Content-Type headers
            request_id = scope.get("state", {}).get("request_id")
            await send_error(send, exc.status_code, exc.message, request_id, close=True, path=scope.get("path", ""))
            return
        declared = _content_length(scope)
        cap = self.npy_max_bytes if is_npy else self.max_bytes
        if declared is not None and declared > cap:
            request_id = scope.get("state", {}).get("request_id")
            message = self._message(declared, cap, is_npy)
            await send_error(send, 413, message, request_id, close=True, path=scope.get("path", ""))
            return
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise ApiError(413, self._message(None, cap, is_npy))
            return message

        await self.app(scope, capped_receive, send)

    @staticmethod
    def _message(declared: int | None, cap: int, is_npy: bool) -> str:
        size = f"{declared:,} bytes" if declared is not None else f"over {cap:,} bytes"
        setting = (
            "a .npy or binary-tensor body by DIGITAE_MAX_BULK rows" if is_npy else "images by DIGITAE_MAX_UPLOAD_BYTES"
        )
        return f"the request body is {size}; the limit is {cap:,} bytes ({setting})"


def _content_length(scope: Scope) -> int | None:
    """The declared body size (None when absent or unreadable)."""
    length: int | None = None
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
    return length


def _has_binary_tensors(scope: Scope) -> bool:
    """Whether the body is binary tensors (the Open Inference Protocol's extension), which take the bulk cap."""
    return any(name == BINARY_TENSORS_HEADER for name, _ in scope.get("headers", ()))


BINARY_TENSORS_HEADER = b"inference-header-content-length"
