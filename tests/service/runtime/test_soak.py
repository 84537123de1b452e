"""Soak: minutes of steady load at concurrency 32 against a real multi-worker server (`make soak`).

Zero requests may fail, and the resident memory of the workers (summed) may grow by at most 10% between the end of
the warm-up and the end of the run: a leak per request shows up as steady growth long before it hurts. Settings:
DIGITAE_SOAK_SECONDS (default 180), DIGITAE_SOAK_WORKERS (default 2), DIGITAE_SOAK_CONCURRENCY (default 32).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.support import ServerProcess
from tests.support.load import resident_bytes, run_load, serving_processes

SECONDS = float(os.environ.get("DIGITAE_SOAK_SECONDS", "180"))
WORKERS = int(os.environ.get("DIGITAE_SOAK_WORKERS", "2"))
CONCURRENCY = int(os.environ.get("DIGITAE_SOAK_CONCURRENCY", "32"))
WARM_UP_S = min(30.0, SECONDS / 4)
MAX_GROWTH = 0.10
MiB = 1024 * 1024

pytestmark = [
    pytest.mark.soak,
    pytest.mark.server_settings(workers=WORKERS, torch_threads=1, log_level="warning"),
]


@pytest.mark.timeout(SECONDS + 300)
def test_steady_load_fails_nothing_and_memory_stays_flat(server: ServerProcess) -> None:
    assert server.process is not None
    workers = serving_processes(server.process.pid)
    assert len(workers) == WORKERS
    samples: list[tuple[float, int]] = []
    next_print = [15.0]

    def every_second(elapsed: float) -> None:
        samples.append((elapsed, resident_bytes(workers)))
        if elapsed >= next_print[0]:
            next_print[0] += 15.0
            print(f"  {elapsed:5.0f} s  workers' RSS {samples[-1][1] / MiB:7.1f} MiB", flush=True)

    print(
        f"\nsoak: {SECONDS:.0f} s at concurrency {CONCURRENCY} against {WORKERS} workers "
        f"(warm-up {WARM_UP_S:.0f} s, {os.cpu_count()} cores shared with this load generator)"
    )
    report = asyncio.run(run_load(server.url, CONCURRENCY, SECONDS, every_second))
    warm = [rss for elapsed, rss in samples if elapsed >= WARM_UP_S]
    assert len(warm) >= 2, "the run was too short to measure memory after the warm-up"
    baseline, final, peak = warm[0], warm[-1], max(warm)
    growth = (final - baseline) / baseline
    print(f"soak: {report.summary()}")
    print(
        f"soak: workers' RSS after warm-up {baseline / MiB:.1f} MiB, at the end {final / MiB:.1f} MiB "
        f"({growth:+.1%}), peak {peak / MiB:.1f} MiB"
    )

    assert report.failed == 0, report.summary()
    assert report.succeeded > 0
    assert all(worker.is_running() for worker in workers), "a worker died during the soak"
    assert growth <= MAX_GROWTH, f"resident memory grew {growth:.1%} after the warm-up (limit {MAX_GROWTH:.0%})"
