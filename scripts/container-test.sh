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
# passes its HEALTHCHECK and carries no training-only package; then docker-compose.yml, with podman-compose: up, the
# train profile (one short epoch) into the models volume, restart, the retrained model served, down --volumes; and,
# where the compose file has the `lb` profile, three api replicas behind its balancer.
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
    compose --profile train --profile lb down --volumes --remove-orphans >/dev/null 2>&1 || true
    podman rm --all --force >/dev/null 2>&1 || true  # the private store holds only this run's containers
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
# "SERVICE IMAGE" of the lb profile's services that are not digitae's own (the balancer).
balancer="$("$python" - <<'PY'
import yaml

services = yaml.safe_load(open("docker-compose.yml"))["services"]
for name, service in services.items():
    if "lb" in service.get("profiles", []) and "build" not in service:
        print(name, service["image"])
PY
)"
if [[ -n "$balancer" ]]; then
    read -r lb_service lb_image <<<"$balancer"
    say "podman-compose --profile lb up -d --scale api=3 ($lb_service: a stand-in $lb_image)"
    standin_balancer "$lb_image"
    # Behind the balancer the replicas publish no port of their own (podman-compose cannot spread a host port
    # range over scaled replicas as Docker Compose does): an override resets api's ports for this step.
    lb_override="$cache/compose-lb-override.yml"
    printf 'services:\n  api:\n    ports: !reset []\n' >"$lb_override"
    lb() { compose -f docker-compose.yml -f "$lb_override" --profile lb "$@"; }
    lb up -d --scale api=3
    lb_port="$(podman port "${project}_${lb_service}_1" | head -1 | sed 's/.*://')"
    replicas="$(podman ps --quiet --filter "label=io.podman.compose.project=$project" \
        --filter "label=com.docker.compose.service=api" | wc -l)"
    ((replicas == 3)) || fail "--scale api=3 started $replicas api containers"
    http ready "http://127.0.0.1:$lb_port" || { lb logs >&2; fail "the balancer never got ready"; }
    http infer "http://127.0.0.1:$lb_port"
    echo "ok: 3 api replicas serve through $lb_image"
    lb down --volumes
fi
