"""The memory a pod must be given: peak resident memory of one `python -m service` worker serving the committed
checkpoints, idle and under the worst the image caps allow (the Kubernetes and compose memory limits come from it).

    .venv/bin/python benchmarks/memory_ceiling.py [--decode-concurrency 2] [--clients 32]

Each case is an image of `DIGITAE_MAX_IMAGE_PIXELS` pixels (5000 x 5000, a few hundred KB compressed: under the
upload cap): one alone, then `--clients` sent at once, each case on a fresh server. Prints the peak RSS of each.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.checkpoint import DEFAULT_CHECKPOINTS_DIR
from tests.support import ServerProcess
from tests.support.attacks import RssSampler

SIDE = 5000  # 25,000,000 pixels: DIGITAE_MAX_IMAGE_PIXELS' default
# The last measurement (a 2-core machine shared with other jobs), which the deployment files' memory limits are
# sized from (tests/delivery check them against it): decode threads it holds for, and the figures.
DECODE_CONCURRENCY = 2
IDLE_MIB = 370  # serving the committed checkpoints, before any request (the first forward pass done)
PEAK_MIB = 1014  # 32 concurrent 5000x5000 RGBA PNGs of 4.9 MB each (the upload cap): the worst case measured
HEADROOM = 1.25  # a limit is at least this times the peak
ENCODE = "/v1/models/ae-6/encode"
MiB = 2**20


def large_image(fmt: str, mode: str, noise: int = 200) -> bytes:
    """A drawn ring with a `noise` x `noise` patch of noise: small compressed (larger with more noise), SIDE x SIDE
    decoded."""
    image = Image.new("L", (SIDE, SIDE), 255)
    ImageDraw.Draw(image).ellipse((SIDE * 0.3, SIDE * 0.2, SIDE * 0.7, SIDE * 0.8), outline=0, width=SIDE // 20)
    patch = np.random.default_rng(0).integers(200, 256, (noise, noise), dtype=np.uint8)
    image.paste(Image.fromarray(patch), (0, 0))
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def peak(server: ServerProcess, body: bytes, name: str, kind: str, clients: int) -> tuple[int, int, list[int]]:
    statuses: list[int] = []
    together = threading.Barrier(clients)

    def send() -> None:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            together.wait()
            statuses.append(http.post(ENCODE, files={"file": (name, body, kind)}).status_code)

    assert server.process is not None
    with RssSampler(server.process.pid) as rss:
        threads = [threading.Thread(target=send) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return rss.baseline, rss.peak, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decode-concurrency", type=int, default=DECODE_CONCURRENCY)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    cases = [("RGBA PNG", large_image("PNG", "RGBA"), "big.png", "image/png"),
             ("RGBA PNG", large_image("PNG", "RGBA", noise=1500), "big.png", "image/png"),  # near the upload cap
             ("RGB JPEG", large_image("JPEG", "RGB"), "big.jpg", "image/jpeg")]  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        for label, body, name, kind in cases:
            for clients in (1, args.clients):
                with ServerProcess(
                    DEFAULT_CHECKPOINTS_DIR,
                    Path(scratch) / "server.log",
                    decode_concurrency=args.decode_concurrency,
                    torch_threads=1,
                    log_level="warning",
                ) as server:
                    baseline, top, statuses = peak(server, body, name, kind, clients)
                print(
                    f"figure: {clients} x {SIDE}x{SIDE} {label} ({len(body) // 1024} KB), decode concurrency "
                    f"{args.decode_concurrency}: RSS {baseline / MiB:.0f} MiB idle, peak {top / MiB:.0f} MiB "
                    f"(+{(top - baseline) / MiB:.0f}); statuses {sorted(set(statuses))}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
