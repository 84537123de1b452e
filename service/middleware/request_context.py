"""Request IDs, the access log, the request metrics, and the last-resort 500.

`RequestContextMiddleware` (pure ASGI, cheaper than Starlette's BaseHTTPMiddleware on every request), outermost:
gives each request an id (the client's `X-Request-ID` when it is sane, else a new one), returns it as a header,
logs one line per request, counts and times it by route template and status, and turns an unhandled exception
into a JSON 500 that leaks nothing.
A client that goes away before its body is read is an ordinary event: status 499 (nginx's "client closed
request"), or 408 when the server closed it for sending too slowly; never a 500 or a traceback.
While tracing is on (service/runtime/tracing.py) it also opens the request's span, in the trace of the client's
`traceparent` when it sent one, times the reading of the body as a child span, and answers with the span's
`traceparent` (and `tracestate`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.codec.errors import SHUTTING_DOWN, send_error
from service.runtime import tracing
from service.runtime.logs import AccessLine, BackgroundStreamHandler
from service.runtime.metrics import request_metrics
from service.runtime.server import CLOSED_WITH

access_log = logging.getLogger("digitae.access")
error_log = logging.getLogger("digitae.errors")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
UNMATCHED_ROUTE = "<unmatched>"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away before it was answered

# Every answer from a model names the model and the version that computed it.
MODEL_HEADERS = ("X-Model-Name", "X-Model-Version")
# W3C trace context: read from requests (a browser's preflight must allow them), written into answers
TRACE_HEADERS = ("traceparent", "tracestate")
_CONNECTION_CLOSE = (b"connection", b"close")


_W3C = TraceContextTextMapPropagator()


def log_access(
    method: str,
    path: str,
    status: int,
    milliseconds: float,
    request_id: str,
    trace_id: str = "",
    route: str = UNMATCHED_ROUTE,
    model: str | None = None,
    model_version: str | None = None,
    client: str | None = None,
) -> None:
    """One access line. When the line goes to a `BackgroundStreamHandler` (as `logging_config` sets up), the
    request only queues a tuple: the log record is made, formatted and written in the handler's thread."""
    line = AccessLine(
        time.time(), method, path, status, milliseconds, request_id, trace_id, route, model, model_version, client
    )
    handler = _access_handler()
    if handler is not None:
        handler._pending.put_nowait(line)
    else:
        access_log.handle(line.record())


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


# A request still running in the app at the shutdown deadline (DIGITAE_SHUTDOWN_TIMEOUT_S)
STOPPED_MID_REQUEST = "the server reached its shutdown deadline before this request finished; retry on another replica"


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
        tracer = tracing.TRACER
        request_span: Span | None = None
        attached: object = None
        trace_headers: list[tuple[bytes, bytes]] = []
        if tracer is not None:
            request_span, attached, receive, trace_headers = _start_request_span(tracer, scope, receive, request_id)

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", ()), id_header, *_operations_headers(scope)]
                if request_span is not None:
                    message["headers"] += trace_headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # Nothing can be answered: the connection is gone (or the server closed it, saying why).
            status = scope["state"].get(CLOSED_WITH, CLIENT_CLOSED_REQUEST)
        except asyncio.CancelledError:
            status = 503  # cut by the shutdown deadline
            if started:
                raise
            # uvicorn cancels what still runs at its shutdown deadline and would answer a bare text 500: answer the
            # 503 the deadline promises, in the envelope, and end as an answered request.
            await send_error(send_with_id, 503, STOPPED_MID_REQUEST, request_id, close=True, code=SHUTTING_DOWN,
                             path=scope.get("path", ""))  # fmt: skip
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception:
            error_log.exception("unhandled error, request_id=%s", request_id, extra={"request_id": request_id})
            if not started:
                message = "internal error; quote the request id when reporting it"
                await send_error(send_with_id, 500, message, request_id, path=scope.get("path", ""))
            status = 500
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = scope.get("method", "")
            count, latency = request_metrics(method, template, status)
            count.inc()
            latency.observe(seconds)
            if request_span is not None:
                _end_request_span(request_span, attached, scope, template, status)
            if access_log.isEnabledFor(logging.INFO):
                model = scope["state"].get("model")
                client = scope.get("client")
                trace_id = tracing.trace_id_of(request_span)
                log_access(
                    method, scope.get("path", ""), status, seconds * 1000, request_id, trace_id, template,
                    model.name if model is not None else None, model.version if model is not None else None,
                    client[0] if client else None,
                )  # fmt: skip


def _start_request_span(
    tracer: Tracer, scope: Scope, receive: Receive, request_id: str
) -> tuple[Span, object, Receive, list[tuple[bytes, bytes]]]:
    """The request's span (a child of the client's `traceparent` when sane), made current; `receive` wrapped to
    time the body's reading; the headers that carry the span back to the client."""
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name in (b"traceparent", b"tracestate")
    }
    parent = _W3C.extract(carrier) if carrier else None
    method = scope.get("method", "")
    request_span = tracer.start_span(
        method,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": scope.get("path", ""), "digitae.request_id": request_id},
    )
    in_span = trace.set_span_in_context(request_span)
    attached = otel_context.attach(in_span)
    answer: dict[str, str] = {}
    _W3C.inject(answer, context=in_span)
    headers = [(name.encode(), value.encode("latin-1")) for name, value in answer.items()]
    return request_span, attached, _timed_body(tracer, receive, in_span), headers


def _timed_body(tracer: Tracer, receive: Receive, parent: otel_context.Context) -> Receive:
    """`receive`, with a "read body" span from the first read to the last part of the body (or the client leaving)."""
    reading: Span | None = None
    received = 0

    async def receive_timed() -> Message:
        nonlocal reading, received
        if reading is not None and not reading.is_recording():
            return await receive()  # the body is in: nothing more to time
        if reading is None:
            reading = tracer.start_span("read body", context=parent)
        message = await receive()
        received += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            reading.set_attribute("http.request.body.size", received)
            reading.end()
        return message

    return receive_timed


def _end_request_span(span: Span, attached: object, scope: Scope, template: str, status: int) -> None:
    method = scope.get("method", "")
    span.update_name(f"{method} {template}")
    span.set_attribute("http.route", template)
    span.set_attribute("http.response.status_code", status)
    model = scope["state"].get("model")
    if model is not None:
        span.set_attributes({"digitae.model.name": model.name, "digitae.model.version": model.version})
    if status >= 500:
        span.set_status(StatusCode.ERROR)
    span.end()
    otel_context.detach(attached)  # type: ignore[arg-type]


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
