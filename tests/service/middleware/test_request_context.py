"""The lighter hot path: the access line costs the request a queued tuple, yet every line is written, in order, in
the configured format, and none is lost at exit; the request metrics are looked up once per series."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import re
from collections.abc import Iterator

import pytest
from starlette.types import Message, Receive, Scope, Send

from service.middleware import request_context
from service.middleware.request_context import log_access
from service.runtime import metrics
from service.runtime.logs import BackgroundStreamHandler, logging_config
from service.runtime.metrics import request_metrics


@pytest.fixture
def configured_logging() -> Iterator[BackgroundStreamHandler]:
    saved = logging.root.handlers[:], logging.root.level
    logging.config.dictConfig(logging_config("info"))
    handler = logging.root.handlers[0]
    assert isinstance(handler, BackgroundStreamHandler)
    handler.target.setStream(io.StringIO())
    yield handler
    handler.close()
    logging.root.handlers[:], logging.root.level = saved[0], saved[1]


def test_access_lines_are_queued_then_written_in_order_and_flushed_at_close(
    configured_logging: BackgroundStreamHandler,
) -> None:
    handler = configured_logging
    logging.root.handlers[:] = [handler]  # without pytest's capturing handlers, as in the server
    assert request_context._access_handler() is handler  # the fast path is taken
    for i in range(2000):
        log_access("POST", f"/v1/models/ae-6/encode?i={i}", 200, 1.25, f"id{i}")
    logging.getLogger("digitae").warning("a plain record among them")
    log_access("GET", "/healthz", 404, 0.5, "last")
    stream = handler.target.stream
    handler.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2002
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(
        stamp + r" INFO digitae.access: POST /v1/models/ae-6/encode\?i=0 200 1.2ms request_id=id0", lines[0]
    )
    assert [int(re.search(r"i=(\d+)", line).group(1)) for line in lines[:2000]] == list(range(2000))
    assert lines[2000].endswith("WARNING digitae: a plain record among them")
    assert lines[2001].endswith("INFO digitae.access: GET /healthz 404 0.5ms request_id=last")


def test_access_lines_go_through_logging_when_another_handler_is_configured(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="digitae.access"):
        assert request_context._access_handler() is None
        log_access("POST", "/v1/x", 201, 2.0, "abc")
    assert caplog.records[-1].getMessage() == "POST /v1/x 201 2.0ms request_id=abc"


def test_request_metrics_are_looked_up_once_per_series() -> None:
    first = request_metrics("POST", "/v1/models/{name}/encode", 200)
    assert request_metrics("POST", "/v1/models/{name}/encode", 200) is first
    assert request_metrics("POST", "/v1/models/{name}/encode", 422) is not first
    before = first[0]._value.get()
    first[0].inc()
    assert metrics.HTTP_REQUESTS.labels("POST", "/v1/models/{name}/encode", "200")._value.get() == before + 1


def test_a_request_cancelled_at_the_shutdown_deadline_is_answered_503_shutting_down_not_a_bare_500() -> None:
    """uvicorn cancels the requests still running at its shutdown deadline; left to itself it answers them with a
    text/plain 500 (seen on a loaded machine). The middleware answers the deadline's 503 in the envelope instead,
    and the task ends as an answered request."""

    async def forever(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.Event().wait()

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def serve_then_cancel() -> None:
        scope: Scope = {"type": "http", "method": "POST", "path": "/v1/models/ae-6/decode", "headers": []}
        task = asyncio.create_task(request_context.RequestContextMiddleware(forever)(scope, receive, send))
        await asyncio.sleep(0.01)
        task.cancel()
        await task  # ends without CancelledError: answered
        assert not task.cancelled()

    asyncio.run(serve_then_cancel())
    start, body = sent
    assert start["status"] == 503, start
    assert (b"connection", b"close") in start["headers"], start["headers"]
    error = json.loads(body["body"])["error"]
    assert error["code"] == "shutting_down", error
    assert "shutdown deadline" in error["message"], error
