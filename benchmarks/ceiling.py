"""The in-process ceiling: what the model can do without HTTP, per endpoint, in images per second.

The server's own batch functions (service.engine.inference) on full micro-batches, plus the PNG encoding each answer
carries (service.codec.imaging.png_base64), in a loop, in this process, with the server's torch thread count. No
request parsing, no JSON, no event loop: an HTTP endpoint can approach this figure but never pass it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from models.latents import sample_latents
from service.catalog.registry import ServedModel, load_registry
from service.codec.imaging import base64_image_bytes, load_image, open_image
from service.codec.png import png_base64
from service.codec.preprocessing import preprocess
from service.engine.inference import decode_batch, encode_batch, reconstruct_batch

RECONSTRUCT_NO_PNG = "reconstruct, no PNG"  # what `?fields=loss,latent` asks for: the forward pass and the losses


def example_image() -> np.ndarray:
    """The /docs example digit, preprocessed as the server preprocesses it."""
    from service.api.examples import EXAMPLE_DIGIT_PNG_BASE64

    data = base64_image_bytes(EXAMPLE_DIGIT_PNG_BASE64, max_bytes=1 << 20)
    return preprocess(load_image(open_image(data, max_bytes=1 << 20, max_pixels=1 << 20)))


def batch_work(model: ServedModel, batch: int) -> dict[str, Callable[[], None]]:
    """One full batch of each endpoint's work, as the server does it for `batch` concurrent requests."""
    images = [example_image()] * batch
    pairs = [(image, image) for image in images]
    latents = list(np.repeat(model.centroids_cpu[3].numpy()[None], batch, axis=0))

    def encode() -> None:
        encode_batch(model, images)

    def reconstruct() -> None:
        for result, (seen, _) in zip(reconstruct_batch(model, pairs), pairs, strict=True):
            png_base64(result.image)  # the answer carries the reconstruction ...
            png_base64(seen)  # ... and what the model saw

    def reconstruct_no_png() -> None:
        reconstruct_batch(model, pairs)

    def decode() -> None:
        for image in decode_batch(model, latents):
            png_base64(image)

    def sample() -> None:
        for image in decode_batch(model, list(sample_latents(model.centroids_cpu, 3, 0.5, batch, seed=0).numpy())):
            png_base64(image)

    return {
        "encode": encode,
        "reconstruct": reconstruct,
        RECONSTRUCT_NO_PNG: reconstruct_no_png,
        "decode": decode,
        "sample": sample,
    }


def images_per_second(work: Callable[[], None], batch: int, seconds: float) -> float:
    work()  # warm-up: first-call allocations
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        work()
        done += batch
    return done / elapsed


def measure(models_dir: Path, model_name: str, batch: int, seconds: float, torch_threads: int) -> dict[str, float]:
    """Images per second for each endpoint's batched work on `model_name`."""
    torch.set_num_threads(torch_threads)
    registry = load_registry(models_dir, torch.device("cpu"), skip_bad=False)
    model = registry.models[model_name]
    return {name: images_per_second(work, batch, seconds) for name, work in batch_work(model, batch).items()}
