"""Images in: safe decoding of uploaded files and base64 text, and pixels given as numbers (`preprocessing` makes
them MNIST-like, `png` writes images out).

Every input problem raises `ImageInputError` with an HTTP status and a message a person can act on:
413 for too many bytes or too many pixels (a decompression bomb is refused from its header, before
any pixel is decoded), 415 for anything that is not a complete PNG, JPEG, BMP, GIF or WebP image,
422 for bad base64 or bad `pixels`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from models.networks import SIDE
from service.codec.png_fast import decode_small_png

ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
ACCEPTED_FORMATS_TEXT = "PNG, JPEG, BMP, GIF or WebP"

WORK_SIDE = 1024  # larger images are box-reduced to about this size first: a digit ends up 20 px wide


class ImageInputError(Exception):
    """An input image (or pixel array) the service cannot use; `status_code` is the HTTP answer."""

    def __init__(self, status_code: Literal[413, 415, 422], message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


# -- decoding --------------------------------------------------------------------------------


def open_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Read and check an image's header; no pixel is decoded yet (cheap: the caller decides where to decode).

    The pixel count is read from the header and checked against `max_pixels` before any pixel is
    decoded, so a small file that claims a huge image (a decompression bomb or a lying header) costs
    nothing; it is answered with 413, like an upload over `max_bytes`. A non-image, an unsupported
    format, a JPEG too short for the size its header claims, or one of over MAX_JPEG_SCANS scans (a scan
    bomb: each scan costs a pass over every block) is 415. A JPEG over 2 x WORK_SIDE px
    is set to decode at a reduced scale that keeps at least WORK_SIDE px (much faster).
    """
    if len(data) > max_bytes:
        raise ImageInputError(413, f"the image is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    if not data:
        raise ImageInputError(415, f"the image is empty (0 bytes); send a {ACCEPTED_FORMATS_TEXT} file")
    if (small := decode_small_png(data, max_pixels)) is not None:  # the common small PNG, read without Pillow's plugin
        return small
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:  # Pillow's own cap (2 x Image.MAX_IMAGE_PIXELS), if max_pixels is higher
        raise ImageInputError(413, f"the image has too many pixels; the limit is {max_pixels:,} pixels") from None
    except Exception:  # Pillow raises many types for bytes it cannot identify
        raise ImageInputError(415, _not_an_image_message(data)) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageInputError(
            413,
            f"the image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,} pixels "
            "(scale it down: a digit needs only 28x28)",
        )
    if width < 1 or height < 1:
        raise ImageInputError(415, f"the image has no pixels ({width}x{height})")
    if image.format == "JPEG":
        layout = jpeg_layout(data)
        _check_jpeg_scans(layout)
        _check_jpeg_holds_its_size(image, data, layout)
        if max(width, height) > 2 * WORK_SIDE:
            image.draft(None, (WORK_SIDE, WORK_SIDE))  # decode at 1/2, 1/4 or 1/8 scale: a digit needs 20 px
    return image


def load_image(image: Image.Image) -> Image.Image:
    """Decode the pixels of an image from `open_image` (the costly part: run it off the event loop when large).
    Truncated or damaged data is 415; JPEG EXIF orientation is applied."""
    try:
        image.load()
    except Image.DecompressionBombError:
        raise ImageInputError(413, "the image has too many pixels") from None
    except Exception:  # truncated or corrupt data: OSError, SyntaxError, ValueError, zlib.error, ...
        raise ImageInputError(
            415, f"the {image.format} image is truncated or damaged and cannot be decoded; send the complete file"
        ) from None
    if _has_exif(image):  # most images have none, and looking for an orientation costs more than decoding a digit
        with contextlib.suppress(Exception):  # a malformed EXIF block: keep the pixels as stored
            ImageOps.exif_transpose(image, in_place=True)  # in place keeps `image.format`
    return image


def _has_exif(image: Image.Image) -> bool:
    """Whether the image carries an EXIF block where Pillow's `getexif` looks for one (JPEG and WebP: "exif";
    PNG: an eXIf chunk or ImageMagick's "Raw profile type exif" text)."""
    return bool(image.info.get("exif")) or "Raw profile type exif" in image.info


_ARITHMETIC_SOF = frozenset((0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
# A JPEG is decoded scan by scan, and every scan walks every 8x8 block of its components, however few bytes it has:
# measured on a 5000x5000 progressive JPEG (10 scans, 0.52 s to decode), each copy of a 17-byte scan added 16 ms,
# so a 5 MB file of copies would hold a decode thread for hours. libjpeg writes at most 10 scans (6 for gray);
# past MAX_JPEG_SCANS a file is refused before decoding, which keeps the worst case near a normal large decode.
MAX_JPEG_SCANS = 16
# Arithmetic coding can spend far under a bit on an empty block (a blank 5000x5000 image codes in 127 bytes), so no
# size proves that such a file holds its pixels; below this many bits per block its header cannot be trusted.
ARITHMETIC_MIN_BITS_PER_BLOCK = 1 / 8
_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7]")  # in entropy-coded data: 0xFF then a marker (not stuffing, RST)


@dataclass(frozen=True)
class JpegLayout:
    """What a JPEG's segment headers say, read without decoding: its start-of-frame marker (how it is coded), how
    many scans it has and how many bytes of entropy-coded data they hold (`complete`: read through to the end)."""

    frame_marker: int | None
    scans: int
    scan_bytes: int
    complete: bool


def jpeg_layout(data: bytes) -> JpegLayout:
    frame_marker, scans, scan_bytes, at = None, 0, 0, 2
    while at + 2 <= len(data):
        if data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD9:  # end of image
            return JpegLayout(frame_marker, scans, scan_bytes, complete=True)
        if 0xD0 <= marker <= 0xD7:  # a restart marker out of place: no length
            at += 2
            continue
        if at + 4 > len(data):
            break
        end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and frame_marker is None:
            frame_marker = marker
        if marker == 0xDA:  # start of scan: its entropy-coded data runs to the next marker
            scans += 1
            found = _MARKER_IN_SCAN.search(data, end)
            stop = found.start() if found is not None else len(data)
            scan_bytes += stop - end
            end = stop
        at = end
    return JpegLayout(frame_marker, scans, scan_bytes, complete=False)  # cut short or malformed: Pillow will say


def _check_jpeg_scans(layout: JpegLayout) -> None:
    if layout.scans > MAX_JPEG_SCANS:
        raise ImageInputError(
            415,
            f"the JPEG has {layout.scans} scans; at most {MAX_JPEG_SCANS} are decoded (a progressive JPEG from an "
            "ordinary encoder has about 10): save it again as a baseline JPEG or a PNG",
        )


def _check_jpeg_holds_its_size(image: Image.Image, data: bytes, layout: JpegLayout | None = None) -> None:
    """A Huffman-coded JPEG spends at least one bit on every 8x8 block of every component (its DC code), so a
    file shorter than that cannot hold the size its header claims. libjpeg decodes such a file anyway, padding
    it with gray, which would give a confident answer about an image that is not there: refused like a PNG whose
    data ends early. An arithmetic-coded JPEG is held to ARITHMETIC_MIN_BITS_PER_BLOCK. What is counted is the
    scans' data when the file reads through cleanly (bytes padded into a comment do not count), else its size."""
    layout = layout if layout is not None else jpeg_layout(data)
    arithmetic = layout.frame_marker in _ARITHMETIC_SOF
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)]
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    width, height = image.size
    blocks = sum(
        math.ceil(math.ceil(width * max(h, 1) / h_max) / 8) * math.ceil(math.ceil(height * max(v, 1) / v_max) / 8)
        for _, h, v, _ in layers
    )
    bits = 8 * (layout.scan_bytes if layout.complete and layout.scans else len(data))
    needed = blocks * ARITHMETIC_MIN_BITS_PER_BLOCK if arithmetic else blocks
    if bits < needed:
        coding = "an arithmetic-coded JPEG" if arithmetic else "a JPEG"
        raise ImageInputError(
            415,
            f"the JPEG header claims {width}x{height} pixels but the file is far too short to hold them "
            f"({len(data):,} bytes, {bits // 8:,} of image data, under {math.ceil(needed / 8):,} for {coding} "
            "that size); the file is damaged or its header is wrong (save it as a PNG if it is right)",
        )


