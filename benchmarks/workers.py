"""Every core serving: one worker against `DIGITAE_WORKERS=auto`, and what the event loop spends per request.

`python benchmarks/workers.py` serves the committed checkpoints twice, with one worker and with `auto` (one per
usable core), and drives a reconstruct (the /docs example digit as a multipart upload, the default answer with two
PNGs) at concurrency 64 with wrk against each. It prints requests/s, p50 and p99, the mean micro-batch of each
worker (from /metrics: digitae_worker_microbatch_items / digitae_worker_microbatches) and, for one worker, the CPU
its main thread (the event loop) spent per request, read from /proc before and after the run.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == REPO_ROOT / "benchmarks":
    sys.path[0] = str(REPO_ROOT)

import httpx  # noqa: E402

from benchmarks import loadgen, servers  # noqa: E402
from service.settings import usable_cpus  # noqa: E402

CONNECTIONS = 64


@dataclass(frozen=True)
class WorkersResult:
    workers: int
    load: loadgen.LoadResult
    mean_batch_by_worker: dict[str, float]  # pid ("" with one worker) -> mean items per forward pass
    loop_cpu_us_per_request: float | None  # the main thread's CPU, one worker only


def thread_cpu_s(pid: int, tid: int) -> float:
    """User + system CPU seconds of one thread, from /proc/PID/task/TID/stat."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def mean_batches(metrics: str, model: str, operation: str) -> dict[str, float]:
    samples: dict[str, dict[str, float]] = {}
    for name in ("digitae_worker_microbatch_items", "digitae_worker_microbatches"):
        for line in metrics.splitlines():
            if line.startswith(name + "{") and f'model="{model}"' in line and f'operation="{operation}"' in line:
                pid = re.search(r'pid="(\d+)"', line)
                samples.setdefault(pid.group(1) if pid else "", {})[name] = float(line.rsplit(" ", 1)[1])
    return {
        pid: values["digitae_worker_microbatch_items"] / values["digitae_worker_microbatches"]
        for pid, values in samples.items()
        if values.get("digitae_worker_microbatches")
    }


def measure(
    models_dir: Path, scratch: Path, request: loadgen.Request, workers: str, run_s: float, warmup_s: float
) -> WorkersResult:
    with servers.service(models_dir, scratch / f"workers-{workers}.log", workers=workers) as server:
        deadline = time.monotonic() + 60
        count = usable_cpus() if workers == "auto" else 1
        while server.log_tail(100_000).count("Application startup complete") < count:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        loadgen.run_wrk(server.url, request, CONNECTIONS, max(warmup_s, 3))  # every worker warms its own graphs
        started = thread_cpu_s(server.pid, server.pid) if workers == "1" else None
        load = loadgen.run_wrk(server.url, request, CONNECTIONS, run_s)
        loop_cpu = None
        if started is not None and load.requests:
            loop_cpu = (thread_cpu_s(server.pid, server.pid) - started) / load.requests * 1e6
        after = httpx.get(server.url + "/metrics", timeout=30).text
        model, operation = request.path.split("/")[3], request.path.split("/")[4].split("?")[0]
        means = mean_batches(after, model, operation)  # since start: the short warm-up's batches count a little
        return WorkersResult(len(means) or 1, load, means, loop_cpu)


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
        f"{result.load.p99_ms:.2f} ms; mean micro-batch by worker: {batches}{loop}"
    )


if __name__ == "__main__":
    from benchmarks.run import MULTIPART, requests_for

    with tempfile.TemporaryDirectory(prefix="digitae-workers-") as scratch_name:
        for result in compare(
            REPO_ROOT / "models" / "checkpoints", Path(scratch_name), requests_for("ae-6", 6)[MULTIPART], 8, 2
        ):
            print(describe(result))
