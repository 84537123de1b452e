"""What loading one checkpoint may cost, and the guards that hold it there: bounds checked from the card and the
files' sizes before anything is read whole, hashed or allocated; links out of the models folder refused.

`CheckpointError` is the one error of the checkpoint format (models/checkpoint.py re-exports it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.networks import SIDE

# What the networks of models/networks.py can use: an auto-encoder's code is smaller than its 28x28 image, and
# no layer needs more than a few thousand units (the committed checkpoints: latent 2-6, widths 32-128).
MAX_LATENT_DIM = SIDE * SIDE
MAX_LAYER_WIDTH = 4096
MAX_CARD_BYTES = 1 << 20  # the committed cards are 3-4 KB; read whole before anything else is checked
# centroids, history and atlas are parsed whole into Python objects (several times their size in memory): the
# committed ones are 85 KB at most; an atlas of all 10,000 MNIST test digits at latent 6 is about 1.5 MB
MAX_JSON_FILE_BYTES = 16 << 20


@dataclass(frozen=True)
class CheckpointBounds:
    """What loading one checkpoint may cost, checked from its card and its files' sizes before anything is read
    whole, hashed or allocated. The service takes them from its settings (DIGITAE_MAX_CHECKPOINT_*).

    The defaults hold every committed checkpoint with room: the largest network has 484 thousand parameters
    (1.9 MB of weights), the largest JSON file is an 85 KB atlas; hashing runs at about 1 GB/s."""

    max_parameters: int = 20_000_000  # 80 MB of float32 weights: 40 times the committed ones
    max_file_bytes: int = 128 << 20  # any one file the card lists; the weights of max_parameters fit
    read_timeout_s: float = 30.0  # reading and hashing one checkpoint's files


DEFAULT_BOUNDS = CheckpointBounds()


class CheckpointError(Exception):
    """A checkpoint file is missing, damaged, or disagrees with its card."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def refuse_links_out(path: Path, root: Path) -> None:
    """A `CheckpointError` when `path` is (or lies under) a link that leads out of `root`, the models folder: a
    checkpoint must never make the service read, hash or describe a file kept elsewhere."""
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a link loop
        inside = False
    if not inside:
        raise CheckpointError(path, "a link out of the models folder (refused: only files inside it are read)")


def file_guard(path: Path, max_bytes: int, deadline: float) -> Callable[[int], None]:
    """For `sha256_of`: a `CheckpointError` as soon as the file turns out longer than `max_bytes` (it may grow
    while read) or `deadline` (time.monotonic()) has passed."""

    def check(read: int) -> None:
        if read > max_bytes:
            raise CheckpointError(path, f"larger than the bound of {max_bytes} bytes (grew while read)")
        if time.monotonic() > deadline:
            raise CheckpointError(path, "reading the checkpoint's files took longer than its time bound")

    return check
