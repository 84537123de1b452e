"""What each served model offers over the Open Inference Protocol: its inputs and outputs (names, datatypes,
shapes, what computes them), as the model metadata declares them and /v2's infer checks requests against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.networks import SIDE
from service.catalog.registry import ServedJudge, ServedModel
from service.codec.schemas import LATENT_LIMIT

PLATFORM = "pytorch"


@dataclass(frozen=True, slots=True)
class Tensor:
    """One input or output as the model metadata describes it."""

    name: str
    datatype: str
    shape: list[int]  # -1: any size (N, the rows)
    description: str

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": self.shape,
            "parameters": {"description": self.description},
        }


def images_input() -> Tensor:
    return Tensor(
        "images", "FP32", [-1, SIDE, SIDE], "N digits as MNIST makes them (white on black, centered): FP32 0-1, or "
        "UINT8 0-255 (either datatype is taken)",
    )  # fmt: skip


def outputs_of(model: ServedModel | ServedJudge) -> dict[str, Tensor]:
    """Every output the model gives, by name, in the order the metadata lists them."""
    if isinstance(model, ServedJudge):
        return {
            t.name: t
            for t in (
                Tensor("digit", "UINT8", [-1], "from images: the digit the judge sees (/v1/classify's digit)"),
                Tensor("probabilities", "FP32", [-1, 10], "from images: the ten digits' probabilities"),
            )
        }
    m = model.latent_dim
    vae = model.kind == "vae"
    tensors = [
        Tensor("latent", "FP32", [-1, m], "from images: the latent code (a VAE's posterior mean mu), /v1's encode"),
        *([Tensor("logvar", "FP32", [-1, m], "from images: the posterior's log-variance")] if vae else []),
        Tensor("nearest_digit", "UINT8", [-1], "from images: the digit whose centroid is nearest the latent"),
        Tensor("centroid_distances", "FP32", [-1, 10], "from images: the distance to each digit's centroid"),
        Tensor(
            "reconstruction", "FP32", [-1, SIDE, SIDE], "from images: the image decoded back, 0-1 (/v1's reconstruct)"
        ),
        Tensor("mse", "FP32", [-1], "from images: mean squared error per pixel, reconstruction against the input"),
        Tensor("bce", "FP32", [-1], "from images: binary cross-entropy per pixel, reconstruction against the input"),
        *(
            [
                Tensor("kl", "FP32", [-1], "from images: KL(q(z|x) || N(0, I)) in nats"),
                Tensor("elbo", "FP32", [-1], "from images: the evidence lower bound in nats (decoding z = mu)"),
            ]
            if vae
            else []
        ),
        Tensor("images", "FP32", [-1, SIDE, SIDE], "from latent: the decoded images, 0-1 (/v1's decode)"),
    ]
    return {t.name: t for t in tensors}


def inputs_of(model: ServedModel | ServedJudge) -> list[Tensor]:
    if isinstance(model, ServedJudge):
        return [images_input()]
    latent = Tensor(
        "latent", "FP32", [-1, model.latent_dim], f"N latent codes, each value finite within ±{LATENT_LIMIT:g}: "
        "gives the output images (send it instead of images)",
    )  # fmt: skip
    return [images_input(), latent]


DECODED = ("images",)  # the outputs of the `latent` input
RECONSTRUCTED = frozenset({"reconstruction", "mse", "bce", "kl", "elbo"})  # need /v1's reconstruct, not encode


def model_metadata_of(model: ServedModel | ServedJudge) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": [t.metadata() for t in inputs_of(model)],
        "outputs": [t.metadata() for t in outputs_of(model).values()],
    }
