"""Delivery: the Dockerfile, docker-compose.yml, the settings, the Makefile, CI and the README agree with each other.

No Docker engine runs here, so these tests read the files as Docker would and check every value that must match
across them (ports, setting names, the healthcheck path, the models path), and run what can run without an engine:
the install script in dry-run mode, the Makefile in dry-run mode, and the image's command and healthcheck against a
real server.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import inspect
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from starlette.routing import Match

from tests.support import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
INSTALL_SCRIPT = "scripts/install.sh"
HEALTH_PATH = "/healthz"


# -- reading the files -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: str
    keyword: str
    args: str


def read_dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """The Dockerfile's instructions in order, continuation lines joined, each tagged with its build stage."""
    instructions: list[Instruction] = []
    stage, pending = "", ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            stage = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else words[0]
        instructions.append(Instruction(stage, keyword, args))
    return instructions


def stage_parents() -> dict[str, str]:
    """Each stage's base: another stage's name, or an image."""
    return {i.stage: i.args.split()[0].lower() for i in read_dockerfile() if i.keyword == "FROM"}


def stage_chain(stage: str) -> list[str]:
    """The stage and every stage it is built on, the oldest first."""
    parents, chain = stage_parents(), [stage]
    while parents.get(chain[0]) in parents:
        chain.insert(0, parents[chain[0]])
    return chain


