"""The metrics the alert rules watch, moved by what they count on a real server: a connection refused at the
per-client cap, a bulk request turned away with every bulk slot taken, readiness, the served versions; memory from
the cgroup files, and request labels that a client cannot multiply."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.runtime import metrics
from tests.support import ServerProcess
from tests.support.attacks import raw, read_until_closed

pytestmark = pytest.mark.server_settings(max_connections_per_client=1, max_concurrent_bulk=1)

OTHER_CLIENT = "127.0.0.2"  # the refused connections' address: 127.0.0.1 stays free to read /metrics


def value(exposition: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", exposition, re.M)
    assert found is not None, f"no {sample} in:\n{exposition}"
    return float(found.group(1))


def test_refused_connections_and_bulk_requests_are_counted(server: ServerProcess, client: httpx.Client) -> None:
    before = client.get("/metrics").text
    held = raw(server.port, source=OTHER_CLIENT)
    try:
        # the one bulk slot, held by a request whose body never comes
        npy_head = (
            "POST /v1/models/ae-2/decode/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
            "Content-Length: 100000\r\n\r\n"
        )
        held.sendall(npy_head.encode())
        time.sleep(0.5)
        latents = np.zeros((2, 2), np.float32)
        buffer = io.BytesIO()
        np.save(buffer, latents)
        busy = client.post(
            "/v1/models/ae-2/decode/batch", content=buffer.getvalue(), headers={"content-type": "application/x-npy"}
        )
        assert busy.status_code == 503, busy.text
        refused = raw(server.port, source=OTHER_CLIENT)  # a second connection from that client: over its cap
        answer = read_until_closed(refused)
        refused.close()
        assert b" 503 " in answer.split(b"\r\n", 1)[0], answer[:200]
    finally:
        held.close()
    after = client.get("/metrics").text
    for counter in ("digitae_connections_refused_total", "digitae_bulk_requests_refused_total"):
        assert value(after, counter) == value(before, counter) + 1, counter
    assert value(after, "digitae_ready") == 1
    versions = client.get("/readyz").json()["versions"]
    for model, version in versions.items():
        assert value(after, f'digitae_model_info{{model="{model}",version="{version}"}}') == 1
    assert value(after, "digitae_memory_usage_bytes") > 10 * 2**20


def test_a_method_outside_https_own_is_counted_as_other(server: ServerProcess, client: httpx.Client) -> None:
    status = client.request("PROPFIND", "/healthz").status_code
    assert 400 <= status < 500
    exposition = client.get("/metrics").text
    assert "PROPFIND" not in exposition
    assert re.search(
        rf'^digitae_http_requests_total{{method="other",route="[^"]+",status="{status}"}} [1-9]', exposition, re.M
    )


def test_memory_comes_from_the_cgroup_and_no_limit_is_zero(tmp_path: Path) -> None:
    (tmp_path / "memory.current").write_text("123456789\n")
    (tmp_path / "memory.max").write_text("1073741824\n")
    metrics.observe_memory(tmp_path)
    assert metrics.MEMORY_USAGE._value.get() == 123456789
    assert metrics.MEMORY_LIMIT._value.get() == 1073741824
    (tmp_path / "memory.max").write_text("max\n")
    metrics.observe_memory(tmp_path)
    assert metrics.MEMORY_LIMIT._value.get() == 0
    metrics.observe_memory(tmp_path / "absent")  # outside a cgroup: this process's resident memory
    assert metrics.MEMORY_USAGE._value.get() > 10 * 2**20
    assert metrics.MEMORY_LIMIT._value.get() == 0
