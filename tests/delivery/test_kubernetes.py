"""deploy/kubernetes/ without a cluster: every manifest against the API schemas of a pinned Kubernetes version, a
policy scan with no failed check (each skip justified in place), and the values that must agree with the service
(probe paths and ports, the image's user and paths, setting names, the drain and grace periods) cross-checked."""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from starlette.routing import Match

from benchmarks import memory_ceiling
from service.app import create_app
from service.settings import Settings
from tests.support import REPO_ROOT

KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"  # the API version the manifests are validated against
NOT_IN_KUSTOMIZATION = {"train-job.yaml"}  # created on demand: `kubectl create -f` (a new Job each time)


def manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object under deploy/kubernetes/ by file name (one object per file)."""
    found = {}
    for path in sorted(KUBERNETES_DIR.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            (document,) = list(yaml.safe_load_all(path.read_text()))
            found[path.name] = document
    return found


def pod_spec(name: str) -> dict[str, Any]:
    return manifests()[name]["spec"]["template"]["spec"]


def container(name: str, container_name: str) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(name)["containers"] if c["name"] == container_name]
    return found


def settings_of(configmap: dict[str, Any], api_keys: str = "a-key-from-the-secret") -> Settings:
    """The settings a pod runs with: the ConfigMap's, and `api_keys` as the key Secret gives them."""
    values = {k.removeprefix("DIGITAE_").lower(): v for k, v in configmap["data"].items()}
    return Settings(**values, api_keys=api_keys)


def dockerfile_lines(keyword: str) -> list[str]:
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.split(None, 1)[1].strip() for line in text.splitlines() if line.upper().startswith(keyword + " ")]


@pytest.mark.parametrize("name", sorted(manifests()))
def test_every_manifest_is_valid_for_the_pinned_kubernetes_version(name: str) -> None:
    kubernetes_validate.validate(manifests()[name], KUBERNETES_VERSION, strict=True)


def test_the_kustomization_applies_every_manifest_in_one_namespace() -> None:
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == set(manifests()) - NOT_IN_KUSTOMIZATION
    assert all((KUBERNETES_DIR / resource).is_file() for resource in kustomization["resources"])
    namespace = kustomization["namespace"]
    assert manifests()["namespace.yaml"]["metadata"]["name"] == namespace
    for name, document in manifests().items():
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == namespace, name


