"""Answers: content negotiation (JSON, PNG or .npy) and `fields`, images as base64 or as one PNG, the JSON views
and `.npy` arrays of each result, and each operation's `Rendering` (codec/formats.py answers with it).

JSON is written with pydantic-core straight from plain dicts: the response models in `answers` document the shape,
and the tests check the answers against them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar

import numpy as np
from fastapi import Request
from starlette.responses import Response

from models.corruptions import CorruptionPlan, Rectangle
from service.catalog.registry import ServedModel
from service.codec.arrays import NPY
from service.codec.errors import ApiError, clip
from service.codec.png import encode_png_grid, png_base64
from service.engine.inference import Encoding, Reconstruction, Verdict
from service.runtime.tracing import span
from service.wire import json_bytes

JSON = "application/json"
PNG = "image/png"


@lru_cache(maxsize=256)
def negotiate(accept: str | None, offers: tuple[str, ...]) -> str | None:
    """The offer the Accept header prefers (ties go to the first offer), or None if it accepts none.
    Cached: clients send the same few Accept headers over and over."""
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
    with span("render", {"digitae.media_type": JSON}):
        return Response(json_bytes(payload), status_code=status_code, media_type=JSON)


# -- choosing the answer's form ------------------------------------------------------------------------


def require_json_accepted(request: Request) -> None:
    """For routes that only answer JSON: 406 when the Accept header rules JSON out."""
    accept = request.headers.get("accept")
    if negotiate(accept, (JSON,)) is None:
        raise ApiError(406, f"this route answers {JSON} only; the Accept header asked for {clip(accept or '', 100)}")


@dataclass(frozen=True, slots=True)
class ImageOutput:
    """How a route answers: JSON (images as base64 PNGs), `Accept: image/png` (the PNG itself), or
    `Accept: application/x-npy` (one array); and `fields`, the parts of the answer the client asked for."""

    png: bool
    upscale: int
    npy: bool = False
    fields_text: str | None = None

    def b64(self, image: np.ndarray) -> str:
        return png_base64(image, self.upscale)

    def png_response(self, images: Sequence[np.ndarray], columns: int | None = None) -> Response:
        """One PNG: the image, or a grid of several (rows of `columns`, default up to 10)."""
        with span("render", {"digitae.media_type": PNG}):
            return Response(encode_png_grid(images, self.upscale, columns), media_type=PNG)

    def fields(self, valid: tuple[str, ...]) -> frozenset[str]:
        """The JSON fields to write: those asked for in `fields`, else all of `valid`."""
        if self.fields_text is None:
            return frozenset(valid)
        return selected_fields(self.fields_text, valid)

    def array_field(self, arrays: tuple[str, ...], valid: tuple[str, ...]) -> str:
        """The one field an `application/x-npy` answer holds: the one asked for, else the first of `arrays`."""
        if self.fields_text is None:
            return arrays[0]
        chosen = selected_fields(self.fields_text, valid)
        if len(chosen) != 1 or not chosen <= set(arrays):
            raise ApiError(
                422,
                f"fields: an {NPY} answer holds one array; name one of {', '.join(arrays)}",
                detail=[_fields_problem(f"name one of {', '.join(arrays)}")],
            )
        return next(iter(chosen))


# Images as base64 PNGs in JSON, at their own size: the image output of the routes that answer JSON only.
BASE64_IMAGE_OUTPUT = ImageOutput(png=False, upscale=1)


@lru_cache(maxsize=512)
def selected_fields(text: str, valid: tuple[str, ...]) -> frozenset[str]:
    """`fields=a,b` checked against the answer's top-level fields: 422 naming the valid ones otherwise."""
    names = [name.strip() for name in text.split(",")]
    names = [name for name in names if name]
    listed = ", ".join(valid)
    if not names:
        raise ApiError(422, f"fields: name at least one of {listed}", detail=[_fields_problem("empty")])
    for name in names:
        if name not in valid:
            shown = name if len(name) <= 40 else name[:40] + "…"
            message = f"unknown field {shown!r}; the fields of this answer are {listed}"
            raise ApiError(422, f"fields: {message}", detail=[_fields_problem(message)])
    return frozenset(names)


def _fields_problem(message: str) -> dict[str, Any]:
    return {"loc": ["query", "fields"], "msg": message, "type": "value_error"}


def choose_image_output(
    request: Request,
    upscale: int,
    max_upscale: int,
    fields: str | None = None,
    offers: tuple[str, ...] = (JSON, PNG, NPY),
) -> ImageOutput:
    accept = request.headers.get("accept")
    chosen = negotiate(accept, offers)
    if chosen is None:
        asked = clip(accept or "", 100)
        raise ApiError(406, f"this route answers {' or '.join(offers)}; the Accept header asked for {asked}")
    if upscale > max_upscale:
        raise ApiError(422, f"upscale: at most {max_upscale} (the service's cap, DIGITAE_MAX_UPSCALE)")
    if chosen == PNG and fields is not None:
        message = "selects parts of a JSON or .npy answer; with 'Accept: image/png' the answer is the image"
        raise ApiError(422, f"fields: {message}", detail=[_fields_problem(message)])
    return ImageOutput(png=chosen == PNG, upscale=upscale, npy=chosen == NPY, fields_text=fields)


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


