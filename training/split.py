"""Train / validation / test split by indices, from a fixed seed.

Indices rather than copies (the report's samplers): the same samples can be drawn again
from a corrupted copy of the data, so clean, noisy and occluded losses compare like with
like. `split_indices(n, seed, val_fraction, test_fraction)` always gives the same split,
so a card's `split` section is enough to rebuild it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Split:
    """Sorted, disjoint index arrays that together cover range(n)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    seed: int
    val_fraction: float
    test_fraction: float

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def to_card(self) -> dict[str, Any]:
        """What a checkpoint's card records: enough to call `split_indices` again."""
        return {
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "sizes": self.sizes(),
        }


def split_indices(n: int, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1) -> Split:
    """Shuffle range(n) with `seed`, cut off the test and validation parts, keep the rest for training."""
    check_fractions(val_fraction, test_fraction)
    n_test = round(n * test_fraction)
    n_val = round(n * val_fraction)
    if n_val < 1 or n - n_val - n_test < 1 or (test_fraction > 0 and n_test < 1):
        raise ValueError(
            f"{n} images are too few to split into train/validation/test with fractions "
            f"{1 - val_fraction - test_fraction:.2f}/{val_fraction:.2f}/{test_fraction:.2f}"
        )
    order = np.random.default_rng(seed).permutation(n)
    test = np.sort(order[:n_test])
    validation = np.sort(order[n_test : n_test + n_val])
    train = np.sort(order[n_test + n_val :])
    return Split(train, validation, test, int(seed), float(val_fraction), float(test_fraction))


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Validation is needed for early stopping; the test part may be empty."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"the validation fraction must lie strictly between 0 and 1, got {val_fraction}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"the test fraction must lie in [0, 1), got {test_fraction}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"validation + test fractions leave no images to train on: {val_fraction} + {test_fraction}")
