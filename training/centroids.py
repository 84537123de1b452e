"""Per-digit centroids in latent space, and recognition by the nearest one.

The report's formula: C_d = mean of phi(x) over the training images x of digit d, where phi
is the encoder (for the VAE, the posterior mean mu). The per-dimension standard deviation
around C_d is kept too: it tells how far "near the centroid" reaches when sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from models.checkpoint import centroids_payload
from models.networks import NUM_DIGITS, autoencoder

EVAL_BATCH = 1000


@dataclass
class Centroids:
    means: Tensor  # (10, latent_dim): row d is digit d's centroid
    spread: Tensor  # (10, latent_dim): per-dimension std of the encodings around it
    counts: list[int]  # training images per digit

    def payload(self) -> dict[str, Any]:
        """The JSON form stored as a checkpoint's centroids.json."""
        return centroids_payload(self.means, self.spread, self.counts)


@torch.no_grad()
def encode(model: nn.Module, images: Tensor, batch_size: int = EVAL_BATCH) -> Tensor:
    """`model.embed` over `images` in eval mode, batch by batch, on the model's device; result on CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    network = autoencoder(model)
    codes = [network.embed(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(codes)


def compute_centroids(model: nn.Module, images: Tensor, labels: Tensor) -> Centroids:
    """Mean and spread of the encodings of each digit's images (normally the training split)."""
    codes = encode(model, images)
    labels = labels.cpu()
    means, spread, counts = [], [], []
    for digit in range(NUM_DIGITS):
        mine = codes[labels == digit]
        if len(mine) == 0:
            raise ValueError(f"no images of digit {digit}: every digit needs some to have a centroid")
        means.append(mine.mean(dim=0))
        spread.append(mine.std(dim=0, correction=0))
        counts.append(len(mine))
    return Centroids(torch.stack(means), torch.stack(spread), counts)


def nearest_centroid(model: nn.Module, centroids: Tensor, images: Tensor) -> Tensor:
    """The digit whose centroid is closest (Euclidean) to each image's encoding."""
    codes = encode(model, images)
    return torch.cdist(codes, centroids.cpu().to(codes.dtype)).argmin(dim=1)


def nearest_centroid_accuracy(model: nn.Module, centroids: Tensor, images: Tensor, labels: Tensor) -> float:
    """Fraction of `images` whose nearest centroid is their own digit's."""
    predicted = nearest_centroid(model, centroids, images)
    return float((predicted == labels.cpu()).float().mean())
