"""Signals against a real `python -m service` (finding 6 of the "bounded by construction" issue): SIGHUP never
stops a serving process, one worker or several; SIGTERM lets requests in flight finish, then exits by the
shutdown deadline whatever a client does.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import ServerProcess, build_checkpoints
from tests.support.attacks import raw, read_until_closed, status_of

SHUTDOWN_S = 3.0  # room for the finishing request on a loaded machine (1.5 s was cut once: a 503, rightly)
DECODE_HEAD = (
    b"POST /v1/models/ae-6/decode HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
)
BODY = b'{"latent": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}'


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoints(tmp_path_factory.mktemp("bounds-signals") / "models")


def test_sighup_does_not_stop_a_single_worker_or_its_requests(models: Path, tmp_path: Path) -> None:
    """Was: SIGHUP killed a one-worker server at once, cutting the requests in flight."""
    server = ServerProcess(models, tmp_path / "server.log").start()
    try:
        assert server.process is not None
        with raw(server.port) as sock:
            sock.sendall(DECODE_HEAD % len(BODY) + BODY[:10])  # a request in flight
            time.sleep(0.2)
            server.process.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            sock.sendall(BODY[10:])
            sock.settimeout(10)
            assert status_of(sock.recv(65536)) == 200
        assert server.process.poll() is None
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert "SIGHUP received" in server.log()
    finally:
        server.stop()


def test_sighup_reaches_every_worker_and_restarts_none(models: Path, tmp_path: Path) -> None:
    """With several workers uvicorn's supervisor used to restart them all on SIGHUP; now it passes SIGHUP on."""
    server = ServerProcess(models, tmp_path / "server.log", workers=2).start(timeout=120)
    try:
        assert server.process is not None
        deadline = time.monotonic() + 60
        while server.log().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # both workers serving (start() returns when the first one answers)
        supervisor = psutil.Process(server.process.pid)
        workers = {p.pid for p in supervisor.children() if "resource_tracker" not in " ".join(p.cmdline())}
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while server.log().count("SIGHUP received") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.log().count("SIGHUP received") == 3, server.log()[-2000:]  # the supervisor and both workers
        time.sleep(0.5)
        assert {p.pid for p in supervisor.children() if "resource_tracker" not in " ".join(p.cmdline())} == workers
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()


def test_sigterm_finishes_requests_in_flight_then_exits_by_the_deadline(models: Path, tmp_path: Path) -> None:
    """Was: a client holding a half-sent body kept the process alive (and refusing connections) indefinitely.
    The body timeout is set long here, so only the shutdown deadline can end it."""
    server = ServerProcess(models, tmp_path / "server.log", shutdown_timeout_s=SHUTDOWN_S, body_timeout_s=300)
    server.start()
    try:
        assert server.process is not None
        with raw(server.port) as stuck, raw(server.port) as finishing:
            stuck.sendall(DECODE_HEAD % 1000 + b'{"latent"')  # never completed
            finishing.sendall(DECODE_HEAD % len(BODY) + BODY[:10])  # completed after SIGTERM
            time.sleep(0.3)
            start = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            finishing.sendall(BODY[10:])
            assert status_of(read_until_closed(finishing)) == 200  # drained: answered, then closed
            with pytest.raises(OSError):
                raw(server.port, timeout=2)  # no new connections while stopping
            assert status_of(read_until_closed(stuck)) == 503  # at the deadline, answered and closed
            server.process.wait(timeout=SHUTDOWN_S + 10)
            elapsed = time.monotonic() - start
        assert elapsed < SHUTDOWN_S + 3, f"exited {elapsed:.1f} s after SIGTERM"
        assert server.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done
        assert "Traceback" not in server.log()
    finally:
        server.stop()
