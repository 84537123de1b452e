"""Reading request bodies: JSON (strictly validated), a multipart upload, or the image itself
(`Content-Type: image/png`, ...), and images into arrays.

The body cap is enforced while the body streams in (see `body_limit.BodyLimitMiddleware`);
here the bytes are parsed. Every problem becomes an `ApiError` with the status the API promises:
415 for a wrong Content-Type, 422 for an empty, malformed or invalid body.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from fastapi import Request
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from service.codec.errors import ApiError, clip, image_problem, invalid
from service.codec.imaging import SIDE, ImageInputError, base64_image_bytes, load_image, open_image, pixels_to_array
from service.codec.preprocessing import preprocess
from service.codec.schemas import ImageItem, ImageRequest, PathEnd
from service.runtime.tracing import span
from service.settings import Settings

Model = TypeVar("Model", bound=BaseModel)
Batch = TypeVar("Batch", bound=BaseModel)
ImageModel = TypeVar("ImageModel", bound=ImageRequest)
ImageBatchModel = TypeVar("ImageBatchModel", bound=ImageRequest)
T = TypeVar("T")

INLINE_DECODE_BYTES = 64 * 1024  # larger inputs are base64-decoded and opened in the decode pool, off the event loop
# Images of at most this many pixels are decoded on the event loop (well under a millisecond: a 28x28 MNIST digit
# takes about 0.1 ms); larger ones in the decode pool.
INLINE_DECODE_PIXELS = 128 * 128
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
# What a multipart `file` part may be sent as: an image type (the image must then be of that format), or
# application/octet-stream, which many clients send for any file (the format is then found in the data).
UNTYPED_UPLOAD = "application/octet-stream"
UPLOAD_TYPES = (*RAW_IMAGE_TYPES, UNTYPED_UPLOAD)


def media_type(request: Request) -> str:
    return declared_media_type(request.scope["headers"])


def declared_media_type(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The body's media type, lower-case without parameters ("" when none), from the request's raw headers: the one
    reading of Content-Type, for the body cap (BodyLimitMiddleware) and the routes alike. A request with several
    Content-Type headers is 400: a cap chosen from one and a parser from another could disagree."""
    values = [value for name, value in headers if name == b"content-type"]
    if len(values) > 1:
        raise ApiError(400, f"the request has {len(values)} Content-Type headers; send exactly one")
    return values[0].decode("latin-1").split(";", 1)[0].strip().lower() if values else ""


def is_json(kind: str) -> bool:
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


# -- JSON ---------------------------------------------------------------------------------------------


async def read_json(request: Request, model: type[Model], context: dict[str, Any]) -> Model:
    """The body as `model`, or 415 (not JSON) / 422 (empty, malformed, invalid)."""
    kind = media_type(request)
    if not is_json(kind):
        got = clip(kind, 100) or "no Content-Type"
        raise ApiError(415, f"send a JSON body with 'Content-Type: application/json' (got {got})")
    return parse_json(await request.body(), model, context)


async def read_json_or_batch(
    request: Request, model: type[Model], batch: type[Batch], context: dict[str, Any]
) -> Model | Batch:
    """`read_json` for a single operation that still takes its batch form for one release (deprecated): a body
    that `model` refuses for holding a field of `batch` (`images`, `latents`) is read as `batch`."""
    kind = media_type(request)
    if not is_json(kind):
        return await read_json(request, model, context)
    return parse_json_or_batch(await request.body(), model, batch, context)


def parse_json_or_batch(body: bytes, model: type[Model], batch: type[Batch], context: dict[str, Any]) -> Model | Batch:
    """The body as `model`, or as `batch` when `model` refuses it for holding a field only `batch` has. A single
    request is validated once; only the deprecated batch form pays for a second validation."""
    _check_body(body, context)
    try:
        return model.model_validate_json(body, context=context)
    except ValidationError as exc:
        batch_only = set(batch.model_fields) - set(model.model_fields)
        if not any(error["type"] == "extra_forbidden" and error["loc"][0] in batch_only for error in exc.errors()):
            raise invalid(exc) from None
    try:
        return batch.model_validate_json(body, context=context)
    except ValidationError as exc:
        single_only = set(model.model_fields) - set(batch.model_fields)
        both = sorted(
            str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden" and e["loc"][0] in single_only
        )
        if both:
            names = ", ".join(repr(name) for name in sorted(single_only))
            batched = ", ".join(repr(name) for name in sorted(batch_only))
            message = (
                f"give exactly one input ({names}) or a batch ({batched}, deprecated here: send it to the "
                f"operation's /batch route), not both; got {', '.join(repr(name) for name in both)} beside the batch"
            )
            detail = [{"loc": [name], "msg": message, "type": "value_error"} for name in both]
            raise ApiError(422, message, detail=detail) from None
        raise invalid(exc) from None


def parse_json(body: bytes, model: type[Model], context: dict[str, Any], where: tuple[str, ...] = ()) -> Model:
    _check_body(body, context, where)
    try:
        return model.model_validate_json(body, context=context)
    except ValidationError as exc:
        raise invalid(exc, where) from None


def _check_body(body: bytes, context: dict[str, Any], where: tuple[str, ...] = ()) -> None:
    """Not empty, and (with the settings) not more values than a full batch can hold."""
    if not body.strip():
        place = f"'{where[-1]}' is" if where else "the request body is"
        raise ApiError(422, f"{place} empty; send a JSON object (/docs has examples)")
    settings = context.get("settings")
    if settings is not None:
        check_json_shape(body, settings)


def check_json_shape(body: bytes, settings: Settings) -> None:
    """Before parsing: a body of a million tiny values, lists or keys would cost seconds of parsing and validation
    on the event loop (however few bytes it has). Scanning for commas, brackets and colons counts them in about
    a millisecond; base64 images hold none (a data URL, one colon). The caps fit a full batch of `pixels` arrays."""
    counts = {
        "values": (body.count(b",") + 1, settings.max_batch * (SIDE * SIDE + 64) + 1024),
        "lists and objects": (body.count(b"[") + body.count(b"{"), settings.max_batch * (SIDE + 8) + 64),
        "keys": (body.count(b":"), settings.max_batch * 8 + 64),
    }
    for what, (count, cap) in counts.items():
        if count > cap:
            raise ApiError(
                422,
                f"the JSON body holds {count:,} {what}; a valid request holds at most {cap:,} (as many as a full "
                "batch of 28x28 pixel arrays, DIGITAE_MAX_BATCH)",
            )


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
    request: Request,
    model: type[ImageModel],
    batch: type[ImageBatchModel],
    context: dict[str, Any],
    form_fields: tuple[str, ...] = (),
) -> tuple[ImageModel | ImageBatchModel, list[ImageSource]]:
    """A single image route's body: JSON (`model`, or for one more release its deprecated `batch` form), multipart
    with the image in `file`, or the image itself.

    In a multipart body, each name in `form_fields` may carry that field of `model` as JSON text
    (e.g. `corruption`); the result is then a `model` with just those fields set.
    """
    kind = media_type(request)
    if is_json(kind):
        body = parse_json_or_batch(await request.body(), model, batch, context)
        return body, image_sources(body)
    if kind == "multipart/form-data":
        return await _read_multipart(request, model, context, form_fields)
    if kind in RAW_IMAGE_TYPES:
        raw = cast(ImageModel, model.model_construct())  # no fields: the body is the image
        return raw, [ImageSource(upload=await request.body(), declared=kind)]
    raise ApiError(
        415,
        "send 'Content-Type: application/json' (image as base64 or pixels), 'multipart/form-data' "
        f"(the image file in the field '{UPLOAD_FIELD}'), the image itself ('Content-Type: image/png', "
        f"'image/jpeg', ...); a .npy array ('application/x-npy') goes to the operation's /batch route; got "
        f"{clip(kind, 100) or 'no Content-Type'}",
    )


async def read_image_batch(
    request: Request, batch: type[ImageBatchModel], context: dict[str, Any]
) -> tuple[ImageBatchModel, list[ImageSource]]:
    """A batch image route's JSON body (`images`: each `{image}` or `{pixels, scale}`)."""
    body = await read_json(request, batch, context)
    return body, image_sources(body)


def image_sources(body: ImageRequest) -> list[ImageSource]:
    return [ImageSource.of(item) for item in body.items]


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
        declared = _upload_type(upload)
        data = await upload.read()
        options: dict[str, Any] = {}
        for name in form_fields:
            value = form.get(name)
            if value is None:
                continue
            text = value if isinstance(value, str) else (await value.read()).decode("utf-8", "replace")
            field_model = model.model_fields[name].annotation
            options[name] = parse_json(text.encode(), non_optional_model(field_model), context, (name,))
    finally:
        await form.close()
    return cast(ImageModel, model.model_construct(**options)), [ImageSource(upload=data, declared=declared)]


def _upload_type(upload: UploadFile) -> str | None:
    """The image format the `file` part says it is (None: any), or 415 when it says it is not an image."""
    kind = (upload.content_type or UNTYPED_UPLOAD).split(";", 1)[0].strip().lower()
    if kind not in UPLOAD_TYPES:
        raise ApiError(
            415,
            f"the multipart field '{UPLOAD_FIELD}' is sent as {clip(kind, 100)}; send the image as one of "
            f"{', '.join(UPLOAD_TYPES)}",
        )
    return None if kind == UNTYPED_UPLOAD else kind


def non_optional_model(annotation: Any) -> type[BaseModel]:
    """`Spec | None` -> `Spec`."""
    for candidate in getattr(annotation, "__args__", (annotation,)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    raise TypeError(f"{annotation!r} is not a pydantic model")


# -- images to arrays ---------------------------------------------------------------------------------


async def load_images(
    sources: list[ImageSource], settings: Settings, names: list[str | None], pool: DecodePool
) -> list[np.ndarray]:
    """Each source as float32 (28, 28) in [0, 1] (see `_load_images`), in a "decode" span while tracing is on."""
    with span("decode", {"digitae.images": len(sources)}):
        return await _load_images(sources, settings, names, pool)


async def _load_images(
    sources: list[ImageSource], settings: Settings, names: list[str | None], pool: DecodePool
) -> list[np.ndarray]:
    """Each source as float32 (28, 28) in [0, 1]; a problem names the image it is about (`names`).

    Two passes, so that nothing slow runs on the event loop and the costly part is bounded before it starts:
    first every image's header is read (a large base64 text is decoded off the loop) and the pixels of the
    whole request are counted against DIGITAE_MAX_REQUEST_PIXELS; then the pixels are decoded, on the loop
    only for images of at most INLINE_DECODE_PIXELS (judged by their size in pixels, not in bytes: a 1 KB
    file can hold 25 megapixels), else in the decode `pool` (at most DIGITAE_DECODE_CONCURRENCY at once).
    """
    opened: list[Image.Image | np.ndarray] = []
    total_pixels = 0
    for source, name in zip(sources, names, strict=True):
        try:
            if source.pixels is not None:
                opened.append(pixels_to_array(source.pixels, source.scale))  # type: ignore[arg-type]
                continue
            if source.size <= INLINE_DECODE_BYTES:
                image = _open(source, settings)
            else:
                image = await pool.run(_open, source, settings)
        except ImageInputError as exc:
            raise image_problem(exc, name) from None
        width, height = image.size
        total_pixels += width * height
        if total_pixels > settings.max_request_pixels:
            raise ApiError(
                413,
                f"the images of this request hold over {settings.max_request_pixels:,} pixels in all, the limit "
                "(DIGITAE_MAX_REQUEST_PIXELS); send fewer or smaller images (a digit needs only 28x28)",
            )
        opened.append(image)
    arrays = []
    for item, name in zip(opened, names, strict=True):
        if isinstance(item, np.ndarray):
            arrays.append(item)
            continue
        try:
            width, height = item.size
            if width * height <= INLINE_DECODE_PIXELS:
                arrays.append(preprocess(load_image(item)))
            else:
                arrays.append(await pool.run(_decode, item))
        except ImageInputError as exc:
            raise image_problem(exc, name) from None
    return arrays


def _open(source: ImageSource, settings: Settings) -> Image.Image:
    max_bytes = settings.max_upload_bytes
    data = source.upload if source.upload is not None else base64_image_bytes(source.text or "", max_bytes=max_bytes)
    image = open_image(data, max_bytes=max_bytes, max_pixels=settings.max_image_pixels)
    if source.declared is not None and image.format != RAW_IMAGE_TYPES[source.declared]:
        found = f"the image is a {image.format} but its Content-Type says {source.declared}"
        image.close()
        raise ImageInputError(415, f"{found}; send the type it is")
    return image


def _decode(image: Image.Image) -> np.ndarray:
    image = load_image(image)
    try:
        return preprocess(image)
    finally:
        image.close()  # its pixel memory goes back now, not when the garbage collector gets to it


class DecodePool:
    """The image decode threads: at most DIGITAE_DECODE_CONCURRENCY decodes at once per app, so the memory of
    concurrent large decodes (about 13 bytes per pixel each) is bounded; the rest wait their turn. Made with the
    app's service and shut down by its lifespan."""

    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="digitae-decode")

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(function, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def batch_names(count: int, is_batch: bool) -> list[str | None]:
    return [f"images[{i}]" for i in range(count)] if is_batch else [None] * count
