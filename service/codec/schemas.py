"""The API's request bodies: the contract, field by field (the answers' are in `answers`).

Requests are strict: unknown fields, NaN and infinity are refused, and the caps that come from
settings (batch size, n, sigma, steps) and the model (latent length) are checked through the
validation context {"settings": Settings, "latent_dim": int}, so every violation is one uniform 422.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self

import torch
from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from torch import Tensor

from models.networks import SIDE
from service.codec.corruption_request import CORRUPTION_DESCRIPTION, CorruptionSpec
from service.codec.schema_rules import (
    IMAGE_FORMAT,
    Digit,
    RequestModel,
    Seed,
    WholeNumber,
    exactly_one_of,
    one_image_form,
)

LATENT_LIMIT = 1e6  # larger latent values overflow float32 inside the decoder
BATCH_CEILING = 4096  # the most items a batch list can hold under any setting (max_batch's own upper bound)


# -- requests ------------------------------------------------------------------------------------------


def _setting(info: ValidationInfo, name: str) -> Any:
    settings = (info.context or {}).get("settings")
    return getattr(settings, name) if settings is not None else None


def _at_most(value: float, info: ValidationInfo, setting: str) -> None:
    cap = _setting(info, setting)
    if cap is not None and value > cap:
        raise ValueError(f"at most {cap:g} (the service's cap, DIGITAE_{setting.upper()})")


def _batch_within_cap(value: Any, info: ValidationInfo) -> Any:
    """Before any item is validated: a list over max_batch is one error, not one per item (a million empty
    items would otherwise cost seconds of validation and a response of a million errors)."""
    if isinstance(value, list):
        _at_most(len(value), info, "max_batch")
    return value


def _check_latent_length(latent: list[float], info: ValidationInfo) -> None:
    expected = (info.context or {}).get("latent_dim")
    if expected is not None and len(latent) != expected:
        raise ValueError(f"expected {expected} numbers (the model's latent_dim), got {len(latent)}")


# fail_fast: a list stops at its first bad value, so a batch of bad pixel arrays is a few errors, not 50,000.
PixelRow = Annotated[
    list[Annotated[float, Field(ge=0, le=255)]], Field(min_length=SIDE, max_length=SIDE, fail_fast=True)
]
Pixels = Annotated[
    list[PixelRow],
    Field(
        min_length=SIDE,
        max_length=SIDE,
        fail_fast=True,
        description="28 rows of 28 numbers: an already preprocessed MNIST-style image (white ink on black, "
        "centered); used as given, only rescaled by `scale`",
    ),
]
Scale = Literal["0-1", "0-255"]
LatentValue = Annotated[float, Field(ge=-LATENT_LIMIT, le=LATENT_LIMIT)]
Latent = Annotated[
    list[LatentValue],
    Field(min_length=1, max_length=1024, fail_fast=True, description="exactly latent_dim finite numbers"),
]
ImageText = Annotated[
    str,
    Field(
        min_length=1,
        json_schema_extra={"format": IMAGE_FORMAT},
        description="an image file (PNG, JPEG, BMP, GIF or WebP; any size and mode) as base64, or a "
        "`data:image/...;base64,` URL; preprocessed the way MNIST was made",
    ),
]


class ImageRequest(RequestModel):
    """What an image route reads: its images (`items`), and whether they came as a batch (answered `results`)."""

    @property
    def items(self) -> Sequence[ImageItem]:
        raise NotImplementedError

    @property
    def is_batch(self) -> bool:
        raise NotImplementedError


class ImageItem(ImageRequest):
    """One image: `image` (base64 file) or `pixels` with their `scale`."""

    model_config = ConfigDict(json_schema_extra=one_image_form)

    image: ImageText | None = None
    pixels: Pixels | None = None
    scale: Scale | None = Field(None, description="the range of `pixels`: '0-1' or '0-255' (required with pixels)")

    @model_validator(mode="after")
    def _one_image(self) -> Self:
        given = [name for name, value in (("image", self.image), ("pixels", self.pixels)) if value is not None]
        if len(given) != 1:
            got = " and ".join(given) if given else "none"
            raise ValueError(f"give exactly one of 'image' or 'pixels' (with 'scale'); got {got}")
        if self.pixels is not None and self.scale is None:
            raise ValueError("'pixels' needs 'scale': '0-1' or '0-255'")
        if self.pixels is None and self.scale is not None:
            raise ValueError("'scale' goes with 'pixels' only")
        return self

    @property
    def items(self) -> Sequence[ImageItem]:
        return (self,)

    @property
    def is_batch(self) -> bool:
        return False


class ImageBatch(ImageRequest):
    """A batch of images (`images`), answered with `results` in order."""

    images: list[ImageItem] = Field(
        min_length=1,
        max_length=BATCH_CEILING,
        description="up to max_batch images, each `{image}` or `{pixels, scale}`; the answer is `results`, in order",
    )

    @field_validator("images", mode="before")
    @classmethod
    def _batch_cap(cls, images: Any, info: ValidationInfo) -> Any:
        return _batch_within_cap(images, info)

    @property
    def items(self) -> Sequence[ImageItem]:
        return self.images

    @property
    def is_batch(self) -> bool:
        return True


class EncodeRequest(ImageItem):
    """One image to encode: `{image}` or `{pixels, scale}` (a batch goes to `/encode/batch`)."""


class EncodeBatchRequest(ImageBatch):
    """Images to encode, answered with `results`."""


class ClassifyRequest(ImageItem):
    """One image to classify: `{image}` or `{pixels, scale}` (a batch goes to `/classify/batch`)."""


class ClassifyBatchRequest(ImageBatch):
    """Images to classify, answered with `results`."""


class ReconstructRequest(ImageItem):
    """One image to reconstruct: `{image}` or `{pixels, scale}`, with an optional `corruption` (a batch goes to
    `/reconstruct/batch`)."""

    corruption: CorruptionSpec | None = Field(None, description=CORRUPTION_DESCRIPTION)


class ReconstructBatchRequest(ImageBatch):
    """Images to reconstruct, answered with `results`."""

    corruption: CorruptionSpec | None = Field(None, description=f"{CORRUPTION_DESCRIPTION} (to every image)")


class DecodeRequest(RequestModel):
    """One `latent` to decode (a batch goes to `/decode/batch`)."""

    latent: Latent

    @field_validator("latent")
    @classmethod
    def _latent_length(cls, latent: list[float], info: ValidationInfo) -> list[float]:
        _check_latent_length(latent, info)
        return latent

    @property
    def latents(self) -> list[list[float]]:
        return [self.latent]

    @property
    def is_batch(self) -> bool:
        return False


class DecodeBatchRequest(RequestModel):
    """`latents` to decode, answered with `results`."""

    latents: list[Latent] = Field(
        min_length=1, max_length=BATCH_CEILING, description="up to max_batch latents; the answer is `results`, in order"
    )

    @field_validator("latents", mode="before")
    @classmethod
    def _batch_cap(cls, latents: Any, info: ValidationInfo) -> Any:
        return _batch_within_cap(latents, info)

    @field_validator("latents")
    @classmethod
    def _latents(cls, latents: list[list[float]], info: ValidationInfo) -> list[list[float]]:
        for index, latent in enumerate(latents):
            try:
                _check_latent_length(latent, info)
            except ValueError as exc:
                raise ValueError(f"latents[{index}]: {exc}") from None
        return latents

    @property
    def is_batch(self) -> bool:
        return True


class PriorSampleRequest(RequestModel):
    """Draws from a VAE's prior N(0, I)."""

    n: WholeNumber = Field(8, ge=1, description="how many samples (at most max_samples)")
    seed: Seed | None = Field(None, description="same seed, same samples; drawn when absent")

    @field_validator("n")
    @classmethod
    def _n_cap(cls, n: int, info: ValidationInfo) -> int:
        _at_most(n, info, "max_samples")
        return n


class SampleRequest(PriorSampleRequest):
    """Draws around a digit's centroid: any model (a VAE's prior is `PriorSampleRequest`, its own operation)."""

    digit: Digit = Field(description="whose centroid to sample around")
    sigma: float = Field(1.0, ge=0, description="standard deviation around the centroid (at most max_sigma)")

    @model_validator(mode="before")
    @classmethod
    def _digit_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and "digit" not in data:
            raise ValueError("digit: required, 0-9; a VAE's prior N(0, I) is sampled by POST .../prior/sample")
        return data

    @field_validator("sigma")
    @classmethod
    def _sigma_cap(cls, sigma: float, info: ValidationInfo) -> float:
        _at_most(sigma, info, "max_sigma")
        return sigma


class PathEnd(RequestModel):
    """One end of the path: a `digit` (its centroid), a `latent`, or an image (`image`, or `pixels` + `scale`)."""

    model_config = ConfigDict(
        json_schema_extra=exactly_one_of(("digit",), ("latent",), ("image",), ("pixels", "scale"))
    )

    digit: Digit | None = None
    latent: Latent | None = None
    image: ImageText | None = None
    pixels: Pixels | None = None
    scale: Scale | None = None

    @field_validator("latent")
    @classmethod
    def _latent_length(cls, latent: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if latent is not None:
            _check_latent_length(latent, info)
        return latent

    @model_validator(mode="after")
    def _one_end(self) -> Self:
        fields = (("digit", self.digit), ("latent", self.latent), ("image", self.image), ("pixels", self.pixels))
        given = [name for name, value in fields if value is not None]
        if len(given) != 1:
            found = f"got {' and '.join(given)}" if given else "got none"
            raise ValueError(f"give exactly one of 'digit', 'latent', 'image' or 'pixels' (with 'scale'); {found}")
        if (self.pixels is None) != (self.scale is None):
            raise ValueError("'pixels' and 'scale' go together")
        return self

    @property
    def is_image(self) -> bool:
        """True when this end is an image (to encode), not a digit or a latent."""
        return self.image is not None or self.pixels is not None

    def fixed_latent(self, centroids: Tensor) -> Tensor:
        """This end as a latent when it is a digit (its centroid) or a latent (as given); an image is encoded."""
        if self.digit is not None:
            return centroids[self.digit]
        assert self.latent is not None, "an image end is encoded by the model, not read"
        return torch.tensor(self.latent, dtype=torch.float32)


class InterpolateRequest(RequestModel):
    start: PathEnd = Field(alias="from", description="where the path starts")
    end: PathEnd = Field(alias="to", description="where it ends")
    steps: WholeNumber = Field(
        10, ge=2, description="images along the path, both ends included (at most max_interpolation_steps)"
    )

    @field_validator("steps")
    @classmethod
    def _steps_cap(cls, steps: int, info: ValidationInfo) -> int:
        _at_most(steps, info, "max_interpolation_steps")
        return steps
