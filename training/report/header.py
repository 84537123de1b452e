"""The title and "Data and models": what was evaluated on, and a row per checkpoint from its card."""

from __future__ import annotations

import platform
from typing import Any

import torch

from training.findings import Findings
from training.report.document import Document, display, fmt


def write(doc: Document, f: Findings) -> None:
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
        f"- Checkpoints: `{display(f.models_dir)}`; seed {seed}; torch {torch.__version__}; "
        f"Python {platform.python_version()}.",
    )
    rows = [
        [
            f"`{name}`",
            ckpt.kind,
            fmt(ckpt.latent_dim, "{}"),
            _data_name(ckpt.card.get("data")),
            fmt(ckpt.card.get("epochs_run"), "{}"),
            fmt(ckpt.card.get("best_epoch"), "{}"),
            fmt(ckpt.card.get("stopped_early"), "{}"),
            fmt(ckpt.card.get("wall_time_s"), "{:.1f}"),
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
