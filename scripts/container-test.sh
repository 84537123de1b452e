#!/usr/bin/env bash
# Build digitae's images from the repository's Dockerfile and run them, and docker-compose.yml, for real.
#
# usage: scripts/container-test.sh        (or `make container-test`; CI runs it as root)
#
# The engine is podman (Debian's), standing in for Docker Engine: installed here when missing and run as root.
# The official python:3.11-slim cannot be pulled where no registry is reachable, so a stand-in base is made with
# debootstrap (Debian's python3.11, as the official image's 3.11) and passed as the PYTHON_IMAGE build argument; the
# build gets this machine's pip configuration (its indexes, find-links and CA bundle, mounted read-only), so it
# installs what a local install gets. Nothing else about the build differs from `docker build`.
#
# Checks: both targets build; the api image, run read-only as a non-root user, becomes ready, answers an inference,
# passes its HEALTHCHECK, carries no training-only package and decodes no more images at once than its CPU limit; then
# deploy/kubernetes/ played by `podman kube play` (scripts/kube_play.py renders it: see there for what differs);
# then docker-compose.yml, with podman-compose: up, the train profile (one short epoch) into the models volume,
# restart, the retrained model served, down --volumes; and three api replicas behind the balancer of
# deploy/compose.lb.yml, which alone publishes a port.
#
# Everything runs in a private podman store (under CACHE), so it never touches other images or containers. The
# stand-in base stays there between runs and is remade only when its recipe or the pip configuration changed; every
# image, container, volume and network a run makes is removed when it ends, also on failure.
#
# environment:
#   VENV            the virtual environment with podman-compose (default .venv; `make container-test` installs it)
#   CACHE           where the private podman store lives (default: ~/.cache/digitae-container-test)
#   DEBIAN_MIRROR   where debootstrap fetches the base from (default: http://deb.debian.org/debian)
#   KEEP_BASE=0     also remove the stand-in base at the end
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${VENV:-.venv}"
python="$venv/bin/python"
cache="${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/digitae-container-test}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
project="digitae-test-$$"  # the compose project: prefixes its containers, volume and network
api_container="$project-api"
started=$SECONDS

say() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - started)); }
fail() { echo "container-test: $*" >&2; exit 1; }
free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# -- the engine -----------------------------------------------------------------------------------------------------
is_root() { [[ "$(id -u)" == 0 ]]; }
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
    is_root && command -v apt-get >/dev/null \
        || fail "needs podman and debootstrap: run 'sudo apt-get install -y podman runc debootstrap', then again"
    say "installing podman, runc and debootstrap"
    apt-get -o DPkg::Lock::Timeout=600 install -y -q podman runc debootstrap >/dev/null \
        || { apt-get update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -q podman runc debootstrap >/dev/null; }
fi
[[ -x "$venv/bin/podman-compose" ]] || fail "no $venv/bin/podman-compose: run 'make container-test' (it installs it)"

mkdir -p "$cache"
exec 9>"$cache/lock"
flock -n 9 || { echo "container-test: another run holds $cache/lock; waiting" >&2; flock 9; }
# The private store: podman and every podman that podman-compose starts read it from this variable.
runroot="${XDG_RUNTIME_DIR:-/run}/digitae-container-test"
is_root || runroot="${XDG_RUNTIME_DIR:-/tmp}/digitae-container-test-$(id -u)"
cat >"$cache/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "$runroot"
EOF
export CONTAINERS_STORAGE_CONF="$cache/storage.conf"

