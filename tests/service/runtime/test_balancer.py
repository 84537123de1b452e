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
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import yaml

from benchmarks import memory_ceiling
from service.settings import Settings
from tests.support import REPO_ROOT, ServerProcess, build_checkpoints, free_port
from tests.support.reloads import write_new_version

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
HAPROXY_CFG = REPO_ROOT / "deploy" / "haproxy" / "haproxy.cfg"
LB_OVERRIDE = REPO_ROOT / "deploy" / "compose.lb.yml"
WRK_SCRIPT = REPO_ROOT / "benchmarks" / "post.lua"
REPLICAS = 3
DRAIN_S = 2.0
GRACE_S = 8.0
RELOAD_INTERVAL_S = 1.0


class ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: an override file's `!reset VALUE` (drop what the base set) as {"!reset": VALUE}."""


ComposeLoader.add_constructor("!reset", lambda loader, node: {"!reset": loader.construct_sequence(node)})


def compose_services(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=ComposeLoader)["services"]  # a SafeLoader


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


def test_the_lb_override_publishes_the_balancer_alone_and_balances_on_readyz() -> None:
    """Was: an `lb` profile in which the api still published its port on every interface, so clients went round
    the balancer (a profile can add a service but not take a port away): an override file resets the api's ports."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    override = compose_services(LB_OVERRIDE)
    api, lb = services["api"], override["lb"]
    assert "lb" not in services, "the balancer lives in deploy/compose.lb.yml, with the api's ports reset"
    assert lb["image"].split(":")[0] == "haproxy" and "profiles" not in lb  # the official image
    assert lb["ports"] == [f"{haproxy_config().LISTEN_PORT}:{haproxy_config().LISTEN_PORT}"]
    assert "./deploy/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in lb["volumes"]
    assert "api" in lb["depends_on"] and "profiles" not in api
    assert api["ports"] == ["${DIGITAE_API_PORTS:-8000}:8000"]  # alone, the api publishes its port
    assert override["api"]["ports"] == {"!reset": []}, "the replicas must publish nothing"
    assert set(override["api"]) == {"ports", "environment"}
    # only the balancer reaches the replicas: its X-Forwarded-For is trusted, and it caps each client itself
    assert override["api"]["environment"] == {
        "DIGITAE_FORWARDED_ALLOW_IPS": "*",
        "DIGITAE_MAX_CONNECTIONS_PER_CLIENT": "0",
    }
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
    # the bounds: connections in all, per replica (under the service's own cap), and per client address
    assert f"maxconn {generator.MAX_CONNECTIONS}" in text and "option forwardfor" in text
    assert settings.max_connections > generator.SERVER_MAX_CONNECTIONS
    assert f"sc0_conn_cur gt {generator.CLIENT_MAX_CONNECTIONS}" in text


def test_compose_limits_the_api_containers_resources() -> None:
    """Was: no limits. The memory limit holds the measured worst case of each worker (benchmarks/memory_ceiling.py)
    with the decode threads the CPU limit gives it."""
    api = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["api"]
    limits = api["deploy"]["resources"]["limits"]
    settings = Settings(
        **{k.removeprefix("DIGITAE_").lower(): v for k, v in api["environment"].items() if k.startswith("DIGITAE_")}
    )
    assert "DIGITAE_DECODE_CONCURRENCY" not in api["environment"], "the decode threads follow the CPU limit"
    assert int(float(limits["cpus"])) <= memory_ceiling.DECODE_CONCURRENCY
    assert settings.max_image_pixels <= memory_ceiling.SIDE**2
    memory_mib = int(limits["memory"].removesuffix("M")) * 1e6 / 2**20
    assert memory_mib >= settings.worker_count * memory_ceiling.PEAK_MIB * memory_ceiling.HEADROOM
    lb_limits = compose_services(LB_OVERRIDE)["lb"]["deploy"]["resources"]["limits"]
    assert {"cpus", "memory"} <= set(lb_limits)


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
@pytest.mark.serial  # counts failed requests under wrk load through a rolling restart: alone, not beside other tests
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


# -- the balancer's client bounds and the forwarded client address ---------------------------------------------------

# An app served by the service's own server (service/runtime/process.py's `serve`, as `python -m service` runs it)
# that answers every request with the client address it sees in the ASGI scope: what the access log records.
ECHO_CLIENT_SERVER = """
import sys
from service.runtime.process import serve
from service.settings import Settings

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["client"][0].encode()})

