"""service.codec.imaging, .preprocessing and .png: safe decoding, MNIST-style preprocessing, PNG encoding (and the
/docs example digits)."""

from __future__ import annotations

import base64
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from service.api.examples import EXAMPLE_DIGIT_PNG_BASE64, EXAMPLE_PIXELS
from service.codec.imaging import ImageInputError, base64_image_bytes, load_image, open_image, pixels_to_array
from service.codec.png import encode_png, encode_png_grid, png_base64
from service.codec.preprocessing import center_of_mass, is_mnist_like, preprocess
from tests.support import REPO_ROOT

MAX_BYTES = 5_000_000
MAX_PIXELS = 25_000_000

DIGIT = np.asarray(EXAMPLE_PIXELS, dtype=np.uint8)  # a real MNIST "7", white on black, 28x28


def decode(data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An uploaded file's pixels the way the service reads them: the header checked, then the pixels decoded."""
    return load_image(open_image(data, max_bytes=max_bytes, max_pixels=max_pixels))


def decode_base64(text: str, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A JSON `image` the way the service reads it: base64 to bytes, then `decode`."""
    return decode(base64_image_bytes(text, max_bytes=max_bytes), max_bytes, max_pixels)


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation, allowing a shift of one pixel (center-of-mass rounding can move a digit by one)."""

    def corr(x: np.ndarray, y: np.ndarray) -> float:
        x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
        return float(x @ y / np.sqrt((x @ x) * (y @ y)))

    return max(corr(np.roll(a, (dy, dx), axis=(0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def assert_mnist_layout(array: np.ndarray) -> None:
    """float32 28x28 in [0, 1], ink peak 1, ink inside a 20x20 box, center of mass within half a pixel of (14, 14)."""
    assert array.shape == (28, 28) and array.dtype == np.float32
    assert array.min() >= 0 and array.max() == pytest.approx(1.0)
    rows, cols = np.flatnonzero(array.any(axis=1)), np.flatnonzero(array.any(axis=0))
    assert rows[-1] - rows[0] + 1 <= 20 and cols[-1] - cols[0] + 1 <= 20
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 >= 18  # fitted to the box, not left small
    center_row, center_col = center_of_mass(array)
    assert abs(center_row - 14) <= 0.5 and abs(center_col - 14) <= 0.5


# -- formats and modes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("PNG", {}), ("JPEG", {"quality": 90}), ("BMP", {}), ("GIF", {}), ("WEBP", {"quality": 90})],
)
def test_every_accepted_format_decodes_to_the_same_digit(fmt: str, options: dict) -> None:
    big = Image.fromarray(DIGIT).resize((112, 112), Image.Resampling.BICUBIC)  # not 28x28: the full pipeline runs
    image = decode(save(big, fmt, **options))
    assert image.format == fmt
    out = preprocess(image)
    assert_mnist_layout(out)
    assert similarity(out, DIGIT / 255) > 0.9


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "I;16", "1", "CMYK"])
def test_every_mode_gives_the_digit(mode: str) -> None:
    big = Image.fromarray(DIGIT).resize((84, 84), Image.Resampling.BICUBIC)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(big).astype(np.uint16) * 257)  # full 16-bit range
    elif mode == "1":
        image = big.point(lambda v: 255 if v > 127 else 0).convert("1")
    else:
        image = big.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode(save(image, fmt, **({"quality": 95} if fmt == "JPEG" else {})))
    assert decoded.mode == mode
    out = preprocess(decoded)
    assert_mnist_layout(out)
    assert similarity(out, DIGIT / 255) > 0.9


def test_gif_uses_the_first_frame() -> None:
    frames = [Image.fromarray(DIGIT).convert("P"), Image.new("P", (28, 28), 255)]
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert np.array_equal(preprocess(decode(data)), DIGIT.astype(np.float32) / 255)


def test_jpeg_exif_orientation_is_applied() -> None:
    upright = Image.fromarray(DIGIT).resize((56, 28))  # wider than tall, so a rotation shows in the size
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = decode(save(upright, "JPEG", quality=95, exif=exif))
    assert decoded.size == (28, 56)


# -- polarity, transparency, size ------------------------------------------------------------------


def test_black_on_white_gives_the_same_digit_as_white_on_black() -> None:
    inverted = Image.fromarray(255 - DIGIT)
    out = preprocess(decode(save(inverted, "PNG")))
    assert not np.array_equal(out, DIGIT / 255)  # not passed through: it was processed
    assert similarity(out, DIGIT / 255) > 0.99
    assert_mnist_layout(out)


def test_transparent_background_is_background_whatever_the_ink_color() -> None:
    alpha = Image.fromarray(DIGIT)
    dark_ink = Image.merge("RGBA", [Image.new("L", (28, 28), 0)] * 3 + [alpha])  # black ink, (0,0,0,0) around
    light_ink = Image.merge("RGBA", [Image.new("L", (28, 28), 255)] * 3 + [alpha])  # white ink, (255,255,255,0)
    for image in (dark_ink, light_ink):
        out = preprocess(decode(save(image, "PNG")))
        assert similarity(out, DIGIT / 255) > 0.99


def test_opaque_rgba_mnist_digit_passes_through() -> None:
    image = Image.fromarray(DIGIT).convert("RGBA")
    assert np.array_equal(preprocess(decode(save(image, "PNG"))), DIGIT.astype(np.float32) / 255)


def test_large_drawn_digit_is_cropped_fitted_and_centered() -> None:
    canvas = Image.new("RGB", (1000, 1000), "white")
    draw = ImageDraw.Draw(canvas)
    draw.line([(80, 100), (420, 100), (220, 700)], fill="black", width=40)  # a "7", top-left, not centered
    out = preprocess(decode(save(canvas, "PNG")))
    assert_mnist_layout(out)
    top_row = out[np.flatnonzero(out.any(axis=1))[0]]
    assert np.count_nonzero(top_row > 0.5) >= 10  # the 7's bar survives, wide, at the top


def test_large_jpeg_photo_is_decoded_at_reduced_scale_and_gives_the_digit() -> None:
    photo = Image.fromarray(255 - DIGIT).resize((3000, 2400), Image.Resampling.BICUBIC).convert("RGB")
    image = decode(save(photo, "JPEG", quality=90))
    assert min(image.size) >= 1024 and max(image.size) < 3000
    out = preprocess(image)
    assert_mnist_layout(out)
    assert similarity(out, DIGIT / 255) > 0.8  # stretched 5:4 on the way, so not as close as the others


def test_gray_paper_photo_is_stretched_to_full_contrast() -> None:
    photo = np.full((300, 200), 180, dtype=np.uint8)  # light gray paper ...
    photo[60:240, 90:110] = 60  # ... a dark gray "1"
    noise = np.random.default_rng(0).integers(-6, 7, photo.shape)
    out = preprocess(decode(save(Image.fromarray((photo + noise).astype(np.uint8)), "JPEG", quality=85)))
    assert_mnist_layout(out)
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    assert rows[-1] - rows[0] + 1 == 20 and cols[-1] - cols[0] + 1 <= 4  # tall and thin, aspect ratio kept


@pytest.mark.parametrize("size", [(1, 1), (10000, 1), (1, 10000), (3, 2)])
@pytest.mark.parametrize("value", [0, 255, 128])
def test_tiny_thin_and_uniform_images_are_blank_not_errors(size: tuple[int, int], value: int) -> None:
    out = preprocess(decode(save(Image.new("L", size, value), "PNG")))
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert not out.any()


def test_thin_line_image_keeps_its_ink() -> None:
    strip = np.zeros((1, 10000), dtype=np.uint8)
    strip[0, 4000:6000] = 255
    out = preprocess(decode(save(Image.fromarray(strip), "PNG")))
    assert out.max() == 1.0 and np.count_nonzero(out.any(axis=1)) == 1  # one horizontal stroke


@pytest.mark.parametrize("color", ["white", "black"])
def test_all_white_and_all_black_large_images_are_blank(color: str) -> None:
    out = preprocess(decode(save(Image.new("RGB", (640, 480), color), "JPEG")))
    assert not out.any()


# -- pass-through ------------------------------------------------------------------------------------


def test_mnist_like_digit_passes_through_bit_exact() -> None:
    out = preprocess(decode(save(Image.fromarray(DIGIT), "PNG")))
    assert out.dtype == np.float32
    assert np.array_equal(out, DIGIT.astype(np.float32) / 255)


def test_off_center_28x28_is_recentered() -> None:
    shifted = np.zeros_like(DIGIT)
    shifted[:-4, 3:] = DIGIT[4:, :-3]  # up 4, right 3: same size, wrong place
    assert not is_mnist_like(shifted / 255)
    out = preprocess(Image.fromarray(shifted))
    assert_mnist_layout(out)
    assert similarity(out, DIGIT / 255) > 0.95


def test_small_centered_28x28_is_scaled_up() -> None:
    small = np.zeros((28, 28), dtype=np.uint8)
    small[9:19, 9:19] = np.asarray(Image.fromarray(DIGIT[4:24, 4:24]).resize((10, 10), Image.Resampling.LANCZOS))
    assert not is_mnist_like(small / 255)
    assert_mnist_layout(preprocess(Image.fromarray(small)))


def test_preprocessed_output_passes_through_when_sent_again() -> None:
    first = preprocess(Image.fromarray(255 - DIGIT))
    again = preprocess(decode(encode_png(first)))
    assert np.array_equal(again, np.rint(first * 255).astype(np.float32) / 255)


def test_real_mnist_test_set_round_trips_bit_exact(mnist_test_dir: Path) -> None:
    from training.data import load_digits  # tests only: the service never imports training

    images = load_digits(mnist_test_dir).images
    assert len(images) == 10_000
    expected = images.astype(np.float32) / 255
    mismatches = [
        index
        for index, pixels in enumerate(expected)
        if not np.array_equal(preprocess(decode(encode_png(pixels))), pixels)
    ]
    assert mismatches == []


def test_real_mnist_digits_survive_inversion_and_jpeg(mnist_test_dir: Path) -> None:
    from training.data import load_digits

    images = load_digits(mnist_test_dir).images[:300]
    inverted = [similarity(preprocess(Image.fromarray(255 - x)), x / 255) for x in images]
    as_jpeg = [similarity(preprocess(decode(save(Image.fromarray(x), "JPEG", quality=90))), x / 255) for x in images]
    assert np.mean(inverted) > 0.995 and min(inverted) > 0.95
    assert np.mean(as_jpeg) > 0.98


# -- refusals ------------------------------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR claims width x height (8-bit gray), with whatever IDAT is given."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def refusal(data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> ImageInputError:
    with pytest.raises(ImageInputError) as caught:
        decode(data, max_bytes, max_pixels)
    assert caught.value.message  # a sentence for the client
    return caught.value


def test_empty_data_is_415() -> None:
    error = refusal(b"")
    assert error.status_code == 415 and "empty" in error.message


def test_over_the_byte_cap_is_413_before_decoding() -> None:
    error = refusal(b"\x89PNG" + b"\0" * 2000, max_bytes=1000)
    assert error.status_code == 413 and "1,000" in error.message


def test_truncated_png_is_415() -> None:
    data = save(Image.fromarray(DIGIT).resize((200, 200)), "PNG")
    error = refusal(data[: len(data) // 2])
    assert error.status_code == 415 and "truncated" in error.message


def test_truncated_jpeg_is_415() -> None:
    data = save(Image.fromarray(DIGIT).resize((200, 200)).convert("RGB"), "JPEG")
    assert refusal(data[: len(data) // 2]).status_code == 415


def test_png_with_lying_header_is_refused_from_the_header() -> None:
    data = png_claiming(100_000, 100_000, zlib.compress(b"\0" * 29))  # 88 bytes claiming 10^10 pixels
    assert refusal(data).status_code == 413
    assert refusal(data, max_pixels=10**12).status_code == 413  # Pillow's own bomb check is caught too


def test_png_with_small_lying_header_is_415() -> None:
    data = png_claiming(300, 300, zlib.compress(b"\0" * 100))  # promises 300 rows, holds a few bytes
    assert refusal(data).status_code == 415


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = save(Image.new("L", (4000, 4000)), "PNG")  # 16 MP of black compresses to a few KB
    assert len(bomb) < 50_000
    error = refusal(bomb, max_pixels=10_000_000)
    assert error.status_code == 413 and "4000x4000" in error.message


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"></svg>', "SVG"),
        (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", "PDF"),
        (b"hello, this is a text file and not a digit", None),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, None),  # a PNG signature and garbage
    ],
)
def test_non_images_are_415(data: bytes, named: str | None) -> None:
    error = refusal(data)
    assert error.status_code == 415
    assert "PNG, JPEG, BMP, GIF or WebP" in error.message
    if named:
        assert named in error.message


def test_unsupported_image_format_is_415() -> None:
    error = refusal(save(Image.fromarray(DIGIT), "TIFF"))
    assert error.status_code == 415 and "TIFF" in error.message


# -- base64 -------------------------------------------------------------------------------------------


def test_base64_plain_data_url_urlsafe_and_wrapped_are_accepted() -> None:
    raw = save(Image.fromarray(DIGIT), "PNG")
    plain = base64.b64encode(raw).decode()
    variants = [
        plain,
        f"data:image/png;base64,{plain}",
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "\n".join(plain[i : i + 76] for i in range(0, len(plain), 76)),
    ]
    for text in variants:
        image = decode_base64(text)
        assert np.array_equal(preprocess(image), DIGIT.astype(np.float32) / 255)


@pytest.mark.parametrize("text", ["not base64 at all!", "", "   ", "data:image/png,rawbytes", "iVBO*w0K"])
def test_bad_base64_is_422(text: str) -> None:
    with pytest.raises(ImageInputError) as caught:
        decode_base64(text)
    assert caught.value.status_code == 422


def test_base64_of_a_non_image_is_415_and_of_too_much_is_413() -> None:
    not_an_image = base64.b64encode(b"just some text").decode()
    with pytest.raises(ImageInputError) as caught:
        decode_base64(not_an_image)
    assert caught.value.status_code == 415
    with pytest.raises(ImageInputError) as caught:
        decode_base64("A" * 4000, max_bytes=1000)
    assert caught.value.status_code == 413


# -- pixels -----------------------------------------------------------------------------------------


def test_pixels_in_either_scale_give_the_same_array() -> None:
    from_255 = pixels_to_array(EXAMPLE_PIXELS, "0-255")
    from_1 = pixels_to_array((DIGIT / 255).tolist(), "0-1")
    assert from_255.dtype == np.float32 and from_255.shape == (28, 28)
    assert np.array_equal(from_255, DIGIT.astype(np.float32) / 255)
    assert np.allclose(from_1, from_255, atol=1e-7)


@pytest.mark.parametrize(
    ("pixels", "scale", "says"),
    [
        ([[0.0] * 28] * 27, "0-1", "27x28"),
        ([[0.0] * 28] * 27 + [[0.0] * 27], "0-1", "28 rows"),  # ragged
        ([0.0] * 784, "0-1", "784"),
        ([[0.0] * 28] * 27 + [[float("nan")] + [0.0] * 27], "0-1", "finite"),
        ([[0.0] * 28] * 27 + [[float("inf")] + [0.0] * 27], "0-255", "finite"),
        ([[0.0] * 28] * 27 + [[-1.0] + [0.0] * 27], "0-255", "0..255"),
        ([[0.0] * 28] * 27 + [[256.0] + [0.0] * 27], "0-255", "0..255"),
        ([[0.0] * 28] * 27 + [[3.0] + [0.0] * 27], "0-1", "0-255"),  # hints at the other scale
        ([["a"] * 28] * 28, "0-1", "numbers"),
        ([[0.0] * 28] * 28, "0-100", "scale"),
    ],
)
def test_bad_pixels_are_422(pixels: list, scale: str, says: str) -> None:
    with pytest.raises(ImageInputError) as caught:
        pixels_to_array(pixels, scale)
    assert caught.value.status_code == 422
    assert says in caught.value.message


# -- encoding -------------------------------------------------------------------------------------------


def test_encode_png_round_trips_and_upscales_by_nearest_neighbour() -> None:
    levels = np.random.default_rng(1).integers(0, 256, (28, 28)).astype(np.uint8)
    image = levels.astype(np.float32) / 255
    decoded = Image.open(io.BytesIO(encode_png(image)))
    assert decoded.format == "PNG" and decoded.mode == "L" and decoded.size == (28, 28)
    assert np.array_equal(np.asarray(decoded), levels)
    big = np.asarray(Image.open(io.BytesIO(encode_png(image, upscale=4))))
    assert big.shape == (112, 112)
    assert np.array_equal(big[::4, ::4], levels) and np.array_equal(big[3::4, 3::4], levels)


def test_encode_png_clips_out_of_range_and_nan() -> None:
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(np.array([[-1.0, 2.0, np.nan, 0.5]])))))
    assert decoded.tolist() == [[0, 255, 0, 128]]


@pytest.mark.parametrize("upscale", [0, -1, 1.5])
def test_encode_png_rejects_bad_upscale(upscale: object) -> None:
    with pytest.raises(ValueError):
        encode_png(np.zeros((28, 28)), upscale=upscale)


def test_png_base64_is_the_png() -> None:
    image = DIGIT / 255
    assert base64.b64decode(png_base64(image, upscale=2)) == encode_png(image, upscale=2)


@pytest.mark.parametrize(
    ("count", "upscale", "columns", "size"),
    [
        (1, 1, None, (28, 28)),
        (3, 2, None, (3 * 56 + 2 * 2, 56)),
        (12, 1, None, (10 * 28 + 9 * 2, 2 * 28 + 2)),  # rows of 10 by default
        (12, 1, 4, (4 * 28 + 3 * 2, 3 * 28 + 2 * 2)),
    ],
)
def test_grid_dimensions(count: int, upscale: int, columns: int | None, size: tuple[int, int]) -> None:
    images = [np.full((28, 28), i / count, dtype=np.float32) for i in range(count)]
    grid = Image.open(io.BytesIO(encode_png_grid(images, upscale=upscale, columns=columns)))
    assert grid.size == size and grid.mode == "L"


def test_grid_places_tiles_in_reading_order_with_gaps() -> None:
    images = [np.full((28, 28), value, dtype=np.float32) for value in (0.0, 1.0, 0.2, 0.6)]
    grid = np.asarray(Image.open(io.BytesIO(encode_png_grid(images, columns=2))))
    assert grid[0, 0] == 0 and grid[0, 30] == 255 and grid[30, 0] == 51 and grid[30, 30] == 153
    assert grid[28, 0] == 128 and grid[0, 28] == 128  # the 2 px gaps


def test_grid_rejects_no_images_and_mixed_shapes() -> None:
    with pytest.raises(ValueError):
        encode_png_grid([])
    with pytest.raises(ValueError):
        encode_png_grid([np.zeros((28, 28)), np.zeros((14, 14))])


# -- the /docs examples ------------------------------------------------------------------------------------


def test_examples_are_real_mnist_like_digits() -> None:
    image = decode_base64(EXAMPLE_DIGIT_PNG_BASE64)
    assert image.size == (28, 28) and image.mode == "L"
    assert is_mnist_like(preprocess(image)) and preprocess(image).max() == 1.0
    assert len(EXAMPLE_PIXELS) == 28 and all(len(row) == 28 for row in EXAMPLE_PIXELS)
    assert all(isinstance(v, int) and 0 <= v <= 255 for row in EXAMPLE_PIXELS for v in row)
    assert is_mnist_like(pixels_to_array(EXAMPLE_PIXELS, "0-255"))


def test_service_imaging_needs_neither_training_nor_mlxtend() -> None:
    code = (
        "import sys, service.codec.imaging, service.codec.preprocessing, service.codec.png, service.api.examples; "
        "bad = [m for m in ('training', 'mlxtend') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)
