"""digitae's models: the networks, their losses, the corruptions, and the checkpoint format.

Shared by `training` (which writes checkpoints) and `service` (which serves them).
"""

from models.checkpoint import (
    DEFAULT_CHECKPOINTS_DIR,
    Checkpoint,
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    update_card,
)
from models.corruptions import GaussianNoise, Occlusion
from models.networks import (
    IMAGE_SHAPE,
    NUM_DIGITS,
    REPORT_ARCHITECTURE,
    Architecture,
    AutoEncoder,
    DigitClassifier,
    VariationalAutoEncoder,
    build_model,
)

__all__ = [
    "DEFAULT_CHECKPOINTS_DIR",
    "IMAGE_SHAPE",
    "NUM_DIGITS",
    "REPORT_ARCHITECTURE",
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
    "save_checkpoint",
    "update_card",
]