ENCODE_FIELDS = ("latent", "logvar", "nearest_digit", "centroid_distances")
RECONSTRUCT_FIELDS = ("image", "input", "latent", "logvar", "nearest_digit", "loss", "corruption")
DECODE_FIELDS = ("image",)
SAMPLE_FIELDS = ("images", "latents", "digit", "sigma", "seed")
PRIOR_SAMPLE_FIELDS = ("images", "latents", "seed")
INTERPOLATE_FIELDS = ("images", "latents", "t")
CLASSIFY_FIELDS = ("digit", "confidence", "probabilities")
LOSS_COLUMNS = ("mse", "bce", "kl", "elbo")
# the fields an application/x-npy answer of /reconstruct can hold (one per answer), the default first (any of
# ENCODE_FIELDS and DECODE_FIELDS can be one)
RECONSTRUCT_ARRAYS = ("image", "input", "latent", "logvar", "nearest_digit", "loss")


def encoding_view(encoding: Encoding, want: frozenset[str] = frozenset(ENCODE_FIELDS)) -> dict[str, Any]:
    view: dict[str, Any] = {}
    if "latent" in want:
        view["latent"] = encoding.latent.tolist()
    if encoding.logvar is not None and "logvar" in want:
        view["logvar"] = encoding.logvar.tolist()
    if "nearest_digit" in want:
        view["nearest_digit"] = encoding.nearest_digit
    if "centroid_distances" in want:
        view["centroid_distances"] = encoding.distances.tolist()
    return view


def verdict_view(verdict: Verdict, want: frozenset[str] = frozenset(CLASSIFY_FIELDS)) -> dict[str, Any]:
    view = {
        "digit": verdict.digit,
        "confidence": float(verdict.probabilities[verdict.digit]),
        "probabilities": verdict.probabilities.tolist() if "probabilities" in want else None,
    }
    return {name: value for name, value in view.items() if name in want}


def reconstruction_view(
    result: Reconstruction,
    seen: np.ndarray,
    output: ImageOutput,
    corruption: dict[str, Any] | None,
    want: frozenset[str] = frozenset(RECONSTRUCT_FIELDS),
) -> dict[str, Any]:
    """The answer for one image; only the fields in `want` are computed (an image not asked for is never encoded)."""
    view: dict[str, Any] = {}
    if "image" in want:
        view["image"] = output.b64(result.image)
    if "input" in want:
        view["input"] = output.b64(seen)
    if "latent" in want:
        view["latent"] = result.encoding.latent.tolist()
    if result.encoding.logvar is not None and "logvar" in want:
        view["logvar"] = result.encoding.logvar.tolist()
    if "nearest_digit" in want:
        view["nearest_digit"] = result.encoding.nearest_digit
    if "loss" in want:
        loss: dict[str, float] = {"mse": result.mse, "bce": result.bce}
        if result.kl is not None and result.elbo is not None:
            loss |= {"kl": result.kl, "elbo": result.elbo}
        view["loss"] = loss
    if corruption is not None and "corruption" in want:
        view["corruption"] = corruption
    return view


# -- arrays (application/x-npy answers) ---------------------------------------------------------------------


def encoding_array(encodings: Sequence[Encoding], field: str) -> np.ndarray:
    if field == "latent":
        return np.stack([e.latent for e in encodings])
    if field == "logvar":
        return np.stack([_logvar(e) for e in encodings])
    if field == "nearest_digit":
        return np.fromiter((e.nearest_digit for e in encodings), dtype=np.uint8, count=len(encodings))
    return np.stack([e.distances for e in encodings])


def reconstruction_array(results: Sequence[Reconstruction], seen: Sequence[np.ndarray], field: str) -> np.ndarray:
    if field == "image":
        return np.stack([r.image for r in results])
    if field == "input":
        return np.stack(seen)
    if field == "loss":
        columns = 4 if results and results[0].kl is not None else 2
        return np.array([(r.mse, r.bce, r.kl, r.elbo)[:columns] for r in results], dtype=np.float32)
    return encoding_array([r.encoding for r in results], field)


def _logvar(encoding: Encoding) -> np.ndarray:
    assert encoding.logvar is not None, "formats.npy_field refuses logvar for an auto-encoder"
    return encoding.logvar


def array_headers(field: str, kind: str) -> dict[str, str]:
    """What the one array holds, for a client reading the answer: the field, and the loss's columns
    (`mse,bce`, and for a VAE `kl,elbo`)."""
    headers = {"X-Array-Field": field}
    if field == "loss":
        headers["X-Array-Columns"] = ",".join(LOSS_COLUMNS if kind == "vae" else LOSS_COLUMNS[:2])
    return headers


