#!/usr/bin/env bash
# Install digitae into a virtual environment.
#
# The one install path: the Makefile (`make run`, `make test`), CI (through `make test`) and the Dockerfile all call
# this script, so CI exercises the image's install steps even where no Docker engine runs.
#
# usage: scripts/install.sh [--editable] [--extras LIST] [--deps-only] [--dry-run]
#   --editable      install the work tree in place (for development; the image installs a copy)
#   --extras LIST   comma-separated optional dependencies from pyproject.toml, e.g. "dev" or "train"
#   --deps-only     install only the dependencies, not digitae itself (lets Docker cache them apart from the code)
#   --dry-run       print the commands instead of running them
#
# environment:
#   VENV             the virtual environment to create or update (default: .venv in the repository)
#   PYTHON           the interpreter that creates it (default: python3.11, else python3; needs 3.11 or newer)
#   TORCH_INDEX_URL  the package index torch comes from, e.g. https://download.pytorch.org/whl/cpu for the
#                    CPU-only build; empty: pip's own configuration
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
fail() { echo "install.sh: $*" >&2; exit 2; }

editable=false
deps_only=false
dry_run=false
extras=""
while (($#)); do
    case "$1" in
        --editable) editable=true ;;
        --deps-only) deps_only=true ;;
        --dry-run) dry_run=true ;;
        --extras) (($# >= 2)) || fail "--extras needs a value, e.g. --extras dev"; extras="$2"; shift ;;
        --extras=*) extras="${1#--extras=}" ;;
        -h | --help) usage; exit 0 ;;
        *) fail "unknown option '$1' (see --help)" ;;
    esac
    shift
done
[[ "$extras" =~ ^[a-z0-9,_-]*$ ]] || fail "--extras takes comma-separated names, got '$extras'"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
venv="${VENV:-.venv}"
torch_index_url="${TORCH_INDEX_URL:-}"
python="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
[[ -n "$python" ]] || fail "no python3 found; install Python 3.11 or set PYTHON"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "$python is Python $("$python" -c 'import platform; print(platform.python_version())'); digitae needs 3.11+"

run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    if ! $dry_run; then "$@"; fi
}

# The requirements of pyproject.toml: `torch` prints torch's own line; `deps EXTRAS` prints every other runtime
# dependency plus those of the named extras, with references to digitae's own extras expanded.
requirements() {
    "$python" - "$@" <<'PY'
import re
import sys
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
optional = project.get("optional-dependencies", {})
what, extras = sys.argv[1], [e for e in (sys.argv[2] if len(sys.argv) > 2 else "").split(",") if e]


def name_of(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def expand(extra: str, seen: set[str]) -> list[str]:
    if extra not in optional:
        sys.exit(f"install.sh: pyproject.toml has no extra {extra!r} (it has: {', '.join(optional)})")
    found = []
    for requirement in optional[extra]:
        if name_of(requirement) == project["name"]:
            inner = re.search(r"\[(.*)\]", requirement)
            for sub in (inner.group(1).split(",") if inner else []):
                if sub.strip() not in seen:
                    seen.add(sub.strip())
                    found += expand(sub.strip(), seen)
        else:
            found.append(requirement)
    return found


requirements = list(project["dependencies"])
for extra in extras:
    requirements += expand(extra, {extra})
torch = [r for r in requirements if name_of(r) == "torch"]
if what == "torch":
    print(torch[0] if torch else "")
else:
    print("\n".join(dict.fromkeys(r for r in requirements if name_of(r) != "torch")))
PY
}

deps_list="$(requirements deps "$extras")"  # also refuses an extra that pyproject.toml lacks

if [[ ! -x "$venv/bin/python" ]]; then
    run "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)

# torch first, alone, from its own index: asked for together with the rest, pip would take it from PyPI.
torch_requirement="$(requirements torch)"
if [[ -n "$torch_requirement" ]]; then
    run "${pip[@]}" ${torch_index_url:+--index-url "$torch_index_url"} "$torch_requirement"
fi

if $deps_only; then
    mapfile -t deps <<<"$deps_list"
    run "${pip[@]}" "${deps[@]}"
else
    target="."
    [[ -n "$extras" ]] && target=".[$extras]"
    if $editable; then
        run "${pip[@]}" --editable "$target"
    else
        run "${pip[@]}" "$target"
    fi
fi
