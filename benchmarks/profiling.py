"""Where the server's time goes under load: py-spy samples the running server, summarised in three tables.

- by thread: the event loop (HTTP, parsing, JSON, PNG) against the inference thread (the forward passes);
- by digitae function: each sample is charged to the innermost frame in service/ (what that function and
  everything it calls cost; middleware that merely wraps the app does not count), else to the library the thread
  was in (uvicorn, starlette, asyncio, ...);
- by leaf function: where the CPU actually was (self time).

py-spy samples from outside the process (no instrumentation, `--nonblocking`), so the server runs at its normal speed.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = "py-spy is not installed (`pip install py-spy`, part of the dev extras): no profile"
FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^():]+)(?::\d+)?\)$")
# digitae frames that only wrap the whole app (ASGI middleware, the entry point): time under them is not theirs
WRAPPERS = re.compile(r"(__call__|send_with_id|capped_receive|^main|^<module>)$")
LIBRARIES = [  # file prefix -> what to call it, for samples outside digitae's code
    ("torch/", "torch"),
    ("numpy/", "numpy"),
    ("PIL/", "Pillow"),
    ("uvicorn/", "uvicorn (HTTP server)"),
    ("h11/", "uvicorn (HTTP server)"),
    ("httptools/", "uvicorn (HTTP server)"),
    ("starlette/", "starlette/fastapi (framework)"),
    ("fastapi/", "starlette/fastapi (framework)"),
    ("pydantic", "pydantic"),
    ("asyncio/", "asyncio (event loop)"),
    ("uvloop/", "asyncio (event loop)"),
    ("concurrent/", "thread pool hand-off"),
    ("threading.py", "thread pool hand-off"),
    ("logging/", "logging"),
    ("prometheus_client/", "prometheus_client (metrics)"),
    ("multipart/", "python-multipart"),
]


def py_spy_path() -> str | None:
    beside_python = Path(sys.executable).with_name("py-spy")
    return str(beside_python) if beside_python.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    samples: int = 0
    threads: collections.Counter[str] = field(default_factory=collections.Counter)
    owners: collections.Counter[str] = field(default_factory=collections.Counter)
    leaves: collections.Counter[str] = field(default_factory=collections.Counter)

    def table(self, counter: collections.Counter[str], top: int) -> list[tuple[str, float]]:
        return [(name, count / self.samples) for name, count in counter.most_common(top)]

    def to_dict(self, top: int = 12) -> dict[str, object]:
        return {
            "samples": self.samples,
            "threads": dict(self.table(self.threads, top)),
            "by_digitae_function": dict(self.table(self.owners, top)),
            "by_leaf_function": dict(self.table(self.leaves, top)),
        }

    def lines(self, top: int = 10) -> list[str]:
        out = [f"    {self.samples} samples of busy threads"]
        for title, counter in (
            ("by thread", self.threads),
            ("by digitae function (including what it calls)", self.owners),
            ("by leaf function (self time)", self.leaves),
        ):
            out.append(f"    {title}:")
            out += [f"      {share:6.1%}  {name}" for name, share in self.table(counter, top)]
        return out


def record(pid: int, seconds: float, output: Path, rate: int = 250) -> Profile | None:
    """Sample process `pid` for `seconds`; None when py-spy is missing or cannot attach."""
    found = py_spy_path()
    if found is None:
        return None
    command = [
        found, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate),
        "--format", "raw", "--output", str(output), "--nonblocking", "--threads",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not output.exists():
        print(f"  py-spy could not sample the server: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return summarise(output.read_text())


def summarise(raw: str) -> Profile:
    """Fold py-spy's raw output (`thread (id): name;frame;frame;... count` per line) into the three tables."""
    profile = Profile()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        parsed = [m.groupdict() for m in map(FRAME.match, frames) if m]
        if not parsed:
            continue
        profile.samples += count
        profile.threads[_thread_name(thread)] += count
        profile.owners[_owner(parsed)] += count
        leaf = parsed[-1]
        profile.leaves[f"{leaf['function']} ({leaf['file']})"] += count
    return profile


def _thread_name(label: str) -> str:
    """'thread (123): digitae-inference_0' -> 'digitae-inference'; the main thread runs the event loop."""
    name = label.split(":", 1)[1].strip() if ":" in label else label
    name = re.sub(r"_\d+$", "", name)
    return "event loop (main thread)" if name in ("", "MainThread") or name.startswith("thread (") else name


def _owner(frames: list[dict[str, str]]) -> str:
    for frame in reversed(frames):
        if frame["file"].startswith("service/") and not WRAPPERS.search(frame["function"]):
            return f"{frame['file']}: {frame['function']}"
    leaf_file = frames[-1]["file"]
    if leaf_file.startswith("service/"):  # in a wrapper's own code
        return f"{leaf_file}: {frames[-1]['function']}"
    return next((name for prefix, name in LIBRARIES if leaf_file.startswith(prefix)), f"other ({leaf_file})")
