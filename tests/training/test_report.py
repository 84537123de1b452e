"""The report: tiny checkpoints and data in a temporary folder, a real `build_report`, and its numbers
checked against the same quantities computed here directly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.checkpoint import centroids_payload, load_checkpoint, save_checkpoint
from models.corruptions import Occlusion
from models.losses import mse_per_image, vae_terms
from models.networks import NUM_DIGITS, build_model
from training import findings
from training.data import load_digits
from training.report import METRICS_FILE, REPORT_FILE, ReportError, build_report
from training.split import split_indices

SEEDS_OF_3 = (3, 1003, 2003, 3003, 4003)  # the report's replicate seeds for --seed 3
TRAIN_IMAGES = 300
TEST_IMAGES = 200
SPLIT = {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.1}
SECTIONS = [
    "## Data and models",
    "## 1. Test loss against the latent dimension",
    "## 2. Robustness of the best AE",
    "## 3. Test loss against the noise level",
    "## 4. Samples around each digit's centroid",
    "### The judge on the samples around the centroids",
    "## 5. The 2-D latent maps",
    "### Smoothness between clusters",
    "## 6. Recognition by the nearest centroid",
    "## 7. Learning curves",
    "## 8. Generation from the whole latent space",
    "## 9. The VAE at several weights of its KL term",
    "## 10. Reproducibility",
    "## Which of the report's claims hold",
    "## Notes",
]


def _train_briefly(kind: str, latent_dim: int | None, images: torch.Tensor, labels: torch.Tensor) -> torch.nn.Module:
    """A few Adam steps: enough for the numbers to mean something, seconds in all."""
    torch.manual_seed(0)
    model = build_model(kind, latent_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(30):
        batch = slice((step * 64) % len(images), (step * 64) % len(images) + 64)
        x, y = images[batch], labels[batch]
        if kind == "ae":
            loss = mse_per_image(model(x)[0], x).mean()
        elif kind == "vae":
            recon, mu, logvar = model(x)
            terms = vae_terms(recon, x, mu, logvar)
            loss = (terms["recon"] + terms["kl"]).mean()
        else:
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _centroids(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    with torch.no_grad():
        codes = model.embed(images)
    means = torch.stack([codes[labels == d].mean(dim=0) for d in range(NUM_DIGITS)])
    spread = torch.stack([codes[labels == d].std(dim=0) for d in range(NUM_DIGITS)])
    return centroids_payload(means, spread, [int((labels == d).sum()) for d in range(NUM_DIGITS)])


@pytest.fixture(scope="module", autouse=True)
def small_draws():
    """Fewer samples per draw than the real report takes: the same code paths at a fraction of the judge's work."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(findings, "GENERATED", 200)
        patch.setattr(findings, "SAMPLES_PER_DIGIT", 4)
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An npz of real digits (train and test parts) and checkpoints ae-2, ae-3, vae-2 and classifier."""
    root = tmp_path_factory.mktemp("report")
    digits = load_digits(None)
    picked = np.random.default_rng(0).permutation(len(digits))[: TRAIN_IMAGES + TEST_IMAGES]
    train, test = picked[:TRAIN_IMAGES], picked[TRAIN_IMAGES:]
    npz = root / "digits.npz"
    np.savez(npz, x_train=digits.images[train], y_train=digits.labels[train],
             x_test=digits.images[test], y_test=digits.labels[test])  # fmt: skip
    data = load_digits(npz)
    images, labels = data.tensors()
    models_dir = root / "checkpoints"
    models = (("ae-2", "ae", 2), ("ae-3", "ae", 3), ("vae-2", "vae", 2), ("classifier", "classifier", None))
    for name, kind, latent in models:
        model = _train_briefly(kind, latent, images, labels)
        card = {"data": data.source, "split": SPLIT, "epochs_run": 2, "best_epoch": 1, "wall_time_s": 0.5}
        history = [{"epoch": 1, "train_loss": 0.2, "val_loss": 0.25}, {"epoch": 2, "train_loss": 0.1, "val_loss": 0.3}]
        centroids = _centroids(model, images, labels) if kind != "classifier" else None
        save_checkpoint(models_dir / name, model, card, centroids=centroids, history=history)
    files = {path: path.read_bytes() for path in sorted(models_dir.glob("*/*"))}  # before any report runs
    return {"root": root, "npz": npz, "models_dir": models_dir, "files": files}


@pytest.fixture(scope="module")
def heldout_report(workspace: dict) -> Path:
    """The report evaluated on the npz's held-out test part."""
    return build_report(workspace["models_dir"], str(workspace["npz"]), f"{workspace['npz']}:test",
                        workspace["root"] / "heldout", seed=3)  # fmt: skip


