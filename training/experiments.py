"""The report's experiments as plain functions: models and tensors in, numbers and tensors out.

No plotting and no files here (training/report.py draws and writes). Every forward pass runs
under `torch.no_grad` in batches, and everything random takes an explicit seed, so the same
seed gives the same numbers. Images are (N, 1, 28, 28) floats with pixels in [0, 1].

Conventions, stated once:
- Test loss is the per-image mean squared error over pixels in [0, 1], averaged over images;
  for a VAE the reconstruction decodes the posterior mean (its deterministic code).
- Corrupted inputs are always scored against the CLEAN image.
- Noise std is on the [0, 1] pixel scale (std s is 255*s grey levels), clipped back to [0, 1].
- "Sampling around a centroid with sigma" draws z ~ N(centroid, sigma^2 I): sigma is a std.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import torch
from torch import Tensor, nn

from models.corruptions import GaussianNoise, Occlusion
from models.losses import mse_per_image
from models.networks import NUM_DIGITS, autoencoder
from training.judge import judge

BATCH_SIZE = 1000
REPORT_SIGMAS = (0.0, 2.5, 5.0, 7.5, 10.0)  # the report's Fig. 3: "from 0 to 10 in steps of 2.5"
NOISE_STDS = (0.0, 1 / 255, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
CONFIDENT = 0.9  # the judge's probability above which a decoded image counts as a clear digit


@torch.no_grad()
def batched(fn: Callable[[Tensor], Tensor], inputs: Tensor, batch_size: int = BATCH_SIZE) -> Tensor:
    """`fn` over `inputs` in batches, concatenated: bounded memory for any N."""
    return torch.cat([fn(chunk) for chunk in inputs.split(batch_size)])


# -- reconstruction ------------------------------------------------------------------------


def embed(model: nn.Module, images: Tensor) -> Tensor:
    """Deterministic latent codes (the AE's encoding, the VAE's posterior mean)."""
    return batched(autoencoder(model).embed, images)


def decode(model: nn.Module, latents: Tensor) -> Tensor:
    return batched(autoencoder(model).decode, latents)


def reconstruct(model: nn.Module, images: Tensor) -> Tensor:
    network = autoencoder(model)
    return batched(lambda x: network.decode(network.embed(x)), images)


def reconstruction_mse(model: nn.Module, inputs: Tensor, targets: Tensor | None = None) -> Tensor:
    """Per-image MSE of the reconstruction of `inputs` against `targets` (default: `inputs`)."""
    targets = inputs if targets is None else targets
    return mse_per_image(reconstruct(model, inputs), targets)


def corrupted_inputs(images: Tensor, occlusion: Occlusion, noise: GaussianNoise, seed: int) -> dict[str, Tensor]:
    """The robustness test's inputs: occluded (with `seed`) and noisy (with `seed + 1`) copies of `images`.

    Made once and shared by every model, so all of them see the very same corruptions.
    """
    return {"occluded": occlusion(images, seed=seed), "noisy": noise(images, seed=seed + 1)}


def losses_against_clean(model: nn.Module, clean: Tensor, inputs: dict[str, Tensor]) -> dict[str, float]:
    """Mean test loss of each corrupted input set, scored against the CLEAN images."""
    return {name: float(reconstruction_mse(model, corrupted, clean).mean()) for name, corrupted in inputs.items()}


def noise_curve(model: nn.Module, images: Tensor, stds: tuple[float, ...], seed: int) -> list[float]:
    """Mean test loss against the noise std. One seed for every std: the same unit noise, scaled."""
    return [float(reconstruction_mse(model, GaussianNoise(std=std)(images, seed=seed), images).mean()) for std in stds]


# -- generation around the centroids -----------------------------------------------------------


def sample_around_centroids(
    model: nn.Module, centroids: Tensor, sigmas: tuple[float, ...], per_digit: int, seed: int
) -> Tensor:
    """Decoded samples z ~ N(centroid_d, sigma^2 I), shape (len(sigmas), 10, per_digit, 1, 28, 28).

    The same unit draws are scaled by every sigma, so a column of the grid differs from the
    next only by the distance from the centroid (the report's "same samples, new corruption").
    """
    generator = torch.Generator().manual_seed(seed)
    unit = torch.randn((NUM_DIGITS, per_digit, centroids.shape[1]), generator=generator)
    latents = torch.stack([centroids[:, None, :] + sigma * unit for sigma in sigmas])
    images = decode(model, latents.reshape(-1, centroids.shape[1]))
    return images.reshape(len(sigmas), NUM_DIGITS, per_digit, *images.shape[1:])


# -- the judge ------------------------------------------------------------------------------------


def judge_accuracy(classifier: nn.Module, images: Tensor, labels: Tensor) -> float:
    return float((judge(classifier, images)[0] == labels).float().mean())


def judged_as_intended(classifier: nn.Module, samples: Tensor) -> Tensor:
    """For samples shaped (S, 10, n, ...) around each digit's centroid: the fraction the judge
    calls digit d, per sigma and digit, shape (S, 10)."""
    n_sigmas, n_digits, per_digit = samples.shape[:3]
    digits, _ = judge(classifier, samples.reshape(-1, *samples.shape[3:]))
    intended = torch.arange(n_digits).repeat_interleave(per_digit).repeat(n_sigmas)
    hits = (digits == intended).float().reshape(n_sigmas, n_digits, per_digit)
    return hits.mean(dim=2)


def confident_fraction(classifier: nn.Module, images: Tensor, threshold: float = CONFIDENT) -> float:
    """The fraction of images the judge names with probability >= `threshold`."""
    _, confidence = judge(classifier, images)
    return float((confidence >= threshold).float().mean())


# -- straight paths in the latent space -------------------------------------------------------


def straight_path(start: Tensor, end: Tensor, steps: int) -> Tensor:
    """`steps` evenly spaced points from `start` to `end`, both included."""
    t = torch.linspace(0.0, 1.0, steps)[:, None]
    return (1 - t) * start + t * end


def farthest_centroid_pair(centroids: Tensor) -> tuple[int, int]:
    """The two digits whose centroids lie farthest apart: a path between them crosses the map."""
    distances = torch.cdist(centroids, centroids)
    flat = int(distances.argmax())
    first, second = divmod(flat, len(centroids))
    return min(first, second), max(first, second)


def all_centroid_paths(centroids: Tensor, steps: int) -> Tensor:
    """Straight paths between every pair of centroids, stacked: (45 * steps, latent_dim)."""
    pairs = combinations(range(len(centroids)), 2)
    return torch.cat([straight_path(centroids[i], centroids[j], steps) for i, j in pairs])
