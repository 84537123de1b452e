"""`make lint` (and so CI) and pre-commit run the same checks, with the tools pinned exactly, and the type checker is
strict where the product lives."""

from __future__ import annotations

import re
import tomllib
from typing import Any

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
