#!/usr/bin/env bash
# Cut from an installed environment what digitae never runs; the Dockerfile calls it after install.sh.
#
# torch dominates the image (about 750 MB of an environment of about 1 GB). Of it, the C++ headers (torch/include,
# about 60 MB; only compiling extensions or torch.compile needs them, and digitae does neither) and the C++ test
# programs and protoc in torch/bin (about 45 MB) go. The bytecode pip compiled stays: without it every worker of a
# read-only container would compile its imports again at each start (measured: 2.0 s of CPU per import of the
# service with it, 5.3 s without).
#
# usage: scripts/trim-venv.sh [VENV]   (default: $VENV, else .venv)
set -euo pipefail

venv="${1:-${VENV:-.venv}}"
torch="$("$venv/bin/python" -c 'import pathlib, torch; print(pathlib.Path(torch.__file__).parent)' 2>/dev/null)" \
    || { echo "trim-venv.sh: no torch in $venv" >&2; exit 2; }
before="$(du -sm "$venv" | cut -f1)"
rm -rf "$torch/include" "$torch"/bin/test_* "$torch"/bin/*Test "$torch"/bin/protoc*
"$venv/bin/python" -c 'import torch; torch.ones(1) + 1' || { echo "trim-venv.sh: torch broke" >&2; exit 1; }
echo "trim-venv.sh: $venv ${before} MB -> $(du -sm "$venv" | cut -f1) MB"
