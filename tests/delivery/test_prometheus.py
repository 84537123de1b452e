"""Monitoring as operators run it: deploy/prometheus checked and unit-tested by promtool (every alert has a test that
fires it); Debian's Prometheus scraping a real two-worker `python -m service` under load, its recording rules and
every query of the Grafana dashboard evaluated over its HTTP API; the real /metrics output passing `promtool check
metrics`; the compose profile and the Prometheus Operator objects agreeing with those files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.support import REPO_ROOT, ServerProcess, b64, build_checkpoints, example_digit, free_port, png_bytes

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "digitae.json"
KUBERNETES_MONITORING = REPO_ROOT / "deploy" / "kubernetes" / "monitoring"
RULE_FILES = ("recording-rules.yml", "alert-rules.yml")
PROMTOOL, PROMETHEUS = shutil.which("promtool"), shutil.which("prometheus")
INSTALL_HINT = "sudo apt-get install -y prometheus (Debian's package: prometheus and promtool), then run again"

if PROMTOOL is None or PROMETHEUS is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI needs prometheus and promtool: .ci/run installs them with apt-get")
    pytest.skip(f"no prometheus/promtool: {INSTALL_HINT}", allow_module_level=True)

pytestmark = pytest.mark.timeout(180)


def promtool(*args: str, stdin: bytes | None = None) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS_DIR, input=stdin, capture_output=True, timeout=60)
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for name in RULE_FILES:
        groups += yaml.safe_load((PROMETHEUS_DIR / name).read_text())["groups"]
    return groups


def rules(kind: str) -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if kind in rule]


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


# -- promtool ------------------------------------------------------------------------------------------------------


def test_the_configuration_and_the_rules_are_valid() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in promtool("check", "rules", *RULE_FILES)


def test_every_alert_is_unit_tested_firing_and_the_tests_pass() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "tests" / "alert-rules-test.yml").read_text())
    fired = {case["alertname"] for group in tests["tests"] for case in group["alert_rule_test"] if case["exp_alerts"]}
    assert fired == {rule["alert"] for rule in rules("alert")}
    assert "SUCCESS" in promtool("test", "rules", "tests/alert-rules-test.yml")


# -- a real Prometheus against a real server ------------------------------------------------------------------------


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def load(url: str, seconds: float) -> None:
    """A few clients at once for `seconds`: images to encode, latents to decode, and some bad requests (4xx)."""
    image = b64(png_bytes(example_digit()))
    stop = time.monotonic() + seconds

    def client(number: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.monotonic() < stop:
                http.post("/v1/models/ae-2/decode", json={"latent": [0.5, -1.0]})
                http.post("/v1/models/ae-6/encode", json={"image": image})
                if number == 0:
                    http.post("/v1/models/ae-6/encode", json={"image": "not base64"})

    threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A two-worker server (metrics added up through PROMETHEUS_MULTIPROC_DIR) under brief load, scraped every
    second by Debian's Prometheus with deploy/prometheus's configuration and rules."""
    tmp = tmp_path_factory.mktemp("monitoring")
    (tmp / "metrics").mkdir()
    models = build_checkpoints(tmp / "models", judge=False)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics")}
    with ServerProcess(models, tmp / "server.log", env, workers=2) as server:
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
        (job,) = config["scrape_configs"]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{server.port}"]}]
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        assert PROMETHEUS is not None
        with open(tmp / "prometheus.log", "wb") as log:
            process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        prometheus = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, (tmp / "prometheus.log").read_text()
                try:
                    if httpx.get(f"{prometheus}/-/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "Prometheus was not ready in 60 s"
                time.sleep(0.2)
            wait_for(prometheus, 'up{job="digitae"} == 1')  # scraping before the load: rates see it rise
            load(server.url, 6)
            yield server, prometheus
        finally:
            process.terminate()
            process.wait(timeout=15)


def wait_for(prometheus: str, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while not (result := query(prometheus, expr)):
        assert time.monotonic() < deadline, f"{expr} has no value after {timeout} s"
        time.sleep(0.5)
    return result


def test_prometheus_scrapes_the_server_and_every_recording_rule_has_values(
    monitored: tuple[ServerProcess, str],
) -> None:
    _, prometheus = monitored
    assert wait_for(prometheus, 'up{job="digitae"} == 1')
    for rule in rules("record"):
        assert wait_for(prometheus, rule["record"]), rule["record"]
    served = {
        (s["metric"]["route"], s["metric"]["status"])
        for s in query(prometheus, "route_status:digitae_http_requests:rate5m")
    }
    assert {("/v1/models/{name}/decode", "200"), ("/v1/models/{name}/encode", "200")} <= served
    assert any(route == "/v1/models/{name}/encode" and status.startswith("4") for route, status in served), served
    # no 5xx under this load: the availability ratios are 0 for every operation
    errors = query(prometheus, "route:digitae_http_errors:ratio_rate5m")
    assert {s["metric"]["route"] for s in errors} >= {"/v1/models/{name}/decode", "/v1/models/{name}/encode"}
    assert {float(s["value"][1]) for s in errors} == {0.0}, errors
    batches = query(prometheus, "model_operation:digitae_microbatch_size:mean5m")
    assert {(s["metric"]["model"], s["metric"]["operation"]) for s in batches} >= {
        ("ae-2", "decode"),
        ("ae-6", "encode"),
    }
    assert all(float(s["value"][1]) >= 1 for s in batches)
    ready = query(prometheus, "digitae_ready")
    assert [float(s["value"][1]) for s in ready] == [1.0], ready


# queries whose series exist only when something goes wrong (5xx, refusals) or under a memory limit (a container)
ONLY_WHEN_IT_HAPPENS = ('status=~"5.."', "refused", "digitae_memory_limit_bytes")


def test_every_dashboard_query_evaluates_and_shows_data(monitored: tuple[ServerProcess, str]) -> None:
    _, prometheus = monitored
    wait_for(prometheus, "route:digitae_http_request_duration_seconds:p99_5m")
    queries = dashboard_queries()
    assert len(queries) >= 10
    for expr in queries:
        if any(marker in expr for marker in ONLY_WHEN_IT_HAPPENS):
            query(prometheus, expr)  # valid PromQL, evaluated without error
        else:
            assert wait_for(prometheus, expr, timeout=10), expr
    versions = query(prometheus, "max by (model, version) (digitae_model_info == 1)")
    ready = httpx.get(f"{monitored[0].url}/readyz").json()
    assert {(s["metric"]["model"], s["metric"]["version"]) for s in versions} == set(ready["versions"].items())


def test_the_real_metrics_follow_prometheus_conventions(monitored: tuple[ServerProcess, str]) -> None:
    server, _ = monitored
    exposition = httpx.get(f"{server.url}/metrics").content
    assert b"digitae_http_requests_total{" in exposition and b"digitae_connections_refused_total" in exposition
    assert promtool("check", "metrics", stdin=exposition).strip() == ""  # no lint problem reported


# -- compose, Grafana and the Prometheus Operator --------------------------------------------------------------------


def test_the_monitoring_profile_runs_prometheus_and_grafana_on_these_files() -> None:
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["monitoring"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    (target,) = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())["scrape_configs"][0]["static_configs"]
    assert target["targets"] == ["api:8000"]  # the api service of the same compose file
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in grafana["volumes"] if volume.startswith("./"))
    assert mounts == {
        "./deploy/grafana/provisioning": "/etc/grafana/provisioning",
        "./deploy/grafana/dashboards": "/var/lib/grafana/dashboards",
    }
    (provider,) = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "digitae.yml").read_text())["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    (source,) = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert {panel["datasource"]["uid"] for panel in panels} == {source["uid"]}
    assert {t["datasource"]["uid"] for panel in panels for t in panel["targets"]} == {source["uid"]}


def test_the_prometheus_operator_objects_scrape_the_service_and_carry_the_same_rules() -> None:
    kustomization = yaml.safe_load((KUBERNETES_MONITORING / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["..", "servicemonitor.yaml", "prometheusrule.yaml"]
    monitor = yaml.safe_load((KUBERNETES_MONITORING / "servicemonitor.yaml").read_text())
    rule = yaml.safe_load((KUBERNETES_MONITORING / "prometheusrule.yaml").read_text())
    service = yaml.safe_load((REPO_ROOT / "deploy" / "kubernetes" / "service.yaml").read_text())
    for obj, kind in ((monitor, "ServiceMonitor"), (rule, "PrometheusRule")):
        assert obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["kind"] == kind
        assert obj["metadata"]["namespace"] == service["metadata"]["namespace"]
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # the alerts' `up{job="digitae"}`: the operator names the job after the label jobLabel points at
    assert service["metadata"]["labels"][spec["jobLabel"]] == "digitae"
    assert rule["spec"]["groups"] == rule_groups()
