"""The Open Inference Protocol (/v2) beside /v1 for the same work: encode one digit, a batch of 64 and 1,000 digits
(over max_batch: the bulk path on both), each as /v1 JSON (`pixels`), /v1 `.npy` bulk, /v2 JSON tensors and /v2 binary
tensors (Triton's extension, tritonclient's default), answered with the latents alone.

Requests are sent one after another on one keep-alive connection, the forms taking turns (latency, not
throughput: wrk cannot build binary bodies); the figure is the median time per request divided by its images: the
cost per image of each form. The binary protocol should cost no more per image than `.npy` bulk on /v1. Standalone:
`python -m benchmarks.protocol [--repeats N]` (the committed checkpoints; figures on a shared machine are noisy).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from benchmarks import servers

SIZES = (1, 64, 1000)
FORMS = ("v1 json", "v1 .npy", "v2 json", "v2 binary")
MODEL = "ae-6"
JSON_MAX = 64  # the service's default max_batch: the most a JSON request holds

Call = Callable[[httpx.Client], httpx.Response]


def calls(model: str, images: np.ndarray) -> dict[str, Call]:
    """One request per form, encoding `images` (uint8) and answering the latents only. JSON holds at most a batch
    (max_batch) on both: 1,000 digits go as .npy and binary only."""
    n = len(images)
    if n == 1:
        v1_json = {"pixels": images[0].tolist(), "scale": "0-255"}
    else:
        v1_json = {"images": [{"pixels": image.tolist(), "scale": "0-255"} for image in images]}
    v1_body = json.dumps(v1_json).encode()
    buffer = io.BytesIO()
    np.save(buffer, images)
    npy_body = buffer.getvalue()
    tensor = {"name": "images", "shape": list(images.shape), "datatype": "UINT8"}
    v2_json = json.dumps({"inputs": [{**tensor, "data": images.ravel().tolist()}], "outputs": [{"name": "latent"}]})
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": images.nbytes}}],
            "outputs": [{"name": "latent", "parameters": {"binary_data": True}}],
        }
    ).encode()
    v2_binary = header + images.tobytes()
    single, batch, v2 = f"/v1/models/{model}/encode", f"/v1/models/{model}/encode/batch", f"/v2/models/{model}/infer"
    v1 = single if n == 1 else batch
    json_type = {"Content-Type": "application/json"}
    return {
        **(
            {
                "v1 json": lambda c: c.post(v1, params={"fields": "latent"}, content=v1_body, headers=json_type),
                "v2 json": lambda c: c.post(v2, content=v2_json.encode(), headers=json_type),
            }
            if n <= JSON_MAX
            else {}
        ),
        "v1 .npy": lambda c: c.post(
            batch, content=npy_body, headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
        ),
        "v2 binary": lambda c: c.post(
            v2,
            content=v2_binary,
            headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        ),
    }


def measure(base_url: str, repeats: int, model: str = MODEL) -> dict[int, dict[str, float]]:
    """Microseconds per image (median over `repeats` requests) by batch size and form."""
    rng = np.random.default_rng(0)
    costs: dict[int, dict[str, float]] = {}
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for size in SIZES:
            images = rng.integers(0, 256, size=(size, 28, 28), dtype=np.uint8)
            forms = calls(model, images)
            times: dict[str, list[float]] = {form: [] for form in forms}
            for _ in range(repeats + 2):  # the forms take turns (a shared machine's load drifts); two rounds warm up
                for form, call in forms.items():
                    start = time.perf_counter()
                    response = call(client)
                    times[form].append(time.perf_counter() - start)
                    if response.status_code != 200:
                        raise RuntimeError(f"{form} x{size}: {response.status_code} {response.text[:300]}")
            costs[size] = {form: statistics.median(seconds[2:]) / size * 1e6 for form, seconds in times.items()}
    return costs


def table(costs: dict[int, dict[str, float]]) -> list[str]:
    lines = [f"  {'images':>7s} " + " ".join(f"{form:>11s}" for form in FORMS) + "   (us per image)"]
    for size, by_form in costs.items():
        lines.append(
            f"  {size:7d} " + " ".join(f"{by_form[form]:11.1f}" if form in by_form else f"{'-':>11s}" for form in FORMS)
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.protocol", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed requests per size and form (default: 20)")
    parser.add_argument("--models", type=Path, default=None, help="checkpoints folder (default: the committed ones)")
    args = parser.parse_args(argv)
    from models.checkpoint import DEFAULT_CHECKPOINTS_DIR

    with tempfile.TemporaryDirectory(prefix="digitae-protocol-") as scratch:
        models_dir = args.models or DEFAULT_CHECKPOINTS_DIR
        with servers.service(models_dir, Path(scratch) / "service.log", max_bulk=max(SIZES)) as server:
            costs = measure(server.url, args.repeats)
    print(f"/v1 and /v2 (Open Inference Protocol), {MODEL} encode, one request at a time:")
    print("\n".join(table(costs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
