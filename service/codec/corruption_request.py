"""What a reconstruct request may ask to be done to its image first: the report's robustness experiment (occlusion,
then gaussian noise, drawn from a seed), checked as a request and turned into the plan `models.corruptions` runs."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from models.corruptions import CorruptionPlan, GaussianNoise, Occlusion, draw_seed
from models.networks import SIDE
from service.codec.schema_rules import RequestModel, Seed, WholeNumber, at_least_one_of


class NoiseSpec(RequestModel):
    mean: float = Field(0.0, ge=-1, le=1, description="mean of the added per-pixel noise")
    std: float = Field(1.0, ge=0, le=10, description="its standard deviation (pixels are in [0, 1], then clipped)")


Fraction = Annotated[float, Field(gt=0, le=1)]
Ratio = Annotated[float, Field(ge=0.05, le=20)]


class Rectangle(RequestModel):
    """Where to occlude; the part that lies outside the 28x28 image is left out (`clipped`)."""

    top: WholeNumber = Field(ge=0, le=SIDE - 1)
    left: WholeNumber = Field(ge=0, le=SIDE - 1)
    height: WholeNumber = Field(ge=1, le=SIDE)
    width: WholeNumber = Field(ge=1, le=SIDE)

    def clipped(self) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the part inside the image: what is occluded, and echoed back."""
        return self.top, self.left, min(self.height, SIDE - self.top), min(self.width, SIDE - self.left)


class OcclusionSpec(RequestModel):
    area: Fraction | tuple[Fraction, Fraction] = Field(
        (0.1, 0.3), description="fraction of the image covered: a number, or a range [a, b] to draw from (either order)"
    )
    aspect: Ratio | tuple[Ratio, Ratio] = Field(
        (0.5, 2.0),
        description="width/height ratio: a number, or a range [a, b] to draw from (log-uniformly; either order)",
    )
    fill: float = Field(0.0, ge=0, le=1, description="the value painted into the rectangle")
    rectangle: Rectangle | None = Field(
        None,
        description="an explicit rectangle (the part outside the 28x28 image left out); when given, area and "
        "aspect are unused",
    )

    @field_validator("area", "aspect")
    @classmethod
    def _ordered(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        """A range's two ends in either order (a schema cannot order the items of a pair, so neither does the API)."""
        return (min(value), max(value)) if isinstance(value, tuple) else value

    @staticmethod
    def as_range(value: float | tuple[float, float]) -> tuple[float, float]:
        return value if isinstance(value, tuple) else (value, value)


class CorruptionSpec(RequestModel):
    """The report's robustness experiment as a request: occlusion, then noise, both drawn from `seed`."""

    model_config = ConfigDict(json_schema_extra=at_least_one_of("noise", "occlusion"))

    noise: NoiseSpec | None = Field(None, description="additive gaussian noise")
    occlusion: OcclusionSpec | None = Field(None, description="a filled rectangle")
    seed: Seed | None = Field(None, description="same seed, same corruption; drawn when absent")

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.noise is None and self.occlusion is None:
            raise ValueError("give 'noise' and/or 'occlusion' (or leave out 'corruption')")
        return self

    def plan(self) -> CorruptionPlan:
        """The corruption as models.corruptions runs it, its seed drawn when the request gave none."""
        occlusion, rectangle = None, None
        if self.occlusion is not None:
            o = self.occlusion
            area, aspect = OcclusionSpec.as_range(o.area), OcclusionSpec.as_range(o.aspect)
            occlusion = Occlusion(area=area, aspect=aspect, fill=o.fill)
            if o.rectangle is not None:
                rectangle = o.rectangle.clipped()
        noise = GaussianNoise(mean=self.noise.mean, std=self.noise.std) if self.noise is not None else None
        seed = self.seed if self.seed is not None else draw_seed()
        return CorruptionPlan(seed=seed, noise=noise, occlusion=occlusion, rectangle=rectangle)


CORRUPTION_DESCRIPTION = "optional corruption applied before the model sees the image"
