"""The tensor work of each operation as one module per (model, operation), run as a frozen TorchScript graph.

Why: the event loop and the inference thread share one interpreter lock. Eager PyTorch hands the lock back and
takes it again around every op (about 40 for a reconstruct), and under load each retake waits its turn behind the
event loop's Python: at 64 connections a reconstruct's forward pass took about 1 ms per image, four times what it
takes alone. A frozen traced graph runs all of its ops in C++ and takes the lock once: about 0.45 ms per image under
the same load, and 1.39x the requests/s (`benchmarks/compare.py`; the figures are in the README).

The modules below are the computation itself (the eager path runs them as they are), so the traced graph and the
eager one cannot drift apart. A graph is traced on first use, in the inference thread (tens of milliseconds: startup
and reloads stay fast), then checked against the eager module on a batch of another size; if tracing fails or the
two disagree, the eager module serves, and the log says why once.

torch marks TorchScript deprecated in favour of `torch.compile`, which needs a C++ compiler at run time (the image
has none) and minutes of compiling; TorchScript still works, and if a later torch drops it, tracing fails and the
eager modules serve, at the eager speed.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from models.losses import bce_per_image, mse_per_image, vae_terms
from models.networks import SIDE, AutoEncoder, AutoEncoderNetwork, VariationalAutoEncoder

log = logging.getLogger("digitae.graphs")

TRACE_BATCH = 2  # traced on this many images ...
CHECK_BATCH = 3  # ... and checked on a batch of another size: a size baked into the graph would show
TOLERANCE = 1e-5


class _Distances(nn.Module):
    """Euclidean distance from each code to each digit's centroid."""

    centroids: Tensor

    def __init__(self, centroids: Tensor) -> None:
        super().__init__()
        self.register_buffer("centroids", centroids.detach().clone())

    def forward(self, codes: Tensor) -> Tensor:
        return torch.linalg.vector_norm(codes[:, None, :] - self.centroids[None, :, :], dim=-1)


class Encode(nn.Module):
    """images (N, 1, 28, 28) -> (latent, distances), or (mu, logvar, distances) for a VAE."""

    def __init__(self, network: AutoEncoderNetwork, centroids: Tensor) -> None:
        super().__init__()
        self.network = network
        self.distances = _Distances(centroids)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if isinstance(self.network, VariationalAutoEncoder):
            mu, logvar = self.network.encode(x)
            return mu, logvar, self.distances(mu)
        latent = self.network.embed(x)
        return latent, self.distances(latent)


class Reconstruct(nn.Module):
    """(seen, clean) images -> (image, latent, mse, bce, distances), or for a VAE
    (image, mu, logvar, mse, bce, kl, elbo, distances); the losses compare with the clean images."""

    def __init__(self, network: AutoEncoderNetwork, centroids: Tensor) -> None:
        super().__init__()
        self.network = network
        self.distances = _Distances(centroids)

    def forward(self, x: Tensor, target: Tensor) -> tuple[Tensor, ...]:
        if isinstance(self.network, VariationalAutoEncoder):
            recon, mu, logvar = self.network(x)  # in eval mode the VAE decodes z = mu
            terms = vae_terms(recon, target, mu, logvar)
            mse, bce = mse_per_image(recon, target), bce_per_image(recon, target)
            return recon, mu, logvar, mse, bce, terms["kl"], terms["elbo"], self.distances(mu)
        assert isinstance(self.network, AutoEncoder)
        recon, latent = self.network(x)
        return recon, latent, mse_per_image(recon, target), bce_per_image(recon, target), self.distances(latent)


class Decode(nn.Module):
    """latents (N, m) -> images (N, 1, 28, 28)."""

    def __init__(self, network: AutoEncoderNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, z: Tensor) -> Tensor:
        return self.network.decode(z)


Graph = Callable[..., Any]  # a traced graph or an eager module: called with tensors, returns tensors


def graph(cache: dict[str, Graph], operation: str, network: AutoEncoderNetwork, centroids: Tensor) -> Graph:
    """The graph of `operation` for this model version, traced on first use and kept in `cache` (the model's own:
    a reload brings new models, hence new graphs)."""
    found = cache.get(operation)
    if found is None:
        found = cache[operation] = _traced_or_eager(operation, *_module_and_inputs(operation, network, centroids))
    return found


def _module_and_inputs(
    operation: str, network: AutoEncoderNetwork, centroids: Tensor
) -> tuple[nn.Module, Callable[[int], tuple[Tensor, ...]]]:
    device = centroids.device

    def images(n: int) -> Tensor:
        return torch.rand(n, 1, SIDE, SIDE, device=device)

    if operation == "encode":
        return Encode(network, centroids).eval(), lambda n: (images(n),)
    if operation == "reconstruct":
        return Reconstruct(network, centroids).eval(), lambda n: (images(n), images(n))
    if operation == "decode":
        return Decode(network).eval(), lambda n: (torch.randn(n, network.latent_dim, device=device),)
    raise ValueError(f"no graph for {operation!r}")


def _traced_or_eager(operation: str, module: nn.Module, inputs: Callable[[int], tuple[Tensor, ...]]) -> Graph:
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch's own shape checks (binary_cross_entropy compares sizes) warn while tracing; whether anything
            # was baked into the graph is what the check on another batch size tells
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # see the module's docstring
            traced = torch.jit.freeze(torch.jit.trace(module, inputs(TRACE_BATCH)))
            check = inputs(CHECK_BATCH)
            expected, got = _as_tuple(module(*check)), _as_tuple(traced(*check))
        if len(expected) != len(got) or not all(
            a.shape == b.shape and torch.allclose(a, b, rtol=TOLERANCE, atol=TOLERANCE)
            for a, b in zip(expected, got, strict=True)
        ):
            raise ValueError("the traced graph's answers differ from the eager module's")
    except Exception as exc:  # any tracing problem: serve the eager module, which is always right
        log.warning("%s runs eagerly (no TorchScript graph: %s)", operation, exc)
        return module
    return traced


def _as_tuple(outputs: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return outputs if isinstance(outputs, tuple) else (outputs,)
