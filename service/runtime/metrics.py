"""Prometheus metrics: requests by route template and status, micro-batches, model changes, refusals, readiness,
the served versions and memory; the exposition. Names follow Prometheus' conventions (base units in the name,
`_total` counters) and every label is bounded (methods outside HTTP's own are counted as "other"); checked by
`promtool check metrics` (tests/delivery/test_prometheus.py).

Metrics are per process. With several workers, set PROMETHEUS_MULTIPROC_DIR to an empty folder
and /metrics adds up every worker (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
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
# What the alert rules of deploy/prometheus watch beside the requests (each refusal is also answered 503).
CONNECTIONS_REFUSED = Counter(
    "digitae_connections_refused",
    "Connections answered 503 and closed at a connection cap (DIGITAE_MAX_CONNECTIONS, or _PER_CLIENT)",
)
BULK_REFUSED = Counter(
    "digitae_bulk_requests_refused",
    "application/x-npy requests answered 503 because DIGITAE_MAX_CONCURRENT_BULK were being served",
)
MODEL_INFO = Gauge(
    "digitae_model_info",
    "1 for each model and version served (0 for a version a reload replaced)",
    ["model", "version"],
    multiprocess_mode="livemax",
)
MEMORY_USAGE = Gauge(
    "digitae_memory_usage_bytes",
    "Memory used by the container (cgroup memory.current), or this process's resident memory outside one",
    multiprocess_mode="livemostrecent",
)
MEMORY_LIMIT = Gauge(
    "digitae_memory_limit_bytes",
    "The container's memory limit (cgroup memory.max); 0 when there is none",
    multiprocess_mode="livemostrecent",
)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
OTHER_METHOD = "other"  # any other method a client sends: a label value per client-made name would be unbounded
UNLIMITED_CGROUP_BYTES = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63

_request_metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_MAX_CACHED_SERIES = 1024
_served_versions: set[tuple[str, str]] = set()


def request_metrics(method: str, template: str, status: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of one (method, route template, status), looked up once:
    prometheus_client's `labels()` costs more than the increment itself."""
    key = (method, template, status)
    found = _request_metrics.get(key)
    if found is None:
        labels = (method if method in HTTP_METHODS else OTHER_METHOD, template, str(status))
        found = (HTTP_REQUESTS.labels(*labels), HTTP_LATENCY.labels(*labels))
        if len(_request_metrics) < _MAX_CACHED_SERIES:
            _request_metrics[key] = found
    return found


# Batch sizes per worker. In multiprocess mode the histogram above adds up every worker; these two gauges are
# kept per process ("liveall": a `pid` label for each live worker, dropped when the supervisor replaces a dead one,
# so the series stay bounded by the worker count). Mean items per forward pass in each worker over 5 minutes:
#   increase(digitae_worker_microbatch_items[5m]) / increase(digitae_worker_microbatches[5m])
# and summed over workers (by model, operation) they give the service's figure.
WORKER_BATCH_ITEMS = Gauge(
    "digitae_worker_microbatch_items",
    "Items computed in forward passes by this worker since it started, by model and operation (pid: the worker)",
    ["model", "operation"],
    multiprocess_mode="liveall",
)
WORKER_BATCHES = Gauge(
    "digitae_worker_microbatches",
    "Forward passes (micro-batches) run by this worker since it started, by model and operation (pid: the worker)",
    ["model", "operation"],
    multiprocess_mode="liveall",
)
_batch_metrics: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}


def observe_batch(model: str, operation: str, size: int, seconds: float) -> None:
    found = _batch_metrics.get((model, operation))
    if found is None:
        labels = (model, operation)
        found = (
            MICROBATCH_SIZE.labels(*labels),
            INFERENCE_TIME.labels(*labels),
            WORKER_BATCH_ITEMS.labels(*labels),
            WORKER_BATCHES.labels(*labels),
        )
        if len(_batch_metrics) < _MAX_CACHED_SERIES:
            _batch_metrics[(model, operation)] = found
    batch_size, inference_time, worker_items, worker_batches = found
    batch_size.observe(size)
    inference_time.observe(seconds)
    worker_items.inc(size)
    worker_batches.inc()


def observe_model_change(model: str, change: str) -> None:
    MODEL_CHANGES.labels(model, change).inc()


_ready: Gauge | None = None


def observe_readiness(ready: bool) -> None:
    """1 while this worker serves its models and is not draining (what /readyz answers 200 for), else 0.
    The gauge is made on first use: a process that never serves (the supervisor of several workers) must not add a
    0 of its own to the minimum over the workers."""
    global _ready
    if _ready is None:
        _ready = Gauge(
            "digitae_ready",
            "1 while every worker serves its models and is not draining (what /readyz answers 200 for), else 0",
            multiprocess_mode="livemin",
        )
    _ready.set(1 if ready else 0)


def observe_served(versions: Mapping[str, str]) -> None:
    """The model versions served now (model name -> version): 1 for each, 0 for those served before."""
    now = set(versions.items())
    for model, version in _served_versions - now:
        MODEL_INFO.labels(model, version).set(0)
    for model, version in now:
        MODEL_INFO.labels(model, version).set(1)
    _served_versions.clear()
    _served_versions.update(now)


def observe_memory(cgroup_root: Path = Path("/sys/fs/cgroup")) -> None:
    """The container's memory use and limit (cgroup v2, else v1), else this process's resident memory."""
    usage = limit = None
    for current, maximum in (
        ("memory.current", "memory.max"),
        ("memory/memory.usage_in_bytes", "memory/memory.limit_in_bytes"),
    ):
        try:
            usage = int((cgroup_root / current).read_text())
            text = (cgroup_root / maximum).read_text().strip()
            limit = 0 if text == "max" or int(text) >= UNLIMITED_CGROUP_BYTES else int(text)
            break
        except (OSError, ValueError):
            continue
    if usage is None:
        try:
            usage = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            usage = 0
    MEMORY_USAGE.set(usage)
    MEMORY_LIMIT.set(limit or 0)


def metrics_text() -> tuple[bytes, str]:
    """The exposition text: this process, or every worker in multiprocess mode."""
    observe_memory()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