# one worker: the app lives in this script, which worker processes could not import
serve(Settings(port=int(sys.argv[1]), workers=1, forwarded_allow_ips=sys.argv[2:]), app, None)
"""


def client_from(address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.0.0.0/8 address is this machine's)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


@pytest.fixture
def balanced_echo(tmp_path: Path):
    """HAProxy, with the committed configuration's rules, in front of one echo server that trusts it (127.0.0.1):
    yields (balancer url, server url)."""
    haproxy = needs("haproxy")
    generator = haproxy_config()
    port, lb_port = free_port(), free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        generator.render(
            generator.Balancing(port=port, drain_s=DRAIN_S, grace_s=GRACE_S),
            [f"127.0.0.1:{port}"],
            listen=f"127.0.0.1:{lb_port}",
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    server = subprocess.Popen([sys.executable, "-c", ECHO_CLIENT_SERVER, str(port), "127.0.0.1"], env=env)
    balancer = subprocess.Popen([haproxy, "-db", "-f", str(config)])
    lb_url, url = f"http://127.0.0.1:{lb_port}", f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: ready_through(lb_url), 30, "HAProxy and the echo server")
        yield lb_url, url
    finally:
        for process in (balancer, server):
            process.terminate()
            process.wait(timeout=10)


def test_the_service_sees_the_client_address_the_balancer_forwards(balanced_echo: tuple[str, str]) -> None:
    """Was: no `option forwardfor`, so every request came from the balancer's address."""
    lb_url, url = balanced_echo
    with client_from("127.0.0.2") as client:
        assert client.get(f"{lb_url}/v1/models").text == "127.0.0.2"
        # a client's own X-Forwarded-For is dropped by the balancer, so it cannot choose the address logged
        assert client.get(f"{lb_url}/v1/models", headers={"x-forwarded-for": "203.0.113.9"}).text == "127.0.0.2"
        # straight to the server, from an address it does not trust: the header is ignored
        assert client.get(f"{url}/v1/models", headers={"x-forwarded-for": "203.0.113.9"}).text == "127.0.0.2"


def test_one_client_cannot_take_every_connection_of_the_balancer(balanced_echo: tuple[str, str]) -> None:
    """Was: no per-client limit, so 1,000 idle connections from one client took every slot of the replicas."""
    lb_url, _ = balanced_echo
    generator = haproxy_config()
    lb_port = int(lb_url.rsplit(":", 1)[1])
    held: list[socket.socket] = []
    closed = 0
    try:
        for _ in range(generator.CLIENT_MAX_CONNECTIONS + 16):
            try:
                sock = socket.create_connection(("127.0.0.1", lb_port), timeout=5, source_address=("127.0.0.3", 0))
            except ConnectionResetError:
                closed += 1  # refused as it was accepted
                continue
            held.append(sock)
        time.sleep(0.5)
        for sock in held:
            sock.settimeout(0.05)
            try:
                closed += sock.recv(1) == b""
            except TimeoutError:
                pass  # still open: waiting for a request
            except ConnectionResetError:
                closed += 1
        assert closed == 16, f"{closed} of {generator.CLIENT_MAX_CONNECTIONS + 16} connections from one address closed"
        with client_from("127.0.0.4") as other:
            assert other.get(f"{lb_url}/healthz").status_code == 200  # another client is still served
    finally:
        for sock in held:
            sock.close()


def test_the_service_logs_the_client_address_the_balancer_forwards(tmp_path: Path) -> None:
    """`python -m service` behind the real HAProxy configuration, trusting it (DIGITAE_FORWARDED_ALLOW_IPS): its
    JSON access record names the client (127.0.0.2), not the balancer, whatever X-Forwarded-For the client sends."""
    haproxy = needs("haproxy")
    generator = haproxy_config()
    models = build_checkpoints(tmp_path / "models", judge=False)
    server = ServerProcess(
        models, tmp_path / "server.log", forwarded_allow_ips="127.0.0.1", log_format="json", log_level="info"
    )
    lb_port = free_port()
    config = tmp_path / "haproxy.cfg"
    balancing = generator.Balancing(port=server.port, drain_s=DRAIN_S, grace_s=GRACE_S)
    config.write_text(generator.render(balancing, [f"127.0.0.1:{server.port}"], listen=f"127.0.0.1:{lb_port}"))
    lb_url = f"http://127.0.0.1:{lb_port}"
    with server.start(90):
        balancer = subprocess.Popen([haproxy, "-db", "-f", str(config)])
        try:
            wait_until(lambda: ready_through(lb_url), 30, "HAProxy")
            with client_from("127.0.0.2") as client:
                answer = client.get(f"{lb_url}/v1/models", headers={"x-forwarded-for": "203.0.113.9"})
            assert answer.status_code == 200
            request_id = answer.headers["x-request-id"]
            time.sleep(0.5)  # the log is written from a background thread
        finally:
            balancer.terminate()
            balancer.wait(timeout=10)
        records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    (access,) = [r for r in records if r.get("request_id") == request_id and r.get("logger") == "digitae.access"]
    assert access["client"] == "127.0.0.2", access
