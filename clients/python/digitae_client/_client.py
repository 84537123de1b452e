"""`Client` and `AsyncClient`: the same operations (digitae_client._operations), sent with httpx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx
import numpy as np

from digitae_client import _operations as ops
from digitae_client._wire import Call, Encoding, ImageLike, Path, Reconstruction, Samples, Verdict, retry_after

T = TypeVar("T")

DEFAULT_BATCH = 64  # the service's default DIGITAE_MAX_BATCH: larger lists go in several requests, or as .npy bulk


class _Settings:
    def __init__(
        self, base_url: str, api_key: str | None, timeout: float, retries: int, max_wait_s: float, batch_size: int
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.retries = retries
        self.max_wait_s = max_wait_s
        self.batch_size = batch_size

    def request(self, call: Call) -> dict[str, Any]:
        return {
            "method": call.method,
            "url": call.path,
            "json": call.json,
            "content": call.content,
            "headers": call.headers,
            "params": call.params,
        }


class Client:
    """A digitae service, called synchronously. `api_key` when the service has keys; `retries`: how many times a
    `503 busy` or `429` is tried again after its Retry-After (at most `max_wait_s` each)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        max_wait_s: float = 30.0,
        batch_size: int = DEFAULT_BATCH,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = _Settings(base_url, api_key, timeout, retries, max_wait_s, batch_size)
        self._http = httpx.Client(
            base_url=self._settings.base_url, headers=self._settings.headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> httpx.Response:
        for attempt in range(self._settings.retries + 1):
            response = self._http.request(**self._settings.request(call))
            wait = retry_after(response, self._settings.max_wait_s)
            if wait is None or attempt == self._settings.retries:
                return response
            time.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns")

    def _run(self, plan: ops.Plan[T]) -> T:
        try:
            call = next(plan)
            while True:
                call = plan.send(self._send(call))
        except StopIteration as done:
            return done.value

    def models(self) -> list[dict[str, Any]]:
        """Every served model's summary: name, version, kind, latent_dim, metrics."""
        return self._run(ops.models())

    def model(self, name: str) -> dict[str, Any]:
        """One model's summary, centroids, spread and card."""
        return self._run(ops.model(name))

    def encode(self, model: str, images: ImageLike | Sequence[ImageLike]) -> Encoding | list[Encoding]:
        """One image -> its Encoding; a list (or an N x 28 x 28 array) -> a list of them."""
        return self._run(ops.encode(model, images, self._settings.batch_size))

    def reconstruct(
        self, model: str, images: ImageLike | Sequence[ImageLike], corruption: dict[str, Any] | None = None
    ) -> Reconstruction | list[Reconstruction]:
        """One image (optionally corrupted first: `{"noise": {"std": 0.5}, "seed": 7}`) -> its Reconstruction;
        a list -> a list of them (the corruption applied to each)."""
        return self._run(ops.reconstruct(model, images, self._settings.batch_size, corruption))

    def decode(self, model: str, latents: Sequence[float] | np.ndarray) -> np.ndarray:
        """One latent -> a 28x28 image; N x latent_dim -> N x 28 x 28 (float32 in [0, 1])."""
        return self._run(ops.decode(model, latents, self._settings.batch_size))

    def sample(
        self, model: str, digit: int | None = None, *, n: int = 10, sigma: float = 1.0, seed: int | None = None
    ) -> Samples:
        """`n` images drawn around `digit`'s centroid (a VAE without a digit: from its prior)."""
        return self._run(ops.sample(model, digit, n, sigma, seed))

    def interpolate(self, model: str, start: Any, end: Any, steps: int = 10) -> Path:
        """The straight path between two ends (each a digit, a latent, or an image), decoded at `steps` points."""
        return self._run(ops.interpolate(model, start, end, steps))

    def classify(self, images: ImageLike | Sequence[ImageLike]) -> Verdict | list[Verdict]:
        """The judge's reading of one image, or of each of a list."""
        return self._run(ops.classify(images, self._settings.batch_size))


class AsyncClient:
    """The same service and methods as `Client`, awaited."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        max_wait_s: float = 30.0,
        batch_size: int = DEFAULT_BATCH,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = _Settings(base_url, api_key, timeout, retries, max_wait_s, batch_size)
        self._http = httpx.AsyncClient(
            base_url=self._settings.base_url, headers=self._settings.headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        for attempt in range(self._settings.retries + 1):
            response = await self._http.request(**self._settings.request(call))
            wait = retry_after(response, self._settings.max_wait_s)
            if wait is None or attempt == self._settings.retries:
                return response
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns")

    async def _run(self, plan: ops.Plan[T]) -> T:
        try:
            call = next(plan)
            while True:
                call = plan.send(await self._send(call))
        except StopIteration as done:
            return done.value

    async def models(self) -> list[dict[str, Any]]:
        return await self._run(ops.models())

    async def model(self, name: str) -> dict[str, Any]:
        return await self._run(ops.model(name))

    async def encode(self, model: str, images: ImageLike | Sequence[ImageLike]) -> Encoding | list[Encoding]:
        return await self._run(ops.encode(model, images, self._settings.batch_size))

    async def reconstruct(
        self, model: str, images: ImageLike | Sequence[ImageLike], corruption: dict[str, Any] | None = None
    ) -> Reconstruction | list[Reconstruction]:
        return await self._run(ops.reconstruct(model, images, self._settings.batch_size, corruption))

    async def decode(self, model: str, latents: Sequence[float] | np.ndarray) -> np.ndarray:
        return await self._run(ops.decode(model, latents, self._settings.batch_size))

    async def sample(
        self, model: str, digit: int | None = None, *, n: int = 10, sigma: float = 1.0, seed: int | None = None
    ) -> Samples:
        return await self._run(ops.sample(model, digit, n, sigma, seed))

    async def interpolate(self, model: str, start: Any, end: Any, steps: int = 10) -> Path:
        return await self._run(ops.interpolate(model, start, end, steps))

    async def classify(self, images: ImageLike | Sequence[ImageLike]) -> Verdict | list[Verdict]:
        return await self._run(ops.classify(images, self._settings.batch_size))
