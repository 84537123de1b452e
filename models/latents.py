"""Points of a latent space: straight paths between two latents, and draws around a centroid.

Shared by the report's experiments (`training`) and the service's /interpolate and /sample, so both walk the
same path and draw the same samples from the same seed.
"""

from __future__ import annotations

import torch
from torch import Tensor


def path_positions(steps: int) -> Tensor:
    """Where each of `steps` points lies along a path: t from 0 (the start) to 1 (the end), evenly spaced."""
    return torch.linspace(0.0, 1.0, steps)


def straight_path(start: Tensor, end: Tensor, steps: int) -> Tensor:
    """`steps` evenly spaced points from `start` to `end` (latents of one shape), both included, at the
    `path_positions`.

    The weighted sum (1 - t) start + t end gives both ends bit for bit; it is the report's arithmetic (its
    figures were measured on it), which /interpolate repeats as a request."""
    t = path_positions(steps)[:, None]
    return (1 - t) * start + t * end


def sample_latents(centroids: Tensor, digit: int | None, sigma: float, n: int, seed: int) -> Tensor:
    """n draws from N(centroids[digit], sigma² I), or from the prior N(0, I) when digit is None; the same seed,
    the same draws (from a generator of its own: torch's global one is left alone)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, centroids.shape[1]), generator=generator)
    if digit is None:
        return noise
    return centroids[digit] + sigma * noise