def base64_image_bytes(text: str, *, max_bytes: int) -> bytes:
    """A base64 image (plain, URL-safe, or a `data:image/...;base64,` URL) as bytes.

    An empty or malformed string is 422 (it is a bad JSON field); a string whose decoded size must be
    over `max_bytes` is 413 before it is decoded.
    """
    text = text.strip()
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ImageInputError(422, "a data URL image must look like 'data:image/png;base64,<base64 data>'")
    text = "".join(text.split())  # line breaks are common in pasted base64
    if not text:
        raise ImageInputError(422, "the base64 image string is empty")
    if len(text) // 4 * 3 > max_bytes + 3:
        raise ImageInputError(413, f"the base64 image decodes to over {max_bytes:,} bytes, the limit")
    urlsafe = "-" in text or "_" in text
    text += "=" * (-len(text) % 4)  # tolerate missing padding
    try:
        if urlsafe:
            return base64.b64decode(text.translate(str.maketrans("-_", "+/")), validate=True)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError(
            422, "the image is not valid base64: send the file's bytes base64-encoded (A-Z, a-z, 0-9, +, /, =)"
        ) from None


_SIGNATURES = (  # formats people send by mistake, for a message that names what was received
    (b"%PDF", "a PDF document"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x01\x00", "an ICO icon"),
    (b"8BPS", "a Photoshop file"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
)


def _not_an_image_message(data: bytes) -> str:
    head = data[:512]
    kind = next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)
    if kind is None and head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        kind = "a HEIC/AVIF image"
    if kind is None and b"<svg" in head.lower():
        kind = "an SVG drawing"
    if kind is None:
        return f"the data is not a {ACCEPTED_FORMATS_TEXT} image (or it is damaged)"
    return f"the data is {kind}, which is not supported; send a {ACCEPTED_FORMATS_TEXT} image"


# -- pixels given as numbers -------------------------------------------------------------------


def pixels_to_array(pixels: Sequence[Sequence[float]] | np.ndarray, scale: Literal["0-1", "0-255"]) -> np.ndarray:
    """A 28x28 nested list in the stated scale -> float32 (28, 28) in [0, 1].

    The numbers are taken as an already preprocessed MNIST-style image (white ink on black, centered):
    they are only rescaled, never cropped, inverted or centered.
    """
    if scale not in ("0-1", "0-255"):
        raise ImageInputError(422, f"scale must be '0-1' or '0-255', got {scale!r}")
    try:
        array = np.asarray(pixels, dtype=np.float64)
    except (ValueError, TypeError):
        raise ImageInputError(422, "pixels must be 28 rows of 28 numbers each (a 28x28 nested list)") from None
    if array.shape != (SIDE, SIDE):
        raise ImageInputError(422, f"pixels must be 28 rows of 28 numbers each; got shape {_shape_text(array)}")
    if not np.isfinite(array).all():
        row, col = np.argwhere(~np.isfinite(array))[0]
        raise ImageInputError(422, f"pixels must be finite numbers; row {row}, column {col} is {array[row, col]}")
    top = 1.0 if scale == "0-1" else 255.0
    outside = (array < 0) | (array > top)
    if outside.any():
        row, col = np.argwhere(outside)[0]
        raise ImageInputError(
            422,
            f"with scale '{scale}' every pixel must lie in 0..{top:g}; row {row}, column {col} is {array[row, col]:g}"
            + (" (did you mean scale '0-255'?)" if scale == "0-1" and array.max() <= 255 else ""),
        )
    return (array / top).astype(np.float32)


def _shape_text(array: np.ndarray) -> str:
    return "x".join(str(n) for n in array.shape) or "a single number"
