"""The small-PNG fast path decodes exactly what Pillow decodes, and leaves every unusual file to Pillow."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from service.codec.imaging import load_image, open_image
from service.codec.png import encode_png
from service.codec.png_fast import FAST_PNG_MAX_PIXELS, PNG_SIGNATURE, decode_small_png
from training.data import Digits

MODES = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _paeth(left: int, up: int, up_left: int) -> int:
    guess = left + up - up_left
    distances = abs(guess - left), abs(guess - up), abs(guess - up_left)
    return (left, up, up_left)[distances.index(min(distances))]


def _filtered_row(kind: int, row: bytes, prior: bytes, bpp: int) -> bytes:
    """One scanline filtered the way the PNG specification defines it (written plainly, for the test)."""
    out = bytearray()
    for x, value in enumerate(row):
        left = row[x - bpp] if x >= bpp else 0
        up = prior[x]
        up_left = prior[x - bpp] if x >= bpp else 0
        predictor = (0, left, up, (left + up) // 2, _paeth(left, up, up_left))[kind]
        out.append((value - predictor) % 256)
    return bytes(out)


def _png(pixels: np.ndarray, mode: str, filters: list[int], extra: tuple[bytes, ...] = (), level: int = 6) -> bytes:
    """A PNG of `pixels` with the given filter type on each row (cycled), and `extra` chunks before IDAT."""
    colour, bpp = MODES[mode]
    height, width = pixels.shape[:2]
    flat = np.ascontiguousarray(pixels, dtype=np.uint8).reshape(height, width * bpp)
    prior, body = bytes(width * bpp), bytearray()
    for index, row in enumerate(flat):
        kind = filters[index % len(filters)]
        body += bytes((kind,)) + _filtered_row(kind, row.tobytes(), prior, bpp)
        prior = row.tobytes()
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"".join(
        (PNG_SIGNATURE, _chunk(b"IHDR", header), *extra, _chunk(b"IDAT", zlib.compress(bytes(body), level)))
    ) + _chunk(b"IEND", b"")


def _pillow(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _assert_same_as_pillow(data: bytes) -> None:
    fast = decode_small_png(data, FAST_PNG_MAX_PIXELS)
    assert fast is not None, "a simple small PNG takes the fast path"
    reference = _pillow(data)
    assert (fast.mode, fast.size, fast.format) == (reference.mode, reference.size, "PNG")
    assert fast.tobytes() == reference.tobytes(), "the fast path decodes the same pixels as Pillow"


def test_real_digits_decode_as_pillow_does(mnist_5k: Digits) -> None:
    for image in mnist_5k.images[::100]:
        pixels = np.asarray(image).reshape(28, 28)
        as_float = pixels.astype(np.float32) / (255 if pixels.dtype == np.uint8 else 1)
        ours = encode_png(as_float)  # the service's own answer PNGs, fed back in
        buffer = io.BytesIO()
        Image.fromarray(np.rint(as_float * 255).astype(np.uint8)).save(buffer, format="PNG")  # as clients save them
        for data in (ours, buffer.getvalue()):
            _assert_same_as_pillow(data)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("filter_type", [0, 1, 2, 3, 4])
def test_each_filter_type_and_colour_type(mode: str, filter_type: int) -> None:
    rng = np.random.default_rng(filter_type)
    shape = (29, 17) if mode == "L" else (13, 11, MODES[mode][1])
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    _assert_same_as_pillow(_png(pixels, mode, [filter_type]))


@pytest.mark.parametrize("size", [(1, 1), (1, 57), (57, 1), (31, 3), (128, 128)])
def test_odd_sizes_with_mixed_filters(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(size))
    smooth = np.cumsum(rng.integers(0, 4, size=size), axis=1).astype(np.uint8)  # compressible, like real images
    _assert_same_as_pillow(_png(smooth, "L", [0, 1, 2, 3, 4, 2, 1]))
    _assert_same_as_pillow(_png(smooth, "L", [1, 2, 0], level=1))


def test_pillow_saved_rgb_and_rgba_images() -> None:
    rng = np.random.default_rng(7)
    for mode, channels in (("RGB", 3), ("RGBA", 4)):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(20, 24, channels), dtype=np.uint8), mode).save(buffer, "PNG")
        _assert_same_as_pillow(buffer.getvalue())


def _with_ihdr(data: bytes, **fields: int) -> bytes:
    """`data` with IHDR fields changed (CRC recomputed)."""
    names = ("width", "height", "depth", "colour", "compression", "filtering", "interlace")
    values = dict(zip(names, struct.unpack(">IIBBBBB", data[16:29]), strict=True)) | fields
    header = struct.pack(">IIBBBBB", *(values[name] for name in names))
    return data[:8] + _chunk(b"IHDR", header) + data[33:]


def _unusual_files() -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, size=(12, 10), dtype=np.uint8)
    plain = _png(grey, "L", [0])
    palette, sixteen, grey_alpha = io.BytesIO(), io.BytesIO(), io.BytesIO()
    Image.fromarray(grey).convert("P").save(palette, "PNG")
    Image.fromarray(grey.astype(np.uint16) * 257).save(sixteen, "PNG")
    Image.fromarray(grey).convert("LA").save(grey_alpha, "PNG")
    idat_at = plain.index(b"IDAT") - 4
    return {
        "palette": palette.getvalue(),
        "16-bit": sixteen.getvalue(),
        "grey+alpha": grey_alpha.getvalue(),
        "interlaced": _with_ihdr(plain, interlace=1),
        "transparency": _png(grey, "L", [0], extra=(_chunk(b"tRNS", b"\x00\x00"),)),
        "EXIF": _png(grey, "L", [0], extra=(_chunk(b"eXIf", b"MM\x00*\x00\x00\x00\x08\x00\x00"),)),
        "other critical chunk": _png(grey, "L", [0], extra=(_chunk(b"PLTE", bytes(3)),)),
        "bad CRC": plain[:-20] + bytes((plain[-20] ^ 1,)) + plain[-19:],
        "bytes after IEND": plain + b"junk",
        "truncated": plain[:-30],
        "too short IDAT": plain[:idat_at] + _chunk(b"IDAT", zlib.compress(b"\x00" * 50)) + _chunk(b"IEND", b""),
        "bad filter type": _with_ihdr(plain[:idat_at], width=10)
        + _chunk(b"IDAT", zlib.compress(b"\x05" + bytes(10) + b"\x00" * 11 * 11))
        + _chunk(b"IEND", b""),
        "too large": _png(np.zeros((129, 128), np.uint8), "L", [0]),
        "not a PNG": b"GIF89a" + bytes(40),
    }


@pytest.mark.parametrize("name", list(_unusual_files()))
def test_unusual_files_take_pillows_path(name: str) -> None:
    data = _unusual_files()[name]
    assert decode_small_png(data, FAST_PNG_MAX_PIXELS) is None, f"{name}: left to Pillow"


def test_the_fast_path_obeys_a_lower_pixel_limit() -> None:
    data = _png(np.zeros((10, 10), np.uint8), "L", [0])
    assert decode_small_png(data, 99) is None
    assert decode_small_png(data, 100) is not None


def test_open_image_still_reads_unusual_pngs_with_pillow() -> None:
    files = _unusual_files()
    palette = open_image(files["palette"], max_bytes=10**6, max_pixels=10**6)
    assert palette.mode == "P", "a palette PNG is opened by Pillow, palette kept"
    fast = open_image(_png(np.full((5, 5), 9, np.uint8), "L", [1]), max_bytes=10**6, max_pixels=10**6)
    assert (fast.format, fast.mode, fast.getpixel((4, 4))) == ("PNG", "L", 9)


def test_a_png_with_an_exif_orientation_is_still_turned() -> None:
    """The EXIF lookup now runs only when an EXIF block exists: a PNG's eXIf chunk still turns the image."""
    upright = np.zeros((6, 4), np.uint8)
    upright[0, 0] = 255  # top left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    Image.fromarray(upright).save(buffer, "PNG", exif=exif)
    assert decode_small_png(buffer.getvalue(), FAST_PNG_MAX_PIXELS) is None, "an EXIF block takes Pillow's path"
    image = load_image(open_image(buffer.getvalue(), max_bytes=10**6, max_pixels=10**6))
    assert image.size == (6, 4) and image.getpixel((5, 0)) == 255, "turned: the top left pixel is now top right"
