"""The training loop: Adam, early stopping on validation loss, a resumable state every epoch.

`train(config, data, out_dir, name)` splits `data` by a seeded index split, trains the
network `config` describes, restores the weights of the best validation epoch, measures
it, and writes the checkpoint `out_dir/name` (models.checkpoint's format). The data
(5,000 images) lives in memory as tensors; no DataLoader.

Losses (one number per batch, the mean over its images):
    ae          mean squared error per pixel (the report's loss)
    vae         recon + beta * kl from models.losses.vae_terms: -ELBO in nats per image when beta
                is 1 (the default), a beta-VAE's objective otherwise (Higgins et al. 2017)
    classifier  cross-entropy (the judge, see training/judge.py)

Reproducible: the same config and data give bit-identical weights on the same machine, torch
build and CPU thread count (the card records `threads`; another count reorders floating-point
sums, and the run then agrees only to about three significant digits). The weights are
initialised after torch.manual_seed(seed); the batch order and the augmentation draw from
their own generator seeded with `seed`; the VAE's sampling and dropout use torch's global
generator. All three states are saved every epoch (training/resume.py); `resume=True`
continues from there and ends exactly where an uninterrupted run would.

The card it writes (the config, the split, the measured metrics) is described in
models/checkpoint.py, where the checkpoint format lives; the configuration and the device
choice are in training/config.py, the resume file in training/resume.py.

The history (history.json) is a list of {"epoch", "train_loss", "val_loss", "lr"}.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from models.checkpoint import save_checkpoint
from models.device import resolve_device
from models.losses import bce_per_image, mse_per_image, vae_terms
from models.networks import NUM_DIGITS, VariationalAutoEncoder, build_model, reparameterize
from training.atlas import heldout_digits, write_atlas
from training.augment import random_affine
from training.centroids import Centroids, compute_centroids, nearest_centroid_accuracy
from training.config import TrainConfig, default_name, make_config
from training.data import DataError, Digits
from training.resume import LoopState, restore, resume_path, run_fingerprint, save_state
from training.split import Split, split_indices

__all__ = ["TrainConfig", "TrainResult", "evaluate", "fit", "make_config", "resume_path", "train"]

EVAL_BATCH = 1000
EVAL_SEED = 0  # the VAE's evaluation samples z from this seed, so every epoch is measured alike


# -- losses and measurements -----------------------------------------------------------------


def batch_loss(model: nn.Module, images: Tensor, labels: Tensor, beta: float = 1.0) -> Tensor:
    """The training objective for one batch (see the module docstring); `beta` weighs the VAE's KL term."""
    if model.kind == "ae":
        recon, _ = model(images)
        return F.mse_loss(recon, images)
    if model.kind == "vae":
        recon, mu, logvar = model(images)
        terms = vae_terms(recon, images, mu, logvar)
        return (terms["recon"] + beta * terms["kl"]).mean()
    return F.cross_entropy(model(images), labels)


VALIDATION_LOSS = {"ae": "mse", "vae": "elbo", "classifier": "cross_entropy"}


def validation_loss(metrics: dict[str, float], kind: str, beta: float = 1.0) -> float:
    """The number early stopping watches, lower is better: the training objective on the validation split
    (-ELBO for the VAE, recon + beta * KL for a beta-VAE)."""
    if kind == "vae" and beta != 1.0:
        return metrics["recon"] + beta * metrics["kl"]
    value = metrics[VALIDATION_LOSS[kind]]
    return -value if kind == "vae" else value


