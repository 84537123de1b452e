"""digitae's models: the networks, their losses, the corruptions, the checkpoint format, and the device rule.

Shared by `training` (which writes checkpoints) and `service` (which serves them).
"""

from models.checkpoint import (
    DEFAULT_CHECKPOINTS_DIR,
    JUDGE_NAME,
    Checkpoint,
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from models.corruptions import GaussianNoise, Occlusion
from models.device import resolve_device
from models.networks import (
    AUTOENCODER_KINDS,
    KINDS,
    NUM_DIGITS,
    REPORT_ARCHITECTURE,
    SIDE,
    Architecture,
    AutoEncoder,
    DigitClassifier,
    VariationalAutoEncoder,
    build_model,
    reparameterize,
)

__all__ = [
    "AUTOENCODER_KINDS",
    "DEFAULT_CHECKPOINTS_DIR",
    "JUDGE_NAME",
    "KINDS",
    "NUM_DIGITS",
    "REPORT_ARCHITECTURE",
    "SIDE",
    "Architecture",
    "AutoEncoder",
    "Checkpoint",
    "CheckpointError",
    "DigitClassifier",
    "GaussianNoise",
    "Occlusion",
    "VariationalAutoEncoder",
    "build_model",
    "list_checkpoints",
    "load_checkpoint",
    "reparameterize",
    "resolve_device",
    "save_checkpoint",
]
