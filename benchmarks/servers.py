"""The servers under test, run as users run them: `python -m service`, and the no-op app for the HTTP floor.

Each runs in its own process group on 127.0.0.1 and a free port, logging to a file. `stop()` returns the
process's peak resident memory as the kernel counted it (wait4's ru_maxrss): the true peak under load, not a sample.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
NOOP_APP = Path(__file__).resolve().with_name("noop_app.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(
        self, command: list[str], env: dict[str, str], ready_path: str, log_path: Path, cwd: Path = REPO_ROOT
    ) -> None:
        self.cwd = cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = command
        self.env = {"DIGITAE_DRAIN_S": "0", **env, "DIGITAE_PORT": str(self.port)}  # no balancer: stop at once
        self.ready_path = ready_path
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 120) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server was not ready within {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_mib(self) -> float:
        """Resident memory now, summed over the server and its worker processes."""
        try:
            root = psutil.Process(self.pid)
            return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
        except psutil.NoSuchProcess:
            return 0.0

    def stop(self) -> float:
        """Stop gracefully (SIGTERM), then by force; the peak RSS of the server process in MiB (0 if unknown)."""
        if self.process is None or self.process.returncode is not None:
            return 0.0
        os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:
            pid, _, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.process.returncode = 0  # reaped here, so Popen must not wait for it again
                break
            if time.monotonic() > deadline:
                os.killpg(self.pid, signal.SIGKILL)
                _, _, usage = os.wait4(self.pid, 0)
                self.process.returncode = -signal.SIGKILL
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):  # anything left in the group (workers of a killed master)
            os.killpg(self.pid, signal.SIGKILL)
        return usage.ru_maxrss / 1024  # KiB on Linux

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def clean_env() -> dict[str, str]:
    """This environment without any DIGITAE_* setting, and the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGITAE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def service(models_dir: Path, log_path: Path, source: Path = REPO_ROOT, **settings: object) -> Server:
    """`python -m service` (the code in `source`: this tree, or a checkout of another revision) with its defaults,
    except the given settings (`microbatch_enabled=False`, ...) and one worker unless `workers` is given: the
    figures are per worker (benchmarks/workers.py sets `auto`), and a profile follows the worker's pid."""
    settings = {"workers": 1, **settings}
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(source), *env["PYTHONPATH"].split(os.pathsep)[1:]])
    env.update(DIGITAE_MODELS_DIR=str(models_dir), DIGITAE_HOST="127.0.0.1")
    for name, value in settings.items():
        env[f"DIGITAE_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return Server([sys.executable, "-m", "service"], env, "/readyz", log_path, cwd=source)


def noop(log_path: Path, workers: int = 1, server: str = "bounded") -> Server:
    """The no-op FastAPI app, served as the service is (`bounded`), or by plain uvicorn (`plain`)."""
    env = {**clean_env(), "DIGITAE_WORKERS": str(workers), "DIGITAE_NOOP_SERVER": server}
    return Server([sys.executable, str(NOOP_APP)], env, "/healthz", log_path)


def digitae_floor(models_dir: Path, log_path: Path) -> Server:
    """digitae's own app with a no-op inference-shaped route (`POST /v1/models/{name}/noop`), one worker."""
    env = {
        **clean_env(),
        "DIGITAE_NOOP_SERVER": "digitae",
        "DIGITAE_MODELS_DIR": str(models_dir),
        "DIGITAE_WORKERS": "1",
    }
    env["DIGITAE_HOST"] = "127.0.0.1"
    return Server([sys.executable, str(NOOP_APP)], env, "/readyz", log_path)
