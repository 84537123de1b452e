"""Training speed: `python -m training train` with the project's defaults on the default data, timed per epoch.

The command runs as users run it, in a child process; its stderr prints one line per epoch (it is not a
terminal), and each line is timestamped as it arrives. The child's peak resident memory comes from wait4.
With `epochs` set, the run stops there and the time to the early stop is projected from the measured rate.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
EPOCH_LINE = re.compile(r" epoch (\d+)/(\d+): ")


def time_training(kind: str, latent_dim: int, out_dir: Path, epochs: int | None = None) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "training", "train", "--kind", kind, "--latent-dim", str(latent_dim),
        "--out", str(out_dir),
    ]  # fmt: skip
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGITAE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, bufsize=1)  # fmt: skip
    assert process.stderr is not None and process.stdout is not None
    epoch_times: list[float] = []
    error_lines: list[str] = []
    for line in process.stderr:
        if EPOCH_LINE.search(line):
            epoch_times.append(time.perf_counter() - start)
        else:
            error_lines.append(line.rstrip())
    summary = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed ({process.returncode}):\n" + "\n".join(error_lines[-20:]))

    name = f"{kind}-{latent_dim}"
    card = json.loads((out_dir / name / "card.json").read_text())
    per_epoch = [b - a for a, b in itertools.pairwise(epoch_times)]
    seconds_per_epoch = statistics.median(per_epoch) if per_epoch else (epoch_times[0] if epoch_times else wall)
    slowest_epoch = max(per_epoch, default=seconds_per_epoch)
    startup = max(0.0, epoch_times[0] - seconds_per_epoch) if epoch_times else 0.0  # imports, data, model
    finish = wall - epoch_times[-1] if epoch_times else 0.0
    result: dict[str, Any] = {
        "model": name,
        "command": "python -m " + " ".join(command[2:]).replace(str(out_dir), "<tmp>"),
        "epochs_run": card["epochs_run"],
        "epoch_limit": card["config"]["epochs"],
        "best_epoch": card["best_epoch"],
        "stopped_early": card["stopped_early"],
        "seconds_per_epoch": round(seconds_per_epoch, 3),  # the median: robust to a moment of contention
        "slowest_epoch_s": round(slowest_epoch, 3),
        "load_average_after": round(os.getloadavg()[0], 2),  # other work on the machine shows up here
        "startup_s": round(startup, 2),
        "finish_s": round(finish, 2),  # centroids, metrics, checkpoint
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "summary": summary.strip(),
    }
    if epochs is None:
        result["to_early_stop_s"] = round(wall, 2)
        result["to_early_stop_measured"] = True
    return result


def project_to_early_stop(result: dict[str, Any], epochs_to_stop: int) -> None:
    """For a run cut short: the time a full run would take, from the measured rate and overheads."""
    result["to_early_stop_s"] = round(
        result["startup_s"] + epochs_to_stop * result["seconds_per_epoch"] + result["finish_s"], 2
    )
    result["to_early_stop_measured"] = False
    result["to_early_stop_epochs"] = epochs_to_stop