def corruption_view(plan: CorruptionPlan | None, rectangle: Rectangle | None) -> dict[str, Any] | None:
    """What was done to the image (seed, noise, the occlusion rectangle), so a client can repeat it."""
    if plan is None:
        return None
    applied: dict[str, Any] = {"seed": plan.seed, "noise": None, "occlusion": None}
    if plan.noise is not None:
        applied["noise"] = {"mean": plan.noise.mean, "std": plan.noise.std}
    if plan.occlusion is not None and rectangle is not None:
        top, left, height, width = rectangle
        applied["occlusion"] = dict(top=top, left=left, height=height, width=width, fill=plan.occlusion.fill)
    return applied


# -- each operation's results in every format (the strategies are codec/formats.py's) ------------------------

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Rendering(Generic[R]):
    """How an operation's results look in each format."""

    fields: tuple[str, ...]  # the top-level fields of one result's JSON view
    arrays: tuple[str, ...]  # the fields a `.npy` answer can hold, one per answer, the default first
    view: Callable[[R, ImageOutput, frozenset[str]], dict[str, Any]]  # one result, with the fields wanted
    array: Callable[[Sequence[R], str], np.ndarray]  # many results, one field
    image: Callable[[R], np.ndarray] | None = None  # one result as an image (None: the operation has no PNG)
    # one result as many images in one PNG, and its columns (None: rows of up to 10), when it has no single image
    grid: Callable[[R], tuple[Sequence[np.ndarray], int | None]] | None = None
    drawn: str = "image"  # the field the PNG draws: computed for a PNG answer, the other fields not


# A reconstruction, the image the model saw, and the corruption applied (None: none asked).
Reconstructed = tuple[Reconstruction, np.ndarray, dict[str, Any] | None]

ENCODING: Rendering[Encoding] = Rendering(
    ENCODE_FIELDS, ENCODE_FIELDS, view=lambda e, output, want: encoding_view(e, want), array=encoding_array
)
RECONSTRUCTION: Rendering[Reconstructed] = Rendering(
    RECONSTRUCT_FIELDS,
    RECONSTRUCT_ARRAYS,
    view=lambda item, output, want: reconstruction_view(item[0], item[1], output, item[2], want),
    array=lambda items, field: reconstruction_array([r for r, _, _ in items], [s for _, s, _ in items], field),
    image=lambda item: item[0].image,
)
DECODING: Rendering[np.ndarray] = Rendering(
    DECODE_FIELDS,
    DECODE_FIELDS,
    view=lambda image, output, want: {"image": output.b64(image)},
    array=lambda images, field: np.stack(images),
    image=lambda image: image,
)


@dataclass(frozen=True, slots=True)
class Samples:
    """What `sample` drew: the latents, their images (empty when the answer does not show them), and how."""

    latents: np.ndarray
    images: Sequence[np.ndarray]
    digit: int | None  # None: the prior N(0, I)
    sigma: float
    seed: int


@dataclass(frozen=True, slots=True)
class Walk:
    """What `interpolate` walked: the positions `t`, the latents there, their images (empty when not shown)."""

    t: np.ndarray
    latents: np.ndarray
    images: Sequence[np.ndarray]


def _samples_view(s: Samples, output: ImageOutput, want: frozenset[str]) -> dict[str, Any]:
    view = {"images": [output.b64(image) for image in s.images], "latents": s.latents.tolist(), "digit": s.digit,
            "sigma": s.sigma, "seed": s.seed}  # fmt: skip
    return {name: value for name, value in view.items() if name in want}


def _walk_view(w: Walk, output: ImageOutput, want: frozenset[str]) -> dict[str, Any]:
    view = {"images": [output.b64(image) for image in w.images], "latents": w.latents.tolist(), "t": w.t.tolist()}
    return {name: value for name, value in view.items() if name in want}


def _field_array(results: Sequence[Samples] | Sequence[Walk], field: str) -> np.ndarray:
    (result,) = results  # one request, one drawing
    value = getattr(result, field)
    return np.stack(value) if field == "images" else value


def _sampling(fields: tuple[str, ...]) -> Rendering[Samples]:
    """Samples in every format; their PNG is one grid in rows of 10."""
    return Rendering(
        fields, ("images", "latents"), _samples_view, _field_array, grid=lambda s: (s.images, None), drawn="images"
    )


SAMPLING, PRIOR_SAMPLING = _sampling(SAMPLE_FIELDS), _sampling(PRIOR_SAMPLE_FIELDS)
INTERPOLATION: Rendering[Walk] = Rendering(
    INTERPOLATE_FIELDS, INTERPOLATE_FIELDS, _walk_view, _field_array, grid=lambda w: (w.images, len(w.images)),
    drawn="images",
)  # fmt: skip
