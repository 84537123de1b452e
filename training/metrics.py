"""The report's numbers, typed: one model per measure, as training/findings.py measures them and as the report's
`metrics.json` holds them (the field order is the file's key order; a measure not taken is absent, not null).

`MetricsFile.model_validate_json` reads a `metrics.json` back into the same types, so the file and these types
are one contract (tests/training/test_report_contract.py checks the committed reports/ against it).
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from training import experiments as ex

T = TypeVar("T")


class Measured(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> dict[str, Any]:
        """The JSON form: fields in declaration order, measures not taken left out."""
        return self.model_dump(exclude_none=True)


class Spread(Measured):
    """One figure measured under several replicate seeds (experiments.mean_and_std): mean and sample std."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls.model_validate(ex.mean_and_std(values))


class Robustness(Measured):
    """Test MSE against the clean image for clean, occluded and noisy inputs."""

    clean: float
    occluded: Spread
    noisy: Spread
    noise_std: float
    occluded_area: list[float]

    @classmethod
    def of(cls, clean: float, losses: dict[str, list[float]], noise_std: float, area: list[float]) -> Robustness:
        """From each corruption's ("occluded", "noisy") losses under the replicate seeds."""
        occluded, noisy = Spread.of(losses["occluded"]), Spread.of(losses["noisy"])
        return cls(clean=clean, occluded=occluded, noisy=noisy, noise_std=noise_std, occluded_area=area)


class NoiseCurve(Measured):
    """The best AE's test MSE at each noise std (one noise draw, scaled)."""

    std: list[float]
    test_mse: list[float]
    seed: int


class PathEnds(Measured):
    """The straight path a 2-D model's figure draws: between the centroids farthest apart."""

    from_digit: int
    to_digit: int
    steps: int


class PathSmoothness(Measured):
    """experiments.path_smoothness: image jumps per spread unit and the judge's verdict changes along paths."""

    jump_mean: float
    jump_max: float
    verdict_changes_mean: float
    one_change_share: float


class GenerationScores(Measured):
    """experiments.generation_scores: how the judge takes one set of generated (or real) images."""

    confident: float
    entropy_bits: float
    frechet_distance: float

    @classmethod
    def of(cls, judge: nn.Module, images: Tensor, reference: tuple[np.ndarray, np.ndarray]) -> GenerationScores:
        return cls.model_validate(ex.generation_scores(judge, images, reference))


class GenerationSpread(Measured):
    """The generation scores over the replicate seeds."""

    confident: Spread
    entropy_bits: Spread
    frechet_distance: Spread

    @classmethod
    def of(cls, runs: list[GenerationScores]) -> GenerationSpread:
        return cls(
            confident=Spread.of([run.confident for run in runs]),
            entropy_bits=Spread.of([run.entropy_bits for run in runs]),
            frechet_distance=Spread.of([run.frechet_distance for run in runs]),
        )


# judged_as_intended: reading ("absolute", "digit_spread", "global_std") -> sigma (as "{:g}") -> share
JudgedAsIntended = dict[str, dict[str, Spread]]


class ModelMetrics(Measured):
    """Every number measured for one checkpoint; None (absent from the file) where the measure does not apply."""

    global_latent_std: list[float] | None = None
    mean_within_digit_spread: float | None = None
    beta: float | None = None  # VAEs only
    kl: float | None = None  # VAEs only
    test_mse: float | None = None
    robustness: Robustness | None = None
    noise_curve: NoiseCurve | None = None  # the best AE only
    judged_as_intended: JudgedAsIntended | None = None
    latent_path: PathEnds | None = None  # the 2-D models only
    confident_on_centroid_paths: float | None = None
    path_smoothness: PathSmoothness | None = None
    confident_on_path: float | None = None  # the 2-D models only
    generation: dict[str, GenerationSpread] | None = None  # source ("prior" or "fitted") -> scores
    nearest_centroid_accuracy: float | None = None
    test_accuracy: float | None = None  # the judge only


class MetricsFile(Measured):
    """The report's `metrics.json`: every measured number, per model, with what it was measured on."""

    evaluation_set: str
    evaluation_images: int
    seed: int
    seeds: list[int]
    reference: dict[str, GenerationScores]  # real digits' generation scores, for scale
    models: dict[str, ModelMetrics]


def required(value: T | None, what: str) -> T:
    """A measure the report relies on; its absence is a bug in training/findings.py, said by name."""
    if value is None:
        raise ValueError(f"the findings lack {what}")
    return value
