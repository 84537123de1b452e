"""The load generator: wrk, driven through post.lua, read back as numbers.

wrk (C, one thread, epoll) rather than a Python client: on this 2-core box an async Python client at 64
connections measures itself (about 110 requests/s) where wrk reaches about 2,000, so only wrk can show the
server's limits. It still shares the cores with the server; the report says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("post.lua")
INSTALL_HINT = (
    "wrk is not installed. On Debian/Ubuntu: `sudo apt-get install -y wrk` (`make bench` does it when run as root); "
    "on macOS: `brew install wrk`."
)


@dataclass(frozen=True)
class Request:
    """One benchmarked request: a path and the body POSTed to it (None: a plain GET)."""

    name: str
    path: str
    body: bytes | None = None
    content_type: str = "application/json"


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors: int  # connect, read, write, timeouts and non-2xx answers
    load_average: float = 0.0  # the machine's 1-minute load average at the end of the run (what else was running)

    def to_dict(self) -> dict[str, float | int]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    found = wrk_path()
    if found is None:
        return "missing"
    out = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    return " ".join(out.split()[:2]) if out else "wrk (version unknown)"  # "wrk 4.1.0", without the copyright


def run_wrk(base_url: str, request: Request, connections: int, seconds: float, timeout_s: int = 10) -> LoadResult:
    """Keep `connections` requests in flight for `seconds` from one wrk thread; raise if wrk cannot run."""
    found = wrk_path()
    if found is None:
        raise RuntimeError(INSTALL_HINT)
    with tempfile.NamedTemporaryFile(prefix="wrk-body-", suffix=".bin") as body_file:
        env = dict(os.environ)
        if request.body is not None:
            body_file.write(request.body)
            body_file.flush()
            env.update(WRK_BODY_FILE=body_file.name, WRK_CONTENT_TYPE=request.content_type)
        command = [
            found, "--threads", "1", "--connections", str(connections), "--duration", f"{max(1, round(seconds))}s",
            "--timeout", f"{timeout_s}s", "--script", str(SCRIPT), base_url + request.path,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + timeout_s + 30)
    marker = "WRK_JSON "
    figures = next((line[len(marker) :] for line in done.stdout.splitlines() if line.startswith(marker)), None)
    if done.returncode != 0 or figures is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    raw = json.loads(figures)
    elapsed = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return LoadResult(
        requests=raw["requests"],
        seconds=elapsed,
        rps=raw["requests"] / elapsed if elapsed else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000,
        errors=errors,
        load_average=os.getloadavg()[0],
    )


def start_wrk(base_url: str, request: Request, connections: int, seconds: float, body_dir: Path) -> subprocess.Popen:
    """wrk in the background (e.g. while a profiler samples the server); the caller waits for it."""
    found = wrk_path()
    if found is None:
        raise RuntimeError(INSTALL_HINT)
    env = dict(os.environ)
    if request.body is not None:
        body_path = body_dir / f"{request.name}.body"
        body_path.write_bytes(request.body)
        env.update(WRK_BODY_FILE=str(body_path), WRK_CONTENT_TYPE=request.content_type)
    command = [
        found, "--threads", "1", "--connections", str(connections), "--duration", f"{max(1, round(seconds))}s",
        "--script", str(SCRIPT), base_url + request.path,
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
