"""Each operation once, as a plan that yields the requests it needs and returns the result (no I/O here).

`Client` runs a plan by sending each request with httpx.Client, `AsyncClient` with httpx.AsyncClient; both read the
answers with the same code. One image goes to the operation itself; several go to its `/batch` operation, in JSON
batches of at most `batch_size`, or in one `.npy` bulk request when every image is a 28x28 array and they are more
than a batch.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, TypeVar

import httpx
import numpy as np

from digitae_client import _wire as wire
from digitae_client._wire import NPY, Call, ImageLike

T = TypeVar("T")
Plan = Generator[Call, httpx.Response, T]


def _json(response: httpx.Response) -> Any:
    wire.raise_for_error(response)
    return response.json()


def _is_batch(images: ImageLike | Sequence[ImageLike]) -> bool:
    if isinstance(images, np.ndarray):
        return images.ndim == 3
    return isinstance(images, list | tuple)


def _image_results(
    path: str, images: Sequence[ImageLike] | np.ndarray, batch_size: int, options: dict[str, Any] | None = None
) -> Plan[list[dict[str, Any]]]:
    """The JSON results of a batch operation (`path`) on several images: one `.npy` bulk request when they are all
    28x28 arrays and more than a batch (and no `options`, which a `.npy` body cannot carry), else JSON batches of at
    most `batch_size`, each with the `options`."""
    pixels = wire.stacked_pixels(images)
    if pixels is not None and len(pixels) > batch_size and not options:
        response = yield Call("POST", path, content=wire.npy_body(pixels), headers={"Content-Type": NPY})
        return list(_json(response)["results"])
    results: list[dict[str, Any]] = []
    items = list(images)
    for start in range(0, len(items), batch_size):
        body = {"images": [wire.image_item(image) for image in items[start : start + batch_size]], **(options or {})}
        results += _json((yield Call("POST", path, json=body)))["results"]
    return results


def encode(
    model: str, images: ImageLike | Sequence[ImageLike], batch_size: int
) -> Plan[wire.Encoding | list[wire.Encoding]]:
    if not _is_batch(images):
        return wire.encoding(_json((yield Call("POST", f"/v1/models/{model}/encode", json=wire.image_item(images)))))  # type: ignore[arg-type]
    results = yield from _image_results(f"/v1/models/{model}/encode/batch", images, batch_size)  # type: ignore[arg-type]
    return [wire.encoding(result) for result in results]


def reconstruct(
    model: str, images: ImageLike | Sequence[ImageLike], batch_size: int, corruption: dict[str, Any] | None
) -> Plan[wire.Reconstruction | list[wire.Reconstruction]]:
    if not _is_batch(images):
        body = {**wire.image_item(images), **({"corruption": corruption} if corruption else {})}  # type: ignore[arg-type]
        return wire.reconstruction(_json((yield Call("POST", f"/v1/models/{model}/reconstruct", json=body))))
    options = {"corruption": corruption} if corruption else None  # applied to every image
    results = yield from _image_results(f"/v1/models/{model}/reconstruct/batch", images, batch_size, options)  # type: ignore[arg-type]
    return [wire.reconstruction(result) for result in results]


def classify(images: ImageLike | Sequence[ImageLike], batch_size: int) -> Plan[wire.Verdict | list[wire.Verdict]]:
    if not _is_batch(images):
        return wire.verdict(_json((yield Call("POST", "/v1/classify", json=wire.image_item(images)))))  # type: ignore[arg-type]
    items = list(images)  # type: ignore[arg-type]
    verdicts: list[wire.Verdict] = []
    for start in range(0, len(items), batch_size):
        body = {"images": [wire.image_item(image) for image in items[start : start + batch_size]]}
        verdicts += [wire.verdict(r) for r in _json((yield Call("POST", "/v1/classify/batch", json=body)))["results"]]
    return verdicts


def decode(model: str, latents: Sequence[float] | np.ndarray, batch_size: int) -> Plan[np.ndarray]:
    """One latent -> a 28x28 image; several (N x latent_dim) -> N x 28 x 28, in one `.npy` bulk request."""
    array = np.asarray(latents, dtype=np.float32)
    path = f"/v1/models/{model}/decode"
    if array.ndim == 1:
        return wire.png_array(_json((yield Call("POST", path, json={"latent": array.tolist()})))["image"])
    response = yield Call(
        "POST", f"{path}/batch", content=wire.npy_body(array), headers={"Content-Type": NPY, "Accept": NPY}
    )
    wire.raise_for_error(response)
    return wire.npy_array(response)


def sample(model: str, digit: int | None, n: int, sigma: float, seed: int | None) -> Plan[wire.Samples]:
    """Around `digit`'s centroid (/sample), or without a digit from a VAE's prior (/prior/sample, N(0, I))."""
    body: dict[str, Any] = {"n": n} if digit is None else {"n": n, "sigma": sigma, "digit": digit}
    if seed is not None:
        body["seed"] = seed
    path = f"/v1/models/{model}/prior/sample" if digit is None else f"/v1/models/{model}/sample"
    return wire.samples(_json((yield Call("POST", path, json=body))))


def interpolate(model: str, start: Any, end: Any, steps: int) -> Plan[wire.Path]:
    body = {"from": wire.path_end(start), "to": wire.path_end(end), "steps": steps}
    return wire.path(_json((yield Call("POST", f"/v1/models/{model}/interpolate", json=body))))


def models() -> Plan[list[dict[str, Any]]]:
    return list(_json((yield Call("GET", "/v1/models"))))


def model(name: str) -> Plan[dict[str, Any]]:
    return dict(_json((yield Call("GET", f"/v1/models/{name}"))))
