"""What the models compute for the API: encode, reconstruct, decode and classify, in batches.

The batch functions run in the inference thread (under `torch.inference_mode`) on lists of
numpy arrays and return one result per item; `InferenceEngine` routes every call through the
model's micro-batcher for that operation, so single calls, batch requests and concurrent
requests all take the same path. Images are float32 (28, 28) in [0, 1]; latents float32 (m,).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.networks import SIDE
from service.catalog.registry import ServedJudge, ServedModel
from service.engine import graphs
from service.engine.batching import MicroBatcher
from service.runtime.tracing import forward_pass_span
from service.settings import Settings

log = logging.getLogger("digitae.inference")


@dataclass(frozen=True, slots=True)
class Encoding:
    latent: np.ndarray  # (m,) the AE's code, or the VAE's posterior mean mu
    logvar: np.ndarray | None  # (m,) VAE only
    distances: np.ndarray  # (10,) Euclidean distance to each digit's centroid

    @property
    def nearest_digit(self) -> int:
        return int(np.argmin(self.distances))


@dataclass(frozen=True, slots=True)
class Reconstruction:
    image: np.ndarray  # (28, 28)
    encoding: Encoding
    mse: float  # mean over pixels, against the clean input
    bce: float  # mean over pixels, against the clean input
    kl: float | None  # VAE: KL(q(z|x) || N(0, I)) in nats
    elbo: float | None  # VAE: -(summed BCE + KL) in nats, decoding z = mu


@dataclass(frozen=True, slots=True)
class Verdict:
    probabilities: np.ndarray  # (10,) the judge's softmax

    @property
    def digit(self) -> int:
        return int(np.argmax(self.probabilities))


# -- batch functions (inference thread) -----------------------------------------------------------


def encode_batch(model: ServedModel, images: list[np.ndarray]) -> list[Encoding]:
    with torch.inference_mode():
        outputs = _graph(model, "encode")(_images_to_tensor(images, model.device))
        if model.kind == "vae":
            mu, logvar, distances = outputs
            return _encodings(mu, logvar, distances)
        latent, distances = outputs
        return _encodings(latent, None, distances)


def reconstruct_batch(model: ServedModel, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[Reconstruction]:
    """Items are (seen, clean): the model sees `seen`; the losses compare with `clean`."""
    with torch.inference_mode():
        x = _images_to_tensor([seen for seen, _ in pairs], model.device)
        target = _images_to_tensor([clean for _, clean in pairs], model.device)
        outputs = _graph(model, "reconstruct")(x, target)
        if model.kind == "vae":
            recon, mu, logvar, mse_t, bce_t, kl_t, elbo_t, distances = outputs
            kl, elbo = kl_t.tolist(), elbo_t.tolist()
        else:
            recon, mu, mse_t, bce_t, distances = outputs
            logvar, kl, elbo = None, [None] * len(pairs), [None] * len(pairs)
        mse, bce = mse_t.tolist(), bce_t.tolist()
        encodings = _encodings(mu, logvar, distances)
        images = _tensor_to_images(recon)
    return [
        Reconstruction(image=images[i], encoding=encodings[i], mse=mse[i], bce=bce[i], kl=kl[i], elbo=elbo[i])
        for i in range(len(pairs))
    ]


def decode_batch(model: ServedModel, latents: list[np.ndarray]) -> list[np.ndarray]:
    with torch.inference_mode():
        z = torch.from_numpy(np.stack(latents).astype(np.float32, copy=False)).to(model.device)
        return _tensor_to_images(_graph(model, "decode")(z))


def classify_batch(judge: ServedJudge, images: list[np.ndarray]) -> list[Verdict]:
    with torch.inference_mode():
        probabilities = judge.network(_images_to_tensor(images, judge.device)).softmax(dim=1).float().cpu().numpy()
    return [Verdict(row) for row in probabilities]


BATCH_FUNCTIONS: dict[str, Callable[[ServedModel, list[Any]], list[Any]]] = {
    "encode": encode_batch,
    "reconstruct": reconstruct_batch,
    "decode": decode_batch,
}


def _images_to_tensor(images: list[np.ndarray], device: torch.device) -> Tensor:
    return torch.from_numpy(np.stack(images).astype(np.float32, copy=False)).unsqueeze(1).to(device)


def _tensor_to_images(batch: Tensor) -> list[np.ndarray]:
    """(N, 1, 28, 28) sigmoid outputs -> N arrays in [0, 1] (PNG encoding clips and zeroes NaN again anyway)."""
    return list(batch.squeeze(1).float().cpu().numpy())


def _graph(model: ServedModel, operation: str) -> graphs.Graph:
    return graphs.graph(model.graphs, operation, model.network, model.centroids)


def _encodings(mu: Tensor, logvar: Tensor | None, distances: Tensor) -> list[Encoding]:
    mu_np = mu.float().cpu().numpy()
    logvar_np = logvar.float().cpu().numpy() if logvar is not None else None
    distances_np = distances.float().cpu().numpy()
    return [
        Encoding(latent=mu_np[i], logvar=logvar_np[i] if logvar_np is not None else None, distances=distances_np[i])
        for i in range(len(mu_np))
    ]


# -- the engine (event loop) ------------------------------------------------------------------------


def span_attributes(model: ServedModel | ServedJudge, operation: str) -> dict[str, str]:
    """What the spans of a model's forward passes carry (tracing on)."""
    version = model.version if isinstance(model, ServedModel) else ""
    return {"digitae.model.name": model.name, "digitae.model.version": version, "digitae.operation": operation}


