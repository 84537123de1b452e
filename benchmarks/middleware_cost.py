"""What the request middleware costs per request (request id, metrics, access log), without HTTP or a network.

`python benchmarks/middleware_cost.py` runs `RequestContextMiddleware` around an app that answers at once, 30,000
times, in a fresh process per mode, and prints the process CPU per request, counting the time the background log
writer needs to write its lines (logging.shutdown drains it). Modes: `bare` (the app alone), `nolog` (log level
warning: id and metrics only) and `log` (level info: one access line per request, to /dev/null).
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from starlette.types import Message, Receive, Scope, Send

REPO_ROOT = Path(__file__).resolve().parent.parent
MODES = ("bare", "nolog", "log")
REQUESTS = 30_000


class _Route:
    path = "/v1/models/{name}/reconstruct"


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    scope["route"] = _Route
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def _ignore(message: Message) -> None:
    return None


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


async def _run(target: Any, count: int) -> None:
    for _ in range(count):
        scope = {"type": "http", "method": "POST", "path": "/v1/models/ae-6/reconstruct", "headers": []}
        await target(scope, _receive, _ignore)


def cpu_per_request_us(mode: str) -> float:
    """In this process: configure logging as the service does, then time `REQUESTS` requests."""
    from service.middleware.request_context import RequestContextMiddleware
    from service.runtime.logs import logging_config

    logging.config.dictConfig(logging_config("info" if mode == "log" else "warning"))
    for handler in logging.getLogger().handlers:
        target = getattr(handler, "target", None)
        if isinstance(target, logging.StreamHandler):
            target.setStream(open(os.devnull, "w"))  # noqa: SIM115 (closed by logging.shutdown)
    app = _app if mode == "bare" else RequestContextMiddleware(_app)
    asyncio.run(_run(app, 2_000))
    start = time.process_time()
    asyncio.run(_run(app, REQUESTS))
    logging.shutdown()
    return (time.process_time() - start) / REQUESTS * 1e6


def measure() -> dict[str, float]:
    """Microseconds of process CPU per request for each mode, each in its own process."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    figures = {}
    for mode in MODES:
        done = subprocess.run(
            [sys.executable, __file__, mode], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"middleware_cost {mode} failed: {done.stderr[-500:]}")
        figures[mode] = float(done.stdout.strip().splitlines()[-1])
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] in MODES:
        sys.path.insert(0, str(REPO_ROOT))
        print(f"{cpu_per_request_us(sys.argv[1]):.2f}")
    else:
        for name, value in measure().items():
            print(f"{name:6s} {value:6.1f} us of CPU per request")
