"""The report's writing: `build_report` turns training/findings.py's typed findings into `README.md`, PNG figures
and `metrics.json` (every number, per model) in the report's folder.

Computing lives in training/findings.py and training/experiments.py, the numbers' types in training/metrics.py;
this package only formats tables, draws figures with matplotlib and writes files, and never writes into a
checkpoint. `document` holds the Markdown and the shared formatting, `figures` every figure, and one module per
group of sections, in the document's order (`SECTIONS`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from models.storage import atomic_write_json
from training.findings import Findings, ReportError, measure
from training.metrics import MetricsFile
from training.report import centroids, closing, generation, header, latent_maps, recognition, reconstruction
from training.report.document import REPORT_FILE, Document

__all__ = ["METRICS_FILE", "REPORT_FILE", "ReportError", "build_report"]

METRICS_FILE = "metrics.json"

# The document in order: the header (data and models), 1-3, 4, 5, 6-7, 8-9, then 10, the claims and the notes.
SECTIONS: tuple[Callable[[Document, Findings], None], ...] = (
    header.write,
    reconstruction.write,
    centroids.write,
    latent_maps.write,
    recognition.write,
    generation.write,
    closing.write,
)


def build_report(models_dir: Path, data: str | None, test_data: str | None, out_dir: Path, seed: int = 0) -> Path:
    """Measure (training/findings.py), then write `out_dir/README.md`, its figures and `metrics.json`."""
    findings = measure(Path(models_dir), data, test_data, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = Document(out_dir)
    for section in SECTIONS:
        section(doc, findings)
    path = doc.write()
    atomic_write_json(out_dir / METRICS_FILE, metrics_file(findings).to_json())
    return path


def metrics_file(findings: Findings) -> MetricsFile:
    """Every measured number, per model, with what it was measured on: the report's machine-readable half."""
    evaluation = findings.evaluation
    return MetricsFile(
        evaluation_set=evaluation.description.replace("`", ""),
        evaluation_images=len(evaluation.labels),
        seed=findings.seed,
        seeds=findings.seeds(),
        reference=findings.reference,
        models=findings.metrics,
    )
