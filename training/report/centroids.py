"""Section 4: samples around each digit's centroid (the report's Fig. 3), and the judge's share of them on the
intended digit under three readings of sigma, AE against VAE."""

from __future__ import annotations

from training import experiments as ex
from training.findings import READINGS, SAMPLES_PER_DIGIT, Findings
from training.metrics import JudgedAsIntended, required
from training.report.document import Document, pairs, pm, seeds_text, winner
from training.report.figures import SHOWN_PER_CELL, centroid_grid, judged_figure


def write(doc: Document, f: Findings) -> None:
    doc.add(
        "## 4. Samples around each digit's centroid (report's Fig. 3)",
        "Latent codes z ~ N(centroid_d, sigma² I): sigma is the standard deviation (the report's \"variance went "
        f'from 0 to 10" read as the std); the same unit draws are scaled by each sigma; seed {f.seed + 2}. The '
        "centroids are the mean training encodings stored with each checkpoint. Rows: digits; columns: sigma; "
        f"{SHOWN_PER_CELL} samples a cell.",
    )
    listed = ", ".join(f"{s:g}" for s in ex.REPORT_SIGMAS)
    for name, samples in f.centroid_samples.items():
        caption = f"{name}: decoded samples around each digit's centroid, sigma = {listed}."
        doc.figure(centroid_grid(samples), f"centroid-samples-{name}.png", caption)

    doc.add(
        "### The judge on the samples around the centroids (beyond the report)",
        f"The fraction of the {SAMPLES_PER_DIGIT} samples per digit around centroid d that the classifier checkpoint "
        "calls d, averaged over the ten digits, as mean ± std over the replicate seeds "
        f"({seeds_text(f, 2)}). Three readings of sigma: the report's absolute one, and two relative to each "
        "model's own scale, since the latent spaces differ in scale by up to "
        f"{_scale_ratio(f)}: z ~ N(centroid_d, diag((sigma·s)²)) with s the digit's own within-digit std per "
        "dimension, or the model's global latent std per dimension (both from its training codes).",
    )
    if f.judge is None:
        doc.add("Left out: no classifier checkpoint.")
        return
    columns = f.paired_order()
    judged = {n: _judged(f, n) for n in f.autoencoders}
    for reading, heading, sigmas in READINGS:
        doc.add(f"**{heading[0].upper() + heading[1:]}**")
        doc.table(
            ["sigma", *(f"`{n}`" for n in columns)],
            [[f"{sigma:g}", *(pm(judged[n][reading][f"{sigma:g}"], 3) for n in columns)] for sigma in sigmas],
        )
    doc.figure(judged_figure(f), "judged-vs-sigma.png", "The judge's share of samples on the intended digit "
               "against sigma, under each reading (mean ± std over the seeds).")  # fmt: skip
    spreads = [f"`{n}` {_spread(f, n):.2f}" for n in columns]
    doc.add(
        "For scale, the mean within-digit std of the training encodings (per latent dimension): "
        + ", ".join(spreads)
        + ". A sigma well above it samples outside the digit's cluster."
    )
    doc.add("Who stays on the intended digit more often (AE against the VAE of equal latent dimension; a "
            "difference smaller than twice its seeds' combined std counts as a tie):")  # fmt: skip
    rows = []
    for ae, vae in pairs(f):
        for reading, heading, sigmas in READINGS:
            outcomes = [
                winner(judged[ae][reading][f"{s:g}"], judged[vae][reading][f"{s:g}"], higher_is_better=True)
                for s in sigmas
                if s > 0
            ]
            rows.append([f"`{ae}` vs `{vae}`", heading, _summarise(outcomes, tuple(s for s in sigmas if s > 0))])
    doc.table(["models", "reading", "more often on the intended digit"], rows)


def _judged(f: Findings, name: str) -> JudgedAsIntended:
    return required(f.metrics[name].judged_as_intended, f"{name}'s judged shares")


def _spread(f: Findings, name: str) -> float:
    return required(f.metrics[name].mean_within_digit_spread, f"{name}'s within-digit spread")


def _summarise(outcomes: list[str], sigmas: tuple[float, ...]) -> str:
    if len(set(outcomes)) == 1:
        return {"AE": "the AE", "VAE": "the VAE", "tie": "neither (within noise)"}[outcomes[0]] + ", at every sigma > 0"
    return "; ".join(f"σ={s:g}: {o}" for s, o in zip(sigmas, outcomes, strict=True))


def _scale_ratio(f: Findings) -> str:
    spreads = [_spread(f, n) for n in f.autoencoders]
    return f"{max(spreads) / min(spreads):.0f}x" if spreads and min(spreads) > 0 else "—"
