"""What decides a training run: `TrainConfig`, the per-kind presets, and the device it runs on (the rule itself
is models/device.py's, shared with the service).

Kept apart from the loop (training/train.py) the way nanoGPT keeps its configuration apart
from its training script: every field is a CLI flag (training/cli.py derives the flags from
here), and `make_config(kind, **overrides)` is the one way to build a config from defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from models.checkpoint import JUDGE_NAME
from models.device import resolve_device
from models.networks import KINDS, Architecture
from training.split import check_fractions

SCHEDULES = ("none", "onecycle")
ARCHITECTURE_FIELDS = ("latent_dim", "channels", "hidden", "batch_norm")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (plus the device). Each field is a CLI flag."""

    kind: str = "ae"
    latent_dim: int | None = 6
    channels: tuple[int, int, int] = (8, 16, 32)
    hidden: int = 64
    batch_norm: bool = True
    beta: float = 1.0  # the VAE's weight on its KL term: a beta-VAE when not 1 (VAE only)
    augment: float = 0.0  # strength of training.augment.random_affine; 0 = none
    epochs: int = 100  # the most epochs; early stopping usually ends sooner
    patience: int = 10  # epochs without a better validation loss before stopping
    batch_size: int = 64
    lr: float = 1e-3  # Adam's learning rate (the peak one with onecycle)
    schedule: str = "none"  # none | onecycle (over `epochs` epochs)
    weight_decay: float = 0.0
    seed: int = 0  # weights, batch order, augmentation, sampling
    split_seed: int = 0  # the train/validation/test split, shared by models meant to compare
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    device: str = "auto"  # auto = cuda when available, else cpu

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind != "classifier" and (self.latent_dim is None or self.latent_dim < 1):
            raise ValueError(f"a {self.kind} needs a positive latent dimension, got {self.latent_dim!r}")
        if len(self.channels) != 3 or min(self.channels) < 1 or self.hidden < 1:
            raise ValueError(f"channels (3 numbers) and hidden must be positive, got {self.channels}, {self.hidden}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("epochs", "patience", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.beta > 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if self.kind != "vae" and self.beta != 1.0:
            raise ValueError(f"beta weighs a VAE's KL term; kind {self.kind!r} has none")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.augment >= 0):
            raise ValueError("lr must be positive; weight_decay and augment must not be negative")
        check_fractions(self.val_fraction, self.test_fraction)
        resolve_device(self.device)

    def architecture(self) -> Architecture:
        return Architecture(channels=self.channels, hidden=self.hidden, batch_norm=self.batch_norm)

    def to_dict(self) -> dict[str, Any]:
        """The card's `config`: JSON-ready, without settings that do not apply to this kind."""
        data = asdict(self)
        data["channels"] = list(self.channels)
        if self.kind == "classifier":
            for name in ARCHITECTURE_FIELDS:
                data.pop(name)
        if self.kind != "vae":
            data.pop("beta")  # cards (and resume fingerprints) of other kinds stay as they were
        return data


TUNED: dict[str, Any] = {
    "channels": (32, 64, 128),
    "hidden": 128,
    "augment": 0.5,
    "schedule": "onecycle",
    "lr": 3e-3,
    "epochs": 60,
    "patience": 10,
}

# Per-kind defaults over TrainConfig's own; the CLI's unset flags fall back to these.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    # Tuned for the 5,000-image default (see reports/README.md): a 4x wider trunk, mild
    # affine augmentation and a one-cycle schedule take AE-6 from ~0.024 to ~0.019 test MSE.
    "ae": TUNED,
    "vae": TUNED,
    "classifier": {"latent_dim": None, "augment": 1.0, "epochs": 40, "patience": 5, "batch_size": 128},
}


def make_config(kind: str, **overrides: Any) -> TrainConfig:
    """TrainConfig for `kind`: its defaults, then every override that is not None."""
    if kind not in KIND_DEFAULTS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown TrainConfig fields: {sorted(unknown)}")
    settings = {**KIND_DEFAULTS[kind], **{k: v for k, v in overrides.items() if v is not None}, "kind": kind}
    return TrainConfig(**settings)


def default_for(kind: str, name: str) -> Any:
    """The value `make_config(kind)` uses for field `name`."""
    if name in KIND_DEFAULTS[kind]:
        return KIND_DEFAULTS[kind][name]
    return next(f.default for f in fields(TrainConfig) if f.name == name)


def default_name(config: TrainConfig) -> str:
    """The checkpoint's name when none is given: `<kind>-<latent_dim>`, `vae-<latent_dim>-b<beta>`, or `classifier`.

    A beta-VAE's name carries its beta (`vae-2-b4`, `vae-6-b0.5`): URL-safe, and never the plain VAE's name.
    """
    if config.kind == "classifier":
        return JUDGE_NAME
    name = f"{config.kind}-{config.latent_dim}"
    return name if config.beta == 1.0 else f"{name}-b{config.beta:g}"