BatchObserver = Callable[[str, str, int, float], None]  # (model, operation, batch size, seconds)


class InferenceEngine:
    """One micro-batcher per (model version, operation), all feeding one inference thread.

    One thread, because on a small CPU box the event loop needs the other core, and a single queue
    of forward passes lets batches grow under load; torch's own threads (torch_threads) work inside it.
    Batchers are made on first use and keyed by the model's version too: after a reload, requests that
    started on the old version finish on it, and never share a forward pass with the new one.
    """

    def __init__(
        self,
        settings: Settings,
        observe: BatchObserver | None = None,
        worth_waiting: Callable[[], bool] = lambda: True,
        arrived: Callable[[], None] = lambda: None,
    ) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digitae-inference")
        self._settings = settings
        self._observe = observe
        self._worth_waiting = worth_waiting
        self._arrived = arrived
        self._batchers: dict[tuple[str, str, str], MicroBatcher] = {}

    def _batcher(self, model: ServedModel | ServedJudge, operation: str) -> MicroBatcher:
        key = (model.name, model.version if isinstance(model, ServedModel) else "", operation)
        batcher = self._batchers.get(key)
        if batcher is None:
            settings, observe = self._settings, self._observe
            if isinstance(model, ServedJudge):
                function: Callable[[list[Any]], list[Any]] = partial(classify_batch, model)
            else:
                function = partial(BATCH_FUNCTIONS[operation], model)
            batcher = self._batchers[key] = MicroBatcher(
                function,
                executor=self.executor,
                max_size=settings.microbatch_max_size,
                wait_s=settings.microbatch_wait_ms / 1000,
                enabled=settings.microbatch_enabled,
                observe=partial(observe, model.name, operation) if observe is not None else None,
                worth_waiting=self._worth_waiting,
                arrived=self._arrived,
                span_attributes=span_attributes(model, operation),
            )
        return batcher

    def warm_up_soon(self, model: ServedModel, then: Callable[[], None]) -> None:
        """`warm_up` in the inference thread, then `then` on the event loop. The worker serves meanwhile: its first
        requests queue behind the pass, as they would have behind their own first one, and startup is no longer."""
        warming = asyncio.get_running_loop().run_in_executor(self.executor, self.warm_up, model)
        warming.add_done_callback(lambda _: then())

    def warm_up(self, model: ServedModel) -> None:
        """One forward pass of each operation of `model`. torch imports a few hundred modules on the first pass
        (sympy, torch.fx: about 69,000 objects): imported at once, the app freezes them (gc.freeze) instead of every
        full collection under load scanning them (measured: a full collection every few seconds at concurrency 1)."""
        image = np.zeros((SIDE, SIDE), np.float32)
        try:
            encode_batch(model, [image])
            reconstruct_batch(model, [(image, image)])
            decode_batch(model, [np.zeros(model.latent_dim, np.float32)])
        except Exception:  # the model's requests will meet it and answer it; startup is not the place to fail
            log.warning("warming up %s failed; its first requests will build its graphs", model.name, exc_info=True)

    def forget_all_but(self, models: dict[str, ServedModel]) -> None:
        """After a reload: drop the batchers of versions no longer served. A request still running on one keeps
        its batcher alive until it finishes (a late one makes a new batcher, dropped at the next reload)."""
        served = {(m.name, m.version) for m in models.values()}
        self._batchers = {key: b for key, b in self._batchers.items() if key[:2] in served}

    async def in_bulk(self, model: ServedModel | ServedJudge, operation: str, items: list[Any]) -> list[Any]:
        """A bulk request's chunk, in one hand-off to the inference thread: forward passes of at most
        microbatch_max_size items back to back, without the micro-batcher's per-item futures (the chunk is already
        several full batches) and without the event loop between them (no idle gap for the inference thread)."""
        self._arrived()  # it joins no micro-batch: nobody waits for it
        size = self._settings.microbatch_max_size
        if isinstance(model, ServedJudge):
            function: Callable[[list[Any]], list[Any]] = partial(classify_batch, model)
        else:
            function = partial(BATCH_FUNCTIONS[operation], model)

        def run() -> list[Any]:
            results: list[Any] = []
            for start in range(0, len(items), size):
                began = time.perf_counter()
                part = function(items[start : start + size])
                if self._observe is not None:
                    self._observe(model.name, operation, len(part), time.perf_counter() - began)
                results += part
            return results

        with forward_pass_span(span_attributes(model, operation), len(items)):
            return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    async def encode(self, model: ServedModel, images: list[np.ndarray]) -> list[Encoding]:
        return await self._batcher(model, "encode").submit_many(images)

    async def reconstruct(self, model: ServedModel, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[Reconstruction]:
        return await self._batcher(model, "reconstruct").submit_many(pairs)

    async def decode(self, model: ServedModel, latents: list[np.ndarray]) -> list[np.ndarray]:
        return await self._batcher(model, "decode").submit_many(latents)

    async def classify(self, judge: ServedJudge, images: list[np.ndarray]) -> list[Verdict]:
        return await self._batcher(judge, "classify").submit_many(images)

    async def close(self) -> None:
        for batcher in list(self._batchers.values()):
            await batcher.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
