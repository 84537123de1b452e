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
import secrets
import sys
import threading
import time
from logging.handlers import QueueHandler
from typing import Any, NamedTuple

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


ACCESS_LINE = "%s %s %d %.1fms request_id=%s"


def log_access(method: str, path: str, status: int, milliseconds: float, request_id: str) -> None:
    """One access line. When the line goes to a `BackgroundStreamHandler` (as `logging_config` sets up), the
    request only queues a tuple: the log record is made, formatted and written in the handler's thread."""
    line = (method, path, status, milliseconds, request_id)
    handler = _access_handler()
    if handler is not None:
        handler._pending.put_nowait(AccessLine(time.time(), line))
    else:
        access_log.info(ACCESS_LINE, *line)


class AccessLine(NamedTuple):
    created: float
    args: tuple[Any, ...]

    def record(self) -> logging.LogRecord:
        record = access_log.makeRecord(access_log.name, logging.INFO, "", 0, ACCESS_LINE, self.args, None)
        record.created, record.msecs = self.created, (self.created % 1) * 1000
        return record


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
            count, latency = request_metrics(method, template, status)
            count.inc()
            latency.observe(seconds)
            if access_log.isEnabledFor(logging.INFO):
                log_access(method, scope.get("path", ""), status, seconds * 1000, request_id)


WRITE_EVERY_S = 0.05


class BackgroundStreamHandler(QueueHandler):
    """Writes to stderr from a background thread: formatting and writing the per-request lines (to a slow
    terminal or a full pipe) never stall the event loop. The thread wakes at most every WRITE_EVERY_S and
    writes whatever has queued up in one write and one flush. Closing it (logging does at exit) flushes the queue."""

    def __init__(self) -> None:
        self._pending: queue.SimpleQueue[Any] = queue.SimpleQueue()
        super().__init__(self._pending)
        self.target = logging.StreamHandler(sys.stderr)
        self.accepting = True
        self._writer = threading.Thread(target=self._write_batches, name="digitae-log-writer", daemon=True)
        self._writer.start()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.target.setFormatter(fmt)  # the background thread formats; this thread only queues

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Queue the record as it is: QueueHandler's default formats and copies it here, in the caller's thread
        (for pickling to another process, which a thread does not need): that was most of a request's logging cost."""
        return record

    def _write_batches(self) -> None:
        target, pending = self.target, self._pending
        while True:
            batch = [pending.get()]
            if batch[0] is not None:
                time.sleep(WRITE_EVERY_S)  # let lines gather: one wake-up per batch, not one per request
            while len(batch) < 4096:
                try:
                    batch.append(pending.get_nowait())
                except queue.Empty:
                    break
            records = [item.record() if isinstance(item, AccessLine) else item for item in batch if item is not None]
            lines = []
            for record in records:
                try:
                    lines.append(target.format(record) + target.terminator)
                except Exception:
                    target.handleError(record)
            if lines:
                try:
                    with target.lock:  # type: ignore[union-attr]
                        target.stream.write("".join(lines))
                        target.flush()
                except Exception:
                    target.handleError(records[-1])
            if len(records) < len(batch):
                return  # the stop sentinel

    def close(self) -> None:
        self.accepting = False
        if self._writer.is_alive():
            self._pending.put_nowait(None)
            self._writer.join(timeout=5)
        self.target.close()
        super().close()


class PlainFormatter(logging.Formatter):
    """The log line format, with the timestamp's text made once per second rather than once per line."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second or datefmt is not None:
            self._second = second
            self._text = time.strftime(datefmt or self.default_time_format, self.converter(second))
        return f"{self._text},{int(record.msecs):03d}"


def logging_config(level: str) -> dict[str, Any]:
    """One format for our loggers and uvicorn's, for `logging.config.dictConfig` and uvicorn's `log_config`
    (uvicorn applies it in every worker process). The access line is ours; uvicorn's is turned off."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"()": PlainFormatter, "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"()": BackgroundStreamHandler, "formatter": "plain"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }
