"""The kserve SDK's InferenceRESTClient (protocol v2) against a real `python -m service`: health, readiness, JSON
and binary tensors equal to /v1's answers, and an error it reports with the server's message.

The SDK lives in a venv of its own (`make test` builds .venv/kserve; its pins need not match the lock); the test runs
tests/support/kserve_client.py with that python. Without the venv the test skips saying how to build it; in CI
(CI=true) it fails instead."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support import REPO_ROOT, ServerProcess

KSERVE_PYTHON = Path(sys.executable).parent.parent / "kserve" / "bin" / "python"
CLIENT = REPO_ROOT / "tests" / "support" / "kserve_client.py"
NPY = "application/x-npy"


@pytest.fixture(scope="module")
def kserve_python() -> Path:
    if not KSERVE_PYTHON.exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"CI needs the kserve SDK at {KSERVE_PYTHON}: `make test` builds it (.venv/kserve)")
        pytest.skip(f"no kserve SDK venv at {KSERVE_PYTHON}: `make .venv/kserve/bin/python` builds it")
    return KSERVE_PYTHON


def v1_npy(client: httpx.Client, operation: str, images: np.ndarray, field: str) -> np.ndarray:
    buffer = io.BytesIO()
    np.save(buffer, images)
    response = client.post(
        f"/v1/models/vae-2/{operation}",
        params={"fields": field},
        content=buffer.getvalue(),
        headers={"Content-Type": NPY, "Accept": NPY},
    )
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


def test_kserve_client(kserve_python: Path, server: ServerProcess, client: httpx.Client, tmp_path: Path) -> None:
    images = np.random.default_rng(3).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    run = subprocess.run(
        [str(kserve_python), "-I", str(CLIENT), server.url, "vae-2", str(tmp_path / "images.npy")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["live"] is True and seen["ready"] is True
    assert seen["model_ready"] is True and seen["unknown_model_ready"] is False
    expected = {
        "latent": v1_npy(client, "encode", images, "latent"),
        "reconstruction": v1_npy(client, "reconstruct", images, "image"),
        "mse": v1_npy(client, "reconstruct", images, "loss")[:, 0],
    }
    for form in ("json", "binary"):
        answer = seen[form]
        assert answer["id"] == f"kserve-{form == 'binary'}"
        assert set(answer["outputs"]) == set(expected)
        for name, want in expected.items():
            assert answer["outputs"][name]["datatype"] == "FP32"
            np.testing.assert_allclose(np.array(answer["outputs"][name]["values"]), want, atol=1e-5, err_msg=name)
    assert seen["error"]["status"] == 422
    assert "images: shape [N, 28, 28]" in seen["error"]["message"], "the SDK's error carries the server's message"
