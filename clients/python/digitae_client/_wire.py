"""What goes over the wire, apart from how it is sent: images to request items, answers to results, errors.

The sync and the async client share these functions and differ only in how they send a request, so the two cannot
drift apart.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import httpx
import numpy as np
from PIL import Image

NPY = "application/x-npy"
SIDE = 28  # the service's images are 28 x 28

ImageLike = Union[str, "os.PathLike[str]", bytes, Image.Image, np.ndarray]
"""A digit: a file's path, the file's bytes (PNG, JPEG, BMP, GIF or WebP), a PIL image, or an array of pixels."""


class DigitaeError(Exception):
    """An error answer of the service: its HTTP status, the envelope's `code`, `message` and `detail`, and the
    `request_id` to quote when reporting it."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None, detail: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (request id {request_id})" if request_id else ""))
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.detail = detail


@dataclass(frozen=True)
class Encoding:
    latent: np.ndarray
    nearest_digit: int
    centroid_distances: np.ndarray
    logvar: np.ndarray | None = None  # a VAE's posterior log-variance


@dataclass(frozen=True)
class Reconstruction:
    image: np.ndarray  # 28 x 28 float32 in [0, 1]
    input: np.ndarray  # what the model saw (preprocessed, corrupted if asked)
    latent: np.ndarray
    nearest_digit: int
    loss: dict[str, float]  # mse and bce per pixel; kl and elbo (nats) for a VAE
    logvar: np.ndarray | None = None
    corruption: dict[str, Any] | None = None

    def to_pil(self) -> Image.Image:
        return to_pil(self.image)


@dataclass(frozen=True)
class Verdict:
    digit: int
    confidence: float
    probabilities: np.ndarray


@dataclass(frozen=True)
class Samples:
    images: np.ndarray  # n x 28 x 28
    latents: np.ndarray
    seed: int  # send it back to get the same samples
    digit: int | None = None
    sigma: float = 0.0


@dataclass(frozen=True)
class Path:
    images: np.ndarray  # steps x 28 x 28
    latents: np.ndarray
    t: np.ndarray


@dataclass(frozen=True)
class Call:
    """One request to make, and how to read its answer."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


# -- images in ---------------------------------------------------------------------------------------------------


def is_pixel_array(image: Any) -> bool:
    return isinstance(image, np.ndarray) and image.shape == (SIDE, SIDE)


def image_item(image: ImageLike) -> dict[str, Any]:
    """One image as a JSON request item: 28x28 arrays as `pixels`, anything else as an image file (base64)."""
    if isinstance(image, np.ndarray):
        if is_pixel_array(image):
            if image.dtype == np.uint8:
                return {"pixels": image.tolist(), "scale": "0-255"}
            return {"pixels": np.asarray(image, dtype=np.float64).tolist(), "scale": "0-1"}
        return {"image": _b64(_png_bytes(image))}
    return {"image": _b64(image_bytes(image))}


def image_bytes(image: str | os.PathLike[str] | bytes | Image.Image) -> bytes:
    """The bytes of an image file: read from a path, as given, or a PIL image saved as PNG."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    with open(image, "rb") as file:
        return file.read()


def stacked_pixels(images: Sequence[ImageLike] | np.ndarray) -> np.ndarray | None:
    """N x 28 x 28 pixels when every image is a 28x28 array (what a `.npy` bulk body holds), else None."""
    if isinstance(images, np.ndarray):
        return images if images.ndim == 3 and images.shape[1:] == (SIDE, SIDE) else None
    if all(is_pixel_array(image) for image in images):
        return np.stack([np.asarray(image) for image in images]) if images else None
    return None


def npy_body(array: np.ndarray) -> bytes:
    """A `.npy` body: uint8 pixels as they are, anything else as float32."""
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _png_bytes(array: np.ndarray) -> bytes:
    pixels = array if array.dtype == np.uint8 else np.clip(np.asarray(array) * 255 + 0.5, 0, 255).astype(np.uint8)
    return image_bytes(Image.fromarray(pixels))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- answers out -------------------------------------------------------------------------------------------------


