"""The cap on request bodies: `BodyLimitMiddleware` refuses a body over `max_bytes` with 413, from
`Content-Length` before reading anything, or as soon as the streamed bytes pass the cap, so no route
ever holds more than the cap in memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, send_error


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            request_id = scope.get("state", {}).get("request_id")
            await send_error(send, 413, self._message(declared), request_id, close=True)
            return
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(413, self._message(None))
            return message

        await self.app(scope, capped_receive, send)

    def _message(self, declared: int | None) -> str:
        size = f"{declared:,} bytes" if declared is not None else f"over {self.max_bytes:,} bytes"
        return (
            f"the request body is {size}; the limit is {self.max_bytes:,} bytes "
            "(images are capped by DIGITAE_MAX_UPLOAD_BYTES)"
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
