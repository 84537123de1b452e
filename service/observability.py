"""Request IDs, the access log, Prometheus metrics, and the last-resort 500.

`RequestContextMiddleware` (pure ASGI, cheaper than Starlette's BaseHTTPMiddleware on every request), outermost:
gives each request an id (the client's `X-Request-ID` when it is sane, else a new one), returns it as a header,
logs one line per request, counts and times it by route template and status, and turns an unhandled exception
into a JSON 500 that leaks nothing.

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

from service.errors import send_error

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


def observe_batch(model: str, operation: str, size: int, seconds: float) -> None:
    MICROBATCH_SIZE.labels(model, operation).observe(size)
    INFERENCE_TIME.labels(model, operation).observe(seconds)


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
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
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
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_LATENCY.labels(method, template, str(status)).observe(seconds)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms request_id=%s", method, scope.get("path", ""), status, seconds * 1000, request_id
                )


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
