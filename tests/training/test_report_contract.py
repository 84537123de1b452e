"""The typed findings and the committed report agree: reports/metrics.json reads into training/metrics.py's types
and writes back byte for byte, and the report's sections rendered from those typed numbers (and the committed
checkpoints' cards) are the committed reports/README.md's text, so a renamed, retyped or reordered measure, or a
section that reads the wrong one, fails here in seconds rather than after a full report run."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from models.checkpoint import DEFAULT_CHECKPOINTS_DIR, JUDGE_NAME
from models.networks import AUTOENCODER_KINDS
from models.storage import atomic_write_json
from tests.support import REPO_ROOT
from training import experiments as ex
from training.findings import SAMPLES_PER_DIGIT, EvaluationSet, Findings, load_models
from training.metrics import MetricsFile
from training.report import METRICS_FILE, REPORT_FILE, centroids, closing, generation, recognition, reconstruction
from training.report.document import Document

COMMITTED = REPO_ROOT / "reports"

# The sections drawn from the numbers alone (no tensors of the evaluation set, no decoded images).
NUMBERS_ONLY_SECTIONS: dict[str, Callable[[Document, Findings], None]] = {
    "1-3: test loss, robustness, noise": reconstruction.write,
    "4: the judge on the samples around the centroids": centroids.write,
    "6: recognition by the nearest centroid": recognition.recognition_section,
    "9: the beta sweep": generation.beta_section,
    "the report's claims": closing.verdicts_section,
}


@pytest.fixture(scope="module")
def committed_metrics() -> MetricsFile:
    return MetricsFile.model_validate_json((COMMITTED / METRICS_FILE).read_text())


@pytest.fixture(scope="module")
def committed_findings(committed_metrics: MetricsFile) -> Findings:
    """The findings as the committed report measured them: its typed numbers, the committed checkpoints."""
    checkpoints, notes = load_models(DEFAULT_CHECKPOINTS_DIR)
    assert not notes, notes  # every checkpoint the report names is committed
    metrics = committed_metrics.models
    best_ae = next(name for name, measured in metrics.items() if measured.noise_curve is not None)
    evaluation = EvaluationSet(
        images=torch.empty(0, 1, 28, 28),
        labels=torch.zeros(committed_metrics.evaluation_images, dtype=torch.int64),
        description=committed_metrics.evaluation_set,
    )
    curve = metrics[best_ae].noise_curve
    assert curve is not None
    shown = re.findall(r"\(centroid-samples-(.+?)\.png\)", (COMMITTED / REPORT_FILE).read_text())
    blank = torch.zeros(len(ex.REPORT_SIGMAS), 10, SAMPLES_PER_DIGIT, 1, 28, 28)
    return Findings(
        models_dir=DEFAULT_CHECKPOINTS_DIR,
        seed=committed_metrics.seed,
        evaluation=evaluation,
        checkpoints=checkpoints,
        autoencoders={n: c for n, c in checkpoints.items() if c.kind in AUTOENCODER_KINDS},
        judge=checkpoints[JUDGE_NAME],
        notes=[],
        metrics=metrics,
        best_ae=best_ae,
        noise_stds=tuple(curve.std),
        reference=committed_metrics.reference,
        centroid_samples={name: blank for name in shown},  # the grids' pixels are not under test, their links are
    )


def test_the_committed_metrics_file_is_exactly_what_the_typed_findings_write(
    committed_metrics: MetricsFile, tmp_path: Path
) -> None:
    assert committed_metrics.seeds and set(committed_metrics.models) >= {"ae-2", "vae-2", JUDGE_NAME}
    atomic_write_json(tmp_path / METRICS_FILE, committed_metrics.to_json())  # the report's own writer
    assert (tmp_path / METRICS_FILE).read_bytes() == (COMMITTED / METRICS_FILE).read_bytes()


@pytest.mark.parametrize("section", list(NUMBERS_ONLY_SECTIONS))
def test_sections_rendered_from_the_typed_numbers_are_the_committed_report(
    committed_findings: Findings, section: str, tmp_path: Path
) -> None:
    doc = Document(tmp_path)
    NUMBERS_ONLY_SECTIONS[section](doc, committed_findings)
    rendered = "\n".join(doc.lines).rstrip()
    assert rendered.count("\n") > 5  # a heading, text and a table at least
    assert rendered in (COMMITTED / REPORT_FILE).read_text()
