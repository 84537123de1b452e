"""The API's answers as pydantic models: they document the shape in OpenAPI (the routes write plain dicts with
`render`, and the tests check the answers against these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

PNG = Annotated[str, Field(description="a PNG image, base64", examples=["iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."])]
Vector = list[float]


class ModelSummary(BaseModel):
    name: str = Field(examples=["ae-6"])
    version: str = Field(
        description="training date and a short hash of the model card: changes whenever the checkpoint does; "
        "every answer from the model carries it in X-Model-Version",
        examples=["20261125-3f2a9c1b0d4e"],
    )
    trained_at: str | None = Field(description="when it was trained (ISO 8601), from its card", examples=[None])
    kind: Literal["ae", "vae"]
    latent_dim: int = Field(examples=[6])
    metrics: dict[str, Any] = Field(description="the model card's metrics", examples=[{"test_mse": 0.0208}])


class ModelDetail(ModelSummary):
    centroids: dict[str, Vector] = Field(description="digit ('0'..'9') -> its mean latent vector")
    spread: dict[str, Vector] = Field(description="digit -> per-dimension standard deviation around its centroid")
    card: dict[str, Any] = Field(description="the whole model card: architecture, training, provenance, metrics")


class EncodeResult(BaseModel):
    latent: Vector = Field(description="the latent code (a VAE's posterior mean mu)", examples=[[0.1, -1.2]])
    logvar: Vector | None = Field(None, description="VAE only: the posterior log-variance")
    nearest_digit: int = Field(ge=0, le=9, description="the digit whose centroid is nearest")
    centroid_distances: Vector = Field(description="Euclidean distance to each digit's centroid, digits 0..9")


class EncodeBatchResult(BaseModel):
    results: list[EncodeResult]


class Loss(BaseModel):
    mse: float = Field(description="mean squared error per pixel, against the clean preprocessed input")
    bce: float = Field(description="mean binary cross-entropy per pixel, against the clean preprocessed input")
    kl: float | None = Field(None, description="VAE only: KL(q(z|x) || N(0, I)), nats")
    elbo: float | None = Field(None, description="VAE only: -(summed BCE + KL), nats, decoding z = mu")


class AppliedOcclusion(BaseModel):
    top: int
    left: int
    height: int
    width: int
    fill: float


class AppliedCorruption(BaseModel):
    seed: int = Field(description="send it back to get the same corruption")
    noise: dict[str, float] | None = Field(None, description="mean and std of the added noise")
    occlusion: AppliedOcclusion | None = Field(None, description="the rectangle that was filled")


class ReconstructResult(BaseModel):
    image: PNG = Field(description="the reconstruction, PNG base64")
    input: PNG = Field(description="what the model saw: preprocessed, then corrupted if asked, PNG base64")
    latent: Vector
    logvar: Vector | None = Field(None, description="VAE only")
    nearest_digit: int = Field(ge=0, le=9)
    loss: Loss
    corruption: AppliedCorruption | None = None


class ReconstructBatchResult(BaseModel):
    results: list[ReconstructResult]


class DecodeResult(BaseModel):
    image: PNG


class DecodeBatchResult(BaseModel):
    results: list[DecodeResult]


class SampleResult(BaseModel):
    images: list[PNG]
    latents: list[Vector]
    digit: int = Field(ge=0, le=9, description="the digit sampled around")
    sigma: float
    seed: int = Field(description="send it back to get the same samples")


class PriorSampleResult(BaseModel):
    images: list[PNG]
    latents: list[Vector]
    seed: int = Field(description="send it back to get the same samples")


class InterpolateResult(BaseModel):
    images: list[PNG]
    latents: list[Vector]
    t: list[float] = Field(description="position of each step along the path, 0 to 1")


class ClassifyResult(BaseModel):
    digit: int = Field(ge=0, le=9, description="the digit the classifier sees")
    confidence: float = Field(ge=0, le=1, description="its probability")
    probabilities: Vector = Field(description="the classifier's probability of each digit, 0..9 (sums to 1)")


class ClassifyBatchResult(BaseModel):
    results: list[ClassifyResult]


class Atlas(BaseModel):
    latent_dim: int
    source: dict[str, Any] = Field(description="where the digits come from: the held-out set and its provenance")
    labels: list[int] = Field(description="each point's true digit")
    codes: list[Vector] = Field(description="each point's latent code (a VAE's posterior mean mu), in label order")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    models: list[str]
    versions: dict[str, str] = Field(description="model name -> the version being served")
    judges: list[str] = Field(description="verified classifier checkpoints (the first serves /v1/classify)")
    skipped: dict[str, str] = Field(description="checkpoint folders left out at startup, and why (with the admin key)")
    refused: dict[str, str] = Field(
        description="checkpoint folders a reload refused, and why with the admin key (the version loaded before "
        "serves on; '*' when a reload was refused as a whole)"
    )


class ReloadResult(BaseModel):
    trigger: Literal["admin", "poll", "SIGHUP"]
    added: list[str] = Field(description="models served from now on")
    updated: list[str] = Field(description="models whose new version replaced the old")
    removed: list[str] = Field(description="models no longer served (their folder is gone)")
    refused: dict[str, str] = Field(description="checkpoint folders found damaged, and why")
    versions: dict[str, str] = Field(description="model name -> version served after the reload")
    pid: int = Field(description="the worker process that answered (each worker reloads by itself)")
