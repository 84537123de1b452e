"""Random small affine distortions of a batch: the augmentation the report itself suggests.

With 5,000 training images the auto-encoder overfits; slightly rotated, scaled, sheared
and shifted copies are still the same digits and teach the decoder more shapes. The AE
then reconstructs the augmented image (input = target), so no label or pairing changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# At strength 1: up to +-0.2 rad (about 11 degrees) rotation, +-10 % scale, +-0.15 shear,
# and +-0.1 of the half-width (about 1.4 pixels) shift.
MAX_ROTATION = 0.2
MAX_SCALE = 0.1
MAX_SHEAR = 0.15
MAX_SHIFT = 0.1


def random_affine(images: Tensor, strength: float, generator: torch.Generator | None = None) -> Tensor:
    """Distort each image of `images` (B, C, H, W) by its own random affine map.

    `strength` scales every range above; 0 returns `images` itself. The random numbers come
    from `generator` (a CPU generator), so a seeded run draws the same distortions.
    """
    if strength <= 0:
        return images
    theta = random_thetas(len(images), strength, generator).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_thetas(batch: int, strength: float, generator: torch.Generator | None = None) -> Tensor:
    """(batch, 2, 3) affine matrices in the normalised coordinates of `F.affine_grid`."""

    def uniform(limit: float) -> Tensor:  # U(-limit, limit) * strength
        return (torch.rand(batch, generator=generator) - 0.5) * 2 * strength * limit

    angle = uniform(MAX_ROTATION)
    scale = 1 + uniform(MAX_SCALE)
    shear = uniform(MAX_SHEAR)
    shift_x, shift_y = uniform(MAX_SHIFT), uniform(MAX_SHIFT)
    cos, sin = torch.cos(angle), torch.sin(angle)
    row_x = torch.stack([cos / scale, -sin / scale + shear, shift_x], dim=1)
    row_y = torch.stack([sin / scale, cos / scale, shift_y], dim=1)
    return torch.stack([row_x, row_y], dim=1)
