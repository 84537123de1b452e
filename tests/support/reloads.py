"""Shared by the reload and balancer tests: new versions of a checkpoint, written into a served models folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from models.checkpoint import WEIGHTS_FILE, centroids_payload, save_checkpoint
from models.networks import build_model
from tests.support.checkpoints import TINY


def write_new_version(models: Path, name: str, seed: int) -> None:
    """A retrained checkpoint (other weights and centroids), written into place as training does: atomically."""
    torch.manual_seed(seed)
    kind, latent_dim = ("vae", 2) if name.startswith("vae") else ("ae", int(name.rsplit("-", 1)[1]))
    save_checkpoint(
        models / name,
        build_model(kind, latent_dim, TINY).eval(),
        {"metrics": {"test_mse": 0.04, "note": f"retrained, seed {seed}"}, "trained_at": "2026-11-26T10:00:00+00:00"},
        centroids=centroids_payload(torch.randn(10, latent_dim), torch.rand(10, latent_dim) + 0.1, [100] * 10),
    )


def write_tampered_version(models: Path, name: str, seed: int) -> None:
    """A new version whose weights were edited after its card was written; moved in with one rename."""
    staging = models / f".staging-{name}"
    write_new_version(staging.parent / ".work", name, seed)
    shutil.move(staging.parent / ".work" / name, staging)
    data = bytearray((staging / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (staging / WEIGHTS_FILE).write_bytes(bytes(data))
    old = models / f".old-{name}"
    os.replace(models / name, old)
    os.replace(staging, models / name)
    shutil.rmtree(old)