# -- cleaning up: whatever happens, nothing of this run is left ------------------------------------------------------
compose() { DIGITAE_API_PORTS="${compose_port:-8000}" "$venv/bin/podman-compose" -p "$project" "$@"; }
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    say "cleaning up"
    compose -f docker-compose.yml -f deploy/compose.lb.yml --profile train down --volumes --remove-orphans \
        >/dev/null 2>&1 || true
    podman pod rm --all --force >/dev/null 2>&1 || true  # the private store holds only this run's pods,
    podman rm --all --force >/dev/null 2>&1 || true  # containers
    podman secret rm --all >/dev/null 2>&1 || true  # and secrets
    [[ -z "${kube_dir:-}" ]] || rm -rf "$kube_dir"
    podman volume rm --all --force >/dev/null 2>&1 || true
    podman network rm --force "${project}_default" >/dev/null 2>&1 || true
    # Every image but the stand-in base (the cache), then the base too when asked.
    podman images --format '{{.Id}} {{.Repository}}' | awk '$2 != "localhost/digitae-standin-base" {print $1}' \
        | sort -u | xargs -r podman rmi --force >/dev/null 2>&1 || true
    if [[ "${KEEP_BASE:-1}" == 0 ]]; then podman rmi --all --force >/dev/null 2>&1 || true; fi
    left="$(podman ps --all --quiet; podman volume ls --quiet --filter "name=$project")"
    [[ -z "$left" ]] || { echo "container-test: left behind: $left" >&2; status=1; }
    if ((status == 0)); then say "container-test passed"; else say "container-test FAILED (status $status)"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- this machine's pip configuration, for the build ----------------------------------------------------------------
# `pip config list` prints lines like  global.find-links='/opt/wheels'  or  :env:.cert='/etc/ssl/...'. The indexes,
# find-links and CA bundle go into the base's /etc/pip.conf; the local paths among them are mounted into the build.
declare -A pip_settings=()
while IFS= read -r line; do
    key="${line%%=*}"
    key="${key##*.}"
    value="${line#*=}"
    value="${value#\'}"
    value="${value%\'}"
    case "$key" in index-url | extra-index-url | find-links | cert | trusted-host) pip_settings[$key]="$value" ;; esac
