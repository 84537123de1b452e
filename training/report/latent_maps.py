"""Section 5: the 2-D latent maps with a straight path through them (the report's Figs. 4-7), and smoothness
between clusters as numbers."""

from __future__ import annotations

from training import experiments as ex
from training.findings import PAIR_PATH_STEPS, PATH_STEPS, SMOOTHNESS_STEPS, Findings, centroids_of
from training.metrics import required
from training.report.document import Document
from training.report.figures import latent_map, path_strip


def write(doc: Document, f: Findings) -> None:
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
        centroids = centroids_of(f.autoencoders[name])
        figure = latent_map(name, path.codes, f.evaluation.labels, centroids, path.points)
        doc.figure(figure, f"latent-map-{name}.png", map_caption)
        strip_caption = f"{name}: images decoded along the path (the judge's digit and confidence above each)."
        doc.figure(path_strip(name, path.decoded, path.verdicts), f"latent-path-{name}.png", strip_caption)

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
        metrics = f.metrics[name]
        along = "—"
        if name in f.paths:
            along = f"{metrics.confident_on_path:.3f} ({f.paths[name].first}→{f.paths[name].second})"
        rows.append([f"`{name}`", along, f"{metrics.confident_on_centroid_paths:.3f}"])
    doc.table(["model", "figure's path", "all centroid pairs"], rows)
    doc.add(
        f"Smoothness as numbers along the same 45 paths, {SMOOTHNESS_STEPS} points each: the L2 change between "
        "consecutive decoded images (over the 784 pixels in [0, 1]) per unit of path length, the length measured in "
        "the model's own units (each latent dimension divided by the model's mean within-digit spread in it), mean "
        "and maximum over all steps; and how often the judge's verdict changes along a path (one change is ideal: "
        "start digit to end digit). No random draw is involved. A smoother latent space has smaller jumps and "
        "fewer changes."
    )
    smoothness = {n: required(f.metrics[n].path_smoothness, f"{n}'s smoothness") for n in f.paired_order()}
    doc.table(
        ["model", "jump per spread unit, mean", "max", "verdict changes per path", "paths with exactly one"],
        [
            [
                f"`{n}`",
                f"{s.jump_mean:.2f}",
                f"{s.jump_max:.2f}",
                f"{s.verdict_changes_mean:.2f}",
                f"{s.one_change_share:.2f}",
            ]
            for n, s in smoothness.items()
        ],
    )
