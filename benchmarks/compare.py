"""Before and after: the service at another revision against this tree, both up at once, wrk runs alternating.

    python benchmarks/compare.py --base HEAD~1                      # raw+fields reconstruct at concurrency 64
    python benchmarks/compare.py --base v1 --request "reconstruct multipart" --rounds 5

A change to the request path moves requests/s by a few tens of percent while this machine's own speed drifts by
more from one hour to the next, so two `make bench` runs cannot tell a change from the drift. Here both versions
serve at once (the revision from a temporary `git worktree`, both on this tree's models), and their runs alternate,
so a change in the machine's speed hits both alike; the medians of the rounds are compared. For the routes that
reach a model it also prints the forward passes' wall time per image from `/metrics` (digitae_inference_seconds
over digitae_microbatch_size): what the interpreter lock shared with the event loop does to them under load.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == REPO_ROOT / "benchmarks":
    sys.path[0] = str(REPO_ROOT)  # run as a script: import the repository's packages, not this folder's modules

import httpx  # noqa: E402

from benchmarks import loadgen, servers  # noqa: E402
from benchmarks.run import LATENT_DIM, MODEL, RAW_FIELDS, requests_for  # noqa: E402
from models.checkpoint import DEFAULT_CHECKPOINTS_DIR  # noqa: E402

OPERATION = re.compile(r"/v1/models/[^/]+/(\w+)")


def inference_totals(url: str, operation: str) -> tuple[float, float] | None:
    """(seconds in forward passes, images) of `operation` so far, from the server's metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    figures = []
    for name in ("digitae_inference_seconds_sum", "digitae_microbatch_size_sum"):
        found = re.search(rf'^{name}\{{model="{MODEL}",operation="{operation}"\}} (\S+)$', text, re.MULTILINE)
        if found is None:
            return None
        figures.append(float(found.group(1)))
    return figures[0], figures[1]


def measure(
    server: servers.Server, request: loadgen.Request, connections: int, seconds: float
) -> tuple[float, float | None]:
    """Requests/s of one wrk run, and the forward passes' microseconds per image during it (None: no model)."""
    operation = OPERATION.search(request.path)
    before = inference_totals(server.url, operation.group(1)) if operation else None
    result = loadgen.run_wrk(server.url, request, connections, seconds)
    if result.errors:
        raise RuntimeError(f"{result.errors} failed requests against {server.url}: see {server.log_path}")
    after = inference_totals(server.url, operation.group(1)) if operation else None
    if before is None or after is None or after[1] == before[1]:
        return result.rps, None
    return result.rps, (after[0] - before[0]) / (after[1] - before[1]) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/compare.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the revision to compare this tree with (e.g. HEAD~1)")
    requests = requests_for(MODEL, LATENT_DIM)
    parser.add_argument(
        "--request", default=RAW_FIELDS, choices=list(requests), help="which request (default: %(default)s)"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=4, help="runs of each version, alternating")
    args = parser.parse_args(argv)
    if loadgen.wrk_path() is None:
        print(loadgen.INSTALL_HINT, file=sys.stderr)
        return 2
    request = requests[args.request]
    with tempfile.TemporaryDirectory(prefix="digitae-compare-") as scratch_name:
        scratch = Path(scratch_name)
        base_tree = scratch / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(base_tree), args.base], cwd=REPO_ROOT, check=True
        )
        try:
            versions = {  # one worker each (the default became auto): the same shape on both sides
                args.base: servers.service(DEFAULT_CHECKPOINTS_DIR, scratch / "base.log", source=base_tree, workers=1),
                "this tree": servers.service(DEFAULT_CHECKPOINTS_DIR, scratch / "this.log", workers=1),
            }
            runs: dict[str, list[tuple[float, float | None]]] = {label: [] for label in versions}
            with versions[args.base], versions["this tree"]:
                for server in versions.values():
                    loadgen.run_wrk(server.url, request, args.connections, 2)  # warm-up: graphs, caches
                for _ in range(args.rounds):
                    for label, server in versions.items():
                        runs[label].append(measure(server, request, args.connections, args.seconds))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO_ROOT, check=False)
    print(
        f"{args.request} at concurrency {args.connections}, {args.rounds} alternating runs of {args.seconds:g} s each"
    )
    medians = {}
    for label, figures in runs.items():
        medians[label] = statistics.median(rps for rps, _ in figures)
        per_image = [us for _, us in figures if us is not None]
        forward = f"; forward passes {statistics.median(per_image):,.0f} µs per image" if per_image else ""
        rates = " / ".join(f"{rps:,.0f}" for rps, _ in figures)
        print(f"  {label:12s} req/s {rates}: median {medians[label]:,.0f}{forward}")
    print(f"  this tree / {args.base}: {medians['this tree'] / medians[args.base]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
