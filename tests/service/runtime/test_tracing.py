"""Traces: a real server's requests become spans in the client's trace (W3C traceparent in and out), with child spans
for their stages and a forward-pass span linked with every request it served; seen by the SDK's in-memory exporter
(the app served by uvicorn in this process) and by an OTLP receiver over HTTP (a real `python -m service`).
Off unless the OTEL_* variables ask: then answers carry no traceparent and access lines no trace id."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service.app import create_app
from service.runtime import tracing
from service.settings import Settings
from tests.support import ServerProcess, StartServer, b64, build_checkpoints, example_digit, free_port, png_bytes

CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"
ORIGIN = "http://explorer.example"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoints(tmp_path_factory.mktemp("models"), judge=False)


@pytest.fixture(scope="module")
def in_memory(models: Path) -> Iterator[tuple[str, InMemorySpanExporter]]:
    """The app served by uvicorn on a real socket in this process, its spans kept by the SDK's in-memory exporter."""
    exporter = InMemorySpanExporter()
    assert tracing.start_tracing(SimpleSpanProcessor(exporter))
    settings = Settings(models_dir=models, cors_origins=[ORIGIN])
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        yield url, exporter
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        tracing.stop_tracing()


def by_name(spans: list[ReadableSpan], trace_id: int) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        if span.context is not None and span.context.trace_id == trace_id:
            found.setdefault(span.name, []).append(span)
    return found


