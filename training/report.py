"""The report's writing: `build_report` turns training/findings.py's numbers into `README.md`, PNG figures
and `metrics.json` (every number, per model) in the report's folder.

Computing lives in training/findings.py and training/experiments.py; this module only formats
tables, draws figures with matplotlib and writes files. It never writes into a checkpoint.
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
from torch import Tensor

from models.checkpoint import JUDGE_NAME, Checkpoint, atomic_write_json
from models.networks import NUM_DIGITS
from training import experiments as ex
from training.findings import (
    OCCLUSION,
    PAIR_PATH_STEPS,
    PATH_STEPS,
    ROBUSTNESS_NOISE_STD,
    SAMPLES_PER_DIGIT,
    Findings,
    ReportError,
    measure,
)

__all__ = ["METRICS_FILE", "REPORT_FILE", "ReportError", "build_report"]

REPORT_FILE = "README.md"
METRICS_FILE = "metrics.json"

# The seed report's own numbers (its AE-6, trained on about 50,000 images).
REPORT_TEST_LOSS = {6: 0.0208}
REPORT_ROBUSTNESS = {"clean": 0.0208, "occluded": 0.0271, "noisy": 0.0316}

LITERAL_NOISE_STDS = {1 / 255: "variance 1 on the 0-255 scale", 1.0: "variance 1 on the [0, 1] scale"}
SHOWN_PER_CELL = 4  # of the samples per digit, how many the grid figure shows


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
    """Measure (training/findings.py), then write `out_dir/README.md`, its figures and `metrics.json`."""
    findings = measure(Path(models_dir), data, test_data, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = Document(out_dir)
    header_section(doc, findings)
    latent_dim_section(doc, findings)
    robustness_section(doc, findings)
    centroid_samples_section(doc, findings)
    latent_maps_section(doc, findings)
    recognition_section(doc, findings)
    learning_curves_section(doc, findings.checkpoints)
    doc.add("## Notes", *([f"- {note}" for note in findings.notes] or ["- none"]))
    path = doc.write()
    write_metrics(out_dir / METRICS_FILE, findings)
    return path


def write_metrics(path: Path, findings: Findings) -> None:
    """Every measured number, per model, with what it was measured on: the report's machine-readable half."""
    evaluation = findings.evaluation
    atomic_write_json(
        path,
        {
            "evaluation_set": evaluation.description.replace("`", ""),
            "evaluation_images": len(evaluation.labels),
            "seed": findings.seed,
            "models": findings.metrics,
        },
    )


# -- header ----------------------------------------------------------------------------------------


def header_section(doc: Document, f: Findings) -> None:
    evaluation, seed = f.evaluation, f.seed
    files = ", ".join(f"{file['name']} (sha256 {file['sha256'][:12]}…)" for file in evaluation.source.get("files", []))
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
        f"- Checkpoints: `{_display(f.models_dir)}`; seed {seed}; torch {torch.__version__}; "
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
        for name, ckpt in f.checkpoints.items()
    ]
    headers = ["model", "kind", "latent dim", "trained on", "epochs run", "best epoch", "stopped early", "wall (s)"]
    doc.table(headers, rows)


def _data_name(source: Any) -> str:
    if not isinstance(source, dict):
        return "—"
    kind = source.get("kind", "?")
    return f"{kind} ({source['images']} images)" if source.get("images") else str(kind)


# -- (1) test loss against the latent dimension --------------------------------------------------


def latent_dim_section(doc: Document, f: Findings) -> None:
    autoencoders, metrics = f.autoencoders, f.metrics
    rows = []
    for name, ckpt in autoencoders.items():
        theirs = REPORT_TEST_LOSS.get(ckpt.latent_dim) if ckpt.kind == "ae" else None
        rows.append([f"`{name}`", str(ckpt.latent_dim), f"{metrics[name]['test_mse']:.4f}", _fmt(theirs, "{:.4f}")])
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


# -- (2) robustness and (3) the noise curve ---------------------------------------------------------


def robustness_section(doc: Document, f: Findings) -> None:
    doc.add("## 2. Robustness of the best AE to corrupted inputs")
    best, seed, metrics, autoencoders = f.best_ae, f.seed, f.metrics, f.autoencoders
    if best is None:
        doc.add("Left out: no AE checkpoint.")
        return
    stds = f.noise_stds
    curve = metrics[best]["noise_curve"]["test_mse"]
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