@pytest.mark.timeout(300)
def test_the_policy_scan_passes_with_every_skip_justified(tmp_path: Path) -> None:
    # `make test` installs checkov into a venv of its own beside the project's (see the Makefile's CHECKOV).
    tool_venv = Path(sys.executable).parent.parent / "checkov" / "bin"
    checkov = shutil.which("checkov", path=str(tool_venv)) or shutil.which("checkov")
    assert checkov is not None, "checkov is missing: `make test` installs it (.venv/checkov)"
    result = subprocess.run(
        [checkov, "-d", str(KUBERNETES_DIR), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=280,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    print(f"\ncheckov {summary['checkov_version']}: {summary}")
    assert summary["failed"] == 0 and not failed, failed
    assert summary["parsing_errors"] == 0 and summary["passed"] > 100
    # every skip is an annotation `CKV_...=<why>` on the object it applies to
    for name, document in manifests().items():
        for key, value in document["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, why = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check) and len(why.split()) >= 8, f"{name}: {key}: {value}"


def test_probes_ports_and_metrics_match_the_service() -> None:
    deployment = manifests()["deployment.yaml"]
    api = container("deployment.yaml", "api")
    settings = settings_of(manifests()["configmap.yaml"])
    app = create_app(settings)

    def is_route(path: str) -> bool:
        scope = {"type": "http", "path": path, "method": "GET"}
        return any(route.matches(scope)[0] == Match.FULL for route in app.routes)

    (port,) = api["ports"]
    exposed = [int(word.split("/")[0]) for line in dockerfile_lines("EXPOSE") for word in line.split()]
    assert port["containerPort"] == settings.port and exposed == [settings.port]
    assert api["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        target = api[probe]["httpGet"]
        assert target["port"] in (port["name"], port["containerPort"]) and is_route(target["path"]), probe
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == settings.port and is_route(annotations["prometheus.io/path"])
    service = manifests()["service.yaml"]
    assert service["spec"]["ports"][0]["targetPort"] in (port["name"], port["containerPort"])


def test_stopping_numbers_agree() -> None:
    """The readiness probe notices a draining pod within the drain; the pod exits before Kubernetes kills it."""
    settings = settings_of(manifests()["configmap.yaml"])
    api = container("deployment.yaml", "api")
    readiness = api["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < settings.drain_s
    assert settings.drain_s < settings.grace_s < pod_spec("deployment.yaml")["terminationGracePeriodSeconds"]
    assert settings.reload_interval_s > 0, "a retrain reaches the pods through polling"


def test_settings_come_from_the_configmap_and_keys_from_a_secret() -> None:
    fields = {f"DIGITAE_{name.upper()}" for name in Settings.model_fields}
    configmap = manifests()["configmap.yaml"]
    assert set(configmap["data"]) <= fields, set(configmap["data"]) - fields
    settings_of(configmap)  # valid values
    api = container("deployment.yaml", "api")
    assert api["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in api["env"]}
    assert set(secret_env) == {"DIGITAE_API_KEYS", "DIGITAE_ADMIN_KEY"} and set(secret_env) <= fields
    assert not {"DIGITAE_API_KEYS", "DIGITAE_ADMIN_KEY"} & set(configmap["data"])


def test_the_pods_run_as_the_images_user_hardened() -> None:
    (user_line,) = set(dockerfile_lines("USER"))
    uid, gid = (int(part) for part in user_line.split(":"))
    for name in ("deployment.yaml", "train-job.yaml"):
        spec = pod_spec(name)
        context = spec["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["runAsNonRoot"]) == (uid, gid, True), name
        assert spec["automountServiceAccountToken"] is False
        for each in spec.get("initContainers", []) + spec["containers"]:
            security = each["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]} and not security.get("privileged")
            assert {"cpu", "memory"} <= set(each["resources"]["requests"]) & set(each["resources"]["limits"])


def test_the_training_job_writes_where_every_pod_reads() -> None:
    settings = settings_of(manifests()["configmap.yaml"])
    image_models_dir = [
        value
        for line in dockerfile_lines("ENV")
        for key, _, value in [line.partition("=")]
        if key == "DIGITAE_MODELS_DIR"
    ]
    assert image_models_dir == [str(settings.models_dir)]

    def models_mount(name: str, container_name: str) -> tuple[str, dict[str, Any]]:
        spec = pod_spec(name)
        volumes = {v["name"]: v for v in spec["volumes"]}
        (mount,) = [
            m for m in container(name, container_name)["volumeMounts"] if "persistentVolumeClaim" in volumes[m["name"]]
        ]
        return volumes[mount["name"]]["persistentVolumeClaim"]["claimName"], mount

    claim, api_mount = models_mount("deployment.yaml", "api")
    job_claim, job_mount = models_mount("train-job.yaml", "train")
    assert claim == job_claim == manifests()["models-pvc.yaml"]["metadata"]["name"]
    assert "ReadWriteMany" in manifests()["models-pvc.yaml"]["spec"]["accessModes"]
    assert api_mount["mountPath"] == job_mount["mountPath"] == str(settings.models_dir)
    assert api_mount["readOnly"] is True and not job_mount.get("readOnly")
    command = container("train-job.yaml", "train")["command"]
    assert command[:4] == ["python", "-m", "training", "sweep"] and command[command.index("--out") + 1] == str(
        settings.models_dir
    )
    assert manifests()["deployment.yaml"]["spec"]["replicas"] == 2


def test_the_autoscaler_and_the_disruption_budget_select_the_api_pods() -> None:
    deployment = manifests()["deployment.yaml"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = manifests()["hpa.yaml"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert hpa["minReplicas"] >= 2
    for selector in (
        manifests()["pdb.yaml"]["spec"]["selector"]["matchLabels"],
        manifests()["service.yaml"]["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()


# -- KServe (deploy/kubernetes/kserve/): the InferenceService and its serving runtime ---------------------------------
# Without a cluster (and KServe's CRDs) the KServe objects themselves cannot be validated by the API server; what is
# checked here: they parse, their kinds and API groups, the protocol (v2) on both sides, the runtime the service
# picks, and the container (a plain Kubernetes Container) against the pinned Kubernetes schemas, as a Pod's.

KSERVE_DIR = KUBERNETES_DIR / "kserve"


def kserve_manifests() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(KSERVE_DIR.glob("*.yaml"))}


def test_the_inference_service_runs_digitae_over_the_open_inference_protocol() -> None:
    found = kserve_manifests()
    runtime, service = found["serving-runtime.yaml"], found["inference-service.yaml"]
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1", "ServingRuntime")
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2" and runtime["spec"]["protocolVersions"] == ["v2"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    assert "storageUri" not in model, "the checkpoints are the image's own: nothing is downloaded"
    namespace = manifests()["namespace.yaml"]["metadata"]["name"]
    assert runtime["metadata"]["namespace"] == service["metadata"]["namespace"] == namespace


def test_the_serving_runtime_container_is_valid_and_probes_the_protocols_health_paths() -> None:
    (api,) = kserve_manifests()["serving-runtime.yaml"]["spec"]["containers"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "digitae"}, "spec": {"containers": [api]}}
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    assert api["name"] == "kserve-container" and api["image"] == container("deployment.yaml", "api")["image"]
    settings = Settings(**{e["name"].removeprefix("DIGITAE_").lower(): e["value"] for e in api["env"]})
    (port,) = api["ports"]
    assert port["containerPort"] == settings.port and settings.host == "0.0.0.0"
    app = create_app(settings)
    for probe, path in (("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live")):
        target = api[probe]["httpGet"]
        assert target["path"] == path and target["port"] == port["containerPort"], probe
        scope = {"type": "http", "path": path, "method": "GET"}
        assert any(route.matches(scope)[0] == Match.FULL for route in app.routes), path
    assert api["securityContext"]["runAsUser"] == int(dockerfile_lines("USER")[-1].split(":")[0])


def test_the_key_secret_is_required_and_the_service_refuses_to_start_without_keys() -> None:
    """Was: both keys `optional: true`, so a missing Secret started an open API."""
    api = container("deployment.yaml", "api")
    for variable in api["env"]:
        reference = variable["valueFrom"]["secretKeyRef"]
        assert reference.get("optional", False) is False, f"{variable['name']} would start without its Secret"
    configmap = manifests()["configmap.yaml"]
    assert configmap["data"]["DIGITAE_REQUIRE_KEYS"] == "true"
    with pytest.raises(ValueError, match="require_keys is set but no API key is"):
        settings_of(configmap, api_keys="")  # what the pod would run with, given an empty api-keys
    settings = settings_of(configmap, api_keys="a-deployment-key")
    assert settings.require_keys and [key.get_secret_value() for key in settings.api_keys] == ["a-deployment-key"]


def quantity_mib(quantity: str) -> float:
    units = {"Ki": 2**-10, "Mi": 1, "Gi": 2**10, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    number, unit = re.fullmatch(r"([\d.]+)([A-Za-z]*)", quantity).groups()
    return float(number) * units[unit] if unit else float(number) / 2**20


def test_the_memory_limit_holds_the_measured_worst_case() -> None:
    """Was: 768 Mi, while one large decode adds hundreds of MB and 32 concurrent uploads peak above it. The limit
    is sized from benchmarks/memory_ceiling.py's figures, which hold for the decode concurrency and pixel cap the
    pod runs with: the decode threads follow the CPU limit (the ConfigMap leaves them to it)."""
    configmap = manifests()["configmap.yaml"]
    assert "DIGITAE_DECODE_CONCURRENCY" not in configmap["data"], "the decode threads follow limits.cpu"
    settings = settings_of(configmap)
    resources = container("deployment.yaml", "api")["resources"]
    decode_threads = math.floor(float(resources["limits"]["cpu"]))  # service.settings.usable_cpus in the pod
    assert settings.worker_count == 1
    assert decode_threads <= memory_ceiling.DECODE_CONCURRENCY
    assert settings.max_image_pixels <= memory_ceiling.SIDE**2
    limit = quantity_mib(resources["limits"]["memory"])
    assert limit >= memory_ceiling.PEAK_MIB * memory_ceiling.HEADROOM, (limit, memory_ceiling.PEAK_MIB)
    assert quantity_mib(resources["requests"]["memory"]) >= memory_ceiling.IDLE_MIB


def test_the_rendering_podman_plays_is_the_kustomization(tmp_path: Path) -> None:
    """scripts/kube_play.py renders what `kubectl kustomize` would (namespace, image), and changes only what it
    says for podman: the image, one replica, a published port, the init container run apart."""
    spec = importlib.util.spec_from_file_location("kube_play", REPO_ROOT / "scripts" / "kube_play.py")
    assert spec is not None and spec.loader is not None
    kube_play = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kube_play)
    rendered = {o["kind"]: o for o in kube_play.render()}
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    expected = f"{image['newName']}:{image['newTag']}"
    assert {c["image"] for c in kube_play.pod_containers(rendered["Deployment"])} == {expected}
    assert all(o["metadata"].get("namespace", "digitae") == kustomization["namespace"] for o in rendered.values())

    kube_play.main(tmp_path, "localhost/digitae:test", 18080)
    played = {o["kind"]: o for o in yaml.safe_load_all((tmp_path / "kube.yaml").read_text())}
    assert set(played) == {"ConfigMap", "Deployment"}
    assert yaml.safe_load((tmp_path / "claim.yaml").read_text()) == rendered["PersistentVolumeClaim"]
    assert played["ConfigMap"] == rendered["ConfigMap"]
    pod = played["Deployment"]["spec"]["template"]["spec"]
    original = rendered["Deployment"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod and pod["securityContext"] == original["securityContext"]
    (api,) = pod["containers"]
    assert api["image"] == "localhost/digitae:test" and api["ports"][0]["hostPort"] == 18080
    assert api["env"] == original["containers"][0]["env"] and api["resources"] == original["containers"][0]["resources"]
    seed = (tmp_path / "seed-models.sh").read_text()
    assert "--user=10001:10001" in seed and "--read-only" in seed and "--volume=digitae-models:/models" in seed
    assert original["initContainers"][0]["command"][-1].strip().splitlines()[-1].strip() in seed
    keys = dict(line.split("=", 1) for line in (tmp_path / "keys.env").read_text().split())
    assert Settings(api_keys=keys["API_KEY"], admin_key=keys["ADMIN_KEY"])  # usable keys
    secret = {k: base64.b64decode(v).decode() for k, v in json.loads((tmp_path / "secret.json").read_text()).items()}
    assert secret == {"api-keys": keys["API_KEY"], "admin-key": keys["ADMIN_KEY"]}
