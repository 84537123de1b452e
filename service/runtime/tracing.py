"""Traces with OpenTelemetry: off unless the standard OTEL_* variables ask for them, and then one span per request
with child spans for its stages (reading the body, decoding, waiting in the micro-batcher, the forward pass,
rendering).

Off (the default), `TRACER` is None and every call here returns at once: the hot path pays one global lookup.
On when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) or an OTLP endpoint is set
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), unless `OTEL_SDK_DISABLED=true`.
The SDK reads the rest itself: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`. W3C `traceparent`/`tracestate` are read from requests and written
into answers.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanProcessor
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("digitae.tracing")

SERVICE_NAME = "digitae"
EXPORTERS = ("otlp", "console")  # what OTEL_TRACES_EXPORTER may name here (OTLP over HTTP with protobuf)

TRACER: Tracer | None = None  # set while tracing is on
_provider: TracerProvider | None = None


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces (see the module's docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER")
    if exporter is not None:
        return exporter.strip().lower() not in ("", "none")
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    names = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if name.strip()]
    unknown = sorted(set(names) - set(EXPORTERS))
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}; this service exports to {EXPORTERS}")
    exporters: list[SpanExporter] = []
    if "otlp" in names:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter())  # its endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*
    if "console" in names:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporters.append(ConsoleSpanExporter())
    return exporters


def start_tracing(processor: SpanProcessor | None = None, environ: Mapping[str, str] = os.environ) -> bool:
    """Turn tracing on in this process when the environment asks for it (or with `processor`, e.g. a test's
    in-memory exporter); True when on. Each worker process calls it for itself (the export thread is per process)."""
    global TRACER, _provider
    if processor is None and not tracing_requested(environ):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    processors = [processor] if processor is not None else [BatchSpanProcessor(e) for e in _exporters(environ)]
    named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": SERVICE_NAME}))
    for each in processors:
        provider.add_span_processor(each)
    _provider, TRACER = provider, provider.get_tracer("digitae")
    log.info("tracing on: spans exported by %s", ", ".join(type(each).__name__ for each in processors))
    return True


def stop_tracing() -> None:
    """Export what is pending and turn tracing off (at shutdown)."""
    global TRACER, _provider
    provider, _provider, TRACER = _provider, None, None
    if provider is not None:
        provider.shutdown()


@contextlib.contextmanager
def _span(tracer: Tracer, name: str, attributes: dict[str, Any] | None) -> Iterator[Span]:
    with tracer.start_as_current_span(name, attributes=attributes) as span:
        yield span


_NO_SPAN = contextlib.nullcontext(None)


def span(name: str, attributes: dict[str, Any] | None = None) -> contextlib.AbstractContextManager[Span | None]:
    """A child span of the current one while tracing is on; else a shared do-nothing context (no allocation)."""
    tracer = TRACER
    if tracer is None:
        return _NO_SPAN
    return _span(tracer, name, attributes)


def current_span() -> Span | None:
    """The span of the code running now (a request's stage), or None when tracing is off or there is none."""
    if TRACER is None:
        return None
    from opentelemetry import trace

    found = trace.get_current_span()
    return found if found.get_span_context().is_valid else None


def trace_id_of(span: Span | None) -> str:
    """The span's trace id as 32 hex digits (as traceparent writes it), or "" without a span."""
    return "" if span is None else format(span.get_span_context().trace_id, "032x")


@contextlib.contextmanager
def _forward_pass(tracer: Tracer, attributes: dict[str, Any], served: list[Span]) -> Iterator[Span]:
    from opentelemetry.context import Context
    from opentelemetry.trace import Link

    # A pass shared by several requests belongs to none of their traces: it starts its own, linked to each
    # request's span, and each of those links back to it.
    context = Context() if served else None
    links = [Link(each.get_span_context()) for each in served]
    with tracer.start_as_current_span("forward pass", context=context, links=links, attributes=attributes) as span:
        for each in served:
            each.add_link(span.get_span_context())
        yield span


def forward_pass_span(
    attributes: dict[str, Any], size: int, served: list[Span] | None = None
) -> contextlib.AbstractContextManager[Span | None]:
    """The span of one forward pass of `size` items (`attributes`: the model, its version, the operation).
    `served`: the spans of the requests whose items the pass computes (a micro-batch); without, the pass is a
    child of the current span (a bulk chunk)."""
    tracer = TRACER
    if tracer is None:
        return _NO_SPAN
    return _forward_pass(tracer, {**attributes, "digitae.batch.size": size}, served or [])
