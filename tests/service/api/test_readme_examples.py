"""Every curl example in the README's API section, run as written against a live server.

The server serves the committed checkpoints, as `make run` does; only its port differs,
so the examples' `http://127.0.0.1:8000` is rewritten to the test server's address.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.checkpoint import DEFAULT_CHECKPOINTS_DIR
from tests.support import REPO_ROOT, ServerProcess

README = REPO_ROOT / "README.md"
EXAMPLE_NAMES = {"ae-2", "ae-6", "vae-2"}


def api_examples() -> list[str]:
    """The shell commands in the `## The API` section, continuation lines joined."""
    section = README.read_text().split("## The API", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
        commands += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return commands


COMMANDS = api_examples()


@pytest.fixture(scope="module")
def served_models() -> Path:
    """The committed checkpoints, as `make run` serves them."""
    missing = EXAMPLE_NAMES - {p.name for p in DEFAULT_CHECKPOINTS_DIR.iterdir() if p.is_dir()}
    if missing:
        pytest.fail(f"the README's examples need the committed checkpoints {sorted(missing)}")
    return DEFAULT_CHECKPOINTS_DIR


def test_the_api_section_has_an_example_for_every_endpoint() -> None:
    text = " ".join(COMMANDS)
    routes: tuple[str, ...] = ("/v1/models ", "/encode", "/reconstruct", "/decode", "/sample", "/interpolate")
    routes = (*routes, "/readyz", "/metrics", "/classify", "/atlas")
    for route in routes:
        assert route in text + " ", f"no README example calls {route.strip()}"


@pytest.mark.parametrize("command", COMMANDS, ids=range(len(COMMANDS)))
def test_readme_example_runs(command: str, server: ServerProcess, tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "examples", tmp_path / "examples")
    live = command.replace("http://127.0.0.1:8000", server.url)
    result = subprocess.run(["bash", "-c", live], cwd=tmp_path, capture_output=True, timeout=60)
    failure = f"{command}\nexit {result.returncode}: {result.stderr.decode()}\n{server.log()[-2000:]}"
    assert result.returncode == 0, failure
    written = re.search(r"-o (\S+)", command)
    if written and written.group(1).endswith(".npy"):  # a bulk answer: one array, a row per input
        assert np.load(tmp_path / written.group(1), allow_pickle=False).shape[0] == 10
    elif written:  # an image answer: a real PNG
        assert Image.open(tmp_path / written.group(1)).format == "PNG"
    elif "/metrics" in command:
        assert b"digitae_http_requests_total" in result.stdout
    else:
        body = json.loads(result.stdout)
        if "/classify" in command:
            assert body["digit"] == 7
        if ("/encode" in command or "/reconstruct" in command) and "corruption" not in command:
            assert body["nearest_digit"] == (7 if "seven" in command else 2)


def clients_example() -> str:
    """The Python example of the README's `## Clients` section (tritonclient on /v2)."""
    section = README.read_text().split("## Clients", 1)[1].split("\n## ", 1)[0]
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL) if "tritonclient" in b]
    return str(block)


def test_readme_clients_example_runs_and_prints_what_it_says(server: ServerProcess, tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "examples", tmp_path / "examples")
    code = clients_example()
    promised = code.rsplit("# ", 1)[1].strip()  # the comment after the last print: what it prints
    live = code.replace("127.0.0.1:8000", server.url.removeprefix("http://"))
    result = subprocess.run([sys.executable, "-c", live], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{result.stderr}\n{server.log()[-2000:]}"
    assert result.stdout.strip() == promised
