"""Tiny checkpoints built with the models code, for the service tests.

They are untrained (the API does not care what the weights learned) and small, so the tests are quick.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.checkpoint import JUDGE_NAME, centroids_payload, save_checkpoint
from models.networks import Architecture, build_model

TINY = Architecture(channels=(4, 8, 8), hidden=16, batch_norm=True)
# The names the /docs examples use, so those examples can be run as they are.
TINY_MODELS = (("ae-2", "ae", 2), ("ae-6", "ae", 6), ("vae-2", "vae", 2))


def build_checkpoints(root: Path, models: tuple[tuple[str, str, int], ...] = TINY_MODELS, judge: bool = True) -> Path:
    """Untrained small checkpoints under `root`, with random centroids, plus a classifier (the judge)."""
    torch.manual_seed(0)
    for name, kind, latent_dim in models:
        network = build_model(kind, latent_dim, TINY).eval()
        with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode really uses them
            for module in network.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.1, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
        centroids = torch.randn(10, latent_dim)
        spread = torch.rand(10, latent_dim) + 0.1
        save_checkpoint(
            root / name,
            network,
            {"metrics": {"test_mse": 0.05, "note": "untrained, for tests"}},
            centroids=centroids_payload(centroids, spread, [100] * 10),
            history=[{"epoch": 1, "train_loss": 0.1, "val_loss": 0.1}],
        )
    if judge:
        save_checkpoint(root / JUDGE_NAME, build_model("classifier"), {"metrics": {"accuracy": 0.1}})
    return root
