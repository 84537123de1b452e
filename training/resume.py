"""The resumable training state: one file per run, `out_dir/.<name>.resume.pt`, rewritten atomically every epoch.

It holds where the loop stands (`LoopState`), the model, the best weights so far, the
optimizer, the scheduler and all three random states (the batch-order generator, torch's
global one, CUDA's), plus a fingerprint of the settings and data. `restore` refuses a file
whose fingerprint differs, so `--resume` never continues someone else's run; a run resumed
from here ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models.checkpoint import CheckpointError
from models.storage import atomic_torch_save
from training.config import TrainConfig
from training.data import Digits

RESUME_FORMAT = 1


@dataclass
class LoopState:
    """Where a run stands after a completed epoch: what the resume file holds."""

    epoch: int = 0  # completed epochs
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_state: dict[str, Tensor] | None = None
    bad_epochs: int = 0  # epochs since the best one
    done: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    elapsed_s: float = 0.0  # wall time of earlier sessions of a resumed run
    resumed: bool = False


def resume_path(out_dir: Path | str, name: str) -> Path:
    return Path(out_dir) / f".{name}.resume.pt"


def run_fingerprint(config: TrainConfig, data: Digits) -> dict[str, Any]:
    """What must match for a resume file to belong to this run (the device may change)."""
    settings = {k: v for k, v in config.to_dict().items() if k != "device"}
    return {"config": settings, "data": [f["sha256"] for f in data.source.get("files", [])]}


def save_state(
    path: Path,
    state: LoopState,
    fingerprint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    batches: torch.Generator,
    started: float,
) -> None:
    """Write the state after a completed epoch (atomically: a crash keeps the previous one)."""
    atomic_torch_save(
        path,
        {
            "format": RESUME_FORMAT,
            "fingerprint": fingerprint,
            "epoch": state.epoch,
            "best_epoch": state.best_epoch,
            "best_val_loss": state.best_val_loss,
            "bad_epochs": state.bad_epochs,
            "done": state.done,
            "history": state.history,
            "elapsed_s": state.elapsed_s + time.perf_counter() - started,
            "model": model.state_dict(),
            "best_model": state.best_state,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": {
                "batches": batches.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        },
    )


def restore(
    path: Path,
    fingerprint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    batches: torch.Generator,
) -> LoopState:
    """Load a resume file (tensors and plain data only) into the objects of a fresh run."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(path, f"not a readable training state ({exc}); delete it or drop --resume") from None
    if not isinstance(saved, dict) or saved.get("format") != RESUME_FORMAT:
        raise CheckpointError(path, "not a digitae training state; delete it or drop --resume")
    differences = _differences(saved["fingerprint"], fingerprint)
    if differences:
        raise CheckpointError(
            path, f"belongs to a run with other settings ({'; '.join(differences)}); drop --resume to start over"
        )
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        batches.set_state(saved["rng"]["batches"])
        torch.set_rng_state(saved["rng"]["torch"])
        if saved["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(path, f"does not fit this network ({exc}); delete it or drop --resume") from None
    return LoopState(
        epoch=saved["epoch"],
        best_epoch=saved["best_epoch"],
        best_val_loss=saved["best_val_loss"],
        best_state=saved["best_model"],
        bad_epochs=saved["bad_epochs"],
        done=saved["done"],
        history=list(saved["history"]),
        elapsed_s=saved["elapsed_s"],
        resumed=True,
    )


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    out = [
        f"{key} {saved['config'].get(key)!r} there, {value!r} here"
        for key, value in current["config"].items()
        if saved["config"].get(key) != value
    ]
    if saved["data"] != current["data"]:
        out.append("different training data")
    return out