def _table_row(markdown: str, first_cell: str, section: str = "") -> list[str]:
    """The cells of the first table row after the heading `section` whose first cell is `first_cell`."""
    for line in markdown[markdown.index(section) :].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


def _report_metrics(report: Path, name: str) -> dict:
    """One model's numbers from the report's own metrics.json (the report never writes into a card)."""
    return json.loads((report.parent / METRICS_FILE).read_text())["models"][name]


def test_report_has_every_section_and_notes_the_missing_models(heldout_report: Path) -> None:
    markdown = heldout_report.read_text()
    positions = [markdown.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    for missing in ("ae-4", "ae-5", "ae-6", "vae-6"):
        assert f"`{missing}`: no checkpoint" in markdown
    assert f"{TEST_IMAGES} images" in markdown


def test_every_linked_figure_is_a_real_png(heldout_report: Path) -> None:
    markdown = heldout_report.read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    expected = {"test-loss-vs-latent-dim.png", "test-loss-vs-noise.png", "latent-map-ae-2.png", "latent-map-vae-2.png",
                "latent-path-ae-2.png", "latent-path-vae-2.png", "centroid-samples-vae-2.png", "judged-vs-sigma.png",
                "generated-samples.png", "beta-sweep.png",
                *(f"learning-curve-{n}.png" for n in ("ae-2", "ae-3", "vae-2", "classifier"))}  # fmt: skip
    assert expected <= set(linked)
    assert sum(name.startswith("centroid-samples-ae-") for name in linked) == 1  # the best AE's
    for name in linked:
        with Image.open(heldout_report.parent / name) as image:
            assert image.format == "PNG"
            assert image.width > 0 and image.height > 0
            image.verify()


def test_losses_match_a_direct_computation(workspace: dict, heldout_report: Path) -> None:
    markdown = heldout_report.read_text()
    images, _ = load_digits(f"{workspace['npz']}:test").tensors()
    ae2 = load_checkpoint(workspace["models_dir"] / "ae-2").network
    with torch.no_grad():
        clean = float(((ae2(images)[0] - images) ** 2).mean())
    assert _table_row(markdown, "`ae-2`", "## 1.")[2] == f"{clean:.4f}"
    assert _report_metrics(heldout_report, "ae-2")["test_mse"] == pytest.approx(clean, rel=1e-5)

    best = re.search(r"Best AE by test MSE: `([^`]+)`", markdown).group(1)
    best_model = load_checkpoint(workspace["models_dir"] / best).network
    with torch.no_grad():  # the occluded input, scored against the CLEAN image; seeds 3, 1003, ..., 4003
        runs = [float(((best_model(Occlusion()(images, seed=s))[0] - images) ** 2).mean()) for s in SEEDS_OF_3]
    occluded = {"mean": float(np.mean(runs)), "std": float(np.std(runs, ddof=1))}
    assert _table_row(markdown, "Occluded", "## 2.")[1] == f"{occluded['mean']:.4f} ± {occluded['std']:.4f}"
    measured = _report_metrics(heldout_report, best)["robustness"]["occluded"]
    assert measured["mean"] == pytest.approx(occluded["mean"], rel=1e-5) and measured["n"] == len(SEEDS_OF_3)


def test_nearest_centroid_accuracy_matches_a_direct_computation(workspace: dict, heldout_report: Path) -> None:
    images, labels = load_digits(f"{workspace['npz']}:test").tensors()
    vae2 = load_checkpoint(workspace["models_dir"] / "vae-2")
    with torch.no_grad():
        mu = vae2.network.embed(images)
    nearest = ((mu[:, None, :] - vae2.centroids[None]) ** 2).sum(dim=2).argmin(dim=1)
    accuracy = float((nearest == labels).float().mean())
    assert _table_row(heldout_report.read_text(), "`vae-2`", "## 6.")[2] == f"{accuracy:.3f}"


def test_judge_fractions_are_fractions_and_stored_in_the_metrics_file(workspace: dict, heldout_report: Path) -> None:
    markdown = heldout_report.read_text()
    for name in ("ae-2", "ae-3", "vae-2"):
        metrics = _report_metrics(heldout_report, name)
        judged = metrics["judged_as_intended"]
        assert set(judged) == {"absolute", "digit_spread", "global_std"}
        assert set(judged["absolute"]) == {"0", "2.5", "5", "7.5", "10"}
        assert set(judged["digit_spread"]) == set(judged["global_std"]) == {"0.5", "1", "2", "3"}
        for value in (
            *(v["mean"] for r in judged.values() for v in r.values()),
            metrics["confident_on_centroid_paths"],
        ):
            assert 0.0 <= value <= 1.0
    for name in ("ae-2", "vae-2"):
        along = _report_metrics(heldout_report, name)["confident_on_path"]
        assert 0.0 <= along <= 1.0
        along_cell = _table_row(markdown, f"`{name}`", "### Smoothness")[1]
        assert along_cell.startswith(f"{along:.3f} (")
    sigma_row = _table_row(markdown, "2.5", "### The judge")
    assert all(0.0 <= float(cell.split(" ± ")[0]) <= 1.0 for cell in sigma_row[1:])
    classifier = _report_metrics(heldout_report, "classifier")
    assert 0.0 <= classifier["test_accuracy"] <= 1.0


def test_internal_split_is_rebuilt_from_the_card_and_the_report_is_deterministic(workspace: dict) -> None:
    first = build_report(workspace["models_dir"], str(workspace["npz"]), None, workspace["root"] / "a", seed=1)
    second = build_report(workspace["models_dir"], str(workspace["npz"]), None, workspace["root"] / "b", seed=1)
    assert first.read_text() == second.read_text()
    assert (first.parent / METRICS_FILE).read_bytes() == (second.parent / METRICS_FILE).read_bytes()

    test_part = split_indices(TRAIN_IMAGES, **SPLIT).test
    images = load_digits(workspace["npz"]).tensors()[0][torch.as_tensor(test_part)]
    ae3 = load_checkpoint(workspace["models_dir"] / "ae-3").network
    with torch.no_grad():
        clean = float(((ae3(images)[0] - images) ** 2).mean())
    markdown = first.read_text()
    assert f"internal test split (split seed {SPLIT['seed']}): {len(test_part)} images" in markdown
    assert _table_row(markdown, "`ae-3`", "## 1.")[2] == f"{clean:.4f}"


def test_a_folder_without_autoencoders_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="train them first"):
        build_report(tmp_path, None, None, tmp_path / "out")
    assert not (tmp_path / "out" / REPORT_FILE).exists()