def parse_env(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # the legacy form: ENV KEY value
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def stage_env(stage: str) -> dict[str, str]:
    """The ENV a stage ends with, inherited from the stages it is built on."""
    env: dict[str, str] = {}
    for name in stage_chain(stage):
        for instruction in read_dockerfile():
            if instruction.stage == name and instruction.keyword == "ENV":
                env.update(parse_env(instruction.args))
    return env


def stage_instructions(stage: str, keyword: str) -> list[str]:
    """The args of every `keyword` instruction that applies to a stage (its own and its bases'), in order."""
    chain = stage_chain(stage)
    return [i.args for i in read_dockerfile() if i.stage in chain and i.keyword == keyword]


def exec_form(args: str) -> list[str]:
    """The JSON array of a CMD or HEALTHCHECK instruction."""
    start = args.index("[")
    command = json.loads(args[start:])
    assert isinstance(command, list) and all(isinstance(word, str) for word in command), args
    return command


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target path -> named volume, from compose's short syntax (`name:/path[:ro]`)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts[target] = source
    return mounts


def container_port(mapping: str) -> int:
    return int(str(mapping).split(":")[-1].split("/")[0])


def string_literals(command: list[str]) -> list[str]:
    """The string literals of a `python -c CODE` healthcheck's CODE."""
    assert command[-2] == "-c", f"not a `python -c` healthcheck: {command}"
    nodes = ast.walk(ast.parse(command[-1]))
    return [node.value for node in nodes if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def healthcheck_paths(command: list[str]) -> list[str]:
    """The URL paths a healthcheck requests, whether written whole or as a path joined to a host."""
    literals = string_literals(command)
    paths = [urlsplit(text).path for text in literals if text.startswith("http")]
    return [path for path in paths + [text for text in literals if text.startswith("/")] if path]


def healthcheck_hosts(command: list[str]) -> list[tuple[str | None, int | None]]:
    urls = [urlsplit(text) for text in string_literals(command) if text.startswith("http")]
    return [(url.hostname, url.port) for url in urls]


def readme_commands() -> list[str]:
    """The commands of the README's first code block: the two set-up commands."""
    match = re.search(r"```[^\n]*\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.S)
    assert match, "the README has no code block"
    lines = (line.split("#", 1)[0].strip() for line in match.group(1).splitlines())
    return [line for line in lines if line]


def ci_commands() -> list[str]:
    """The commands .ci/run runs, less the shell's own set-up (`set`, `cd`)."""
    lines = ((REPO_ROOT / ".ci" / "run").read_text()).splitlines()
    commands = (line.split("#", 1)[0].strip() for line in lines if not line.startswith("#"))
    return [c for c in commands if c and not c.startswith(("set ", "cd "))]


def import_or_skip(module: str) -> ModuleType:
    """Import a project module; skip only while it does not exist yet (an error inside it still fails)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module:
            raise
        pytest.skip(f"{module} does not exist yet")
    except SystemExit:
        pytest.fail(f"importing {module} runs the program: guard it with `if __name__ == '__main__':`")


def settings_class() -> type[Any]:
    return import_or_skip("service.settings").Settings


def env_prefix(settings: type[Any]) -> str:
    return str(settings.model_config.get("env_prefix", "")).upper()


def models_dir_in_image() -> str:
    return stage_env("api")["DIGITAE_MODELS_DIR"]


# -- Dockerfile and compose against each other -------------------------------------------------------------------------


def test_compose_builds_stages_that_exist_and_plain_docker_build_gives_the_api() -> None:
    stages = [i.stage for i in read_dockerfile() if i.keyword == "FROM"]
    assert compose_service("api")["build"]["target"] in stages
    assert compose_service("train")["build"]["target"] in stages
    assert stages[-1] == compose_service("api")["build"]["target"], "`docker build .` builds the last stage"


def test_exposed_port_is_the_port_compose_publishes() -> None:
    exposed = [int(port.split("/")[0]) for args in stage_instructions("api", "EXPOSE") for port in args.split()]
    published = [container_port(mapping) for mapping in compose_service("api")["ports"]]
    assert exposed == published == [int(stage_env("api")["DIGITAE_PORT"])]
    assert compose_env(compose_service("api")).get("DIGITAE_PORT", str(exposed[0])) == str(exposed[0])


def test_image_listens_on_all_interfaces() -> None:
    assert stage_env("api")["DIGITAE_HOST"] == "0.0.0.0"
    assert compose_env(compose_service("api")).get("DIGITAE_HOST", "0.0.0.0") == "0.0.0.0"


def image_healthcheck() -> list[str]:
    (healthcheck,) = stage_instructions("api", "HEALTHCHECK")
    return exec_form(healthcheck)


def compose_healthcheck() -> list[str]:
    test = compose_service("api")["healthcheck"]["test"]
    assert test[0] == "CMD", "exec form: the slim image has no curl, and python needs no shell"
    return test[1:]


def test_healthchecks_probe_healthz_on_the_served_port() -> None:
    assert healthcheck_paths(image_healthcheck()) == healthcheck_paths(compose_healthcheck()) == [HEALTH_PATH]
    port = container_port(compose_service("api")["ports"][0])
    assert healthcheck_hosts(compose_healthcheck()) == [("127.0.0.1", port)]
    assert "DIGITAE_PORT" in image_healthcheck()[-1], "the image's check follows a changed port"


def test_healthcheck_path_is_a_route_of_the_app() -> None:
    create_app = import_or_skip("service.app").create_app
    settings = settings_class()
    required = [p for p in inspect.signature(create_app).parameters.values() if p.default is inspect.Parameter.empty]
    app = create_app(settings()) if required else create_app()
    scope = {"type": "http", "method": "GET", "path": HEALTH_PATH, "root_path": "", "headers": [], "query_string": b""}
    assert any(route.matches(scope)[0] is Match.FULL for route in app.router.routes), f"no GET {HEALTH_PATH} route"


def test_models_volume_is_where_the_image_keeps_its_checkpoints_and_training_writes() -> None:
    models_dir = models_dir_in_image()
    assert any(
        args.split()[-1] == models_dir and "models/checkpoints" in args for args in stage_instructions("api", "COPY")
    ), "the committed checkpoints are baked in at DIGITAE_MODELS_DIR"

    api, train = compose_service("api"), compose_service("train")
    volume = volume_mounts(api).get(models_dir)
    assert volume, f"the api service mounts no volume at {models_dir}"
    assert volume in compose()["volumes"], "a named volume, so Docker fills it from the image on first use"
    assert compose_env(api).get("DIGITAE_MODELS_DIR", models_dir) == models_dir

    assert volume_mounts(train).get(models_dir) == volume, "training writes into the volume the api serves"
    assert train["command"][-2:] == ["--out", models_dir]
    assert exec_form(stage_instructions("train", "CMD")[-1])[-2:] == ["--out", models_dir]
    assert train["profiles"] == ["train"]


def test_api_container_is_hardened() -> None:
    api = compose_service("api")
    assert api["read_only"] is True
    assert "/tmp" in api["tmpfs"]
    metrics_dir = compose_env(api).get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:
        assert metrics_dir in api["tmpfs"], "the workers' metrics files need a writable folder, empty at each start"
    assert api["restart"] == "unless-stopped"
    for stage in ("api", "train"):
        user = stage_instructions(stage, "USER")[-1]
        assert user.split(":")[0] not in {"root", "0"}, f"the {stage} image runs as root"


# -- settings ----------------------------------------------------------------------------------------------------------


def test_every_digitae_variable_is_a_real_setting() -> None:
    settings = settings_class()
    prefix = env_prefix(settings)
    assert prefix == "DIGITAE_"
    fields = {prefix + name.upper() for name in settings.model_fields}
    names = set(stage_env("api")) | set(stage_env("train"))
    for service in compose()["services"].values():
        names |= set(compose_env(service))
    unknown = sorted(name for name in names if name.startswith(prefix) and name not in fields)
    assert not unknown, f"not settings of service/settings.py: {unknown}"


def test_compose_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_class()
    for name in list(os.environ):
        if name.startswith("DIGITAE_"):
            monkeypatch.delenv(name)
    environment = {**stage_env("api"), **compose_env(compose_service("api"))}
    environment["DIGITAE_MODELS_DIR"] = str(REPO_ROOT / "models" / "checkpoints")  # the image's path is not here
    for name, value in environment.items():
        if name.startswith("DIGITAE_"):
            monkeypatch.setenv(name, value)
    parsed = settings()
    assert parsed.port == int(environment["DIGITAE_PORT"])
    assert parsed.host == environment["DIGITAE_HOST"]


def test_defaults_serve_the_committed_checkpoints_on_the_exposed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run` sets nothing: the defaults alone must be 127.0.0.1:8000 and models/checkpoints/."""
    settings = settings_class()
    for name in list(os.environ):
        if name.startswith("DIGITAE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(REPO_ROOT)
    defaults = settings()
    assert (defaults.host, defaults.port) == ("127.0.0.1", int(stage_env("api")["DIGITAE_PORT"]))
    assert Path(defaults.models_dir).resolve() == (REPO_ROOT / "models" / "checkpoints").resolve()


def readme_settings_table() -> dict[str, str]:
    """variable -> default, from the README's settings table."""
    section = (REPO_ROOT / "README.md").read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(DIGITAE_\w+)` \| ([^|]*) \|", section, re.M)
    return {name: default.strip().strip("`") for name, default in rows}


def test_readme_settings_table_lists_every_setting_with_its_default() -> None:
    settings = settings_class()
    table = readme_settings_table()
    fields = {env_prefix(settings) + name.upper(): field for name, field in settings.model_fields.items()}
    assert sorted(table) == sorted(fields)
    for name, field in fields.items():
        default = field.default
        if isinstance(default, bool):
            expected = str(default).lower()
        elif isinstance(default, float):
            expected = f"{default:g}"
        elif isinstance(default, int | str):
            expected = str(default)
        else:  # paths and lists: described in words
            continue
        assert table[name] == expected, f"{name}: the README says {table[name]!r}, the settings say {expected!r}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_healthcheck(command: list[str], env: dict[str, str]) -> int:
    """Run a container healthcheck here: its `python` is this interpreter."""
    argv = [sys.executable if word == "python" else word for word in command]
    return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode


def test_healthcheck_fails_when_nothing_listens() -> None:
    assert run_healthcheck(image_healthcheck(), {**os.environ, "DIGITAE_PORT": str(free_port())}) != 0


def test_image_command_serves_healthz_and_both_healthchecks_pass(tiny_digits, tmp_path: Path) -> None:
    """The image's CMD, run here as the image runs it (outside the repository, models from DIGITAE_MODELS_DIR),
    answers both healthchecks."""
    import_or_skip("service.__main__")
    from training.train import make_config, train

    models_dir = tmp_path / "models"
    config = make_config("ae", latent_dim=2, channels=(4, 8, 8), hidden=16, epochs=1)
    train(config, tiny_digits, models_dir, verbose=False)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DIGITAE_")},
        "PYTHONPATH": str(REPO_ROOT),
        "DIGITAE_MODELS_DIR": str(models_dir),
        "DIGITAE_HOST": "127.0.0.1",
        "DIGITAE_PORT": str(port),
        "DIGITAE_WORKERS": "1",
        "DIGITAE_TORCH_THREADS": "1",
    }
    command = [sys.executable if word == "python" else word for word in exec_form(stage_instructions("api", "CMD")[-1])]
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, f"the service exited: {server.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the service did not answer /healthz within 90 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        assert run_healthcheck(image_healthcheck(), env) == 0
        published = container_port(compose_service("api")["ports"][0])
        compose_check = [word.replace(f":{published}/", f":{port}/") for word in compose_healthcheck()]
        assert run_healthcheck(compose_check, env) == 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# -- one install path: Makefile, Dockerfile, CI, README ----------------------------------------------------------------


def test_dockerfile_installs_only_through_the_install_script() -> None:
    runs = [i for i in read_dockerfile() if i.keyword == "RUN"]
    installs = [i for i in runs if INSTALL_SCRIPT in i.args]
    assert {i.stage for i in installs} >= {"deps", "builder", "train-builder"}
    assert all("pip" not in i.args.replace(INSTALL_SCRIPT, "") for i in runs if "cache,target" not in i.args)
    torch_index = [args for args in stage_instructions("deps", "ARG") if args.startswith("TORCH_INDEX_URL=")]
    assert torch_index == ["TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"], "CPU-only torch in the image"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(("target", "expected"), [("run", ["-m service"]), ("test", ["ruff check", "-m pytest"])])
def test_make_installs_through_the_install_script(target: str, expected: list[str], tmp_path: Path) -> None:
    plan = subprocess.run(
        ["make", "--dry-run", target, f"VENV={tmp_path / 'venv'}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    steps = plan.splitlines()
    install = next(i for i, step in enumerate(steps) if step.startswith(INSTALL_SCRIPT))
    if target == "test":
        assert "--extras dev" in steps[install]
    for command in expected:
        assert any(command in step for step in steps[install + 1 :]), f"`make {target}` does not run {command}"


def test_ci_runs_the_readme_test_command() -> None:
    commands = readme_commands()
    assert commands == ["make run", "make test"], "the README opens with the two set-up commands"
    commands = ci_commands()
    assert commands[-2:] == ["make test", "make container-test"], "CI builds and runs the images and compose too"
    # before them, only the OS packages tests need that are not Python packages (chromium: the explorer's tests)
    assert all(c.startswith(("export CI=", "if ! command -v ", "apt-get ", "fi")) for c in commands[:-2]), commands


def dry_run_install(*args: str, torch_index_url: str = "", tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VENV": str(tmp_path / "venv"), "PYTHON": sys.executable, "TORCH_INDEX_URL": torch_index_url}
    return subprocess.run(
        ["bash", INSTALL_SCRIPT, "--dry-run", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


def test_install_script_takes_torch_alone_from_the_given_index(tmp_path: Path) -> None:
    cpu_index = "https://download.pytorch.org/whl/cpu"
    result = dry_run_install("--deps-only", "--extras", "train", torch_index_url=cpu_index, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    steps = [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]
    creates_venv, installs_torch, installs_deps = steps
    assert creates_venv[-2:] == ["venv", str(tmp_path / "venv")]
    assert installs_torch[-4:] == ["--no-deps", "--index-url", cpu_index, "torch==2.13.0"], "its deps: as locked"
    assert "--index-url" not in installs_deps

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    expected = [r for r in project["dependencies"] if not r.startswith("torch")]
    expected += project["optional-dependencies"]["train"]
    assert installs_deps[installs_deps.index("--disable-pip-version-check") + 1 :] == [
        "--constraint",
        "constraints.txt",
        "torch==2.13.0",  # already installed: here so that its dependencies are installed, as locked
        *expected,
    ], "every install is pinned by the lock"


def test_install_script_without_index_uses_pip_configuration(tmp_path: Path) -> None:
    result = dry_run_install("--editable", "--extras", "dev", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    steps = [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert "--index-url" not in steps[1] and steps[1][-1] == "torch==2.13.0"
    assert steps[2][-2:] == ["--editable", ".[dev]"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--extras", "nosuch"], "no extra 'nosuch'"), (["--frobnicate"], "unknown option '--frobnicate'")],
)
def test_install_script_refuses_bad_arguments_clearly(args: list[str], message: str, tmp_path: Path) -> None:
    result = dry_run_install(*args, tmp_path=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "venv").exists()


# -- the package -------------------------------------------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("script", ["digitae-serve", "digitae-train"])
def test_console_scripts_point_at_main_functions(script: str) -> None:
    target = pyproject()["project"]["scripts"][script]
    module_name, _, function = target.partition(":")
    module = import_or_skip(module_name)
    assert callable(getattr(module, function, None)), f"{target} is not a function"


def test_package_ships_every_committed_checkpoint_file() -> None:
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["models"]
    checkpoints = REPO_ROOT / "models" / "checkpoints"
    files = [
        path.relative_to(REPO_ROOT / "models").as_posix()
        for path in sorted(checkpoints.glob("*/*"))
        if path.is_file() and not path.parent.name.startswith(".")
    ]
    if not files:
        pytest.skip("no committed checkpoints yet")
    left_out = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert not left_out, f"not in the package data of pyproject.toml: {left_out}"


def test_the_service_runs_without_the_training_only_packages() -> None:
    """The serving image carries no `train` extra: starting the app must not import any of it."""
    # (tqdm is left out: torch.hub imports it whenever it is installed, and does without it)
    train_only = ("scipy", "matplotlib", "mlxtend", "training")
    probe = (
        "import sys; from service.app import create_app; import service.__main__; "
        f"print(','.join(m for m in {train_only!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"the service imports training-only packages: {result.stdout.strip()}"
