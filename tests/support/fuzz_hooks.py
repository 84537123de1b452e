"""What schemathesis sends where a schema cannot describe the bytes: real images for the image media types (a raw
image body, or the multipart `file` part sent as that type) and for JSON image fields (`format: image-base64`: base64
or a data URL), and real `.npy` arrays of digits.

`schemathesis.toml` loads this module (`hooks`), so `st run` from the repository root and tests/service/api/test_fuzz.py
send the same. Without it, a body the schema allows ("any binary") would be random bytes, which no image decoder
reads: schemathesis' positive-data check would report the service refusing them, which it must.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import schemathesis
from hypothesis import strategies as st

from service.codec.arrays import NPY
from service.codec.schemas import IMAGE_FORMAT
from tests.support.images import example_digit, png_bytes, shifted_digits

FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/bmp": "BMP", "image/gif": "GIF", "image/webp": "WEBP"}
DIGITS = [example_digit(), *shifted_digits(3)]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


FILES = {media_type: [png_bytes(digit, fmt=fmt) for digit in DIGITS] for media_type, fmt in FORMATS.items()}
for media_type, files in FILES.items():
    aliases = ("image/x-ms-bmp",) if media_type == "image/bmp" else ()
    schemathesis.openapi.media_type(media_type, st.sampled_from(files), aliases=aliases)

ENCODED = [base64.b64encode(data).decode() for files in FILES.values() for data in files]
DATA_URLS = [f"data:image/png;base64,{base64.b64encode(data).decode()}" for data in FILES["image/png"]]
schemathesis.openapi.format(IMAGE_FORMAT, st.sampled_from(ENCODED + DATA_URLS))

# N x 28 x 28 digits, uint8 (0-255) or float32 (0-1): the bulk body of encode, reconstruct and classify.
ARRAYS = [np.stack(DIGITS[:rows]) for rows in (1, 2, 4)]
schemathesis.openapi.media_type(
    NPY, st.sampled_from([npy_bytes(a) for a in ARRAYS] + [npy_bytes(a.astype(np.float32) / 255) for a in ARRAYS])
)