def test_the_report_writes_no_checkpoint_and_measures_the_fair_comparison(
    workspace: dict, heldout_report: Path
) -> None:
    after = {path: path.read_bytes() for path in sorted(workspace["models_dir"].glob("*/*"))}
    assert after == workspace["files"]  # the report wrote into no checkpoint

    ae2, vae2 = _report_metrics(heldout_report, "ae-2"), _report_metrics(heldout_report, "vae-2")
    assert set(vae2["generation"]) == {"prior"} and set(ae2["generation"]) == {"fitted"}
    for scores in (vae2["generation"]["prior"], ae2["generation"]["fitted"]):
        assert scores["frechet_distance"]["n"] == len(SEEDS_OF_3) and scores["frechet_distance"]["mean"] > 0
        assert 0.0 <= scores["entropy_bits"]["mean"] <= np.log2(10) + 1e-9
    assert vae2["beta"] == 1.0 and vae2["kl"] > 0
    for metrics in (ae2, vae2):
        smooth = metrics["path_smoothness"]
        assert 0 < smooth["jump_mean"] <= smooth["jump_max"] and smooth["verdict_changes_mean"] >= 0
    markdown = heldout_report.read_text()
    assert _table_row(markdown, "`vae-2`", "## 9.")[1] == "1"
    assert "Fréchet distance" in markdown and "penultimate" in markdown
