"""What FastAPI's dispatch costs per request against the fast dispatch, without HTTP or a network.

`python benchmarks/dispatch_cost.py` builds the app (`create_app`, log level warning) with one more route under /v1
that takes only the `Request` and answers at once, sends it 20,000 requests through the whole middleware stack, and
prints the process CPU per request: `fast` (DIGITAE_FAST_DISPATCH=true, the default) and `fastapi` (false), each in
a fresh process, three rounds alternating, medians. The difference is what the fast dispatch saves the event loop
on every request to an inference route, before any decoding, model or encoding.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fastapi import APIRouter, Request  # at the top: the route's annotations are resolved in this module's globals
from starlette.responses import Response
from starlette.types import ASGIApp, Message

REPO_ROOT = Path(__file__).resolve().parent.parent
MODES = ("fast", "fastapi")
REQUESTS = 20_000
ROUNDS = 3


def build(fast: bool) -> ASGIApp:
    from service.app import create_app
    from service.settings import Settings

    router = APIRouter(prefix="/v1")

    @router.post("/models/{name}/nothing")
    async def nothing(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    app = create_app(Settings(fast_dispatch=fast, log_level="warning", reload_interval_s=0))
    app.include_router(router)
    return app


async def _ignore(message: Message) -> None:
    return None


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _scope() -> dict[str, object]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/models/ae-6/nothing",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
    }


async def _run(app: ASGIApp, count: int) -> None:
    for _ in range(count):
        await app(_scope(), _receive, _ignore)


async def _check(app: ASGIApp) -> None:
    """The route answers 200 (an error answer would time the error path instead)."""
    sent: list[Message] = []

    async def keep(message: Message) -> None:
        sent.append(message)

    await app(_scope(), _receive, keep)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"the route answered {sent[0]['status']}: {sent[-1].get('body', b'')[:300]!r}")


def cpu_per_request_us(mode: str) -> float:
    logging.getLogger().setLevel(logging.WARNING)  # no access lines: the dispatch alone
    app = build(mode == "fast")
    asyncio.run(_check(app))
    asyncio.run(_run(app, 2_000))
    start = time.process_time()
    asyncio.run(_run(app, REQUESTS))
    return (time.process_time() - start) / REQUESTS * 1e6


def measure() -> dict[str, float]:
    """Median microseconds of process CPU per request for each mode, each run in its own process."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(ROUNDS):
        for mode in MODES:
            done = subprocess.run(
                [sys.executable, __file__, mode], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300
            )
            if done.returncode != 0:
                raise RuntimeError(f"dispatch_cost {mode} failed: {done.stderr[-500:]}")
            runs[mode].append(float(done.stdout.strip().splitlines()[-1]))
    return {mode: statistics.median(figures) for mode, figures in runs.items()}


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] in MODES:
        sys.path.insert(0, str(REPO_ROOT))
        print(f"{cpu_per_request_us(sys.argv[1]):.2f}")
    else:
        figures = measure()
        for name, value in figures.items():
            print(f"{name:8s} {value:6.1f} us of CPU per request")
        print(f"saved    {figures['fastapi'] - figures['fast']:6.1f} us per request")
