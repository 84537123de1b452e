"""Losses, written as the math. All take pixels in [0, 1] and return one value per image.

For the VAE (Kingma & Welling 2014, appendix B), with q(z|x) = N(mu, diag(sigma^2)) and
the prior p(z) = N(0, I):

    KL(q || p) = -1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)
    -ELBO      = reconstruction (-log p(x|z), Bernoulli pixels: summed BCE) + KL
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def mse_per_image(recon: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the pixels of each image: the report's test loss."""
    return ((recon - target) ** 2).flatten(1).mean(dim=1)


def bce_per_image(recon: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy over the pixels of each image."""
    bce = F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target, reduction="none")
    return bce.flatten(1).mean(dim=1)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) for each image, summed over the latent dimensions."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def vae_terms(recon: Tensor, target: Tensor, mu: Tensor, logvar: Tensor) -> dict[str, Tensor]:
    """The VAE's loss terms for each image, in nats: `recon` (summed BCE), `kl`, `elbo`.

    `elbo` is the evidence lower bound itself (higher is better): -(recon + kl).
    Training minimises `recon + kl`, that is -elbo.
    """
    recon_nats = F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target, reduction="none").flatten(1).sum(dim=1)
    kl = kl_to_standard_normal(mu, logvar)
    return {"recon": recon_nats, "kl": kl, "elbo": -(recon_nats + kl)}
