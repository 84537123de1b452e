"""Corruptions of clean images, shared by the robustness experiments and the service (which corrupts one image
at a time by a `CorruptionPlan`).

Each is reproducible from a seed: the same seed corrupts the same image the same way,
whatever else the process has drawn from torch's global generator.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()  # fresh entropy for this generator only; torch's global generator is left alone
    else:
        g.manual_seed(int(seed))
    return g


@dataclass(frozen=True)
class GaussianNoise:
    """Additive N(mean, std^2) noise per pixel; the result is clipped back to [0, 1]."""

    mean: float = 0.0
    std: float = 1.0

    def __call__(self, images: Tensor, seed: int | None = None) -> Tensor:
        g = _generator(seed)
        noise = torch.randn(images.shape, generator=g) * self.std + self.mean
        return (images + noise.to(images.device, images.dtype)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Occlusion:
    """A filled rectangle per image, its area a fraction of the image drawn from `area`
    and its width/height ratio drawn (log-uniformly) from `aspect`; placed uniformly."""

    area: tuple[float, float] = (0.1, 0.3)
    aspect: tuple[float, float] = (0.5, 2.0)
    fill: float = 0.0

    def rectangles(self, n: int, height: int, width: int, seed: int | None = None) -> list[tuple[int, int, int, int]]:
        """(top, left, h, w) of each image's rectangle."""
        g = _generator(seed)
        out = []
        for _ in range(n):
            area = _uniform(g, *self.area) * height * width
            log_lo, log_hi = math.log(self.aspect[0]), math.log(self.aspect[1])
            ratio = math.exp(_uniform(g, log_lo, log_hi))
            h = max(1, min(height, round(math.sqrt(area / ratio))))
            w = max(1, min(width, round(math.sqrt(area * ratio))))
            top = int(torch.randint(0, height - h + 1, (1,), generator=g))
            left = int(torch.randint(0, width - w + 1, (1,), generator=g))
            out.append((top, left, h, w))
        return out

    def __call__(self, images: Tensor, seed: int | None = None) -> Tensor:
        out = images.clone()
        height, width = images.shape[-2:]
        for i, (top, left, h, w) in enumerate(self.rectangles(len(images), height, width, seed)):
            out[i, ..., top : top + h, left : left + w] = self.fill
        return out


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def draw_seed() -> int:
    """A fresh seed for a request that gave none (63 bits: it fits a signed 64-bit integer and JSON clients)."""
    return secrets.randbits(63)


Rectangle = tuple[int, int, int, int]  # (top, left, height, width)


@dataclass(frozen=True, slots=True)
class CorruptionPlan:
    """What to do to a clean image, occlusion first then noise, both drawn from `seed`."""

    seed: int
    noise: GaussianNoise | None = None
    occlusion: Occlusion | None = None
    rectangle: Rectangle | None = None  # drawn from the seed when None


def corrupt(clean: np.ndarray, plan: CorruptionPlan) -> tuple[np.ndarray, Rectangle | None]:
    """The image (28, 28) the model will see, and the occlusion rectangle used (if any): exactly what
    `Occlusion(...)(x, seed)` then `GaussianNoise(...)(x, seed)` do to a batch of one."""
    x = torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32))[None, None]
    rectangle = plan.rectangle
    if plan.occlusion is not None:
        if rectangle is None:
            height, width = clean.shape[-2:]
            rectangle = plan.occlusion.rectangles(1, height, width, plan.seed)[0]
        top, left, h, w = rectangle
        x = x.clone()
        x[..., top : top + h, left : left + w] = plan.occlusion.fill
    if plan.noise is not None:
        x = plan.noise(x, plan.seed)
    return x[0, 0].numpy(), rectangle


def corrupt_all(
    images: list[np.ndarray], plan: CorruptionPlan | None
) -> tuple[list[np.ndarray], list[Rectangle | None]]:
    """What the model sees for each clean image, and the occlusion rectangle of each (None: no plan, clean)."""
    if plan is None:
        return images, [None] * len(images)
    corrupted = [corrupt(image, plan) for image in images]
    return [seen for seen, _ in corrupted], [rectangle for _, rectangle in corrupted]
