"""Sections 6 and 7: recognition by the nearest centroid, and each checkpoint's learning curve."""

from __future__ import annotations

from models.checkpoint import JUDGE_NAME
from training.findings import Findings
from training.report.document import Document
from training.report.figures import learning_curve


def write(doc: Document, f: Findings) -> None:
    recognition_section(doc, f)
    learning_curves_section(doc, f)


def recognition_section(doc: Document, f: Findings) -> None:
    doc.add(
        "## 6. Recognition by the nearest centroid (beyond the report)",
        "Each evaluation image gets the digit whose centroid is nearest (Euclidean) to its encoding.",
    )
    rows = [
        [f"`{name}`", "nearest centroid", f"{f.metrics[name].nearest_centroid_accuracy:.3f}"]
        for name in f.paired_order()
    ]
    if f.judge is not None:
        accuracy = f.metrics[JUDGE_NAME].test_accuracy
        rows.append([f"`{JUDGE_NAME}`", "the judge itself (for reference)", f"{accuracy:.3f}"])
    doc.table(["model", "method", "accuracy"], rows)


def learning_curves_section(doc: Document, f: Findings) -> None:
    doc.add(
        "## 7. Learning curves",
        "Training and validation loss per epoch from each checkpoint's history (AE: MSE; VAE: -ELBO in nats per "
        "image; classifier: cross-entropy).",
    )
    for name, ckpt in f.checkpoints.items():
        history = [h for h in ckpt.history if isinstance(h, dict) and "epoch" in h]
        if not history:
            doc.add(f"`{name}`: no history recorded.")
            continue
        caption = f"{name}: training and validation loss per epoch."
        doc.figure(learning_curve(name, ckpt, history), f"learning-curve-{name}.png", caption)
