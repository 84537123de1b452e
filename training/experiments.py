"""The report's experiments as plain functions: models and tensors in, numbers and tensors out.

No plotting and no files here (training/report/ draws and writes). Every forward pass runs
under `torch.no_grad` in batches, and everything random takes an explicit seed, so the same
seed gives the same numbers. Images are (N, 1, 28, 28) floats with pixels in [0, 1].

Conventions, stated once:
- Test loss is the per-image mean squared error over pixels in [0, 1], averaged over images;
  for a VAE the reconstruction decodes the posterior mean (its deterministic code).
- Corrupted inputs are always scored against the CLEAN image.
- Noise std is on the [0, 1] pixel scale (std s is 255*s grey levels), clipped back to [0, 1].
- "Sampling around a centroid with sigma" draws z ~ N(centroid, sigma^2 I): sigma is a std.
  With a `scale` (a model's own spread), z ~ N(centroid, diag((sigma * scale)^2)): sigma in those units.
- The judge's features are its penultimate layer (the 128 values before the digit logits); the
  Fréchet distance between two sets of them is an FID computed with our own judge, not Inception.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from itertools import combinations

import numpy as np
import torch
from scipy import linalg
from torch import Tensor, nn

from models.corruptions import GaussianNoise, Occlusion
from models.latents import straight_path
from models.losses import kl_to_standard_normal, mse_per_image
from models.networks import NUM_DIGITS, SIDE, VariationalAutoEncoder, autoencoder
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


def kl_per_image(model: nn.Module, images: Tensor) -> Tensor:
    """A VAE's KL(q(z|x) || N(0, I)) for each image, in nats."""
    network = autoencoder(model)
    assert isinstance(network, VariationalAutoEncoder)  # only a VAE has a KL term
    return batched(lambda x: kl_to_standard_normal(*network.encode(x)), images)


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
    noisy = (GaussianNoise(std=std)(images, seed=seed) if std > 0 else images for std in stds)
    return [float(reconstruction_mse(model, inputs, images).mean()) for inputs in noisy]


# -- generation around the centroids -----------------------------------------------------------


def sample_around_centroids(
    model: nn.Module,
    centroids: Tensor,
    sigmas: tuple[float, ...],
    per_digit: int,
    seed: int,
    scale: Tensor | None = None,
) -> Tensor:
    """Decoded samples z ~ N(centroid_d, sigma^2 I), shape (len(sigmas), 10, per_digit, 1, 28, 28).

    The same unit draws are scaled by every sigma, so a column of the grid differs from the
    next only by the distance from the centroid (the report's "same samples, new corruption").
    `scale` ((latent_dim,) or (10, latent_dim), per digit) puts sigma in the model's own units.
    """
    generator = torch.Generator().manual_seed(seed)
    unit = torch.randn((NUM_DIGITS, per_digit, centroids.shape[1]), generator=generator)
    if scale is not None:
        unit = unit * (scale[:, None, :] if scale.dim() == 2 else scale)
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


# -- generation: sampling the whole latent space, judged by the classifier ---------------------------


def fit_gaussian(codes: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and covariance (float64) of latent codes (N, D): the AE's counterpart of a VAE's prior."""
    codes = codes.double()
    return codes.mean(dim=0), torch.cov(codes.T).reshape(codes.shape[1], codes.shape[1])


def gaussian_latents(mean: Tensor, cov: Tensor, n: int, seed: int) -> Tensor:
    """`n` draws of z ~ N(mean, cov), float32; N(0, I) is the VAE's prior."""
    generator = torch.Generator().manual_seed(seed)
    unit = torch.randn((n, len(mean)), generator=generator, dtype=torch.float64)
    return (mean.double() + unit @ torch.linalg.cholesky(cov.double()).T).float()


@torch.no_grad()
def judge_features(classifier: nn.Module, images: Tensor) -> Tensor:
    """The judge's penultimate-layer activations (N, 128): every layer of its `net` but the last (logits)."""
    classifier.eval()
    return batched(_layers(classifier)[:-1], images)


def _layers(classifier: nn.Module) -> nn.Sequential:
    """The judge's layers in order (models.networks.DigitClassifier keeps them in `net`)."""
    net = classifier.net
    assert isinstance(net, nn.Sequential)
    return net


def feature_statistics(features: Tensor) -> tuple[np.ndarray, np.ndarray]:
    values = features.double().numpy()
    return values.mean(axis=0), np.cov(values, rowvar=False)


def frechet_distance(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians fitted to features (as FID)."""
    (mu1, s1), (mu2, s2) = first, second
    with warnings.catch_warnings():  # dead ReLU units make both covariances singular; the root still exists
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(root).all():  # nearly singular product: nudge both, as the FID reference code does
        offset = np.eye(len(s1)) * 1e-6
        root = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root.real))


def digit_entropy(digits: Tensor) -> float:
    """Entropy in bits of the judged digits' distribution: log2(10) ≈ 3.32 when all ten are equally common."""
    shares = torch.bincount(digits, minlength=NUM_DIGITS).double() / len(digits)
    shares = shares[shares > 0]
    return float(-(shares * shares.log2()).sum())


@torch.no_grad()
def generation_scores(
    classifier: nn.Module, images: Tensor, reference: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """How a generator's images fare with the judge: confident share, digit entropy, Fréchet distance."""
    features = judge_features(classifier, images)
    confidence, digits = _layers(classifier)[-1](features).softmax(dim=1).max(dim=1)  # the logits from the features
    return {
        "confident": float((confidence >= CONFIDENT).float().mean()),
        "entropy_bits": digit_entropy(digits),
        "frechet_distance": frechet_distance(feature_statistics(features), reference),
    }


# -- smoothness along the centroid-to-centroid paths ------------------------------------------------


def path_smoothness(model: nn.Module, classifier: nn.Module, centroids: Tensor, unit: Tensor, steps: int) -> dict:
    """Along the straight paths between all 45 pairs of centroids, `steps` points each:

    - jump: the L2 change (over the 784 pixels) between consecutive decoded images, per unit of
      path length measured in `unit` (the model's own spread per latent dimension); mean and max;
    - changes: how often the judge's verdict changes along a path (1 is ideal); mean, and the
      share of paths with exactly one.
    """
    pairs = len(centroids) * (len(centroids) - 1) // 2
    points = all_centroid_paths(centroids, steps).reshape(pairs, steps, -1)
    images = decode(model, points.reshape(pairs * steps, -1)).reshape(pairs, steps, -1)
    jumps = (images[:, 1:] - images[:, :-1]).norm(dim=2)
    lengths = ((points[:, 1:] - points[:, :-1]) / unit).norm(dim=2)
    rate = jumps[lengths > 0] / lengths[lengths > 0]  # two coinciding centroids make no path
    digits, _ = judge(classifier, images.reshape(pairs * steps, 1, *(SIDE, SIDE)))
    changes = (digits.reshape(pairs, steps)[:, 1:] != digits.reshape(pairs, steps)[:, :-1]).sum(dim=1).double()
    return {
        "jump_mean": float(rate.mean()),
        "jump_max": float(rate.max()),
        "verdict_changes_mean": float(changes.mean()),
        "one_change_share": float((changes == 1).double().mean()),
    }


def mean_and_std(values: list[float]) -> dict[str, float]:
    """Mean and sample std (n - 1) of one figure measured under several seeds."""
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
    return {"mean": mean, "std": math.sqrt(var), "n": len(values)}
