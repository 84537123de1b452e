"""Images for requests and from answers: the /docs example digit, PNG bytes, base64, and variations."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from service.api.examples import EXAMPLE_DIGIT_PNG_BASE64


def example_digit() -> np.ndarray:
    """The /docs example digit as uint8 (28, 28), white ink on black."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(EXAMPLE_DIGIT_PNG_BASE64))).convert("L"))


def png_bytes(array: np.ndarray, mode: str | None = None, fmt: str = "PNG", **save: Any) -> bytes:
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
