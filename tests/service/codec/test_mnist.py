"""The committed models through HTTP on real MNIST test images: the served answers are the in-process answers.

Runs when the real test set (../shared/data/mnist/) and the committed checkpoints are both present.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from models.checkpoint import DEFAULT_CHECKPOINTS_DIR, list_checkpoints, load_checkpoint, read_card
from models.networks import AUTOENCODER_KINDS
from tests.support import ServerProcess, b64, decode_png, png_bytes
from training.data import load_idx

COUNT = 1000
BATCH = 64


def served_checkpoints(root: Path) -> list[Path]:
    return [path for path in list_checkpoints(root) if read_card(path)["kind"] in AUTOENCODER_KINDS]


@pytest.fixture(scope="module")
def committed() -> list[Path]:
    found = served_checkpoints(DEFAULT_CHECKPOINTS_DIR)
    if not found:
        pytest.skip("no committed auto-encoder checkpoints in models/checkpoints/")
    return found


@pytest.fixture(scope="module")
def mnist(mnist_test_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    digits = load_idx(mnist_test_dir / "t10k-images-idx3-ubyte.gz", mnist_test_dir / "t10k-labels-idx1-ubyte.gz")
    return digits.images[:COUNT], digits.labels[:COUNT]


pytestmark = pytest.mark.server_settings(max_batch=BATCH, log_level="warning")


@pytest.fixture(scope="module")
def served_models(committed: list[Path]) -> Path:
    return DEFAULT_CHECKPOINTS_DIR


def in_process_predictions(checkpoint_dir: Path, images: np.ndarray) -> np.ndarray:
    """Nearest centroid of each image's latent, computed directly with the models code."""
    checkpoint = load_checkpoint(checkpoint_dir)
    assert checkpoint.centroids is not None
    with torch.inference_mode():
        latents = checkpoint.network.embed(torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1))
        distances = torch.linalg.vector_norm(latents[:, None, :] - checkpoint.centroids[None], dim=-1)
    return distances.argmin(dim=1).numpy()


def http_predictions(client: httpx.Client, name: str, images: np.ndarray) -> np.ndarray:
    predictions = []
    for start in range(0, len(images), BATCH):
        batch = [{"image": b64(png_bytes(image))} for image in images[start : start + BATCH]]
        response = client.post(f"/v1/models/{name}/encode/batch", json={"images": batch})
        assert response.status_code == 200, response.text
        predictions += [result["nearest_digit"] for result in response.json()["results"]]
    return np.array(predictions)


def test_nearest_centroid_accuracy_over_http_matches_in_process(
    server: ServerProcess, committed: list[Path], mnist: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for checkpoint_dir in committed:
            expected = in_process_predictions(checkpoint_dir, images)
            served = http_predictions(client, checkpoint_dir.name, images)
            assert (served == labels).mean() == (expected == labels).mean(), checkpoint_dir.name


def test_mnist_images_reach_the_model_unchanged(server: ServerProcess, mnist: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = mnist
    name = served_checkpoints(DEFAULT_CHECKPOINTS_DIR)[0].name
    batch = [{"image": b64(png_bytes(image))} for image in images[:BATCH]]
    response = httpx.post(f"{server.url}/v1/models/{name}/reconstruct/batch", json={"images": batch}, timeout=120)
    assert response.status_code == 200, response.text
    for result, image in zip(response.json()["results"], images[:BATCH], strict=True):
        np.testing.assert_array_equal(decode_png(result["input"]), image)
