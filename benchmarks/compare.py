"""Before and after: the service at another revision, or with other settings, against this tree, both up at once,
wrk runs alternating.

    python benchmarks/compare.py --base HEAD~1                      # raw+fields reconstruct at concurrency 64
    python benchmarks/compare.py --base v1 --request "reconstruct multipart" --rounds 5
    python benchmarks/compare.py --setting fast_dispatch=false       # this tree with a setting changed, against itself

A change to the request path moves requests/s by a few tens of percent while this machine's own speed drifts by
more from one hour to the next, so two `make bench` runs cannot tell a change from the drift. Here both versions
serve at once (the revision from a temporary `git worktree`, both on this tree's models), and their runs alternate,
so a change in the machine's speed hits both alike; the medians of the rounds are compared. `--setting NAME=VALUE`
(repeatable) sets the base side's settings (`DIGITAE_NAME`); without `--base` the base is this tree so set. Each
side prints the event loop's CPU per request (the worker's main thread, from /proc) and, for the routes that
reach a model, the forward passes' wall time per image from `/metrics` (digitae_inference_seconds over
digitae_microbatch_size): what the interpreter lock shared with the event loop does to them under load.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == REPO_ROOT / "benchmarks":
    sys.path[0] = str(REPO_ROOT)  # run as a script: import the repository's packages, not this folder's modules

import httpx  # noqa: E402

from benchmarks import loadgen, servers  # noqa: E402
from benchmarks.run import LATENT_DIM, MODEL, RAW_FIELDS, requests_for  # noqa: E402
from benchmarks.workers import thread_cpu_s  # noqa: E402
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


@dataclass(frozen=True)
class Run:
    rps: float
    loop_cpu_us: float  # the event loop's CPU per request (the one worker's main thread)
    forward_us: float | None  # the forward passes' wall time per image (None: the route reaches no model)


def measure(server: servers.Server, request: loadgen.Request, connections: int, seconds: float) -> Run:
    """Requests/s of one wrk run, the event loop's CPU per request, and the forward passes' microseconds per
    image during it."""
    operation = OPERATION.search(request.path)
    before = inference_totals(server.url, operation.group(1)) if operation else None
    loop_before = thread_cpu_s(server.pid, server.pid)
    result = loadgen.run_wrk(server.url, request, connections, seconds)
    loop_cpu_us = (thread_cpu_s(server.pid, server.pid) - loop_before) / max(result.requests, 1) * 1e6
    if result.errors:
        raise RuntimeError(f"{result.errors} failed requests against {server.url}: see {server.log_path}")
    after = inference_totals(server.url, operation.group(1)) if operation else None
    if before is None or after is None or after[1] == before[1]:
        return Run(result.rps, loop_cpu_us, None)
    return Run(result.rps, loop_cpu_us, (after[0] - before[0]) / (after[1] - before[1]) * 1e6)


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """`NAME=VALUE` pairs (`fast_dispatch=false`) as settings for `servers.service`."""
    settings = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise SystemExit(f"--setting {pair!r}: write NAME=VALUE, e.g. fast_dispatch=false")
        settings[name.strip().lower().removeprefix("digitae_")] = value
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/compare.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="the revision to compare this tree with (e.g. HEAD~1); default: this tree")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the base side (e.g. fast_dispatch=false); repeatable",
    )
    requests = requests_for(MODEL, LATENT_DIM)
    parser.add_argument(
        "--request", default=RAW_FIELDS, choices=list(requests), help="which request (default: %(default)s)"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=4, help="runs of each version, alternating")
    args = parser.parse_args(argv)
    base_settings = parse_settings(args.setting)
    if args.base is None and not base_settings:
        parser.error("give --base (a revision), --setting (a setting of the base side), or both")
    if loadgen.wrk_path() is None:
        print(loadgen.INSTALL_HINT, file=sys.stderr)
        return 2
    request = requests[args.request]
    base_label = " ".join([*([args.base] if args.base else ["this tree"]), *args.setting])
    with tempfile.TemporaryDirectory(prefix="digitae-compare-") as scratch_name:
        scratch = Path(scratch_name)
        base_tree = scratch / "base"
        if args.base is not None:
            subprocess.run(
                ["git", "worktree", "add", "--detach", "-q", str(base_tree), args.base], cwd=REPO_ROOT, check=True
            )
        try:
            source = base_tree if args.base is not None else REPO_ROOT
            versions = {  # one worker each (the default became auto): the same shape on both sides
                base_label: servers.service(
                    DEFAULT_CHECKPOINTS_DIR, scratch / "base.log", source=source, **{"workers": 1, **base_settings}
                ),
                "this tree": servers.service(DEFAULT_CHECKPOINTS_DIR, scratch / "this.log", workers=1),
            }
            runs: dict[str, list[Run]] = {label: [] for label in versions}
            with versions[base_label], versions["this tree"]:
                for server in versions.values():
                    loadgen.run_wrk(server.url, request, args.connections, 2)  # warm-up: graphs, caches
                for _ in range(args.rounds):
                    for label, server in versions.items():
                        runs[label].append(measure(server, request, args.connections, args.seconds))
        finally:
            if args.base is not None:
                subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO_ROOT, check=False)
    print(
        f"{args.request} at concurrency {args.connections}, {args.rounds} alternating runs of {args.seconds:g} s each"
    )
    medians = {}
    for label, figures in runs.items():
        medians[label] = statistics.median(run.rps for run in figures)
        per_image = [run.forward_us for run in figures if run.forward_us is not None]
        forward = f"; forward passes {statistics.median(per_image):,.0f} µs per image" if per_image else ""
        loop = statistics.median(run.loop_cpu_us for run in figures)
        rates = " / ".join(f"{run.rps:,.0f}" for run in figures)
        print(f"  {label:12s} req/s {rates}: median {medians[label]:,.0f}; event loop {loop:,.0f} µs CPU per request"
              f"{forward}")  # fmt: skip
    print(f"  this tree / {base_label}: {medians['this tree'] / medians[base_label]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
