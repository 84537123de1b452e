"""Starting the service: a bad checkpoint stops `python -m service` with a message naming the file, or is
skipped when so configured; several workers share one port (and, in multiprocess mode, one /metrics)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.checkpoint import CARD_FILE, WEIGHTS_FILE
from tests.support import ServerProcess, StartServer, build_checkpoints, run_service


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_tampered_weights_file_stops_startup_naming_it(tmp_path: Path) -> None:
    models = build_checkpoints(tmp_path / "models")
    flip_last_byte(models / "ae-6" / WEIGHTS_FILE)
    result = run_service(models)
    assert result.returncode == 1
    assert f"{models / 'ae-6' / WEIGHTS_FILE}: sha256 mismatch" in result.stderr
    assert "DIGITAE_SKIP_BAD_CHECKPOINTS" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_card_that_lies_about_the_latent_size_stops_startup(tmp_path: Path) -> None:
    models = build_checkpoints(tmp_path / "models")
    card_path = models / "vae-2" / CARD_FILE
    card = json.loads(card_path.read_text())
    card["latent_dim"] = 3
    card_path.write_text(json.dumps(card))
    result = run_service(models)
    assert result.returncode == 1
    assert re.search(r"vae-2/weights\.safetensors: tensor .* has shape", result.stderr), result.stderr


def test_no_models_at_all_is_a_clear_error(tmp_path: Path) -> None:
    result = run_service(tmp_path / "nowhere")
    assert result.returncode == 1 and "does not exist" in result.stderr
    bad_settings = run_service(tmp_path, max_batch="many")
    assert bad_settings.returncode == 2 and "max_batch" in bad_settings.stderr


def test_skip_bad_checkpoints_starts_without_the_bad_one(tmp_path: Path, start_server: StartServer) -> None:
    models = build_checkpoints(tmp_path / "models")
    flip_last_byte(models / "ae-2" / WEIGHTS_FILE)
    server = start_server(models, skip_bad_checkpoints="true", admin_key="admin-key-for-tests-0123")
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["models"] == ["ae-6", "vae-2"] and list(ready["skipped"]) == ["ae-2"]
    assert "weights" not in ready["skipped"]["ae-2"]  # why: only with the admin key
    admin = {"Authorization": "Bearer admin-key-for-tests-0123"}
    assert "ae-2/weights.safetensors" in httpx.get(f"{server.url}/readyz", headers=admin).json()["skipped"]["ae-2"]
    assert [m["name"] for m in httpx.get(f"{server.url}/v1/models").json()] == ["ae-6", "vae-2"]
    assert "WARNING digitae.registry: skipping checkpoint" in server.log()


@pytest.mark.slow
def test_several_workers_serve_and_share_metrics(tmp_path: Path, start_server: StartServer) -> None:
    models = build_checkpoints(tmp_path / "models", judge=False)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    server = start_server(models, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, timeout=90, workers=2)
    deadline = time.monotonic() + 90  # /readyz answers once the first worker is up; wait for the second
    while server.log().count("Application startup complete") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(20):  # new connections: the kernel spreads them over the workers
            with httpx.Client(base_url=server.url) as fresh:
                response = fresh.post("/v1/models/ae-2/decode", json={"latent": [0, 0]})
                assert response.status_code == 200, f"{response.text}\n{server.log()}"
        text = client.get("/metrics").text
    served = re.search(
        r'digitae_http_requests_total\{method="POST",route="/v1/models/\{name\}/decode",status="200"\} (\S+)', text
    )
    assert served is not None and float(served.group(1)) == 20, text  # summed over both workers
    workers = set(re.findall(r"Started server process \[(\d+)\]", server.log()))
    assert len(workers) == 2, server.log()


@contextlib.contextmanager
def _cores(count: int) -> Iterator[None]:
    """This process (and so the server it starts) limited to `count` of its cores; skip when it has fewer."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < count:
        pytest.skip(f"needs {count} cores, this machine gives {len(cores)}")
    os.sched_setaffinity(0, cores[:count])
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def _metrics_sample(text: str, name: str, **labels: str) -> list[tuple[str, float]]:
    """(pid label or "", value) of each sample of `name` with these labels."""
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            pid = re.search(r'pid="(\d+)"', line)
            found.append((pid.group(1) if pid else "", float(line.rsplit(" ", 1)[1])))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("cores", [1, 2])
def test_workers_auto_is_the_default_one_per_core(tmp_path: Path, cores: int) -> None:
    """No DIGITAE_WORKERS and no PROMETHEUS_MULTIPROC_DIR: one worker per usable core, and with several the service
    makes its own metrics folder, so /metrics adds up the workers and shows each worker's batches by pid."""
    models = build_checkpoints(tmp_path / "models", judge=False)
    server = ServerProcess(models, tmp_path / "server.log")
    for unset in ("DIGITAE_WORKERS", "PROMETHEUS_MULTIPROC_DIR"):
        server.env.pop(unset, None)
    with _cores(cores), server:
        _check_auto_workers(server, cores)


def _check_auto_workers(server: ServerProcess, cores: int) -> None:
    deadline = time.monotonic() + 90
    while server.log().count("Application startup complete") < cores and time.monotonic() < deadline:
        time.sleep(0.2)
    for _ in range(12):  # new connections: the kernel spreads them over the workers
        with httpx.Client(base_url=server.url, timeout=30) as fresh:
            assert fresh.post("/v1/models/ae-2/decode", json={"latent": [0, 0]}).status_code == 200, server.log()
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    workers = set(re.findall(r"Started server process \[(\d+)\]", server.log()))
    assert len(workers) == cores, server.log()
    served = _metrics_sample(text, "digitae_http_requests_total", route="/v1/models/{name}/decode", status="200")
    assert [value for _, value in served] == [12], text  # every worker counted, once
    batches = _metrics_sample(text, "digitae_worker_microbatches", model="ae-2", operation="decode")
    items = _metrics_sample(text, "digitae_worker_microbatch_items", model="ae-2", operation="decode")
    assert sum(value for _, value in items) == 12, text
    if cores > 1:
        assert {pid for pid, _ in batches} <= workers and len(batches) >= 1, text  # one series per worker that ran
    else:
        assert [pid for pid, _ in batches] == [""], text  # one process: no pid label


def test_a_deployment_that_requires_keys_refuses_to_start_without_them(
    tmp_path: Path, start_server: StartServer
) -> None:
    """Was: a missing key Secret (`optional: true`) started an open API. With DIGITAE_REQUIRE_KEYS the process exits
    at once, saying what to set; with a key it serves, and only to that key."""
    models = build_checkpoints(tmp_path / "models")
    for missing in ({}, {"api_keys": ""}):  # the variable unset, or set empty (a Secret with an empty value)
        result = run_service(models, require_keys="true", **missing)
        assert result.returncode == 2, result.stderr
        assert "require_keys is set but no API key is: set DIGITAE_API_KEYS" in result.stderr
        assert "Traceback" not in result.stderr
    server = start_server(models, require_keys="true", api_keys="a-deployment-key")
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert httpx.get(f"{server.url}/v1/models", headers={"authorization": "Bearer a-deployment-key"}).status_code == 200
