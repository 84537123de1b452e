"""The lock: constraints.txt pins every package pyproject.toml asks for, and the environment was installed from it.

A dependency added to pyproject.toml without `make lock` fails here, before two installs can differ.
"""

import importlib.metadata
import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support import REPO_ROOT

LOCK = REPO_ROOT / "constraints.txt"


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
            assert match, f"constraints.txt: {line!r} is not an exact pin"
            found[canonicalize_name(match.group(1))] = Version(match.group(2))
    return found


def requirements() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    listed = [Requirement(r) for r in [*project["dependencies"], *(r for rs in extras.values() for r in rs)]]
    return [r for r in listed if canonicalize_name(r.name) != project["name"]]


def test_every_requirement_of_pyproject_is_pinned_within_its_range() -> None:
    locked = pins()
    for requirement in requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"constraints.txt pins {name}=={locked[name]}, outside pyproject.toml's {requirement}: run `make lock`"
        )


def test_this_environment_was_installed_from_the_lock() -> None:
    drift = []
    for name, version in pins().items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            continue  # the lock covers every extra; an install takes only what it needs
        if installed.public != version.public:  # torch's +cpu build meets torch==2.13.0
            drift.append(f"{name} {installed} (lock: {version})")
    assert not drift, f"installed versions differ from constraints.txt: {drift}"
