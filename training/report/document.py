"""The Markdown being written (`Document`) and the formatting every section shares."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from training.findings import SEEDS, Findings
from training.metrics import GenerationSpread, Spread, required

REPORT_FILE = "README.md"


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


def fmt(value: Any, pattern: str) -> str:
    if value is None:
        return "—"
    try:
        return pattern.format(value)
    except (TypeError, ValueError):
        return str(value)


def display(path: Path) -> str:
    """A path for the Markdown: relative to the working folder, never an absolute path of this machine."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return path.name


def pm(value: Spread, digits: int = 4) -> str:
    """mean ± std of a figure measured under several seeds."""
    return f"{value.mean:.{digits}f} ± {value.std:.{digits}f}"


def first(value: float | Spread) -> str:
    """A figure measured under one seed (its value) or several (mean ± std)."""
    if isinstance(value, Spread):
        return pm(value) if value.n > 1 else f"{value.mean:.4f}"
    return f"{value:.4f}"


def seeds_text(f: Findings, *offsets: int) -> str:
    seeds = f.seeds()
    listed = ", ".join("/".join(str(seed + offset) for offset in offsets) for seed in seeds)
    return f"mean ± std over {SEEDS} seeds: {listed}"


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def pairs(f: Findings) -> list[tuple[str, str]]:
    """(AE, VAE) of equal latent dimension, the plain (beta 1) VAEs only."""
    return [
        (f"ae-{d}", f"vae-{d}")
        for d in sorted({c.latent_dim or 0 for c in f.autoencoders.values()})
        if f"ae-{d}" in f.autoencoders and f"vae-{d}" in f.autoencoders
    ]


def winner(ae: Spread | float, vae: Spread | float, higher_is_better: bool) -> str:
    """ "AE", "VAE" or "tie": a difference within twice the seeds' combined std is a tie."""
    a, sa = (ae.mean, ae.std) if isinstance(ae, Spread) else (ae, 0.0)
    b, sb = (vae.mean, vae.std) if isinstance(vae, Spread) else (vae, 0.0)
    if abs(a - b) <= 2 * (sa**2 + sb**2) ** 0.5:
        return "tie"
    return "AE" if (a > b) == higher_is_better else "VAE"


def natural_generation(f: Findings, name: str) -> GenerationSpread:
    """A model's generation scores from its natural source: the prior for a VAE, the fitted Gaussian for an AE."""
    sources = required(f.metrics[name].generation, f"{name}'s generation scores")
    return sources["prior" if "prior" in sources else "fitted"]
