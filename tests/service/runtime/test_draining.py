"""Stopping without dropping: after SIGTERM a real server reports not-ready at once, keeps serving (new connections
included) for the drain period, then exits; a client that never finishes its request cannot hold it past the grace
period."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from service.runtime.draining import GRACE_EXIT_CODE
from tests.support import ServerProcess, build_checkpoints

DRAIN_S = 2.0
GRACE_S = 5.0
DECODE = ("/v1/models/ae-2/decode", {"latent": [0.5, -1.0]})


@pytest.mark.timeout(60)
def test_sigterm_drains_then_exits(tmp_path: Path) -> None:
    models = build_checkpoints(tmp_path / "models", judge=False)
    server = ServerProcess(models, tmp_path / "server.log", drain_s=DRAIN_S, grace_s=GRACE_S).start()
    assert server.process is not None
    path, body = DECODE
    try:
        with httpx.Client(base_url=server.url, timeout=10) as kept:  # a keep-alive client from before the SIGTERM
            assert kept.post(path, json=body).status_code == 200
            server.process.send_signal(signal.SIGTERM)
            sent_at = time.monotonic()
            first_503: float | None = None
            served_while_draining = 0
            closing = []
            while time.monotonic() - sent_at < DRAIN_S - 0.5:
                ready = kept.get("/readyz")
                if first_503 is None and ready.status_code == 503:
                    first_503 = time.monotonic() - sent_at
                    assert ready.json()["error"]["code"] == "shutting_down", "its own code: not `not_ready`"
                fresh = httpx.post(server.url + path, json=body, timeout=10)  # a new connection: still accepted
                assert fresh.status_code == 200, fresh.text
                answer = kept.post(path, json=body)
                assert answer.status_code == 200, answer.text
                closing.append(answer.headers.get("connection"))
                served_while_draining += 2
                time.sleep(0.05)
        assert first_503 is not None and first_503 < 0.5, f"/readyz said 503 only {first_503} s after SIGTERM"
        assert served_while_draining > 0 and set(closing) == {"close"}, closing
        server.process.wait(timeout=GRACE_S + 5)
        stopped_after = time.monotonic() - sent_at
        print(f"\ndrain: /readyz 503 after {first_503:.3f} s, {served_while_draining} requests served, exit after "
              f"{stopped_after:.1f} s (drain {DRAIN_S} s, grace {GRACE_S} s)")  # fmt: skip
        assert DRAIN_S - 0.5 <= stopped_after < GRACE_S, stopped_after
        assert "not ready from now on" in server.log()
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_a_client_that_never_finishes_cannot_hold_the_process_past_the_grace_period(tmp_path: Path) -> None:
    models = build_checkpoints(tmp_path / "models", judge=False)
    server = ServerProcess(models, tmp_path / "server.log", drain_s=0.5, grace_s=3.0).start()
    assert server.process is not None
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as stuck:
            # headers promising a body that never comes: the request stays in flight
            stuck.sendall(
                b"POST /v1/models/ae-2/decode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            time.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            sent_at = time.monotonic()
            server.process.wait(timeout=15)
            stopped_after = time.monotonic() - sent_at
        assert stopped_after < 3.0 + 1.5, stopped_after
        assert server.process.returncode in (GRACE_EXIT_CODE, -signal.SIGTERM), server.process.returncode
    finally:
        server.stop()