def png_array(text: str) -> np.ndarray:
    """A base64 PNG of the answer as a float32 array in [0, 1]."""
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.asarray(image) * 255 + 0.5, 0, 255).astype(np.uint8))


def npy_array(response: httpx.Response) -> np.ndarray:
    array: np.ndarray = np.load(io.BytesIO(response.content), allow_pickle=False)
    return array


def encoding(answer: dict[str, Any]) -> Encoding:
    logvar = answer.get("logvar")
    return Encoding(
        latent=np.asarray(answer["latent"], dtype=np.float32),
        nearest_digit=int(answer["nearest_digit"]),
        centroid_distances=np.asarray(answer["centroid_distances"], dtype=np.float32),
        logvar=None if logvar is None else np.asarray(logvar, dtype=np.float32),
    )


def reconstruction(answer: dict[str, Any], images_sent_as_png: bool = True) -> Reconstruction:
    logvar = answer.get("logvar")
    loss = {key: float(value) for key, value in answer["loss"].items() if value is not None}
    return Reconstruction(
        image=png_array(answer["image"]),
        input=png_array(answer["input"]),
        latent=np.asarray(answer["latent"], dtype=np.float32),
        nearest_digit=int(answer["nearest_digit"]),
        loss=loss,
        logvar=None if logvar is None else np.asarray(logvar, dtype=np.float32),
        corruption=answer.get("corruption"),
    )


def verdict(answer: dict[str, Any]) -> Verdict:
    return Verdict(
        digit=int(answer["digit"]),
        confidence=float(answer["confidence"]),
        probabilities=np.asarray(answer["probabilities"], dtype=np.float32),
    )


def samples(answer: dict[str, Any]) -> Samples:
    return Samples(
        images=np.stack([png_array(image) for image in answer["images"]]),
        latents=np.asarray(answer["latents"], dtype=np.float32),
        seed=int(answer["seed"]),
        digit=answer.get("digit"),  # absent from a prior's answer
        sigma=float(answer.get("sigma", 1.0)),  # the prior is N(0, I)
    )


def path(answer: dict[str, Any]) -> Path:
    return Path(
        images=np.stack([png_array(image) for image in answer["images"]]),
        latents=np.asarray(answer["latents"], dtype=np.float32),
        t=np.asarray(answer["t"], dtype=np.float32),
    )


def path_end(end: int | Sequence[float] | np.ndarray | ImageLike) -> dict[str, Any]:
    """An end of an interpolation: a digit (its centroid), a latent vector, or an image."""
    if isinstance(end, int | np.integer) and not isinstance(end, bool):
        return {"digit": int(end)}
    if isinstance(end, np.ndarray) and end.ndim == 1:
        return {"latent": end.astype(float).tolist()}
    if isinstance(end, list | tuple):
        return {"latent": [float(value) for value in end]}
    return image_item(end)  # type: ignore[arg-type]


# -- errors and retries ------------------------------------------------------------------------------------------


def raise_for_error(response: httpx.Response) -> None:
    """A DigitaeError for any answer that is not a success, with the envelope's fields when it has one."""
    if response.is_success:
        return
    request_id = response.headers.get("x-request-id")
    try:
        error = response.json()["error"]
        code, message, detail = str(error["code"]), str(error["message"]), error.get("detail")
        request_id = error.get("request_id") or request_id
    except (ValueError, KeyError, TypeError):
        code, message, detail = "http_error", response.text[:500] or response.reason_phrase, None
    raise DigitaeError(response.status_code, code, message, request_id, detail)


def retry_after(response: httpx.Response, max_wait_s: float) -> float | None:
    """Seconds to wait before trying again, when the service said to (503 or 429 with Retry-After), else None."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), max_wait_s)
    except ValueError:
        return None
