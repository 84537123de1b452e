"""The CUDA path end to end, for a machine with a GPU (CI has none): `python scripts/cuda_check.py`.

1. Training on `cuda`: a VAE for a few epochs; the card must say it trained on cuda, and the checkpoint must load.
2. Serving on `cuda` beside serving on `cpu`: two real `python -m service` processes over the committed checkpoints;
   encode, reconstruct, decode, sample and interpolate must give the same answers within float tolerance.

Exit 0: everything agreed; 1: a difference (printed); 3: no CUDA device here.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-3  # cuDNN convolutions and TF32 differ from the CPU's kernels in the low bits


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(device: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "DIGITAE_DEVICE": device, "DIGITAE_PORT": str(port), "DIGITAE_LOG_LEVEL": "warning"}
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"the {device} server exited with {process.returncode}")
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"the {device} server was not ready in 120 s")


def numbers(value: object) -> list[float]:
    """Every number in an answer, images decoded to pixels, in a fixed order."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, str):
        try:
            pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(value, validate=True))), dtype=np.float64)
        except Exception:
            return []
        return list((pixels / 255.0).ravel())
    if isinstance(value, list):
        return [x for item in value for x in numbers(item)]
    if isinstance(value, dict):
        return [x for key in sorted(value) for x in numbers(value[key])]
    return []


def requests_to_compare() -> list[tuple[str, dict[str, object]]]:
    image = base64.b64encode((REPO / "examples" / "two.png").read_bytes()).decode()
    calls: list[tuple[str, dict[str, object]]] = []
    for model, dim in (("ae-2", 2), ("ae-6", 6), ("vae-2", 2), ("vae-6", 6)):
        calls += [
            (f"/v1/models/{model}/encode", {"image": image}),
            (f"/v1/models/{model}/reconstruct", {"image": image}),
            (f"/v1/models/{model}/decode", {"latent": [0.5] * dim}),
            (f"/v1/models/{model}/sample", {"digit": 3, "sigma": 0.5, "n": 4, "seed": 1}),
            (f"/v1/models/{model}/interpolate", {"from": {"digit": 1}, "to": {"digit": 7}, "steps": 6}),
        ]
    return calls


def check_training() -> list[str]:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [sys.executable, "-m", "training", "train", "--kind", "vae", "--latent-dim", "2", "--epochs", "3",
             "--device", "cuda", "--out", out, "--quiet"],
            cwd=REPO, check=True,
        )  # fmt: skip
        card = json.loads((Path(out) / "vae-2" / "card.json").read_text())
        device = str(card.get("device", ""))
        print(f"training: 3 epochs on {device}, metrics {json.dumps(card.get('metrics', {}))[:200]}")
        return [] if device.startswith("cuda") else [f"the card says it trained on {device!r}, not cuda"]


def check_serving() -> list[str]:
    problems: list[str] = []
    servers = [start_server("cuda"), start_server("cpu")]
    try:
        (_, cuda_url), (_, cpu_url) = servers
        for path, body in requests_to_compare():
            answers = [httpx.post(url + path, json=body, timeout=60) for url in (cuda_url, cpu_url)]
            statuses = [answer.status_code for answer in answers]
            if statuses != [200, 200]:
                problems.append(f"{path}: statuses {statuses}: {answers[0].text[:200]}")
                continue
            cuda_numbers, cpu_numbers = (np.array(numbers(answer.json())) for answer in answers)
            worst = float(np.max(np.abs(cuda_numbers - cpu_numbers))) if cuda_numbers.size else 0.0
            # Images are 8-bit: one step of rounding (1/255) is the same picture.
            ok = cuda_numbers.shape == cpu_numbers.shape and worst <= max(TOLERANCE, 1.01 / 255)
            print(f"{'ok  ' if ok else 'DIFF'} {path}: {cuda_numbers.size} numbers, largest difference {worst:.2e}")
            if not ok:
                problems.append(f"{path}: cuda and cpu differ by {worst:.3g}")
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=30)
    return problems


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to check")
        return 3
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    problems = check_training() + check_serving()
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("the CUDA path agrees with the CPU" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
