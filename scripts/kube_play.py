"""deploy/kubernetes/ rendered for `podman kube play` (scripts/container-test.sh plays it with the image it built).

usage: python scripts/kube_play.py OUT_DIR IMAGE HOST_PORT

Renders the kustomization as `kubectl kustomize` does for the features it uses (its resources, its namespace, its
image names), then writes into OUT_DIR what podman plays, each file an unchanged rendered object except where said:

  claim.yaml        the PersistentVolumeClaim, played first: podman makes its volume, which the init container fills;
  kube.yaml         the ConfigMap and the Deployment, with the image IMAGE (pull policy
                    Never), one replica, the api's port published on 127.0.0.1:HOST_PORT, and no init container:
                    Debian's podman 4.3 fails on init containers ("failed to remove once init container"), so
  seed-models.sh    runs the init container's own command and volume mount with `podman run`, as its user, read-only,
                    before the Deployment is played;
  secret.json       the Secret `digitae-keys` (the one object a user creates: the README's command) with fresh keys,
                    as podman 4.3 reads a secretKeyRef: a podman secret of that name holding the Secret's `data` as
                    JSON (it cannot play `kind: Secret` itself: it stores the YAML, then fails to read it);
  keys.env          the Secret's keys, for the checks (API_KEY=..., ADMIN_KEY=...);
  probes.txt        the api container's probe paths, one a line.

Fails when the kustomization uses a feature this rendering does not know (then use `kubectl kustomize`).
"""

from __future__ import annotations

import base64
import json
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

KUBERNETES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
KNOWN_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images"}
PLAYED_KINDS = ("ConfigMap", "PersistentVolumeClaim", "Deployment")  # what podman kube play runs; the rest is cluster


def render(directory: Path = KUBERNETES_DIR) -> list[dict[str, Any]]:
    """The kustomization's objects as `kubectl kustomize directory` gives them."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        sys.exit(f"kube_play.py: the kustomization uses {sorted(unknown)}, which this rendering does not do")
    images = {image["name"]: image for image in kustomization.get("images", [])}
    objects = []
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((directory / resource).read_text()):
            if kustomization.get("namespace") and document["kind"] != "Namespace":
                document["metadata"]["namespace"] = kustomization["namespace"]
            for container in pod_containers(document):
                name, _, tag = container["image"].partition(":")
                if name in images:
                    new = images[name]
                    container["image"] = f"{new.get('newName', name)}:{new.get('newTag', tag)}"
            objects.append(document)
    return objects


def pod_containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def main(out: Path, image: str, host_port: int) -> None:
    objects = {o["kind"]: o for o in render() if o["kind"] in PLAYED_KINDS}
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (seed,) = pod.pop("initContainers")
    (api,) = pod["containers"]
    deployment["spec"]["replicas"] = 1
    for container in (seed, api):
        container["image"], container["imagePullPolicy"] = image, "Never"
    for port in api["ports"]:
        port.update(hostPort=host_port, hostIP="127.0.0.1")

    api_key, admin_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    secret_name = {ref["valueFrom"]["secretKeyRef"]["name"] for ref in api["env"]}.pop()
    referenced = {ref["valueFrom"]["secretKeyRef"]["key"] for ref in api["env"]}
    data = {
        key: base64.b64encode(value.encode()).decode()
        for key, value in (("api-keys", api_key), ("admin-key", admin_key))
    }
    assert referenced == set(data), f"the Deployment reads {sorted(referenced)} from the Secret"
    (out / "claim.yaml").write_text(yaml.safe_dump(objects["PersistentVolumeClaim"], sort_keys=False))
    (out / "kube.yaml").write_text(yaml.safe_dump_all([objects["ConfigMap"], deployment], sort_keys=False))
    (out / "secret.json").write_text(json.dumps(data))
    (out / "secret-name.txt").write_text(secret_name + "\n")
    (out / "keys.env").write_text(f"API_KEY={api_key}\nADMIN_KEY={admin_key}\n")
    probes = [api[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")]
    (out / "probes.txt").write_text("\n".join(probes) + "\n")

    # The init container's work, as podman runs it: its command, its mounts (the claim's volume), its user.
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    }
    mounts = [f"--volume={claims[m['name']]}:{m['mountPath']}" for m in seed["volumeMounts"]]
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    run = ["podman", "run", "--rm", "--read-only", f"--user={user}", "--cap-drop=all", *mounts, image]
    (out / "seed-models.sh").write_text(shlex.join([*run, *seed["command"]]) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