def centroid_samples_section(doc: Document, f: Findings) -> None:
    seed, metrics, autoencoders = f.seed, f.metrics, f.autoencoders
    doc.add(
        "## 4. Samples around each digit's centroid (report's Fig. 3)",
        "Latent codes z ~ N(centroid_d, sigma² I): sigma is the standard deviation (the report's \"variance went "
        f'from 0 to 10" read as the std); the same unit draws are scaled by each sigma; seed {seed + 2}. The '
        "centroids are the mean training encodings stored with each checkpoint. Rows: digits; columns: sigma; "
        f"{SHOWN_PER_CELL} samples a cell.",
    )
    sigmas = ", ".join(f"{s:g}" for s in ex.REPORT_SIGMAS)
    for name, samples in f.centroid_samples.items():
        caption = f"{name}: decoded samples around each digit's centroid, sigma = {sigmas}."
        doc.figure(_centroid_grid(samples), f"centroid-samples-{name}.png", caption)

    doc.add(
        "### The judge on the samples around the centroids (beyond the report)",
        f"The fraction of the {SAMPLES_PER_DIGIT} samples per digit around centroid d that the classifier checkpoint "
        "calls d, averaged over the ten digits; AE and VAE of equal latent dimension side by side.",
    )
    if f.judge is None:
        doc.add("Left out: no classifier checkpoint.")
        return
    columns = f.paired_order()
    doc.table(
        ["sigma", *(f"`{n}`" for n in columns)],
        [
            [f"{sigma:g}", *(f"{metrics[n]['judged_as_intended'][f'{sigma:g}']:.3f}" for n in columns)]
            for sigma in ex.REPORT_SIGMAS
        ],
    )
    spreads = [f"`{n}` {float(autoencoders[n].spread.mean()):.2f}" for n in columns]
    doc.add(
        "For scale, the mean within-digit std of the training encodings (per latent dimension): "
        + ", ".join(spreads)
        + ". A sigma well above it samples outside the digit's cluster."
    )


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


def latent_maps_section(doc: Document, f: Findings) -> None:
    metrics, evaluation = f.metrics, f.evaluation
    doc.add(
        "## 5. The 2-D latent maps and a straight path through them (report's Figs. 4-7)",
        f"The evaluation images' encodings coloured by digit, each centroid labelled; black stars: {PATH_STEPS} evenly "
        "spaced points on the straight segment between the two centroids that lie farthest apart in that model's "
        "map (endpoints included), decoded in order below it.",
    )
    if not f.paths:
        doc.add("Left out: no 2-D model.")
    for name, path in f.paths.items():
        first, second = path.first, path.second
        map_caption = f"{name}: encodings of the evaluation set; the path from digit {first}'s centroid to {second}'s."
        centroids = f.autoencoders[name].centroids
        latent_map = _latent_map(name, path.codes, evaluation.labels, centroids, path.points)
        doc.figure(latent_map, f"latent-map-{name}.png", map_caption)
        strip_caption = f"{name}: images decoded along the path (the judge's digit and confidence above each)."
        doc.figure(_path_strip(name, path.decoded, path.verdicts), f"latent-path-{name}.png", strip_caption)

    doc.add(
        "### Smoothness between clusters, as a number (beyond the report)",
        f"The fraction of decoded images the judge names with confidence ≥ {ex.CONFIDENT}: along the figure's path, "
        f"and along the straight paths between all 45 pairs of centroids ({PAIR_PATH_STEPS} points each).",
    )
    if f.judge is None:
        doc.add("Left out: no classifier checkpoint.")
        return
    rows = []
    for name in f.paired_order():
        along = "—"
        if name in f.paths:
            along = f"{metrics[name]['confident_on_path']:.3f} ({f.paths[name].first}→{f.paths[name].second})"
        rows.append([f"`{name}`", along, f"{metrics[name]['confident_on_centroid_paths']:.3f}"])
    doc.table(["model", "figure's path", "all centroid pairs"], rows)


def _latent_map(name: str, codes: Tensor, labels: Tensor, centroids: Tensor, path: Tensor) -> Figure:
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    dots = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=3, alpha=0.6)
    for digit in range(NUM_DIGITS):
        ax.annotate(str(digit), centroids[digit].tolist(), fontsize=11, weight="bold", ha="center", va="center",
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


def recognition_section(doc: Document, f: Findings) -> None:
    doc.add(
        "## 6. Recognition by the nearest centroid (beyond the report)",
        "Each evaluation image gets the digit whose centroid is nearest (Euclidean) to its encoding.",
    )
    rows = [
        [f"`{name}`", "nearest centroid", f"{f.metrics[name]['nearest_centroid_accuracy']:.3f}"]
        for name in f.paired_order()
    ]
    if f.judge is not None:
        accuracy = f.metrics[JUDGE_NAME]["test_accuracy"]
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
