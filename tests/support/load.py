"""Shared by the reliability tests: steady HTTP load from many concurrent clients, and the server's processes.

`run_load` keeps `concurrency` requests in flight for a while and counts every answer; anything but a 200 with the
expected content (a refused connection, a reset, a timeout, a 5xx) is a failure. `serving_processes` finds the
uvicorn workers behind a server (the server itself when it runs one worker), so a test can read their memory or
kill one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import psutil

from service.api.examples import EXAMPLE_DIGIT_PNG_BASE64
from tests.support.images import example_digit, shifted_digits

# A mix of what users send, one image per request: every request runs a forward pass.
_PIXELS = [{"pixels": image.tolist(), "scale": "0-255"} for image in shifted_digits(8)]
REQUEST_MIX: list[tuple[str, dict]] = [
    ("/v1/models/ae-6/encode", {"image": EXAMPLE_DIGIT_PNG_BASE64}),
    ("/v1/models/vae-2/reconstruct", _PIXELS[1]),
    ("/v1/models/ae-2/reconstruct", {**_PIXELS[2], "corruption": {"noise": {"std": 0.3}, "seed": 1}}),
    ("/v1/models/ae-6/decode", {"latent": [0.5, -0.3, 1.2, 0.0, -0.8, 0.4]}),
    ("/v1/models/vae-2/sample", {"digit": 3, "sigma": 0.5, "n": 1, "seed": 7}),
    (
        "/v1/models/ae-2/interpolate",
        {"from": {"digit": 1}, "to": {"pixels": example_digit().tolist(), "scale": "0-255"}, "steps": 4},
    ),
]


@dataclass
class LoadReport:
    succeeded: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)  # what went wrong -> count
    succeeded_by_second: collections.Counter[int] = field(default_factory=collections.Counter)  # whole second -> count
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def total(self) -> int:
        return self.succeeded + self.failed

    @property
    def failed_fraction(self) -> float:
        return self.failed / self.total if self.total else 0.0

    def summary(self) -> str:
        rate = self.total / self.seconds if self.seconds else 0.0
        return (
            f"{self.total} requests in {self.seconds:.1f} s ({rate:.0f}/s), {self.failed} failed "
            f"({self.failed_fraction:.3%}){': ' + dict(self.failures).__repr__() if self.failures else ''}"
        )


async def run_load(
    url: str,
    concurrency: int,
    seconds: float,
    every_second: Callable[[float], None] | None = None,
    keep_alive: bool = True,
) -> LoadReport:
    """`concurrency` clients each send REQUEST_MIX in turn (from different offsets) for `seconds`.

    Without `keep_alive` every request opens its own connection, so the kernel spreads them over all the workers
    (with keep-alive, connections stay with the worker that accepted them).

    `every_second(elapsed)`, when given, is called about once a second from the event loop (e.g. to sample memory
    or to kill a worker); it must be quick.
    """
    report = LoadReport()
    start = time.monotonic()
    deadline = start + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency if keep_alive else 0)

    async def client(http: httpx.AsyncClient, offset: int) -> None:
        turn = offset
        while time.monotonic() < deadline:
            path, body = REQUEST_MIX[turn % len(REQUEST_MIX)]
            turn += 1
            try:
                response = await http.post(path, json=body)
            except httpx.HTTPError as exc:
                report.failures[type(exc).__name__] += 1
                continue
            if response.status_code == 200 and response.headers.get("content-type", "").startswith("application/json"):
                report.succeeded += 1
                report.succeeded_by_second[int(time.monotonic() - start)] += 1
            else:
                report.failures[f"HTTP {response.status_code} {path}"] += 1

    async def ticker() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            if every_second is not None:
                every_second(time.monotonic() - start)

    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as http:
        await asyncio.gather(ticker(), *(client(http, i) for i in range(concurrency)))
    report.seconds = time.monotonic() - start
    return report


def serving_processes(server_pid: int) -> list[psutil.Process]:
    """The uvicorn workers under `server_pid`, or the server itself when it has none (one worker)."""
    master = psutil.Process(server_pid)
    workers = [child for child in master.children() if "resource_tracker" not in " ".join(_cmdline(child))]
    return workers or [master]


def resident_bytes(processes: list[psutil.Process]) -> int:
    """Resident memory summed over `processes` (one that has just exited counts 0)."""
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
