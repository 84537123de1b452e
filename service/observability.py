"""Request IDs, the access log, Prometheus metrics, the body cap, and the last-resort 500.

Two pure ASGI middlewares (cheaper than Starlette's BaseHTTPMiddleware on every request):
- `RequestContextMiddleware`, outermost: gives each request an id (the client's `X-Request-ID` when
  it is sane, else a new one), returns it as a header, logs one line per request, counts and times
  it by route template and status, and turns an unhandled exception into a JSON 500 that leaks nothing.
- `BodyLimitMiddleware`: refuses a body over the cap with 413, from `Content-Length` before reading
  anything, or as soon as the streamed bytes pass the cap.

Metrics are per process. With several workers, set PROMETHEUS_MULTIPROC_DIR to an empty folder
and /metrics adds up every worker (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import sys
import time
import uuid
from logging.handlers import QueueHandler, QueueListener
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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import CODES, ApiError, error_body

access_log = logging.getLogger("digitae.access")
error_log = logging.getLogger("digitae.errors")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
UNMATCHED_ROUTE = "<unmatched>"

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


class InFlight:
    """How many HTTP requests this process is handling right now."""

    count = 0

    @classmethod
    def others(cls) -> bool:
        """True when a request besides the caller's is in flight: a micro-batch may get company."""
        return cls.count > 1


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
    return uuid.uuid4().hex


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

        InFlight.count += 1
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception("unhandled error, request_id=%s", request_id)
            if not started:
                message = "internal error; quote the request id when reporting it"
                await _send_error(send_with_id, 500, message, request_id)
            status = 500
        finally:
            InFlight.count -= 1
            seconds = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_LATENCY.labels(method, template, str(status)).observe(seconds)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms request_id=%s", method, scope.get("path", ""), status, seconds * 1000, request_id
                )


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
            await _send_error(send, 413, self._message(declared), request_id, close=True)
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


async def _send_error(send: Send, status: int, message: str, request_id: Any, close: bool = False) -> None:
    body = error_body(CODES.get(status, "error"), message, request_id=request_id)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BackgroundStreamHandler(QueueHandler):
    """Writes to stderr from a background thread: formatting and writing the per-request lines (to a slow
    terminal or a full pipe) never stall the event loop. Closing it (logging does at exit) flushes the queue."""

    def __init__(self) -> None:
        super().__init__(queue.SimpleQueue())
        self.target = logging.StreamHandler(sys.stderr)
        self.listener = QueueListener(self.queue, self.target)
        self.listener.start()
        self.listening = True

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.target.setFormatter(fmt)  # the background thread formats; this thread only queues

    def close(self) -> None:
        if self.listener._thread is not None:
            self.listener.stop()
        self.target.close()
        super().close()


def logging_config(level: str) -> dict[str, Any]:
    """One format for our loggers and uvicorn's, for `logging.config.dictConfig` and uvicorn's `log_config`
    (uvicorn applies it in every worker process). The access line is ours; uvicorn's is turned off."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"()": BackgroundStreamHandler, "formatter": "plain"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }
