"""`make lint` (and so CI) and pre-commit run the same checks, with the tools pinned exactly, the type checker is
strict where the product lives, and the layer contracts catch an import that runs the wrong way."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO_ROOT

CHECKS = ["ruff format --check", "ruff check", "mypy", "lint-imports"]


def make_lint_commands() -> list[str]:
    """The `lint` target's recipe lines, without the virtual environment's path and the `.` they check."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe is not None, "the Makefile has a lint target"
    lines = [line.strip() for line in recipe.group(1).splitlines()]
    return [line.removeprefix("$(BIN)/").removesuffix(" .") for line in lines]


def pre_commit_hooks() -> list[dict[str, Any]]:
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    return [{**hook, "repo": repo["repo"]} for repo in config["repos"] for hook in repo["hooks"]]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_make_lint_checks_formatting_rules_and_types_and_make_test_runs_it() -> None:
    assert make_lint_commands() == CHECKS
    assert re.search(r"^test: lint\b", (REPO_ROOT / "Makefile").read_text(), re.M)


def test_pre_commit_runs_the_same_checks_with_the_environments_tools_offline() -> None:
    hooks = pre_commit_hooks()
    assert [hook["entry"].removeprefix(".venv/bin/") for hook in hooks] == CHECKS
    assert all(hook["repo"] == "local" and hook["language"] == "system" for hook in hooks), "nothing to download"


def test_the_lint_tools_are_pinned_exactly() -> None:
    dev = pyproject()["project"]["optional-dependencies"]["dev"]
    pinned = {re.split(r"[=<>~!]", spec, maxsplit=1)[0]: spec for spec in dev}
    for tool in ("ruff", "mypy", "import-linter", "pre-commit", "types-psutil", "types-PyYAML", "types-tqdm"):
        assert re.fullmatch(rf"{re.escape(tool)}==[\w.]+", pinned[tool]), pinned.get(tool)


def test_mypy_flags_needless_ignores_everywhere_and_untyped_code_in_the_product() -> None:
    mypy = pyproject()["tool"]["mypy"]
    assert mypy["warn_unused_ignores"] is True
    assert set(mypy["files"]) >= {"models", "service", "training", "tests"}
    strict = [o for o in mypy["overrides"] if o.get("disallow_untyped_defs")]
    assert {m for o in strict for m in o["module"]} >= {"models.*", "service.*", "training.*"}


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over `root` (a copy of the packages and pyproject.toml), as `make lint` runs it."""
    tool = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(tool), "--no-cache", "--no-logo"], cwd=root, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("service/engine/batching.py", "import service.api.deps", "the folders are layers"),
        ("service/runtime/logs.py", "import service.engine.inference", "the folders are layers"),
        ("service/codec/render.py", "import training.findings", "service never imports training"),
        ("models/losses.py", "import service.settings", "models is the foundation"),
    ],
)
def test_the_layer_contracts_catch_an_import_that_runs_the_wrong_way(
    tmp_path: Path, module: str, wrong_import: str, contract: str
) -> None:
    for package in ("service", "training", "models"):
        shutil.copytree(REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("static", "checkpoints"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    clean = _lint_imports(tmp_path)
    assert clean.returncode == 0, f"today's tree keeps every contract:\n{clean.stdout}{clean.stderr}"
    planted = tmp_path / module
    planted.write_text(planted.read_text() + f"\n{wrong_import}  # planted by the test\n")
    broken = _lint_imports(tmp_path)
    assert broken.returncode != 0, f"lint-imports should refuse {wrong_import} in {module}:\n{broken.stdout}"
    assert f"{contract}" in broken.stdout and "BROKEN" in broken.stdout, broken.stdout