@torch.no_grad()
def evaluate(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """Mean metrics over `images` in eval mode (keys in the module docstring, without centroids)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sampler = torch.Generator().manual_seed(EVAL_SEED)
    sums: dict[str, float] = {}
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        for key, values in _per_image_metrics(model, x, y, sampler).items():
            sums[key] = sums.get(key, 0.0) + float(values.double().sum())
    model.train(was_training)
    return {"images": len(images), **{key: total / len(images) for key, total in sums.items()}}


def _per_image_metrics(model: nn.Module, x: Tensor, y: Tensor, sampler: torch.Generator) -> dict[str, Tensor]:
    if model.kind == "classifier":
        logits = model(x)
        return {
            "accuracy": (logits.argmax(dim=1) == y).float(),
            "cross_entropy": F.cross_entropy(logits, y, reduction="none"),
        }
    if model.kind == "ae":
        recon, _ = model(x)
        return {"mse": mse_per_image(recon, x), "bce": bce_per_image(recon, x)}
    assert isinstance(model, VariationalAutoEncoder)  # the kinds are ae, vae and classifier
    mu, logvar = model.encode(x)
    mean_recon = model.decode(mu)
    terms = vae_terms(model.decode(reparameterize(mu, logvar, sampler)), x, mu, logvar)
    return {"mse": mse_per_image(mean_recon, x), "bce": bce_per_image(mean_recon, x), **terms}


# -- the loop --------------------------------------------------------------------------------


@dataclass
class TrainResult:
    path: Path
    model: nn.Module
    card: dict[str, Any]
    history: list[dict[str, float]]
    centroids: Centroids | None


EpochHook = Callable[[dict[str, float], nn.Module], None]


def train(
    config: TrainConfig,
    data: Digits,
    out_dir: Path | str,
    name: str | None = None,
    *,
    test_data: Digits | None = None,
    resume: bool = False,
    on_epoch_end: EpochHook | None = None,
    verbose: bool = True,
) -> TrainResult:
    """Train, keep the best epoch, measure, and save the checkpoint `out_dir/name`.

    `on_epoch_end(record, model)` runs after each epoch's state is saved (a test can raise
    from it to simulate an interruption). Raises DataError for unusable data and
    CheckpointError for a resume file that is damaged or belongs to other settings.
    """
    started = time.perf_counter()
    name = name or default_name(config)
    out_dir = Path(out_dir)
    device = resolve_device(config.device)
    images, labels = data.tensors()
    split = _split(config, data)

    torch.manual_seed(config.seed)
    model = build_model(config.kind, config.latent_dim, config.architecture()).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False

    state_file = resume_path(out_dir, name)
    state = fit(
        model, config, (images[split.train], labels[split.train]), (images[split.validation], labels[split.validation]),
        state_file=state_file, fingerprint=run_fingerprint(config, data), resume=resume, started=started,
        on_epoch_end=on_epoch_end, verbose=verbose, desc=name,
    )  # fmt: skip
    assert state.best_state is not None  # fit raises when no epoch was finite
    model.load_state_dict(state.best_state)
    model.eval()

    centroids = None
    if config.kind != "classifier":
        centroids = compute_centroids(model, images[split.train], labels[split.train])
    metrics = {"validation": _measure(model, centroids, images[split.validation], labels[split.validation])}
    if len(split.test):
        metrics["test_split"] = _measure(model, centroids, images[split.test], labels[split.test])
    if test_data is not None:
        metrics["heldout"] = _measure(model, centroids, *test_data.tensors())

    card = {
        "versions": package_versions(),
        "data": data.source,
        "test_data": test_data.source if test_data is not None else None,
        "split": split.to_card(),
        "config": config.to_dict(),
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss,
        "stopped_early": state.bad_epochs >= config.patience,
        "wall_time_s": round(state.elapsed_s + time.perf_counter() - started, 2),
        "device": str(device),
        "threads": torch.get_num_threads(),  # CPU threads: bit-identical retraining needs the same count
        "resumed": state.resumed,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": metrics,
    }
    path = save_checkpoint(
        out_dir / name, model, card, centroids=centroids.payload() if centroids else None, history=state.history
    )
    if centroids is not None:  # the explorer's map: held-out digits' codes
        write_atlas(path, model, *heldout_digits(card, data, test_data))
    state_file.unlink(missing_ok=True)
    return TrainResult(path=path, model=model, card=card, history=state.history, centroids=centroids)


def fit(
    model: nn.Module,
    config: TrainConfig,
    train_set: tuple[Tensor, Tensor],
    val_set: tuple[Tensor, Tensor],
    *,
    state_file: Path,
    fingerprint: dict[str, Any],
    resume: bool = False,
    started: float | None = None,
    on_epoch_end: EpochHook | None = None,
    verbose: bool = True,
    desc: str = "train",
) -> LoopState:
    """Run epochs until patience runs out or `config.epochs` is reached; return the final state."""
    started = time.perf_counter() if started is None else started
    device = next(model.parameters()).device
    train_x, train_y = (t.to(device) for t in train_set)
    val_x, val_y = val_set
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = None
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
        )
    batches = torch.Generator().manual_seed(config.seed)  # batch order and augmentation

    state = LoopState()
    if resume and state_file.exists():
        state = restore(state_file, fingerprint, model, optimizer, scheduler, batches)
    elif resume and verbose:
        print(f"{desc}: no interrupted run to resume ({state_file.name} is absent); starting afresh", file=sys.stderr)
    elif state_file.exists() and verbose:
        print(f"{desc}: discarding the interrupted run in {state_file.name} (--resume continues it)", file=sys.stderr)

    interactive = verbose and sys.stderr.isatty()
    with tqdm(
        total=config.epochs, initial=state.epoch, desc=desc, unit="epoch", file=sys.stderr, disable=not interactive
    ) as bar:
        while not state.done:
            model.train()
            train_loss = _train_epoch(model, config, train_x, train_y, optimizer, scheduler, batches)
            val_loss = validation_loss(evaluate(model, val_x, val_y), config.kind, config.beta)
            record = _advance(state, model, config, train_loss, val_loss, optimizer.param_groups[0]["lr"])
            save_state(state_file, state, fingerprint, model, optimizer, scheduler, batches, started)
            bar.set_postfix(train=f"{train_loss:.5f}", val=f"{val_loss:.5f}", best=state.best_epoch)
            bar.update(1)
            if verbose and not interactive:
                mark = " *" if record["epoch"] == state.best_epoch else ""
                print(
                    f"{desc} epoch {state.epoch}/{config.epochs}: train {train_loss:.5f} val {val_loss:.5f}{mark}",
                    file=sys.stderr,
                    flush=True,
                )
            if on_epoch_end is not None:
                on_epoch_end(record, model)
    if state.best_state is None:
        raise FloatingPointError("the validation loss was never finite; lower --lr")
    return state


def _train_epoch(
    model: nn.Module,
    config: TrainConfig,
    images: Tensor,
    labels: Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    generator: torch.Generator,
) -> float:
    """One pass over the training images in a seeded random order; returns the mean loss."""
    order = torch.randperm(len(images), generator=generator).to(images.device)
    total = 0.0
    for start in range(0, len(images), config.batch_size):
        index = order[start : start + config.batch_size]
        x = random_affine(images[index], config.augment, generator)
        loss = batch_loss(model, x, labels[index], config.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(index)
    return total / len(images)


def _advance(
    state: LoopState, model: nn.Module, config: TrainConfig, train_loss: float, val_loss: float, lr: float
) -> dict[str, float]:
    """Book one finished epoch: history, best weights, patience, and whether to stop."""
    state.epoch += 1
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"the training loss became {train_loss} at epoch {state.epoch}; lower --lr")
    record = {"epoch": state.epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr}
    state.history.append(record)
    if val_loss < state.best_val_loss:
        state.best_val_loss, state.best_epoch, state.bad_epochs = val_loss, state.epoch, 0
        state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        state.bad_epochs += 1
    state.done = state.bad_epochs >= config.patience or state.epoch >= config.epochs
    return record


# -- the split, the measurements, the versions ---------------------------------------------------


def _split(config: TrainConfig, data: Digits) -> Split:
    source = data.source.get("kind", "data")
    try:
        split = split_indices(len(data), config.split_seed, config.val_fraction, config.test_fraction)
    except ValueError as exc:
        raise DataError(source, str(exc)) from None
    if config.kind != "classifier":
        missing = sorted(set(range(NUM_DIGITS)) - set(np.unique(data.labels[split.train]).tolist()))
        if missing:
            raise DataError(source, f"the training split has no images of digit(s) {missing}; centroids need all ten")
    return split


def _measure(model: nn.Module, centroids: Centroids | None, images: Tensor, labels: Tensor) -> dict[str, float]:
    metrics = evaluate(model, images, labels)
    if centroids is not None:
        metrics["nearest_centroid_accuracy"] = nearest_centroid_accuracy(model, centroids.means, images, labels)
    return metrics


def package_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }
