"""Every core serving: one worker against `DIGITAE_WORKERS=auto`, their micro-batches, memory and event-loop CPU.

    python benchmarks/workers.py                         # this tree: 1 worker, then auto, at concurrency 64
    python benchmarks/workers.py --base main --rounds 3  # before and after: both revisions, 1 and auto, all up at once

A reconstruct (the /docs example digit as a multipart upload, the default answer with two PNGs) is driven with wrk.
For each run it prints requests/s, p50 and p99, the mean micro-batch of each worker during that run (the change of
digitae_worker_microbatch_items over digitae_worker_microbatches in /metrics) and the machine's load average; for one
worker, the CPU its main thread (the event loop) spent per request, read from /proc before and after the run. Then
each process's memory from /proc/PID/smaps_rollup: resident (RSS), proportional (PSS: shared pages split among the
processes that map them) and unique (USS: private pages, what the process frees when it exits).

With `--base`, that revision (from a temporary `git worktree`) serves beside this tree, each with one worker and with
`auto`, all four up at once, and their runs alternate round by round, so a change in the machine's load hits every
server alike: the medians and the ratios this tree / base are what to read on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == REPO_ROOT / "benchmarks":
    sys.path[0] = str(REPO_ROOT)

import httpx  # noqa: E402
import psutil  # noqa: E402

from benchmarks import loadgen, servers  # noqa: E402
from service.settings import usable_cpus  # noqa: E402

CONNECTIONS = 64
BATCH_GAUGES = ("digitae_worker_microbatch_items", "digitae_worker_microbatches")


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    role: str  # "worker", "supervisor" (loads and checks the models, starts the workers) or "helper"
    rss_mib: float
    pss_mib: float
    uss_mib: float


@dataclass(frozen=True)
class WorkersResult:
    workers: int
    load: loadgen.LoadResult
    mean_batch_by_worker: dict[str, float]  # pid ("" with one worker) -> mean items per forward pass in this run
    loop_cpu_us_per_request: float | None  # the main thread's CPU, one worker only
    load_average: float = 0.0  # the machine's 1-minute load average after the run
    memory: list[ProcessMemory] = field(default_factory=list)


def thread_cpu_s(pid: int, tid: int) -> float:
    """User + system CPU seconds of one thread, from /proc/PID/task/TID/stat."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def batch_counts(metrics: str, model: str, operation: str) -> dict[str, dict[str, float]]:
    """pid ("" with one worker) -> {gauge: value} for the per-worker batch gauges of one model and operation."""
    samples: dict[str, dict[str, float]] = {}
    for line in metrics.splitlines():
        name = line.split("{", 1)[0]
        if name in BATCH_GAUGES and f'model="{model}"' in line and f'operation="{operation}"' in line:
            pid = re.search(r'pid="(\d+)"', line)
            samples.setdefault(pid.group(1) if pid else "", {})[name] = float(line.rsplit(" ", 1)[1])
    return samples


def mean_batches(after: str, model: str, operation: str, before: str = "") -> dict[str, float]:
    """Mean items per forward pass of each worker between two /metrics texts (since its start without `before`)."""
    start, end = batch_counts(before, model, operation), batch_counts(after, model, operation)
    means = {}
    for pid, values in end.items():
        items, batches = (values.get(name, 0.0) - start.get(pid, {}).get(name, 0.0) for name in BATCH_GAUGES)
        if batches:
            means[pid] = items / batches
    return means


def smaps_rollup_mib(pid: int) -> tuple[float, float, float]:
    """(RSS, PSS, USS) of one process in MiB, from /proc/PID/smaps_rollup."""
    kib = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        kib[name] = int(value.split()[0])
    return kib["Rss"] / 1024, kib["Pss"] / 1024, (kib["Private_Clean"] + kib["Private_Dirty"]) / 1024


def process_memory(server: servers.Server, worker_pids: set[str]) -> list[ProcessMemory]:
    """The memory of the server's process and its children, each named by its role."""
    root = psutil.Process(server.pid)
    found = []
    for process in [root, *root.children(recursive=True)]:
        if process.pid == root.pid:
            role = "supervisor" if worker_pids - {""} else "worker"
        else:
            role = "worker" if str(process.pid) in worker_pids else "helper"
        try:
            found.append(ProcessMemory(process.pid, role, *smaps_rollup_mib(process.pid)))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def wait_for_workers(server: servers.Server, workers: str) -> None:
    """Until every worker has started (at most a minute): `auto` starts them after the supervisor is ready."""
    deadline = time.monotonic() + 60
    count = usable_cpus() if workers == "auto" else 1
    while server.log_tail(100_000).count("Application startup complete") < count and time.monotonic() < deadline:
        time.sleep(0.2)


def operation_of(request: loadgen.Request) -> tuple[str, str]:
    parts = request.path.split("?")[0].split("/")
    return parts[3], parts[4]


def run_once(
    server: servers.Server, request: loadgen.Request, workers: str, connections: int, run_s: float
) -> WorkersResult:
    """One wrk run against a warm server, with the batches and (one worker) the event loop's CPU of that run."""
    model, operation = operation_of(request)
    before = httpx.get(server.url + "/metrics", timeout=30).text
    started = thread_cpu_s(server.pid, server.pid) if workers == "1" else None
    load = loadgen.run_wrk(server.url, request, connections, run_s)
    loop_cpu = None
    if started is not None and load.requests:
        loop_cpu = (thread_cpu_s(server.pid, server.pid) - started) / load.requests * 1e6
    after = httpx.get(server.url + "/metrics", timeout=30).text
    means = mean_batches(after, model, operation, before)
    memory = process_memory(server, set(batch_counts(after, model, operation)))
    return WorkersResult(len(means) or 1, load, means, loop_cpu, os.getloadavg()[0], memory)


def measure(
    models_dir: Path, scratch: Path, request: loadgen.Request, workers: str, run_s: float, warmup_s: float
) -> WorkersResult:
    with servers.service(models_dir, scratch / f"workers-{workers}.log", workers=workers) as server:
        wait_for_workers(server, workers)
        loadgen.run_wrk(server.url, request, CONNECTIONS, max(warmup_s, 3))  # every worker warms its own graphs
        return run_once(server, request, workers, CONNECTIONS, run_s)


def compare(
    models_dir: Path, scratch: Path, request: loadgen.Request, run_s: float, warmup_s: float
) -> list[WorkersResult]:
    return [measure(models_dir, scratch, request, workers, run_s, warmup_s) for workers in ("1", "auto")]


def describe(result: WorkersResult) -> str:
    batches = ", ".join(
        f"{pid or 'the worker'} {mean:.1f}" for pid, mean in sorted(result.mean_batch_by_worker.items())
    )
    loop = f"; event loop {result.loop_cpu_us_per_request:.0f} us CPU/request" if result.loop_cpu_us_per_request else ""
    return (
        f"{result.workers} worker(s): {result.load.rps:,.0f} req/s, p50 {result.load.p50_ms:.2f} ms, p99 "
        f"{result.load.p99_ms:.2f} ms; mean micro-batch by worker: {batches}{loop} (load {result.load_average:.1f})"
    )


def describe_memory(memory: list[ProcessMemory]) -> str:
    return (
        "; ".join(
            f"{m.role} {m.pid}: RSS {m.rss_mib:.0f}, PSS {m.pss_mib:.0f}, USS {m.uss_mib:.0f} MiB" for m in memory
        )
        + f" (PSS in all {sum(m.pss_mib for m in memory):.0f} MiB)"
    )


def ab(args: argparse.Namespace, request: loadgen.Request, scratch: Path) -> None:
    """This tree and `args.base`, one worker and auto each, all up at once; runs alternate round by round."""
    from models.checkpoint import DEFAULT_CHECKPOINTS_DIR

    base_tree = scratch / "base"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_tree), args.base], cwd=REPO_ROOT, check=True)
    results: dict[tuple[str, str, int], list[WorkersResult]] = {}
    try:
        with ExitStack() as stack:
            running = {}
            for label, source in ((args.base, base_tree), ("this tree", REPO_ROOT)):
                for workers in ("1", "auto"):
                    log = scratch / f"{'base' if source == base_tree else 'this'}-{workers}.log"
                    server = servers.service(DEFAULT_CHECKPOINTS_DIR, log, source=source, workers=workers)
                    running[label, workers] = stack.enter_context(server)
                    wait_for_workers(server, workers)
            for server in running.values():
                loadgen.run_wrk(server.url, request, CONNECTIONS, 3)  # warm-up: every worker's graphs and caches
            for round_number in range(args.rounds):
                for connections in args.connections:
                    for (label, workers), server in running.items():
                        result = run_once(server, request, workers, connections, args.seconds)
                        results.setdefault((label, workers, connections), []).append(result)
                        print(
                            f"  round {round_number + 1}, {label}, concurrency {connections}: {describe(result)}",
                            flush=True,
                        )
            print("\nMemory after the runs (/proc/PID/smaps_rollup):")
            for label, workers in running:
                last = results[label, workers, args.connections[-1]][-1]
                print(f"  {label}, workers={workers}: {describe_memory(last.memory)}")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO_ROOT, check=False)
    print(f"\nMedians of {args.rounds} alternating rounds, this tree against {args.base}:")
    for connections in args.connections:
        for workers in ("1", "auto"):
            figures = {
                label: results[label, workers, connections] for label in (args.base, "this tree")
            }  # fmt: skip
            line = []
            for label, runs in figures.items():
                rps = statistics.median(r.load.rps for r in runs)
                p99 = statistics.median(r.load.p99_ms for r in runs)
                batch = statistics.median(
                    statistics.mean(r.mean_batch_by_worker.values()) for r in runs if r.mean_batch_by_worker
                )
                line.append(f"{label}: {rps:,.0f} req/s, p99 {p99:.1f} ms, mean batch per worker {batch:.1f}")
            ratio = statistics.median(r.load.rps for r in figures["this tree"]) / statistics.median(
                r.load.rps for r in figures[args.base]
            )
            print(f"  workers={workers:4s} concurrency {connections:2d}: {' | '.join(line)} | req/s ratio {ratio:.2f}x")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import MULTIPART, requests_for

    parser = argparse.ArgumentParser(prog="python benchmarks/workers.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="a revision to compare this tree with (e.g. main); without it, this tree alone")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each server with --base")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument(
        "--connections", type=lambda text: [int(c) for c in text.split(",")], default=[8, CONNECTIONS],
        help="concurrencies with --base, comma-separated (default: 8,64)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if loadgen.wrk_path() is None:
        print(loadgen.INSTALL_HINT, file=sys.stderr)
        return 2
    request = requests_for("ae-6", 6)[MULTIPART]
    print(f"{os.cpu_count()} CPU cores; load average before the run: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="digitae-workers-") as scratch_name:
        scratch = Path(scratch_name)
        if args.base:
            ab(args, request, scratch)
            return 0
        from models.checkpoint import DEFAULT_CHECKPOINTS_DIR

        for result in compare(DEFAULT_CHECKPOINTS_DIR, scratch, request, args.seconds, 2):
            print(describe(result))
            print(f"  memory: {describe_memory(result.memory)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
