"""Request IDs, the access log, the request metrics, and the last-resort 500.

`RequestContextMiddleware` (pure ASGI, cheaper than Starlette's BaseHTTPMiddleware on every request), outermost:
gives each request an id (the client's `X-Request-ID` when it is sane, else a new one), returns it as a header,
logs one line per request, counts and times it by route template and status, and turns an unhandled exception
into a JSON 500 that leaks nothing.
A client that goes away before its body is read is an ordinary event: status 499 (nginx's "client closed
request"), or 408 when the server closed it for sending too slowly; never a 500 or a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.codec.errors import send_error
from service.runtime.logs import ACCESS_LINE, AccessLine, BackgroundStreamHandler
from service.runtime.metrics import request_metrics
from service.runtime.server import CLOSED_WITH

access_log = logging.getLogger("digitae.access")
error_log = logging.getLogger("digitae.errors")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
UNMATCHED_ROUTE = "<unmatched>"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away before it was answered

# Every answer from a model names the model and the version that computed it.
MODEL_HEADERS = ("X-Model-Name", "X-Model-Version")
_CONNECTION_CLOSE = (b"connection", b"close")


def log_access(method: str, path: str, status: int, milliseconds: float, request_id: str) -> None:
    """One access line. When the line goes to a `BackgroundStreamHandler` (as `logging_config` sets up), the
    request only queues a tuple: the log record is made, formatted and written in the handler's thread."""
    line = (method, path, status, milliseconds, request_id)
    handler = _access_handler()
    if handler is not None:
        handler._pending.put_nowait(AccessLine(time.time(), line))
    else:
        access_log.info(ACCESS_LINE, *line)


def _access_handler() -> BackgroundStreamHandler | None:
    """The handler that access lines end at, when it is one background handler on the root logger and nothing
    on the way filters or handles them."""
    if access_log.handlers or access_log.filters or not access_log.propagate:
        return None
    parent = access_log.parent
    while parent is not None and parent is not logging.root:
        if parent.handlers or parent.filters or not parent.propagate:
            return None
        parent = parent.parent
    handlers = logging.root.handlers
    if len(handlers) == 1 and isinstance(handlers[0], BackgroundStreamHandler) and not logging.root.filters:
        handler = handlers[0]
        if handler.level <= logging.INFO and not handler.filters and handler.accepting:
            return handler
    return None


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _SANE_REQUEST_ID.match(text):
                return text
            break
    return secrets.token_hex(16)  # 128 random bits as 32 hex digits, like uuid4().hex, at a tenth of its cost


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", ()), id_header, *_operations_headers(scope)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # Nothing can be answered: the connection is gone (or the server closed it, saying why).
            status = scope["state"].get(CLOSED_WITH, CLIENT_CLOSED_REQUEST)
        except asyncio.CancelledError:
            status = 503  # cut by the shutdown deadline
            raise
        except Exception:
            error_log.exception("unhandled error, request_id=%s", request_id)
            if not started:
                message = "internal error; quote the request id when reporting it"
                await send_error(send_with_id, 500, message, request_id)
            status = 500
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = scope.get("method", "")
            count, latency = request_metrics(method, template, status)
            count.inc()
            latency.observe(seconds)
            if access_log.isEnabledFor(logging.INFO):
                log_access(method, scope.get("path", ""), status, seconds * 1000, request_id)


def _operations_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The model and version that answered (when the route named one), and `Connection: close` while draining
    (keep-alive clients then reconnect, to another replica)."""
    headers = []
    model = scope["state"].get("model")
    if model is not None:
        headers += [(b"x-model-name", model.name.encode()), (b"x-model-version", model.version.encode())]
    app = scope.get("app")
    drain = getattr(getattr(app, "state", None), "drain", None)
    if drain is not None and drain.draining:
        headers.append(_CONNECTION_CLOSE)
    return headers
