"""The judge: a small CNN digit classifier, used only to name the digit in generated images.

Sampling around a centroid or along a path in latent space gives images nobody labelled;
the report judged them by eye. The judge makes that a number: the fraction of samples
around centroid d it calls d, and how confidently. It trains on the same data and split as
the auto-encoders, with light affine augmentation so decoded (slightly blurred, slightly
deformed) digits stay in its range, and is saved as the checkpoint `classifier`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models.checkpoint import JUDGE_NAME
from training.config import make_config
from training.data import Digits
from training.train import EVAL_BATCH, TrainResult, train


def train_judge(
    data: Digits,
    out_dir: Path | str,
    *,
    test_data: Digits | None = None,
    name: str = JUDGE_NAME,
    resume: bool = False,
    verbose: bool = True,
    **overrides: Any,
) -> TrainResult:
    """Train the classifier with its defaults (training.config.KIND_DEFAULTS) and `overrides`."""
    config = make_config("classifier", **overrides)
    return train(config, data, out_dir, name, test_data=test_data, resume=resume, verbose=verbose)


@torch.no_grad()
def judge(classifier: nn.Module, images: Tensor, batch_size: int = EVAL_BATCH) -> tuple[Tensor, Tensor]:
    """The digit the judge sees in each image (N, 1, 28, 28) and its softmax confidence, on CPU."""
    classifier.eval()
    device = next(classifier.parameters()).device
    batches = (images[i : i + batch_size].to(device) for i in range(0, len(images), batch_size))
    probabilities = torch.cat([classifier(x).softmax(dim=1).cpu() for x in batches])
    confidence, digits = probabilities.max(dim=1)
    return digits, confidence
