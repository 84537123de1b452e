"""The models being served: every checkpoint folder loaded and verified at startup, and again when it changes.

Auto-encoders (`ae`, `vae`) are served by their folder name (`ae-6`, `vae-2`). A `classifier`
checkpoint is the judge of the offline experiments: it is verified like the others (a tampered one
is refused just the same), reported by /readyz, and served by POST /v1/classify (not as a model).

A folder that fails to load is a `StartupError` naming the file and the problem, or, with
`skip_bad_checkpoints`, a logged warning and the folder is left out. Any failure counts (a card that torch cannot
build is a `CheckpointError` like a damaged file), and every load is held to `CheckpointBounds` (the settings).
The problems name files and hashes: /readyz shows them only with the admin key (`public_problems`).

Every model has a `version`: its training date and a short hash of its card (which holds the sha256 of
every other file), so any change to a checkpoint is a new version. `Registry.models` is only ever
replaced whole (service/catalog/reloading.py swaps in a new mapping), never edited in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import CheckpointError, load_checkpoint
from models.checkpoint_bounds import DEFAULT_BOUNDS, CheckpointBounds
from models.device import resolve_device
from models.networks import AUTOENCODER_KINDS, AutoEncoderNetwork, autoencoder

log = logging.getLogger("digitae.registry")

PROBLEM_MAX_CHARS = 300  # an unexpected error's message, as a problem names it (torch's can be long)
MODEL_NAME_MAX_LENGTH = 64
MODEL_NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MODEL_NAME_MAX_LENGTH - 1}}}$"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


def is_model_name(name: str) -> bool:
    """Whether `name` can name a served model (a folder name that never leaves the models folder)."""
    return _MODEL_NAME.fullmatch(name) is not None


class StartupError(Exception):
    """The service cannot start as configured; the message says why and what to do."""


class UnknownModel(LookupError):
    """No served model has this name; the message lists the known ones (the API answers 404)."""

    def __init__(self, name: str, known: list[str]) -> None:
        shown = name if len(name) <= 64 else name[:64] + "…"
        super().__init__(f"unknown model {shown!r}; known models: {', '.join(known) or '(none)'}")
        self.name = name
        self.known = known


class NoJudge(LookupError):
    """No digit classifier is served (the API answers 404)."""

    def __init__(self) -> None:
        super().__init__("no digit classifier is being served: add a 'classifier' checkpoint to the models")


@dataclass
class ServedModel:
    """One auto-encoder ready to serve: the network in eval mode on its device, and its centroids."""

    name: str
    kind: str  # "ae" | "vae"
    latent_dim: int
    card: dict[str, Any]
    network: AutoEncoderNetwork
    device: torch.device
    centroids: torch.Tensor  # (10, latent_dim) on `device`, row d = digit d's mean latent
    centroids_cpu: torch.Tensor  # the same on the CPU, for drawing samples
    spread: np.ndarray  # (10, latent_dim), per-dimension std around each centroid
    atlas: dict[str, Any] | None = None  # held-out digits' codes and labels (atlas.json), when the checkpoint has one
    version: str = ""  # model_version(card): what X-Model-Version names
    trained_at: str | None = None  # the card's training date (ISO 8601), when it has one
    # operation -> its graph (service.engine.graphs), made on first use by the inference thread (its only user)
    graphs: dict[str, Callable[..., Any]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def metrics(self) -> dict[str, Any]:
        metrics = self.card.get("metrics")
        return metrics if isinstance(metrics, dict) else {}


@dataclass
class ServedJudge:
    """The digit classifier: names the digit in an image (POST /v1/classify)."""

    name: str
    network: torch.nn.Module
    device: torch.device
    version: str = ""  # model_version(card), as for the auto-encoders (the Open Inference Protocol names it)


@dataclass
class Registry:
    models: dict[str, ServedModel] = field(default_factory=dict)  # replaced whole by a reload, never edited
    judges: list[str] = field(default_factory=list)  # verified classifier checkpoints
    judge: ServedJudge | None = None  # the one /v1/classify serves: the first by name
    skipped: dict[str, str] = field(default_factory=dict)  # folder -> problem, at startup
    refused: dict[str, str] = field(default_factory=dict)  # folder -> problem, at a reload (the old version serves)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where its models are (and reloads go)

    def get_judge(self) -> ServedJudge:
        if self.judge is None:
            raise NoJudge()
        return self.judge

    def get(self, name: str) -> ServedModel:
        """The named model, or `UnknownModel` (names never touch the filesystem)."""
        model = self.models.get(name) if is_model_name(name) else None
        if model is None:
            raise UnknownModel(name, list(self.models))
        return model


def model_version(card: dict[str, Any]) -> str:
    """`YYYYMMDD-<12 hex>`: the training date, and a short sha256 of the card (canonical JSON). The card lists the
    sha256 of every other file, so a retrained or edited checkpoint always gets a new version."""
    digest = hashlib.sha256(json.dumps(card, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    trained_at = card.get("trained_at")
    date = trained_at[:10].replace("-", "") if isinstance(trained_at, str) and len(trained_at) >= 10 else ""
    return f"{date}-{digest}" if date.isdigit() else digest


def checkpoint_folders(models_dir: Path) -> list[Path]:
    """The folders that may hold checkpoints, by name (hidden ones are work in progress: skipped)."""
    return sorted(p for p in Path(models_dir).iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def public_problems(problems: dict[str, str], state: str) -> dict[str, str]:
    """What anyone may see of skipped or refused folders: their names and `state`, never the problem itself (it
    names files, paths and hashes)."""
    return {name: f"{state} (why: in the log, and shown with the admin key)" for name in problems}


def load_registry(
    models_dir: Path, device: torch.device | str, *, skip_bad: bool, bounds: CheckpointBounds = DEFAULT_BOUNDS
) -> Registry:
    """Load and verify every checkpoint folder under `models_dir` onto `device` (a torch device, or a
    DIGITAE_DEVICE name that models.device.resolve_device turns into one), each within `bounds`."""
    if isinstance(device, str):
        try:
            device = resolve_device(device)
        except ValueError as exc:
            raise StartupError(f"DIGITAE_DEVICE: {exc}") from None
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise StartupError(f"the models folder {models_dir} does not exist (set DIGITAE_MODELS_DIR)")
    registry = Registry(device=device)
    for folder in checkpoint_folders(models_dir):
        try:
            loaded = load_folder(folder, device, bounds)
        except CheckpointError as exc:
            problem = f"checkpoint {exc.path}: {exc.problem}"
            if not skip_bad:
                raise StartupError(
                    f"{problem} (fix or remove {folder}, or set DIGITAE_SKIP_BAD_CHECKPOINTS=true to start without it)"
                ) from exc
            log.warning("skipping %s", problem)
            registry.skipped[folder.name] = problem
            continue
        if isinstance(loaded, ServedJudge):
            registry.judges.append(folder.name)
            if registry.judge is None:
                registry.judge = loaded
        else:
            registry.models[folder.name] = loaded
    if not registry.models:
        raise StartupError(f"no auto-encoder checkpoint could be loaded from {models_dir}; nothing to serve")
    return registry


def load_folder(
    folder: Path, device: torch.device, bounds: CheckpointBounds = DEFAULT_BOUNDS
) -> ServedModel | ServedJudge:
    """Load and verify one checkpoint folder: an auto-encoder to serve, or a judge (the digit classifier).
    Raises CheckpointError naming the file and the problem, whatever the problem (torch failing to allocate what a
    card asks for included)."""
    if not is_model_name(folder.name):
        raise CheckpointError(folder, f"the folder name must match {MODEL_NAME_PATTERN} to be served")
    try:
        return _load_folder(folder, device, bounds)
    except CheckpointError:
        raise
    except Exception as exc:  # anything else a hostile or broken checkpoint makes torch or the OS raise
        message = f"{type(exc).__name__}: {exc}"
        if len(message) > PROBLEM_MAX_CHARS:
            message = message[:PROBLEM_MAX_CHARS] + "…"
        raise CheckpointError(folder, f"cannot be loaded ({message})") from exc


def _load_folder(folder: Path, device: torch.device, bounds: CheckpointBounds) -> ServedModel | ServedJudge:
    checkpoint = load_checkpoint(folder, device=device, bounds=bounds)
    if checkpoint.kind not in AUTOENCODER_KINDS:
        log.info("verified %s (%s, serves /v1/classify)", folder.name, checkpoint.kind)
        return ServedJudge(folder.name, checkpoint.network, device, model_version(checkpoint.card))
    assert checkpoint.centroids is not None and checkpoint.spread is not None  # load_checkpoint guarantees them
    latent_dim = int(checkpoint.card["latent_dim"])
    trained_at = checkpoint.card.get("trained_at")
    model = ServedModel(
        name=folder.name,
        kind=checkpoint.kind,
        latent_dim=latent_dim,
        card=checkpoint.card,
        network=autoencoder(checkpoint.network),
        device=device,
        centroids=checkpoint.centroids.to(device),
        centroids_cpu=checkpoint.centroids.clone(),
        spread=checkpoint.spread.numpy(),
        atlas=checkpoint.atlas,
        version=model_version(checkpoint.card),
        trained_at=trained_at if isinstance(trained_at, str) else None,
    )
    log.info(
        "loaded %s (%s, latent_dim %d, version %s) on %s",
        *(folder.name, checkpoint.kind, latent_dim, model.version, device),
    )
    return model
