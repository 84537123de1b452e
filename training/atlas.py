"""The atlas: where real held-out digits land in a model's latent space, stored beside its weights.

The explorer's map plots these points (and the service serves them at GET /v1/models/{name}/atlas).
They are digits the model never trained on, with their true labels: the real MNIST test set when
given (`--test-data`), otherwise the validation and test parts of the training data's split (the
card's `split` rebuilds it), which are held out from training. ATLAS_PER_DIGIT of each digit are
kept, the first ones in file order, so the file stays small and every digit is equally present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.checkpoint import ATLAS_FILE, CheckpointError, list_checkpoints, load_checkpoint
from models.checkpoint_edits import add_files
from models.networks import AUTOENCODER_KINDS, NUM_DIGITS
from training.centroids import encode
from training.data import Digits
from training.split import split_indices

ATLAS_PER_DIGIT = 200  # 2,000 points: a readable scatter, ~100 kB of JSON for 6 dimensions
DECIMALS = 3  # a thousandth: far below what a plot resolves


def atlas_payload(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, source: dict[str, Any]) -> dict:
    """The atlas.json content for `model` over held-out `images` (N, 1, 28, 28) and their `labels`."""
    keep = _balanced(labels.numpy(), ATLAS_PER_DIGIT)
    codes = encode(model, images[keep]).double().numpy().round(DECIMALS)  # float64: short decimal reprs
    return {
        "latent_dim": int(codes.shape[1]),
        "source": source,
        "labels": [int(d) for d in labels[keep]],
        "codes": [[float(v) for v in row] for row in codes],
    }


def write_atlas(
    directory: Path, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, source: dict[str, Any]
) -> None:
    """Add (or replace) the checkpoint's atlas.json, listed in its card. Compact JSON: ~20 bytes a 2-D point."""
    payload = atlas_payload(model, images, labels, source)
    add_files(directory, {ATLAS_FILE: json.dumps(payload, separators=(",", ":")).encode() + b"\n"})


def heldout_digits(
    card: dict[str, Any], data: Digits, test_data: Digits | None
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The digits the model behind `card` did not train on: the test set, else its split's validation + test."""
    if test_data is not None:
        images, labels = test_data.tensors()
        return images, labels, {"set": "test_data", "data": test_data.source}
    split = card.get("split") or {}
    parts = split_indices(
        len(data), split.get("seed", 0), split.get("val_fraction", 0.1), split.get("test_fraction", 0.1)
    )
    held = np.sort(np.concatenate([parts.validation, parts.test]))
    images, labels = data.tensors()
    return images[held], labels[held], {"set": "validation+test split", "data": data.source}


def add_atlases(root: Path, data: Digits | None, test_data: Digits | None) -> list[Path]:
    """Write atlas.json into every auto-encoder checkpoint under `root` (or `root` itself), without retraining."""
    folders = [root] if (root / "card.json").exists() else list_checkpoints(root)
    written = []
    for folder in folders:
        checkpoint = load_checkpoint(folder)
        if checkpoint.kind not in AUTOENCODER_KINDS:
            continue
        if test_data is None and data is None:
            raise CheckpointError(folder, "needs --test-data or the training data to find held-out digits")
        images, labels, source = heldout_digits(checkpoint.card, data, test_data)  # type: ignore[arg-type]
        write_atlas(folder, checkpoint.network, images, labels, source)
        written.append(folder)
    return written


def _balanced(labels: np.ndarray, per_digit: int) -> np.ndarray:
    """Indices of the first `per_digit` images of each digit, in file order."""
    chosen = [np.flatnonzero(labels == d)[:per_digit] for d in range(NUM_DIGITS)]
    return np.sort(np.concatenate(chosen))
