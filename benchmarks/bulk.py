"""Bulk work: a whole array of digits in one `application/x-npy` request, against its tensor work alone.

The images are the real 10,000-image MNIST test set when ../shared/data/mnist is beside the repository, else 10,000
stand-ins (the /docs example digit, shifted and dimmed: the speed of a network does not depend on what it sees).
Each of encode, reconstruct and decode gets the whole array in one request (`Accept: application/x-npy`); the time
is from the first byte sent to the last byte received. The ceiling is the operation's tensor work alone (the graph
the server runs, service/engine/graphs.py), in this process, on batches of the micro-batch size with the server's torch
thread count: no decoding, no HTTP.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"
OPERATIONS = ("encode", "reconstruct", "decode")
COUNT = 10_000


@dataclass(frozen=True)
class BulkResult:
    operation: str
    images: int
    seconds: float  # the fastest of the repeats
    images_per_s: float
    ceiling_images_per_s: float

    @property
    def share(self) -> float:
        return self.images_per_s / self.ceiling_images_per_s if self.ceiling_images_per_s else float("nan")

    def to_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "share_of_ceiling": round(self.share, 3)}


def test_images() -> tuple[np.ndarray, str]:
    """(10000, 28, 28) uint8 digits, and where they come from."""
    images_file = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    if images_file.exists():
        from training.data import load_idx

        digits = load_idx(images_file, MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
        return np.ascontiguousarray(digits.images.reshape(-1, 28, 28).astype(np.uint8)), "the real MNIST test set"
    from benchmarks.ceiling import example_image

    base = example_image()
    images = [np.roll(base, (i % 5 - 2, i // 5 % 5 - 2), axis=(0, 1)) * (0.5 + (i % 13) / 24) for i in range(COUNT)]
    return np.rint(np.stack(images) * 255).astype(np.uint8), "10,000 stand-ins (../shared/data/mnist is absent)"


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def bodies(images: np.ndarray, latent_dim: int) -> dict[str, bytes]:
    latents = np.random.default_rng(0).normal(size=(len(images), latent_dim)).astype(np.float32)
    return {"encode": npy(images), "reconstruct": npy(images), "decode": npy(latents)}


def post(base_url: str, model: str, operation: str, body: bytes) -> float:
    """Seconds for one bulk request, answered as one .npy; raises on anything but a whole 200 answer."""
    start = time.perf_counter()
    response = httpx.post(
        f"{base_url}/v1/models/{model}/{operation}/batch",
        content=body,
        headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"},
        timeout=300,
    )
    seconds = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"bulk {operation}: {response.status_code} {response.text[:300]}")
    np.load(io.BytesIO(response.content), allow_pickle=False)  # the whole array came back
    return seconds


def measure(base_url: str, model: str, images: np.ndarray, latent_dim: int, repeats: int) -> dict[str, float]:
    """Seconds (the fastest of `repeats`) for each operation on the whole array, after one request of each that is not
    timed: a worker's first request of an operation builds its graphs for the batch sizes it meets (once per worker;
    for encode, whose tensor work is the lightest, that once cost more than the 10,000 images), and `forward_ceiling`,
    which this is compared with, is measured warm too."""
    payloads = bodies(images, latent_dim)
    for op in OPERATIONS:
        post(base_url, model, op, payloads[op])
    return {op: min(post(base_url, model, op, payloads[op]) for _ in range(repeats)) for op in OPERATIONS}


def keep_busy(base_url: str, model: str, operation: str, body: bytes, seconds: float) -> threading.Thread:
    """Bulk requests one after another for `seconds`, in a thread (while a profiler samples the server)."""

    def run() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            post(base_url, model, operation, body)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def forward_ceiling(
    models_dir: Path, model_name: str, batch: int, seconds: float, torch_threads: int
) -> dict[str, float]:
    """Images per second of each operation's tensor work alone (the graph the server runs: the forward pass, and the
    losses and centroid distances it returns), on batches of `batch`."""
    from service.catalog.registry import load_registry
    from service.engine.inference import _graph

    torch.set_num_threads(torch_threads)
    model = load_registry(models_dir, torch.device("cpu"), skip_bad=False).models[model_name]
    x = torch.rand(batch, 1, 28, 28)
    z = torch.randn(batch, model.latent_dim)
    work: dict[str, Callable[[], object]] = {
        "encode": lambda: _graph(model, "encode")(x),
        "reconstruct": lambda: _graph(model, "reconstruct")(x, x),
        "decode": lambda: _graph(model, "decode")(z),
    }
    rates = {}
    with torch.inference_mode():
        for name, step in work.items():
            step()
            done, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                step()
                done += batch
            rates[name] = done / elapsed
    return rates
