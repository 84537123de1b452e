"""Worker loss: SIGKILL one uvicorn worker under load; the others keep answering and the worker is replaced.

Only the requests that were in flight on the killed worker can fail (their connection dies with it); the target is
under 1% of all requests. Each request opens its own connection, so the kernel hands new ones to every live worker,
and the replacement proves that it serves by holding client connections on the server's port.
"""

from __future__ import annotations

import asyncio
import signal
from urllib.parse import urlsplit

import psutil
import pytest

from tests.support import ServerProcess
from tests.support.load import run_load, serving_processes

WORKERS = 2
CONCURRENCY = 8
SECONDS = 12.0
KILL_AT_S = 3.0


# serial: it counts the seconds without an answer after a kill, which other tests running beside it would lengthen
pytestmark = [pytest.mark.server_settings(workers=WORKERS, torch_threads=1, log_level="warning"), pytest.mark.serial]


def serves_clients(worker: psutil.Process, port: int) -> bool:
    """Whether `worker` holds an established client connection on the server's port."""
    try:
        connections = worker.net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port for c in connections)


@pytest.mark.timeout(120)
def test_a_killed_worker_is_replaced_and_requests_keep_succeeding(server: ServerProcess) -> None:
    assert server.process is not None
    port = urlsplit(server.url).port
    before = serving_processes(server.process.pid)
    assert len(before) == WORKERS, f"expected {WORKERS} workers, found {[p.pid for p in before]}"
    victim = before[0]
    killed: list[float] = []
    replacements: set[int] = set()
    serving_replacements: set[int] = set()

    def every_second(elapsed: float) -> None:
        if elapsed >= KILL_AT_S and not killed:
            victim.send_signal(signal.SIGKILL)
            killed.append(elapsed)
        if killed:
            for worker in serving_processes(server.process.pid):
                if worker.pid not in {p.pid for p in before}:
                    replacements.add(worker.pid)
                    if serves_clients(worker, port):
                        serving_replacements.add(worker.pid)

    report = asyncio.run(run_load(server.url, CONCURRENCY, SECONDS, every_second, keep_alive=False))
    print(
        f"\nworker loss ({WORKERS} workers, {CONCURRENCY} clients, worker {victim.pid} killed at "
        f"{killed[0] if killed else float('nan'):.1f} s): {report.summary()}; replaced by {sorted(replacements)}"
    )

    assert killed and not victim.is_running(), "the worker was not killed"
    stalled = [s for s in range(int(killed[0]), int(report.seconds)) if not report.succeeded_by_second[s]]
    assert not stalled, f"no request succeeded during second(s) {stalled} after the kill"
    assert report.failed_fraction < 0.01, report.summary()
    assert all(kind in ("ReadError", "RemoteProtocolError", "WriteError") for kind in report.failures), (
        f"only requests in flight on the killed worker may fail, by losing their connection: {report.summary()}"
    )
    after = serving_processes(server.process.pid)
    assert len(after) == WORKERS and victim.pid not in {p.pid for p in after}, [p.pid for p in after]
    assert replacements, "no new worker process appeared"
    assert serving_replacements, "the new worker never took a client connection"
