"""Prometheus metrics: requests by route template and status, micro-batches, model changes; the exposition.

Metrics are per process. With several workers, set PROMETHEUS_MULTIPROC_DIR to an empty folder
and /metrics adds up every worker (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
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
