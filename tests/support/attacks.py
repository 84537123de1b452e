"""Shared by the attack tests (tests/service/*/test_bounds_*.py): what an attack costs the server,
measured from outside.

`HealthProbe` times GET /healthz in a loop while an attack runs (the event loop's responsiveness, as a container
healthcheck sees it); `RssSampler` follows the server's resident memory; `raw` opens a plain socket for requests
no HTTP client would send.
"""

from __future__ import annotations

import io
import socket
import statistics
import threading
import time
from types import TracebackType

import httpx
import numpy as np
import psutil


class HealthProbe:
    """GET /healthz every `interval` s (one keep-alive connection, reopened if the server closed it), in a thread,
    while the `with` block runs."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        self.url = url
        self.interval = interval
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while True:  # at least once, however short the block
                start = time.perf_counter()
                try:
                    status = client.get("/healthz").status_code
                    if status != 200:
                        self.failures.append(f"status {status}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.latencies.append(time.perf_counter() - start)
                if self._stop.wait(self.interval):
                    break

    @property
    def worst(self) -> float:
        return max(self.latencies)

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        assert self.latencies, "the probe never got an answer"


class RssSampler:
    """The server's resident memory (with its worker processes), sampled every 10 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        try:
            return sum(p.memory_info().rss for p in [self.process, *self.process.children(recursive=True)])
        except psutil.NoSuchProcess:
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(0.01)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / 2**20

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def raw(
    port: int, timeout: float = 10.0, source: str | None = None, receive_buffer: int | None = None
) -> socket.socket:
    """A plain TCP connection to the server, from the loopback address `source` (127.0.0.2, ...: another client as
    the server sees it) and with a small receive buffer (`receive_buffer` bytes: a client that reads slowly)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if source is not None:
            sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, BrokenPipeError):
        pass
    return b"".join(chunks)


def status_of(response: bytes) -> int | None:
    """The status code of a raw HTTP/1.1 response, or None when there is none."""
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response[9:12])


def npy_request(path: str, rows: int, *, source: str | None = None) -> bytes:
    """A bulk request for `rows` uint8 images as .npy, answered as .npy (float32: 3 KB a row)."""
    body = io.BytesIO()
    np.save(body, np.zeros((rows, 28, 28), np.uint8))
    head = (
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-npy\r\naccept: application/x-npy\r\n"
        f"content-length: {body.getbuffer().nbytes}\r\n\r\n"
    ).encode()
    return head + body.getvalue()
