"""Request IDs, the access log, Prometheus metrics, and the last-resort 500.

`RequestContextMiddleware` (pure ASGI, cheaper than Starlette's BaseHTTPMiddleware on every request), outermost:
gives each request an id (the client's `X-Request-ID` when it is sane, else a new one), returns it as a header,
logs one line per request, counts and times it by route template and status, and turns an unhandled exception
into a JSON 500 that leaks nothing.
A client that goes away before its body is read is an ordinary event: status 499 (nginx's "client closed
request"), or 408 when the server closed it for sending too slowly; never a 500 or a traceback.

Metrics are per process. With several workers, set PROMETHEUS_MULTIPROC_DIR to an empty folder
and /metrics adds up every worker (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import send_error
from service.logs import ACCESS_LINE, AccessLine, BackgroundStreamHandler
from service.server import CLOSED_WITH

access_log = logging.getLogger("digitae.access")
error_log = logging.getLogger("digitae.errors")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
UNMATCHED_ROUTE = "<unmatched>"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away before it was answered

HTTP_REQUESTS = Counter(
    "digitae_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "digitae_http_request_duration_seconds",
    "Time from request to the end of the response, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
MICROBATCH_SIZE = Histogram(
    "digitae_microbatch_size",
    "Items per forward pass, by model and operation",
    ["model", "operation"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
INFERENCE_TIME = Histogram(
    "digitae_inference_seconds",
    "Time of one forward pass (one micro-batch) in the inference thread, by model and operation",
    ["model", "operation"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

MODEL_CHANGES = Counter(
    "digitae_model_changes",
    "Checkpoint folders added, updated, removed or refused (damaged: the previous version serves on) by reloads",
    ["model", "change"],
)
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


_request_metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_MAX_CACHED_SERIES = 1024


def request_metrics(method: str, template: str, status: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of one (method, route template, status), looked up once:
    prometheus_client's `labels()` costs more than the increment itself."""
    key = (method, template, status)
    found = _request_metrics.get(key)
    if found is None:
        labels = (method, template, str(status))
        found = (HTTP_REQUESTS.labels(*labels), HTTP_LATENCY.labels(*labels))
        if len(_request_metrics) < _MAX_CACHED_SERIES:
            _request_metrics[key] = found
    return found


def observe_batch(model: str, operation: str, size: int, seconds: float) -> None:
    MICROBATCH_SIZE.labels(model, operation).observe(size)
    INFERENCE_TIME.labels(model, operation).observe(seconds)


def observe_model_change(model: str, change: str) -> None:
    MODEL_CHANGES.labels(model, change).inc()


def metrics_text() -> tuple[bytes, str]:
    """The exposition text: this process, or every worker in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


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
