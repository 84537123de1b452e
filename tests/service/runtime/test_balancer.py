"""Replicas behind a real load balancer: the compose `lb` profile, its generated HAProxy configuration, and a rolling
restart plus a model update under wrk load through HAProxy (Debian's package) in front of 3 `python -m service`
replicas on loopback ports, counting failed requests."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import yaml

from service.settings import Settings
from tests.support import REPO_ROOT, ServerProcess, build_checkpoints, free_port
from tests.support.reloads import write_new_version

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
HAPROXY_CFG = REPO_ROOT / "deploy" / "haproxy" / "haproxy.cfg"
WRK_SCRIPT = REPO_ROOT / "benchmarks" / "post.lua"
REPLICAS = 3
DRAIN_S = 2.0
GRACE_S = 8.0
RELOAD_INTERVAL_S = 1.0


def haproxy_config() -> ModuleType:
    """scripts/haproxy_config.py, the generator compose's configuration comes from."""
    if "haproxy_config" not in sys.modules:
        spec = importlib.util.spec_from_file_location("haproxy_config", REPO_ROOT / "scripts" / "haproxy_config.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["haproxy_config"]


def needs(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it: apt-get install {tool})")
    return found


# -- the compose profile and its configuration ---------------------------------------------------------------------


def test_the_committed_haproxy_config_is_generated_from_the_compose_settings() -> None:
    generator = haproxy_config()
    assert HAPROXY_CFG.read_text() == generator.render(generator.compose_balancing()), (
        "deploy/haproxy/haproxy.cfg is stale: python scripts/haproxy_config.py > deploy/haproxy/haproxy.cfg"
    )
    if shutil.which("haproxy"):
        checked = subprocess.run(["haproxy", "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_lb_profile_balances_the_api_replicas_on_readyz() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    api, lb = services["api"], services["lb"]
    assert lb["profiles"] == ["lb"] and lb["image"].split(":")[0] == "haproxy"  # the official image
    assert "./deploy/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in lb["volumes"]
    assert "api" in lb["depends_on"] and "profiles" not in api
    # several replicas cannot share one host port: the api's published port is a variable (a range when scaled)
    assert api["ports"] == ["${DIGITAE_API_PORTS:-8000}:8000"]
    settings = Settings(
        **{k.removeprefix("DIGITAE_").lower(): v for k, v in api["environment"].items() if k.startswith("DIGITAE_")}
    )
    generator = haproxy_config()
    balancing = generator.compose_balancing()
    assert (balancing.port, balancing.drain_s, balancing.grace_s) == (settings.port, settings.drain_s, settings.grace_s)
    # HAProxy takes a draining replica out within half its drain; Docker waits longer than the grace period
    assert generator.FALL * balancing.check_interval_ms / 1000 <= settings.drain_s / 2
    assert int(api["stop_grace_period"].removesuffix("s")) > settings.grace_s
    text = HAPROXY_CFG.read_text()
    assert "option httpchk GET /readyz" in text and f"api:{settings.port} " in text


def test_the_generator_follows_the_service_defaults() -> None:
    defaults = Settings()
    balancing = haproxy_config().Balancing.from_environment({})
    assert (balancing.port, balancing.drain_s, balancing.grace_s) == (defaults.port, defaults.drain_s, defaults.grace_s)


# -- the rolling restart ---------------------------------------------------------------------------------------------


def replica(models: Path, log: Path, port: int) -> ServerProcess:
    server = ServerProcess(
        models,
        log,
        drain_s=DRAIN_S,
        grace_s=GRACE_S,
        reload_interval_s=RELOAD_INTERVAL_S,
        log_level="warning",
        torch_threads=1,
    )
    server.port, server.url = port, f"http://127.0.0.1:{port}"
    server.env["DIGITAE_PORT"] = str(port)
    return server


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def ready_through(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_rolling_restart_and_model_update_behind_haproxy_lose_no_request(tmp_path: Path) -> None:
    haproxy, wrk = needs("haproxy"), needs("wrk")
    generator = haproxy_config()
    models = build_checkpoints(tmp_path / "models", judge=False)
    ports = [free_port() for _ in range(REPLICAS)]
    balancing = generator.Balancing(port=ports[0], drain_s=DRAIN_S, grace_s=GRACE_S)
    lb_port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(generator.render(balancing, [f"127.0.0.1:{p}" for p in ports], listen=f"127.0.0.1:{lb_port}"))
    lb_url = f"http://127.0.0.1:{lb_port}"
    inter_s = balancing.check_interval_ms / 1000

    with ThreadPoolExecutor(REPLICAS) as pool:  # started together: each takes seconds to import and load
        replicas = list(
            pool.map(lambda i: replica(models, tmp_path / f"replica-{i}-0.log", ports[i]).start(90), range(REPLICAS))
        )
    processes: list[subprocess.Popen] = []
    try:
        with open(tmp_path / "haproxy.log", "wb") as lb_log:
            processes.append(
                subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=lb_log, stderr=subprocess.STDOUT)
            )
        wait_until(lambda: ready_through(lb_url), 20, "HAProxy")
        time.sleep((generator.RISE + 1) * inter_s)  # every replica checked up
        old = httpx.get(f"{lb_url}/v1/models").json()

        body = tmp_path / "body.json"
        body.write_text(json.dumps({"latent": [0.5, -0.3, 1.2, 0.0, -0.8, 0.4]}))
        env = {**os.environ, "WRK_BODY_FILE": str(body)}
        with open(tmp_path / "wrk.out", "wb") as wrk_out:
            load = subprocess.Popen(
                [
                    wrk,
                    "-t1",
                    "-c8",
                    "-d120s",
                    "--timeout",
                    "10s",
                    "-s",
                    str(WRK_SCRIPT),
                    f"{lb_url}/v1/models/ae-6/decode",
                ],
                stdout=wrk_out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        processes.append(load)
        time.sleep(2.0)
        started = time.monotonic()
        for i, port in enumerate(ports):  # the rolling restart: each replica in turn
            assert replicas[i].process is not None
            replicas[i].process.send_signal(signal.SIGTERM)
            replicas[i].process.wait(timeout=GRACE_S + 5)
            if i == 1:  # a new model, mid-restart: every replica (old and new processes) serves it
                write_new_version(models, "ae-6", seed=21)
            replicas[i] = replica(models, tmp_path / f"replica-{i}-1.log", port).start(90)
            time.sleep((generator.RISE + 1) * inter_s)  # back in HAProxy's rotation before the next one stops
        rolled = time.monotonic() - started
        time.sleep(RELOAD_INTERVAL_S + 2.0)
        load.send_signal(signal.SIGINT)  # wrk stops and reports
        load.wait(timeout=30)
        output = (tmp_path / "wrk.out").read_text()
        figures = json.loads(re.search(r"WRK_JSON (\{.*\})", output).group(1))
        failed = sum(
            figures[key] for key in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
        )
        versions = set()
        for _ in range(3 * REPLICAS):
            with httpx.Client(base_url=lb_url, timeout=10) as fresh:
                versions.add(
                    fresh.post("/v1/models/ae-6/decode", json=json.loads(body.read_text())).headers["x-model-version"]
                )
        print(
            f"\nHAProxy + {REPLICAS} replicas, rolling restart ({rolled:.0f} s) and a model update under wrk "
            f"(8 connections): {figures['requests']} requests, {failed} failed {figures}; ae-6 now {versions}"
        )
        assert figures["requests"] > 100, output
        assert failed == 0, output
        new = {m["name"]: m["version"] for m in httpx.get(f"{lb_url}/v1/models").json()}["ae-6"]
        assert versions == {new} and new != {m["name"]: m["version"] for m in old}["ae-6"]
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
        for server in replicas:
            server.stop()