done < <("$python" -m pip config list 2>/dev/null | sort -r)  # ':env:' lines last: they win, as in pip
pip_conf="[global]"
mounts=()
for key in $(printf '%s\n' "${!pip_settings[@]}" | sort); do
    pip_conf+=$'\n'"$key = ${pip_settings[$key]}"
    for word in ${pip_settings[$key]}; do
        path="${word#file://}"
        path="${path%/}"
        [[ "$path" == */simple ]] && path="${path%/simple}"  # a local index: its pages link to files beside simple/
        if [[ "$path" == /* && -e "$path" ]]; then mounts+=(--volume "$path:$path:ro"); fi
    done
done

# -- the stand-in base ----------------------------------------------------------------------------------------------
make_base() {
    local rootfs
    rootfs="$(mktemp -d)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" \
        >"$cache/debootstrap.log" 2>&1 || { tail -20 "$cache/debootstrap.log" >&2; rm -rf "$rootfs"; return 1; }
    ln -s python3 "$rootfs/usr/bin/python"
    printf '%s\n' "$pip_conf" >"$rootfs/etc/pip.conf"
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$1" >/dev/null
    rm -rf "$rootfs"
}
# The tag names what went into it: a changed recipe or pip configuration makes a new base.
base="localhost/digitae-standin-base:$(printf '%s\n%s\n%s' "$(declare -f make_base)" "$pip_conf" "$mirror" \
    | sha256sum | cut -c1-16)"
if podman image exists "$base"; then
    say "stand-in base $base (cached)"
else
    say "making the stand-in base $base with debootstrap"
    podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/digitae-standin-base:' \
        | xargs -r podman rmi --force >/dev/null 2>&1 || true  # an older recipe's base
    make_base "$base"
fi

# On some machines podman's defaults do not run a container: a default ulimit that cannot be raised, or crun with a
# hybrid cgroup layout. As root (CI), the two settings that fix it go in a drop-in file, and only when needed.
if ! podman run --rm "$base" true >/dev/null 2>"$cache/engine-check.log"; then
    is_root || fail "podman cannot run a container: $(cat "$cache/engine-check.log")"$'\n'"add to
/etc/containers/containers.conf: [containers] default_ulimits = [] and [engine] runtime = \"runc\""
    cat "$cache/engine-check.log"
    say "podman needs settings here: writing /etc/containers/containers.conf.d/50-digitae-container-test.conf"
    mkdir -p /etc/containers/containers.conf.d
    printf '%s\n' '# Written by digitae scripts/container-test.sh: podman did not run a container without these.' \
        '[containers]' 'default_ulimits = []' '[engine]' 'runtime = "runc"' \
        >/etc/containers/containers.conf.d/50-digitae-container-test.conf
    podman run --rm "$base" true || fail "podman still cannot run a container (see above)"
fi

# -- both images, from the repository's Dockerfile --------------------------------------------------------------------
# --format docker keeps the HEALTHCHECK (the OCI image format has no field for it).
build() {
    local target="$1" tag="$2" t0=$SECONDS
    podman build --format docker --target "$target" --tag "$tag" --build-arg PYTHON_IMAGE="$base" \
        --build-arg TORCH_INDEX_URL= "${mounts[@]}" . >"$cache/build-$target.log" 2>&1 \
        || { tail -40 "$cache/build-$target.log" >&2; fail "building --target $target failed"; }
    local size
    size="$(podman image inspect --format '{{.Size}}' "$tag")"
    echo "figure: --target $target built in $((SECONDS - t0)) s; image size $((size / 1000000)) MB"
}
say "building --target api"
build api localhost/digitae:latest
say "building --target train"
build train localhost/digitae-train:latest

# -- the api image, alone -------------------------------------------------------------------------------------------
http() { "$python" scripts/container_check.py "$@"; }
say "running the api image read-only as its own user"
port="$(free_port)"
podman run --detach --name "$api_container" --read-only --tmpfs /tmp --publish "127.0.0.1:$port:8000" \
    localhost/digitae:latest >/dev/null
http ready "http://127.0.0.1:$port" || { podman logs "$api_container" >&2; fail "the api container never got ready"; }
http infer "http://127.0.0.1:$port"
podman healthcheck run "$api_container" || fail "the image's HEALTHCHECK failed"
echo "ok: HEALTHCHECK passes"
uid="$(podman exec "$api_container" id -u)"
[[ "$uid" == 10001 ]] || fail "the service runs as uid $uid, not the image's non-root user 10001"
echo "ok: runs as uid $uid"
podman exec "$api_container" touch /home/digitae/probe 2>/dev/null && fail "the root filesystem is writable"
echo "ok: root filesystem is read-only"
podman exec "$api_container" sh -c 'cd /opt/venv/lib/python3*/site-packages \
    && for path in / /opt/venv torch sympy numpy numpy.libs /var/lib/digitae/models; do du -sxm "$path"; done' \
    | awk '{printf "figure: %s %s MB\n", $2, $1}'
# Whatever the train and dev extras add to the service's dependencies must be absent from the api image.
training_only="$("$python" - <<'PY'
import re
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
name = lambda r: re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower()  # noqa: E731
served = {name(r) for r in project["dependencies"]}
extras = {name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
print(" ".join(sorted(extras - served - {project["name"]})))
PY
)"
podman exec "$api_container" python - $training_only <<'PY'
import importlib.metadata
import sys

found = []
for name in sys.argv[1:]:
    try:
        found.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        pass
sys.exit(f"training-only packages in the api image: {', '.join(found)}" if found else 0)
PY
echo "ok: none of the train/dev extras' packages is installed ($training_only)"
podman rm --force "$api_container" >/dev/null
# The decode threads follow the container's CPU limit (cgroup cpu.max), not the machine's cores.
podman run --rm --read-only --cpus 1 --env DIGITAE_LOG_LEVEL=info localhost/digitae:latest python -c \
    'from service.settings import Settings; print("decode_concurrency", Settings().decode_concurrency)' \
    | grep -qx 'decode_concurrency 1' || fail "with --cpus 1 the decode concurrency is not 1"
echo "ok: with --cpus 1 on $(nproc) cores, DIGITAE_DECODE_CONCURRENCY defaults to 1"

# -- deploy/kubernetes/, played by podman ----------------------------------------------------------------------------
say "podman kube play deploy/kubernetes (rendered by scripts/kube_play.py)"
kube_dir="$(mktemp -d)"
kube_port="$(free_port)"
"$python" scripts/kube_play.py "$kube_dir" localhost/digitae:latest "$kube_port"
# Fail closed: without the key Secret the Deployment does not start (secretKeyRef is required).
if podman kube play --start=false "$kube_dir/kube.yaml" >"$kube_dir/no-secret.log" 2>&1; then
    fail "the Deployment was created without its key Secret: $(cat "$kube_dir/no-secret.log")"
fi
podman pod rm --all --force >/dev/null 2>&1 || true
echo "ok: without the Secret, no pod: $(grep -m1 . "$kube_dir/no-secret.log")"
# podman 4.3 reads a secretKeyRef from a podman secret holding the Secret's data as JSON (scripts/kube_play.py).
podman secret create "$(cat "$kube_dir/secret-name.txt")" "$kube_dir/secret.json" >/dev/null
# The claim (its volume) first, then the init container's work (see scripts/kube_play.py), then the Deployment.
podman kube play "$kube_dir/claim.yaml" >/dev/null
claim="$("$python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["metadata"]["name"])' \
    "$kube_dir/claim.yaml")"
chown 10001:10001 "$(podman volume inspect --format '{{.Mountpoint}}' "$claim")"  # what fsGroup does
sh "$kube_dir/seed-models.sh"
podman kube play "$kube_dir/kube.yaml" >"$kube_dir/play.log" 2>&1 || { cat "$kube_dir/play.log" >&2; fail "kube play failed"; }
kube_url="http://127.0.0.1:$kube_port"
kube_container="$(podman ps --format '{{.Names}}' | grep -- '-api$' | head -1)"
[[ -n "$kube_container" ]] || { cat "$kube_dir/play.log" >&2; podman ps -a >&2; fail "no api container"; }
http ready "$kube_url" || { podman logs "$kube_container" >&2; fail "the pod never got ready"; }
while read -r probe; do
    http status "$kube_url$probe" 200 || fail "the probe $probe does not answer 200"
done <"$kube_dir/probes.txt"
# (podman 4.3 makes the liveness probe a healthcheck `curl -f http://localhost:0/healthz`: the named port is not
# resolved and the image has no curl, so that healthcheck cannot pass; the paths are requested here instead.)
echo "ok: the probes answer ($(tr '\n' ' ' <"$kube_dir/probes.txt"))"
uid="$(podman exec "$kube_container" id -u)"
[[ "$uid" == 10001 ]] || fail "the pod's api runs as uid $uid, not 10001"
podman exec "$kube_container" touch /home/digitae/probe 2>/dev/null && fail "the pod's root filesystem is writable"
podman exec "$kube_container" touch /var/lib/digitae/models/probe 2>/dev/null && fail "the pod's models volume is writable"
echo "ok: runs as uid $uid, root filesystem and models volume read-only"
podman logs "$kube_container" >"$kube_dir/pod.log" 2>&1  # into a file: grep -m1 on a pipe would SIGPIPE podman
settings="$(grep -m1 'settings: ' "$kube_dir/pod.log" | sed 's/.*settings: //')"
"$python" - "$settings" "$kube_dir/kube.yaml" <<'PY' || fail "the pod does not run with the ConfigMap's settings"
import json, sys, yaml
from service.settings import Settings
running = json.loads(sys.argv[1])
configmap = next(d for d in yaml.safe_load_all(open(sys.argv[2])) if d["kind"] == "ConfigMap")
values = {name.removeprefix("DIGITAE_").lower(): value for name, value in configmap["data"].items()}
expected = Settings(**values, api_keys="stand-in-key").model_dump(mode="json")
for key in values:
    assert running[key] == expected[key], f"{key}: the ConfigMap says {expected[key]!r}, the pod runs {running[key]!r}"
assert running["api_keys"] and running["admin_key"], "the pod has no keys"
print(f"ok: the pod runs with the ConfigMap's {len(configmap['data'])} settings, and keys from the Secret")
PY
set -a; source "$kube_dir/keys.env"; set +a
http keys "$kube_url" "$API_KEY" "$ADMIN_KEY"
http infer "$kube_url" "$API_KEY"
podman kube down "$kube_dir/kube.yaml" >/dev/null
podman kube down "$kube_dir/claim.yaml" >/dev/null 2>&1 || true
podman secret rm "$(cat "$kube_dir/secret-name.txt")" >/dev/null
podman volume rm --force "$claim" >/dev/null

# -- docker-compose.yml, as written -----------------------------------------------------------------------------------
compose_port="$(free_port)"
url="http://127.0.0.1:$compose_port"
say "podman-compose up -d (port $compose_port)"
compose up -d
http ready "$url" || { compose logs api >&2; fail "compose's api never got ready"; }
http infer "$url"
before="$(http card "$url" ae-2)"

say "podman-compose --profile train run --rm train (one epoch of ae-2)"
compose --profile train run --rm train python -m training sweep --out /var/lib/digitae/models \
    --latent-dims 2 --vae-latent-dims --skip-judge --epochs 1 --quiet

say "podman-compose restart api"
compose restart api
http ready "$url" || { compose logs api >&2; fail "compose's api never got ready after the restart"; }
after="$(http card "$url" ae-2)"
[[ "$before" != "$after" ]] || fail "after the restart, ae-2 is still the committed model ($after)"
echo "ok: ae-2 served from the retrained checkpoint (was: $before; now: $after)"
http infer "$url"

say "podman-compose down --volumes"
compose down --volumes
volumes="$(podman volume ls --quiet --filter "name=$project")"
[[ -z "$volumes" ]] || fail "down --volumes left volumes: $volumes"
echo "ok: no volume left"

# -- replicas behind a balancer: the `lb` profile, where docker-compose.yml has one ----------------------------------
# The balancer's official image cannot be pulled here either: a stand-in made from the base and Debian's package is
# tagged with the same name. Like the official images, haproxy runs as its own user and reads
# /usr/local/etc/haproxy/haproxy.cfg; nginx reads /etc/nginx.
standin_balancer() {
    local image="$1" context
    context="$(mktemp -d)"
    case "${image##*/}" in
        haproxy*) cat >"$context/Containerfile" <<EOF
FROM $base
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends haproxy && rm -rf /var/lib/apt/lists/* \\
    && mkdir -p /usr/local/etc/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
EOF
        ;;
        nginx*) cat >"$context/Containerfile" <<EOF
FROM $base
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx && rm -rf /var/lib/apt/lists/*
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
EOF
        ;;
        *) fail "no stand-in for the balancer image $image" ;;
    esac
    podman build --format docker --tag "$image" "$context" >"$cache/build-balancer.log" 2>&1 \
        || { tail -20 "$cache/build-balancer.log" >&2; fail "building the stand-in $image failed"; }
    rm -rf "$context"
}
# "SERVICE IMAGE" of deploy/compose.lb.yml's services that are not digitae's own (the balancer).
read -r lb_service lb_image < <("$python" - <<'PY'
import yaml

yaml.SafeLoader.add_constructor("!reset", lambda loader, node: None)  # Compose's "drop what the base file set"
services = yaml.safe_load(open("deploy/compose.lb.yml"))["services"]
for name, service in services.items():
    if "image" in service and "build" not in service:
        print(name, service["image"])
PY
)
say "podman-compose -f docker-compose.yml -f deploy/compose.lb.yml up -d --scale api=3 ($lb_service: a stand-in $lb_image)"
standin_balancer "$lb_image"
lb() { compose -f docker-compose.yml -f deploy/compose.lb.yml "$@"; }
lb up -d --scale api=3
lb_port="$(podman port "${project}_${lb_service}_1" | head -1 | sed 's/.*://')"
replicas="$(podman ps --quiet --filter "label=io.podman.compose.project=$project" \
    --filter "label=com.docker.compose.service=api")"
(($(wc -l <<<"$replicas") == 3)) || fail "--scale api=3 started $(wc -l <<<"$replicas") api containers"
for replica in $replicas; do
    [[ -z "$(podman port "$replica")" ]] || fail "an api replica publishes a port: $(podman port "$replica")"
done
echo "ok: the api replicas publish no port; only $lb_service does ($lb_port)"
http ready "http://127.0.0.1:$lb_port" || { lb logs >&2; fail "the balancer never got ready"; }
http infer "http://127.0.0.1:$lb_port"
echo "ok: 3 api replicas serve through $lb_image"
lb down --volumes
