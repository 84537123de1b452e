"""Reading request bodies: JSON (strictly validated), a multipart upload, or the image itself
(`Content-Type: image/png`, ...), and images into arrays.

The body cap is enforced while the body streams in (see `body_limit.BodyLimitMiddleware`);
here the bytes are parsed. Every problem becomes an `ApiError` with the status the API promises:
415 for a wrong Content-Type, 422 for an empty, malformed or invalid body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from service.errors import ApiError, image_problem, invalid
from service.imaging import ImageInputError, decode_base64_image, decode_image, pixels_to_array, preprocess
from service.schemas import ImageItem, ImageRequest, PathEnd
from service.settings import Settings

Model = TypeVar("Model", bound=BaseModel)
ImageModel = TypeVar("ImageModel", bound=ImageRequest)

INLINE_DECODE_BYTES = 64 * 1024  # larger images are decoded in a worker thread, off the event loop
UPLOAD_FIELD = "file"
# A raw body's media type -> the format Pillow must find in it.
RAW_IMAGE_TYPES = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/bmp": "BMP",
    "image/x-ms-bmp": "BMP",
    "image/gif": "GIF",
    "image/webp": "WEBP",
}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


# -- JSON ---------------------------------------------------------------------------------------------


async def read_json(request: Request, model: type[Model], context: dict[str, Any]) -> Model:
    """The body as `model`, or 415 (not JSON) / 422 (empty, malformed, invalid)."""
    kind = media_type(request)
    if not is_json(kind):
        raise ApiError(415, f"send a JSON body with 'Content-Type: application/json' (got {kind or 'no Content-Type'})")
    return parse_json(await request.body(), model, context)


def parse_json(body: bytes, model: type[Model], context: dict[str, Any], where: tuple[str, ...] = ()) -> Model:
    if not body.strip():
        place = f"'{where[-1]}' is" if where else "the request body is"
        raise ApiError(422, f"{place} empty; send a JSON object (/docs has examples)")
    try:
        return model.model_validate_json(body, context=context)
    except ValidationError as exc:
        raise invalid(exc, where) from None


# -- image requests: JSON or multipart ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageSource:
    """One input image as received: base64 text, pixels, or uploaded bytes."""

    text: str | None = None
    pixels: list[list[float]] | None = None
    scale: str | None = None
    upload: bytes | None = None
    declared: str | None = None  # a raw body's media type: the image must be of that format

    @classmethod
    def of(cls, item: ImageItem | PathEnd) -> ImageSource:
        return cls(text=item.image, pixels=item.pixels, scale=item.scale)

    @property
    def size(self) -> int:
        return len(self.upload) if self.upload is not None else len(self.text or "")


async def read_image_request(
    request: Request, model: type[ImageModel], context: dict[str, Any], form_fields: tuple[str, ...] = ()
) -> tuple[ImageModel, list[ImageSource]]:
    """An image route's body: JSON (`model`), or multipart with the image in `file`.

    In a multipart body, each name in `form_fields` may carry that field of `model` as JSON text
    (e.g. `corruption`); the result is then a `model` with just those fields set.
    """
    kind = media_type(request)
    if is_json(kind):
        body = parse_json(await request.body(), model, context)
        return body, [ImageSource.of(item) for item in body.items]
    if kind == "multipart/form-data":
        return await _read_multipart(request, model, context, form_fields)
    if kind in RAW_IMAGE_TYPES:
        raw = cast(ImageModel, model.model_construct())  # no fields: the body is the image
        return raw, [ImageSource(upload=await request.body(), declared=kind)]
    raise ApiError(
        415,
        "send 'Content-Type: application/json' (image as base64 or pixels), 'multipart/form-data' "
        f"(the image file in the field '{UPLOAD_FIELD}'), the image itself ('Content-Type: image/png', "
        f"'image/jpeg', ...) or an array ('application/x-npy'); got {kind or 'no Content-Type'}",
    )


async def _read_multipart(
    request: Request, model: type[ImageModel], context: dict[str, Any], form_fields: tuple[str, ...]
) -> tuple[ImageModel, list[ImageSource]]:
    try:
        form = await request.form(max_files=1, max_fields=len(form_fields) + 1)
    except ApiError:
        raise
    except (MultiPartException, StarletteHTTPException) as exc:
        message = exc.message if isinstance(exc, MultiPartException) else str(exc.detail)
        raise ApiError(422, f"the multipart body cannot be read: {message}") from None
    try:
        unknown = sorted(set(form.keys()) - {UPLOAD_FIELD, *form_fields})
        if unknown:
            allowed = ", ".join(repr(n) for n in (UPLOAD_FIELD, *form_fields))
            raise ApiError(422, f"unknown multipart field {unknown[0]!r}; the fields are {allowed}")
        upload = form.get(UPLOAD_FIELD)
        if not isinstance(upload, UploadFile):
            problem = "is missing" if upload is None else "must be a file, not text"
            raise ApiError(422, f"the multipart field '{UPLOAD_FIELD}' {problem}: upload the image file in it")
        data = await upload.read()
        options: dict[str, Any] = {}
        for name in form_fields:
            value = form.get(name)
            if value is None:
                continue
            text = value if isinstance(value, str) else (await value.read()).decode("utf-8", "replace")
            field_model = model.model_fields[name].annotation
            options[name] = parse_json(text.encode(), _non_optional(field_model), context, (name,))
    finally:
        await form.close()
    return cast(ImageModel, model.model_construct(**options)), [ImageSource(upload=data)]


def _non_optional(annotation: Any) -> type[BaseModel]:
    """`Spec | None` -> `Spec`."""
    for candidate in getattr(annotation, "__args__", (annotation,)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    raise TypeError(f"{annotation!r} is not a pydantic model")


# -- images to arrays ---------------------------------------------------------------------------------


async def load_images(sources: list[ImageSource], settings: Settings, names: list[str | None]) -> list[np.ndarray]:
    """Each source as float32 (28, 28) in [0, 1]; a problem names the image it is about (`names`)."""
    arrays = []
    for source, name in zip(sources, names, strict=True):
        try:
            if source.pixels is not None:
                arrays.append(pixels_to_array(source.pixels, source.scale))  # type: ignore[arg-type]
            elif source.size > INLINE_DECODE_BYTES:
                arrays.append(await run_in_threadpool(_decode, source, settings))
            else:
                arrays.append(_decode(source, settings))
        except ImageInputError as exc:
            raise image_problem(exc, name) from None
    return arrays


def _decode(source: ImageSource, settings: Settings) -> np.ndarray:
    limits = {"max_bytes": settings.max_upload_bytes, "max_pixels": settings.max_image_pixels}
    if source.upload is not None:
        image = decode_image(source.upload, **limits)
        if source.declared is not None and image.format != RAW_IMAGE_TYPES[source.declared]:
            found = f"the body is a {image.format} image but its Content-Type says {source.declared}"
            raise ImageInputError(415, f"{found}; send the type it is")
    else:
        image = decode_base64_image(source.text or "", **limits)
    return preprocess(image)


def batch_names(count: int, is_batch: bool) -> list[str | None]:
    return [f"images[{i}]" for i in range(count)] if is_batch else [None] * count
