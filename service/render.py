"""Answers: content negotiation (JSON or PNG), images as base64 or as one PNG, and JSON views.

JSON is written with pydantic-core straight from plain dicts: the response models in
`schemas` document the shape, and the tests check the answers against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request
from starlette.responses import Response

from service.errors import ApiError, json_bytes
from service.imaging import encode_png_grid, png_base64
from service.inference import Encoding, Reconstruction
from service.registry import ServedModel

JSON = "application/json"
PNG = "image/png"


def negotiate(accept: str | None, offers: Sequence[str]) -> str | None:
    """The offer the Accept header prefers (ties go to the first offer), or None if it accepts none."""
    if not accept or not accept.strip():
        return offers[0]
    ranges = []
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        kind = pieces[0].lower()
        if "/" not in kind:
            continue
        quality = 1.0
        for param in pieces[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        ranges.append((kind, quality))
    best, best_rank = None, (0.0, -1)
    for offer in offers:
        main = offer.split("/")[0]
        matches = [
            (3 if kind == offer else 2 if kind == f"{main}/*" else 1, quality)
            for kind, quality in ranges
            if kind in (offer, f"{main}/*", "*/*")
        ]
        if not matches:
            continue
        specificity, quality = max(matches)  # the most specific range decides the quality
        rank = (quality, specificity)
        if quality > 0 and rank > best_rank:
            best, best_rank = offer, rank
    return best


def json_response(payload: Any, status_code: int = 200) -> Response:
    return Response(json_bytes(payload), status_code=status_code, media_type=JSON)


# -- choosing the answer's form ------------------------------------------------------------------------


def require_json_accepted(request: Request) -> None:
    """For routes that only answer JSON: 406 when the Accept header rules JSON out."""
    accept = request.headers.get("accept")
    if negotiate(accept, (JSON,)) is None:
        raise ApiError(406, f"this route answers {JSON} only; the Accept header asked for {accept}")


@dataclass(frozen=True, slots=True)
class ImageOutput:
    """How an image route answers: JSON with base64 PNGs, or (Accept: image/png) the PNG itself."""

    png: bool
    upscale: int

    def b64(self, image: np.ndarray) -> str:
        return png_base64(image, self.upscale)

    def png_response(self, images: Sequence[np.ndarray], columns: int | None = None) -> Response:
        """One PNG: the image, or a grid of several (rows of `columns`, default up to 10)."""
        return Response(encode_png_grid(images, self.upscale, columns), media_type=PNG)


# Images as base64 PNGs in JSON, at their own size: the image output of the routes that answer JSON only.
BASE64_IMAGE_OUTPUT = ImageOutput(png=False, upscale=1)


def choose_image_output(request: Request, upscale: int, max_upscale: int) -> ImageOutput:
    accept = request.headers.get("accept")
    chosen = negotiate(accept, (JSON, PNG))
    if chosen is None:
        raise ApiError(406, f"this route answers {JSON} or {PNG}; the Accept header asked for {accept}")
    if upscale > max_upscale:
        raise ApiError(422, f"upscale: at most {max_upscale} (the service's cap, DIGITAE_MAX_UPSCALE)")
    return ImageOutput(png=chosen == PNG, upscale=upscale)


# -- JSON views -----------------------------------------------------------------------------------------


def model_summary(model: ServedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "version": model.version,
        "trained_at": model.trained_at,
        "kind": model.kind,
        "latent_dim": model.latent_dim,
        "metrics": model.metrics,
    }


def model_detail(model: ServedModel) -> dict[str, Any]:
    centroids = model.centroids_cpu.tolist()
    return {
        **model_summary(model),
        "centroids": {str(d): centroids[d] for d in range(len(centroids))},
        "spread": {str(d): row.tolist() for d, row in enumerate(model.spread)},
        "card": model.card,
    }


def encoding_view(encoding: Encoding) -> dict[str, Any]:
    view: dict[str, Any] = {"latent": encoding.latent.tolist()}
    if encoding.logvar is not None:
        view["logvar"] = encoding.logvar.tolist()
    view["nearest_digit"] = encoding.nearest_digit
    view["centroid_distances"] = encoding.distances.tolist()
    return view


def reconstruction_view(
    result: Reconstruction, seen: np.ndarray, output: ImageOutput, corruption: dict[str, Any] | None
) -> dict[str, Any]:
    loss: dict[str, float] = {"mse": result.mse, "bce": result.bce}
    if result.kl is not None and result.elbo is not None:
        loss |= {"kl": result.kl, "elbo": result.elbo}
    view: dict[str, Any] = {
        "image": output.b64(result.image),
        "input": output.b64(seen),
        "latent": result.encoding.latent.tolist(),
    }
    if result.encoding.logvar is not None:
        view["logvar"] = result.encoding.logvar.tolist()
    view |= {"nearest_digit": result.encoding.nearest_digit, "loss": loss}
    if corruption is not None:
        view["corruption"] = corruption
    return view