def test_a_request_is_a_span_in_the_clients_trace_with_a_child_for_each_stage(
    in_memory: tuple[str, InMemorySpanExporter],
) -> None:
    url, exporter = in_memory
    image = b64(png_bytes(example_digit()))
    answer = httpx.post(
        url + "/v1/models/ae-6/encode/batch",
        json={"images": [{"image": image}] * 3},
        headers={"traceparent": TRACEPARENT, "tracestate": "vendor=opaque"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    version, trace_id = answer.headers["x-model-version"], int(CLIENT_TRACE_ID, 16)
    # the answer names the request's span, in the client's trace, and passes the client's tracestate on
    returned = answer.headers["traceparent"].split("-")
    assert returned[1] == CLIENT_TRACE_ID and returned[2] != CLIENT_SPAN_ID, answer.headers["traceparent"]
    assert answer.headers["tracestate"] == "vendor=opaque"

    deadline = time.monotonic() + 5
    while "POST /v1/models/{name}/encode/batch" not in by_name(list(exporter.get_finished_spans()), trace_id):
        assert time.monotonic() < deadline, "the request span was not exported"
        time.sleep(0.05)
    spans = list(exporter.get_finished_spans())
    mine = by_name(spans, trace_id)
    (request,) = mine["POST /v1/models/{name}/encode/batch"]
    assert request.kind == SpanKind.SERVER
    assert request.parent is not None and request.parent.span_id == int(CLIENT_SPAN_ID, 16)
    assert format(request.context.span_id, "016x") == returned[2]
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/v1/models/{name}/encode/batch"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["digitae.model.version"] == version
    assert request.attributes["digitae.request_id"] == answer.headers["x-request-id"]
    for stage in ("read body", "decode", "wait for batch", "render"):
        (child,) = mine[stage]
        assert child.parent is not None and child.parent.span_id == request.context.span_id, stage
    (reading,) = mine["read body"]
    assert reading.attributes is not None and reading.attributes["http.request.body.size"] > len(image) * 3

    # the forward pass starts its own trace, linked with the request's wait, which links back to it
    (waiting,) = mine["wait for batch"]
    (forward,) = [
        s for s in spans if s.name == "forward pass" and any(link.context == waiting.context for link in s.links)
    ]
    assert forward.context.trace_id != trace_id
    assert forward.attributes is not None
    assert forward.attributes["digitae.batch.size"] == 3
    assert forward.attributes["digitae.model.name"] == "ae-6"
    assert forward.attributes["digitae.model.version"] == version
    assert forward.attributes["digitae.operation"] == "encode"
    assert [link.context for link in waiting.links] == [forward.context]


def test_concurrent_requests_sharing_a_forward_pass_are_all_linked_with_it(
    in_memory: tuple[str, InMemorySpanExporter],
) -> None:
    url, exporter = in_memory
    exporter.clear()
    body = {"latent": [0.5, -1.0]}
    answers: list[httpx.Response] = []

    def decode() -> None:
        answers.append(httpx.post(url + "/v1/models/ae-2/decode", json=body, timeout=30))

    threads = [threading.Thread(target=decode) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 16
    time.sleep(0.2)
    spans = list(exporter.get_finished_spans())
    waits = {s.context.span_id: s for s in spans if s.name == "wait for batch"}
    passes = [s for s in spans if s.name == "forward pass"]
    assert len(waits) == 16
    # every request's wait is linked from exactly the pass that served it, and the pass's size counts them
    served = [link.context.span_id for p in passes for link in p.links]
    assert sorted(served) == sorted(waits)
    for forward in passes:
        assert forward.attributes is not None and forward.attributes["digitae.batch.size"] == len(forward.links)


def test_the_cors_preflight_allows_traceparent(in_memory: tuple[str, InMemorySpanExporter]) -> None:
    url, _ = in_memory
    preflight = httpx.options(
        url + "/v1/models/ae-2/decode",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,traceparent,tracestate",
        },
    )
    assert preflight.status_code == 200, preflight.text
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "traceparent" in allowed and "tracestate" in allowed
    answer = httpx.post(url + "/v1/models/ae-2/decode", json={"latent": [0.0, 0.0]}, headers={"Origin": ORIGIN})
    assert "traceparent" in answer.headers["access-control-expose-headers"].lower()


class Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: POST /v1/traces with a protobuf ExportTraceServiceRequest."""

    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.received.append(request)
            self.send_response(200)
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_real_server_exports_its_spans_over_otlp_http_and_logs_the_trace_id(
    models: Path, start_server: StartServer
) -> None:
    received: list[ExportTraceServiceRequest] = []
    handler = type("Handler", (Receiver,), {"received": received})
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_address[1]}",
            "OTEL_SERVICE_NAME": "digitae-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        server = start_server(models, env=env, log_format="json")
        answer = httpx.post(
            server.url + "/v1/models/ae-2/decode",
            json={"latent": [0.5, -1.0]},
            headers={"traceparent": TRACEPARENT, "x-request-id": "otlp-check"},
            timeout=30,
        )
        assert answer.status_code == 200
        assert answer.headers["traceparent"].split("-")[1] == CLIENT_TRACE_ID
        deadline = time.monotonic() + 15
        names: dict[str, str] = {}
        while "POST /v1/models/{name}/decode" not in names.values():
            assert time.monotonic() < deadline, f"no request span received over OTLP; got {sorted(names.values())}"
            time.sleep(0.1)
            for request in list(received):
                for resource_spans in request.resource_spans:
                    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    assert service["service.name"] == "digitae-under-test"
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            if span.trace_id.hex() == CLIENT_TRACE_ID:
                                names[span.span_id.hex()] = span.name
        assert {"read body", "wait for batch", "render"} <= set(names.values())
        access = wait_for_access_line(server, "otlp-check")
        assert access["trace_id"] == CLIENT_TRACE_ID
    finally:
        receiver.shutdown()
        receiver.server_close()


def wait_for_access_line(server: ServerProcess, request_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while True:
        for line in server.log().splitlines():
            if line.startswith("{") and f'"request_id": "{request_id}"' in line:
                record: dict[str, object] = json.loads(line)
                return record
        assert time.monotonic() < deadline, f"no access line for {request_id}:\n{server.log()}"
        time.sleep(0.1)


def test_tracing_is_off_unless_configured(models: Path, start_server: StartServer) -> None:
    assert not tracing.tracing_requested({})
    assert not tracing.tracing_requested({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing.tracing_requested({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert tracing.tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.tracing_requested({"OTEL_TRACES_EXPORTER": "console"})
    server = start_server(models, log_format="json")
    answer = httpx.post(
        server.url + "/v1/models/ae-2/decode",
        json={"latent": [0.5, -1.0]},
        headers={"traceparent": TRACEPARENT, "x-request-id": "untraced"},
    )
    assert answer.status_code == 200
    assert "traceparent" not in answer.headers
    assert wait_for_access_line(server, "untraced")["trace_id"] == ""
