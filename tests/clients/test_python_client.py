"""clients/python (digitae-client) against a real `python -m service`: every operation with real digits, images in
as paths, bytes, PIL images and arrays, JSON batches and `.npy` bulk, errors as exceptions, Retry-After honoured, and
the package importable without the server's dependencies."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from models.checkpoint import DEFAULT_CHECKPOINTS_DIR
from tests.support import REPO_ROOT, ServerProcess, StartServer, example_digit
from tests.support.attacks import npy_request, raw

CLIENT_ROOT = REPO_ROOT / "clients" / "python"
sys.path.insert(0, str(CLIENT_ROOT))

from digitae_client import AsyncClient, Client, DigitaeError, Encoding, Reconstruction  # noqa: E402
from digitae_client._wire import npy_body  # noqa: E402

TWO = REPO_ROOT / "examples" / "two.png"
SEVEN = REPO_ROOT / "examples" / "seven-on-paper.jpg"


@pytest.fixture(scope="module")
def served_models() -> Path:
    """The committed checkpoints: real models, so real digits are read as what they are."""
    return DEFAULT_CHECKPOINTS_DIR


@pytest.fixture(scope="module")
def digitae(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url) as client:
        yield client


def test_an_image_as_a_path_bytes_a_pil_image_or_an_array_encodes_alike(digitae: Client) -> None:
    pixels = np.asarray(Image.open(TWO).convert("L"))
    answers = [
        digitae.encode("ae-6", TWO),
        digitae.encode("ae-6", str(TWO)),
        digitae.encode("ae-6", TWO.read_bytes()),
        digitae.encode("ae-6", Image.open(TWO)),
        digitae.encode("ae-6", pixels),
    ]
    assert all(isinstance(a, Encoding) and a.nearest_digit == 2 for a in answers), [a.nearest_digit for a in answers]
    for answer in answers[1:]:
        assert np.allclose(answer.latent, answers[0].latent, atol=1e-4), "the same digit, however it was sent"
    assert digitae.encode("ae-6", SEVEN).nearest_digit == 7  # a photo of ink on paper, preprocessed by the service
    vae = digitae.encode("vae-6", TWO)
    assert vae.logvar is not None and vae.logvar.shape == (6,) and vae.centroid_distances.shape == (10,)


def test_a_batch_and_a_bulk_array_give_the_single_answers(server: ServerProcess) -> None:
    digits = np.stack([example_digit()] * 3 + [np.asarray(Image.open(TWO).convert("L").resize((28, 28)))] * 2)
    with Client(server.url, batch_size=2) as small_batches:  # 5 images: 3 JSON batches of at most 2 ...
        batched = small_batches.encode("ae-6", list(digits))
        bulk = small_batches.encode("ae-6", digits)  # ... or, as one N x 28 x 28 array, one .npy request
        single = [small_batches.encode("ae-6", d) for d in digits]
    assert isinstance(batched, list) and isinstance(bulk, list) and len(batched) == len(bulk) == 5
    for one, many, array in zip(single, batched, bulk, strict=True):
        assert isinstance(one, Encoding)
        assert np.allclose(one.latent, many.latent, atol=1e-5) and np.allclose(one.latent, array.latent, atol=1e-5)


def test_reconstruct_with_a_corruption_decode_sample_interpolate_classify(digitae: Client) -> None:
    clean = digitae.reconstruct("vae-2", TWO)
    assert isinstance(clean, Reconstruction) and clean.image.shape == (28, 28) and clean.image.dtype == np.float32
    assert set(clean.loss) == {"mse", "bce", "kl", "elbo"} and clean.to_pil().size == (28, 28)
    noisy = digitae.reconstruct("vae-2", TWO, corruption={"noise": {"std": 0.5}, "seed": 7})
    assert isinstance(noisy, Reconstruction) and noisy.corruption is not None and noisy.corruption["seed"] == 7
    assert not np.array_equal(noisy.input, clean.input), "the model saw the corrupted digit"
    pair = digitae.reconstruct("vae-2", [TWO, TWO], corruption={"noise": {"std": 0.5}, "seed": 7})
    assert isinstance(pair, list) and [r.corruption["seed"] for r in pair if r.corruption] == [7, 7], pair

    one = digitae.decode("ae-2", [0.0, 0.0])
    many = digitae.decode("ae-2", np.zeros((4, 2), dtype=np.float32))
    assert one.shape == (28, 28) and many.shape == (4, 28, 28)
    assert np.allclose(many[0], one, atol=1 / 255 + 1e-6), "the PNG answer and the .npy answer are the same image"

    samples = digitae.sample("ae-6", 3, n=5, sigma=0.5, seed=11)
    assert samples.images.shape == (5, 28, 28) and samples.seed == 11
    assert np.array_equal(digitae.sample("ae-6", 3, n=5, sigma=0.5, seed=11).latents, samples.latents)
    prior = digitae.sample("vae-2", n=3, seed=11)  # no digit: the VAE's prior, its own operation
    assert prior.images.shape == (3, 28, 28) and prior.digit is None and prior.seed == 11
    path = digitae.interpolate("vae-2", 1, TWO, steps=6)
    assert path.images.shape == (6, 28, 28) and path.t[0] == 0 and path.t[-1] == 1

    verdicts = digitae.classify([TWO, SEVEN])
    assert isinstance(verdicts, list) and [v.digit for v in verdicts] == [2, 7]
    assert [m["name"] for m in digitae.models()] and digitae.model("ae-6")["latent_dim"] == 6


def test_errors_are_exceptions_with_the_envelopes_code_and_request_id(digitae: Client) -> None:
    with pytest.raises(DigitaeError) as unknown:
        digitae.encode("no-such-model", TWO)
    assert unknown.value.status == 404 and unknown.value.code == "not_found"
    assert "no-such-model" in unknown.value.message and unknown.value.request_id
    with pytest.raises(DigitaeError) as wrong_length:
        digitae.decode("ae-6", [0.0, 0.0])
    assert wrong_length.value.status == 422 and "latent" in wrong_length.value.message


def test_the_async_client_gives_the_same_answers(server: ServerProcess, digitae: Client) -> None:
    async def both() -> tuple[object, object]:
        async with AsyncClient(server.url) as client:
            return await asyncio.gather(client.encode("ae-6", TWO), client.classify(SEVEN.read_bytes()))

    encoding, verdict = asyncio.run(both())
    assert isinstance(encoding, Encoding) and encoding.nearest_digit == 2
    assert np.allclose(encoding.latent, digitae.encode("ae-6", TWO).latent, atol=1e-5)
    assert verdict.digit == 7  # type: ignore[attr-defined]


def test_retry_after_is_honoured_then_the_error_raised() -> None:
    """A busy service says when to come back (503 `busy`, Retry-After): the client waits that long and tries
    again, at most `retries` times, then raises the last answer."""
    busy = {"error": {"code": "busy", "message": "bulk slots full", "detail": None, "request_id": "r-1"}}
    seen: list[float] = []

    def busy_twice(request: httpx.Request) -> httpx.Response:
        import time

        seen.append(time.monotonic())
        if len(seen) <= 2:
            return httpx.Response(503, json=busy, headers={"Retry-After": "0.2"})
        return httpx.Response(200, json=[{"name": "ae-2"}])

    with Client("http://digitae.test", transport=httpx.MockTransport(busy_twice)) as client:
        assert client.models() == [{"name": "ae-2"}]
    assert len(seen) == 3 and seen[1] - seen[0] >= 0.2 and seen[2] - seen[1] >= 0.2

    seen.clear()
    always_busy = httpx.MockTransport(lambda request: httpx.Response(503, json=busy, headers={"Retry-After": "0"}))
    with (
        Client("http://digitae.test", transport=always_busy, retries=2) as client,
        pytest.raises(DigitaeError) as raised,
    ):
        client.models()
    assert raised.value.code == "busy" and raised.value.request_id == "r-1"


def test_a_busy_services_retry_after_is_honoured_on_a_real_server(
    start_server: StartServer, served_models: Path
) -> None:
    """A client that never reads its bulk answer holds the service's one bulk slot until the write timeout drops
    it: meanwhile the service answers 503 `busy` with Retry-After, and the client's bulk request waits as told and
    goes through once the slot is free, instead of failing."""
    server = start_server(served_models, write_timeout_s=1.0, max_concurrent_bulk=1)
    digits = np.stack([example_digit()] * 3)
    with raw(server.port, receive_buffer=4096) as stalled, Client(server.url, batch_size=2, retries=20) as client:
        stalled.sendall(npy_request("/v1/models/ae-6/reconstruct/batch", 4000))  # a 12.5 MB answer nobody reads
        time.sleep(0.5)
        busy = httpx.post(f"{server.url}/v1/models/ae-6/encode/batch", content=npy_body(digits),
                          headers={"content-type": "application/x-npy"}, timeout=10)  # fmt: skip
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "busy", busy.text
        start = time.monotonic()
        codes = client.encode("ae-6", digits)  # 3 rows over a batch of 2: one .npy bulk request
        waited = time.monotonic() - start
    assert isinstance(codes, list) and [code.nearest_digit for code in codes] == [codes[0].nearest_digit] * 3
    assert waited >= 0.9, f"answered after {waited:.2f} s: the client did not wait for the busy slot"


def test_the_package_stands_alone_without_the_servers_dependencies() -> None:
    """Importable with torch, FastAPI and the service blocked; its metadata asks for httpx, numpy and Pillow only."""
    blocked = "import sys; [sys.modules.__setitem__(m, None) for m in ('torch', 'fastapi', 'service', 'models')]"
    code = f"{blocked}; import digitae_client; print(digitae_client.Client.__name__)"
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(CLIENT_ROOT)!r}); {code}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "Client", result.stderr
    import tomllib

    project = tomllib.loads((CLIENT_ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(dep.split(">")[0] for dep in project["dependencies"]) == ["httpx", "numpy", "pillow"]
    assert (CLIENT_ROOT / "digitae_client" / "py.typed").exists(), "typed: PEP 561 marker shipped"


def readme_python_examples() -> list[str]:
    section = (REPO_ROOT / "README.md").read_text().split("## Clients", 1)[1].split("\n## ", 1)[0]
    examples = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return [example for example in examples if "digitae_client" in example]  # not the section's tritonclient one


def test_the_readmes_python_examples_run_against_a_real_server(server: ServerProcess, tmp_path: Path) -> None:
    examples = readme_python_examples()
    assert examples, "the README's Clients section has a Python example"
    shutil.copytree(REPO_ROOT / "examples", tmp_path / "examples")
    for example in examples:
        live = example.replace("http://127.0.0.1:8000", server.url)
        result = subprocess.run(
            [sys.executable, "-c", live], cwd=tmp_path, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(CLIENT_ROOT)},
        )  # fmt: skip
        assert result.returncode == 0, f"{example}\n{result.stderr}"
        lines = result.stdout.splitlines()
        assert lines[0].startswith("2 ") and lines[1].startswith("7 "), result.stdout
        assert lines[-1].startswith("422 invalid_request"), result.stdout
