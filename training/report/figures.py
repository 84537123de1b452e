"""The report's figures, drawn with matplotlib from the findings (no pyplot: no global state, no display)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from models.checkpoint import Checkpoint
from models.networks import NUM_DIGITS
from training import experiments as ex
from training.findings import READINGS, Findings
from training.metrics import required
from training.report.document import natural_generation

# The seed report's own numbers (its AE-6, trained on about 50,000 images).
REPORT_TEST_LOSS = {6: 0.0208}
REPORT_ROBUSTNESS = {"clean": 0.0208, "occluded": 0.0271, "noisy": 0.0316}
SHOWN_PER_CELL = 4  # of the samples per digit, how many the grid figure shows


def test_mse(f: Findings, name: str) -> float:
    return required(f.metrics[name].test_mse, f"{name}'s test MSE")


# -- (1) and (3): test loss against the latent dimension and against the noise level ---------------------


def test_loss_figure(f: Findings) -> Figure:
    autoencoders = f.autoencoders
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for kind, style in (("ae", "o-"), ("vae", "s")):  # the VAEs are extra points, not a curve
        points = sorted((c.latent_dim or 0, test_mse(f, n)) for n, c in autoencoders.items() if c.kind == kind)
        if points:
            ax.plot(*zip(*points, strict=True), style, label=kind.upper())
    ax.plot(list(REPORT_TEST_LOSS), list(REPORT_TEST_LOSS.values()), "k*", markersize=12, label="report's AE")
    ax.set(xlabel="latent dimension", ylabel="test MSE", title="Test loss against latent dimension")
    ax.set_xticks(sorted({c.latent_dim or 0 for c in autoencoders.values()} | set(REPORT_TEST_LOSS)))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def noise_figure(best: str, stds: tuple[float, ...], curve: list[float]) -> Figure:
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(stds, curve, "o-", label=best)
    ax.axhline(REPORT_ROBUSTNESS["noisy"], color="k", linestyle=":", label="report's noisy loss")
    ax.set(xlabel="noise std (pixels in [0, 1])", ylabel="test MSE against the clean image")
    ax.set_title(f"{best}: test loss against the noise level")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


# -- (4) samples around the centroids --------------------------------------------------------------------


def centroid_grid(samples: Tensor) -> Figure:
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


def judged_figure(f: Findings) -> Figure:
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    shown = [n for n in ("ae-2", "vae-2", "ae-6", "vae-6") if n in f.autoencoders]
    for ax, (reading, heading, sigmas) in zip(fig.subplots(1, len(READINGS)), READINGS, strict=True):
        for name in shown:
            judged = required(f.metrics[name].judged_as_intended, f"{name}'s judged share")[reading]
            points = [judged[f"{s:g}"] for s in sigmas]
            style = "o-" if f.autoencoders[name].kind == "ae" else "s--"
            ax.errorbar(sigmas, [p.mean for p in points], yerr=[p.std for p in points], fmt=style,
                        capsize=3, label=name)  # fmt: skip
        ax.set(xlabel="sigma", ylabel="share on the intended digit", ylim=(0, 1.05))
        ax.set_title(heading, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


# -- (5) the 2-D latent maps -----------------------------------------------------------------------------


def latent_map(name: str, codes: Tensor, labels: Tensor, centroids: Tensor, path: Tensor) -> Figure:
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


def path_strip(name: str, decoded: Tensor, verdicts: tuple[Tensor, Tensor] | None) -> Figure:
    fig = Figure(figsize=(1.0 * len(decoded), 1.4), layout="constrained")
    for i, ax in enumerate(np.atleast_1d(fig.subplots(1, len(decoded)))):
        ax.imshow(decoded[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        if verdicts is not None:
            ax.set_title(f"{int(verdicts[0][i])} ({float(verdicts[1][i]):.2f})", fontsize=8)
    fig.suptitle(f"{name}: decoded along the path", fontsize=9)
    return fig


# -- (7) learning curves ---------------------------------------------------------------------------------


def learning_curve(name: str, ckpt: Checkpoint, history: list[dict]) -> Figure:
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
    return fig


# -- (8) generation and (9) the beta sweep ---------------------------------------------------------------


def generated_figure(f: Findings) -> Figure:
    names = [n for n in f.paired_order() if n in f.generated]
    fig = Figure(figsize=(10, 0.75 * len(names) + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(names), 1))
    for ax, name in zip(axes, names, strict=True):
        source = "prior" if "prior" in f.generated[name] else "fitted"
        images = f.generated[name][source]
        ax.imshow(torch.cat(list(images[:, 0]), dim=1).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"{name}\n({source})", rotation=0, ha="right", va="center", fontsize=8)
    return fig


def beta_figure(f: Findings, names: list[str]) -> Figure:
    fig = Figure(figsize=(11, 4), layout="constrained")
    panels: tuple[tuple[str, Callable[[str], float]], ...] = (
        ("mean jump per spread unit", lambda n: required(f.metrics[n].path_smoothness, "smoothness").jump_mean),
        ("Fréchet distance (judge's features)", lambda n: natural_generation(f, n).frechet_distance.mean),
    )
    for ax, (label, value) in zip(fig.subplots(1, 2), panels, strict=True):
        for name in names:
            kind = f.autoencoders[name].kind
            x, y = test_mse(f, name), value(name)
            ax.plot(x, y, "o" if kind == "ae" else "s", color="tab:blue" if kind == "ae" else "tab:orange")
            ax.annotate(name, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel="test MSE", ylabel=label)
        ax.grid(alpha=0.3)
    return fig
