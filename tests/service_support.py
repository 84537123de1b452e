"""Shared by the service tests: tiny checkpoints built with the models code, and a real server process.

The checkpoints are untrained (the API does not care what the weights learned) and small, so the
tests are quick; `ServerProcess` runs `python -m service` on 127.0.0.1 on a free port, like production.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from models.checkpoint import centroids_payload, save_checkpoint
from models.networks import Architecture, build_model
from service.examples import EXAMPLE_DIGIT_PNG_BASE64

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = Architecture(channels=(4, 8, 8), hidden=16, batch_norm=True)
# The names the /docs examples use, so those examples can be run as they are.
TINY_MODELS = (("ae-2", "ae", 2), ("ae-6", "ae", 6), ("vae-2", "vae", 2))


def build_checkpoints(root: Path, models: tuple[tuple[str, str, int], ...] = TINY_MODELS, judge: bool = True) -> Path:
    """Untrained small checkpoints under `root`, with random centroids, plus a classifier (the judge)."""
    torch.manual_seed(0)
    for name, kind, latent_dim in models:
        network = build_model(kind, latent_dim, TINY).eval()
        with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode really uses them
            for module in network.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.1, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
        centroids = torch.randn(10, latent_dim)
        spread = torch.rand(10, latent_dim) + 0.1
        save_checkpoint(
            root / name,
            network,
            {"metrics": {"test_mse": 0.05, "note": "untrained, for tests"}},
            centroids=centroids_payload(centroids, spread, [100] * 10),
            history=[{"epoch": 1, "train_loss": 0.1, "val_loss": 0.1}],
        )
    if judge:
        save_checkpoint(root / "classifier", build_model("classifier"), {"metrics": {"accuracy": 0.1}})
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m service` in a subprocess; `start()` waits until /readyz says ready."""

    def __init__(self, models_dir: Path, log_path: Path, **settings: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "DIGITAE_MODELS_DIR": str(models_dir),
            "DIGITAE_HOST": "127.0.0.1",
            "DIGITAE_PORT": str(self.port),
            **{f"DIGITAE_{key.upper()}": str(value) for key, value in settings.items()},
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


def run_service(models_dir: Path, timeout: float = 60.0, **settings: object) -> subprocess.CompletedProcess[str]:
    """Run `python -m service` expecting it to exit (e.g. refusing a bad checkpoint)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "DIGITAE_MODELS_DIR": str(models_dir),
        "DIGITAE_PORT": str(free_port()),
        **{f"DIGITAE_{key.upper()}": str(value) for key, value in settings.items()},
    }
    return subprocess.run(
        [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


# -- images ----------------------------------------------------------------------------------------------


def example_digit() -> np.ndarray:
    """The /docs example digit as uint8 (28, 28), white ink on black."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(EXAMPLE_DIGIT_PNG_BASE64))).convert("L"))


def png_bytes(array: np.ndarray, mode: str | None = None, fmt: str = "PNG", **save: object) -> bytes:
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decode_png(text_or_bytes: str | bytes) -> np.ndarray:
    data = base64.b64decode(text_or_bytes) if isinstance(text_or_bytes, str) else text_or_bytes
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image)


def shifted_digits(count: int) -> list[np.ndarray]:
    """`count` distinct MNIST-like images: the example digit, rolled and dimmed in different ways."""
    base = example_digit().astype(np.float64)
    images = []
    for i in range(count):
        rolled = np.roll(base, shift=(i % 5 - 2, (i // 5) % 5 - 2), axis=(0, 1))
        images.append(np.rint(rolled * (0.5 + 0.5 * ((i * 7) % 13) / 12)).astype(np.uint8))
    return images
