"""A real server process: `python -m service` on 127.0.0.1 on a free port, like production."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """`python -m service` in a subprocess; `start()` waits until /readyz says ready. `settings` become DIGITAE_*
    variables, `env` adds others. As a context manager it starts on entry and stops on exit."""

    def __init__(self, models_dir: Path, log_path: Path, env: dict[str, str] | None = None, **settings: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "DIGITAE_MODELS_DIR": str(models_dir),
            "DIGITAE_HOST": "127.0.0.1",
            "DIGITAE_PORT": str(self.port),
            "DIGITAE_DRAIN_S": "0",  # stop() at once; the drain tests set their own
            "DIGITAE_WORKERS": "1",  # the default is one per core; tests that want several say so
            **{f"DIGITAE_{key.upper()}": str(value) for key, value in settings.items()},
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ServerProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start() if self.process is None else self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


StartServer = Callable[..., ServerProcess]  # the `start_server` fixture: (models_dir, env=, timeout=, **settings)


def run_service(models_dir: Path, timeout: float = 60.0, **settings: object) -> subprocess.CompletedProcess[str]:
    """Run `python -m service` expecting it to exit (e.g. refusing a bad checkpoint)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "DIGITAE_MODELS_DIR": str(models_dir),
        "DIGITAE_PORT": str(free_port()),
        "DIGITAE_WORKERS": "1",
        **{f"DIGITAE_{key.upper()}": str(value) for key, value in settings.items()},
    }
    return subprocess.run(
        [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
