"""Sections 8 and 9: generation from the whole latent space, and the VAE at several weights of its KL term."""

from __future__ import annotations

from training import experiments as ex
from training.findings import GENERATED, Findings
from training.metrics import required
from training.report.document import Document, fmt, natural_generation, pm, seeds_text
from training.report.figures import beta_figure, generated_figure, test_mse


def write(doc: Document, f: Findings) -> None:
    generation_section(doc, f)
    beta_section(doc, f)


def generation_section(doc: Document, f: Findings) -> None:
    doc.add(
        "## 8. Generation from the whole latent space (beyond the report)",
        "A generative model is judged by what it draws without being shown a digit. Sources: a VAE's prior "
        "N(0, I); for an AE, the Gaussian fitted (mean and full covariance) to its own training codes, the AE's "
        f"fair counterpart of a prior. {GENERATED} samples per model, source and seed "
        f"({seeds_text(f, 3)}), judged by the classifier: the share it names with confidence ≥ {ex.CONFIDENT}; "
        "the entropy of the judged digits in bits (log2 10 ≈ 3.32 when all ten are equally common; a generator "
        "that draws only 1s scores 0); and the Fréchet distance between the judge's penultimate-layer features "
        "(128 values) of the samples and of the evaluation set's real digits: an FID computed with our own judge "
        "instead of Inception, so comparable within this report only. Lower is better.",
    )
    if f.judge is None:
        doc.add("Left out: no classifier checkpoint.")
        return
    rows = [
        [
            f"real training digits ({len(f.training_images)}; the floor)",
            "—",
            f"{real.confident:.3f}",
            f"{real.entropy_bits:.2f}",
            f"{real.frechet_distance:.1f}",
        ]
        for real in f.reference.values()
        if f.training_images is not None
    ]
    for name in f.paired_order():
        for source, scores in required(f.metrics[name].generation, f"{name}'s generation scores").items():
            label = "prior N(0, I)" if source == "prior" else "Gaussian fitted to its training codes"
            rows.append(
                [
                    f"`{name}`",
                    label,
                    pm(scores.confident, 3),
                    pm(scores.entropy_bits, 2),
                    pm(scores.frechet_distance, 1),
                ]
            )
    doc.table(["model", "samples from", "confident share", "digit entropy (bits)", "Fréchet distance (judge)"], rows)
    doc.figure(generated_figure(f), "generated-samples.png", "Decoded samples from each model's prior (VAEs) or "
               "fitted Gaussian (AEs), first seed.")  # fmt: skip


def beta_section(doc: Document, f: Findings) -> None:
    doc.add(
        "## 9. The VAE at several weights of its KL term (beta-VAE, beyond the report)",
        "The same recipe with the KL term weighted by beta (beta 1: the plain VAE; the card's `config.beta`), beside "
        "the AE of the same latent dimension: reconstruction against smoothness and generation. KL: nats per image "
        "on the evaluation set. Generation: the prior for VAEs, the fitted Gaussian for AEs (section 8).",
    )
    vae_dims = {c.latent_dim for c in f.autoencoders.values() if c.kind == "vae"}
    names = [n for n, c in f.autoencoders.items() if c.kind == "vae" or c.latent_dim in vae_dims]
    names.sort(key=lambda n: (f.autoencoders[n].latent_dim or 0, f.metrics[n].beta or 0.0))  # the AE first
    if f.judge is None or not names:
        doc.add("Left out: no classifier checkpoint or no VAE.")
        return
    rows = []
    for name in names:
        m = f.metrics[name]
        smooth = required(m.path_smoothness, f"{name}'s smoothness")
        generation = natural_generation(f, name)
        rows.append(
            [
                f"`{name}`",
                fmt(m.beta, "{:g}") if m.beta is not None else "— (AE)",
                f"{test_mse(f, name):.4f}",
                fmt(m.kl, "{:.2f}"),
                f"{smooth.jump_mean:.2f} / {smooth.jump_max:.2f}",
                f"{smooth.verdict_changes_mean:.2f}",
                pm(generation.confident, 3),
                pm(generation.entropy_bits, 2),
                pm(generation.frechet_distance, 1),
            ]
        )
    headers = [
        "model",
        "beta",
        "test MSE",
        "KL",
        "jump mean / max",
        "verdict changes",
        "confident",
        "entropy",
        "Fréchet",
    ]
    doc.table(headers, rows)
    doc.figure(beta_figure(f, names), "beta-sweep.png", "Reconstruction (test MSE) against smoothness (mean jump per "
               "spread unit) and generation (Fréchet distance with the judge's features), every model.")  # fmt: skip
