"""The model catalogue under attack, with real servers: a folder that fails in any way never hides another folder's
update, a card is checked against bounds before anything is allocated or hashed, a huge file never stalls a reload,
links out of the models folder are refused, and /readyz without the admin key leaks no hashes or paths."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

import service.catalog.registry as registry_module
from models.checkpoint import CARD_FILE, WEIGHTS_FILE
from service.catalog.registry import load_registry
from service.catalog.reloading import Reloader
from tests.support import ServerProcess, StartServer, build_checkpoints
from tests.support.attacks import RssSampler
from tests.support.reloads import write_new_version

ADMIN_KEY = "admin-key-for-catalog-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def hostile_copy(models: Path, source: str, name: str, **card_fields: Any) -> Path:
    """A copy of a served checkpoint with card fields replaced (the card is not hashed: every file still matches),
    moved in with one rename as a deployment would."""
    staging = models / f".staging-{name}"
    shutil.copytree(models / source, staging)
    card = json.loads((staging / CARD_FILE).read_text())
    card.update(card_fields)
    (staging / CARD_FILE).write_text(json.dumps(card))
    staging.rename(models / name)
    return models / name


def versions(server: ServerProcess) -> dict[str, str]:
    return {m["name"]: m["version"] for m in httpx.get(f"{server.url}/v1/models", timeout=10).json()}


def refusals_counted(server: ServerProcess, model: str) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = re.search(rf'digitae_model_changes_total\{{change="refused",model="{re.escape(model)}"\}} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


def wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


# -- in-process: the reloader's rules -------------------------------------------------------------------------------


def test_any_failure_of_one_folder_is_a_refusal_and_the_others_are_taken_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only checkpoint errors: whatever loading one folder raises (here torch running out of memory)."""
    models = build_checkpoints(tmp_path / "models")
    registry = load_registry(models, torch.device("cpu"), skip_bad=False)
    changes: list[tuple[str, str]] = []
    reloader = Reloader(registry, models, torch.device("cpu"), observe=lambda *change: changes.append(change))
    reloader.adopt_startup_state()
    real_load = registry_module.load_checkpoint

    def load_or_run_out_of_memory(folder: Path, **kwargs: Any) -> Any:
        if folder.name == "ae-9":
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return real_load(folder, **kwargs)

    monkeypatch.setattr(registry_module, "load_checkpoint", load_or_run_out_of_memory)
    shutil.copytree(models / "ae-2", models / "ae-9")
    write_new_version(models, "ae-6", seed=21)
    report = asyncio.run(reloader.reload("test"))
    assert report.updated == ["ae-6"] and list(report.refused) == ["ae-9"]
    assert "RuntimeError: [enforce fail" in registry.refused["ae-9"] and ("ae-9", "refused") in changes
    assert not asyncio.run(reloader.reload("test")).refused  # unchanged since: not tried again

    monkeypatch.setattr(registry_module, "load_checkpoint", real_load)
    (models / "ae-9" / "history.json").touch()  # changed: tried again, and served
    assert asyncio.run(reloader.reload("test")).added == ["ae-9"] and "ae-9" not in registry.refused


def test_loading_happens_outside_the_lock_and_a_slow_folder_never_stalls_another_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = build_checkpoints(tmp_path / "models")
    registry = load_registry(models, torch.device("cpu"), skip_bad=False)
    reloader = Reloader(registry, models, torch.device("cpu"))
    reloader.adopt_startup_state()
    real_load = registry_module.load_checkpoint
    hashing, release = threading.Event(), threading.Event()

    calls: list[str] = []

    def served_ae6(report: Any) -> Any:
        return next(m for m in registry.models.values() if m.version == report.versions["ae-6"])

    def slow_the_first_time(folder: Path, **kwargs: Any) -> Any:
        calls.append(folder.name)
        if folder.name == "ae-9" and not hashing.is_set():
            hashing.set()
            release.wait(30)  # as a large file being hashed
        return real_load(folder, **kwargs)

    monkeypatch.setattr(registry_module, "load_checkpoint", slow_the_first_time)
    shutil.copytree(models / "ae-2", models / "ae-9")
    write_new_version(models, "ae-6", seed=22)

    async def scenario() -> None:
        slow = asyncio.create_task(reloader.reload("poll"))
        await asyncio.to_thread(hashing.wait, 30)
        admin = await asyncio.wait_for(reloader.reload("admin"), 20)  # not queued behind the slow one
        assert (admin.added, admin.updated) == ([], ["ae-6"])  # ae-9 is not loaded twice at once
        assert "ae-9" not in registry.models and calls.count("ae-9") == 1
        release.set()
        late = await slow
        assert late.added == ["ae-9"] and "ae-9" in registry.models and registry.models["ae-6"] is served_ae6(admin)

    asyncio.run(scenario())


# -- real servers -------------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_folder_that_cannot_be_loaded_never_hides_an_update_written_in_the_same_poll(
    tmp_path: Path, start_server: StartServer
) -> None:
    """Finding 1: a card whose latent size torch cannot allocate, and a legitimate new ae-6 in the same poll (looked at
    first, by name: on main the failure dropped it after marking it seen)."""
    models = build_checkpoints(tmp_path / "models")
    server = start_server(models, reload_interval_s=0.5, admin_key=ADMIN_KEY)
    old = versions(server)["ae-6"]

    hostile_copy(models, "ae-2", "ae-9", latent_dim=10**9)
    write_new_version(models, "ae-6", seed=5)
    assert wait_for(lambda: versions(server)["ae-6"] != old, 10), (
        "the new ae-6 was never served\n" + server.log()[-3000:]
    )

    ready = httpx.get(f"{server.url}/readyz").json()
    assert set(ready["refused"]) == {"ae-9"} and "ae-9" not in ready["models"]
    assert "latent_dim" in httpx.get(f"{server.url}/readyz", headers=ADMIN).json()["refused"]["ae-9"]
    time.sleep(1.5)  # several more polls: the bad folder is not loaded (nor counted) again until it changes
    assert refusals_counted(server, "ae-9") == 1.0

    reload = httpx.post(f"{server.url}/admin/reload", headers=ADMIN, timeout=10)
    assert reload.status_code == 200 and reload.json()["refused"] == {}, reload.text

    shutil.rmtree(models / "ae-9")  # deleted: the note goes
    assert wait_for(lambda: "ae-9" not in httpx.get(f"{server.url}/readyz").json()["refused"], 10)
    shutil.copytree(models / "ae-2", models / ".ae-9")  # then a good one under that name: served
    (models / ".ae-9").rename(models / "ae-9")
    assert wait_for(lambda: "ae-9" in versions(server), 10), server.log()[-3000:]


HOSTILE_CARDS = {
    # name: (card fields, what the admin's /readyz says about it)
    "a layer 600,000 wide": ({"architecture": {"channels": [4, 8, 8], "hidden": 600_000, "batch_norm": True}}, "wide"),
    "a latent of 10**9": ({"latent_dim": 10**9}, "latent_dim"),
    "150 million parameters, every width in bounds": (
        {"architecture": {"channels": [8, 8, 2048], "hidden": 4096, "batch_norm": True}},
        "parameters",
    ),
}


@pytest.mark.timeout(120)
def test_a_card_describing_a_huge_network_is_refused_before_anything_is_allocated(
    tmp_path: Path, start_server: StartServer
) -> None:
    """Finding 5: a 3 KB card asking for a network of hundreds of MB; each is refused at the card, RSS stays flat."""
    models = build_checkpoints(tmp_path / "models")
    server = start_server(models, reload_interval_s=0, admin_key=ADMIN_KEY)
    assert server.process is not None
    for number, (fields, _) in enumerate(HOSTILE_CARDS.values()):
        hostile_copy(models, "ae-2", f"ae-{number + 10}", **fields)
    with RssSampler(server.process.pid) as rss:
        report = httpx.post(f"{server.url}/admin/reload", headers=ADMIN, timeout=30).json()
    print(f"\n{len(HOSTILE_CARDS)} hostile cards refused: RSS +{rss.growth_mib:.0f} MiB")
    assert sorted(report["refused"]) == ["ae-10", "ae-11", "ae-12"], report
    for number, (_, said) in enumerate(HOSTILE_CARDS.values()):
        assert said in report["refused"][f"ae-{number + 10}"], report["refused"]
    assert rss.growth_mib < 50, f"RSS grew {rss.growth_mib:.0f} MiB while refusing cards"


@pytest.mark.timeout(120)
def test_a_huge_file_listed_by_a_card_is_refused_before_hashing_and_stalls_nothing(
    tmp_path: Path, start_server: StartServer
) -> None:
    """Finding 6: a card listing a 20 GB (sparse) file, and a legitimate update in the same reload."""
    models = build_checkpoints(tmp_path / "models")
    server = start_server(models, reload_interval_s=0, admin_key=ADMIN_KEY)
    old = versions(server)["ae-6"]
    staging = models / ".ae-1"
    shutil.copytree(models / "ae-2", staging)
    subprocess.run(["truncate", "-s", "20G", str(staging / "padding.bin")], check=True)
    card = json.loads((staging / CARD_FILE).read_text())
    card["files"]["padding.bin"] = "0" * 64
    (staging / CARD_FILE).write_text(json.dumps(card))
    staging.rename(models / "ae-1")
    write_new_version(models, "ae-6", seed=6)

    started = time.monotonic()
    report = httpx.post(f"{server.url}/admin/reload", headers=ADMIN, timeout=10)
    took = time.monotonic() - started
    print(f"\nPOST /admin/reload with a 20 GB file listed: {took:.2f} s")
    assert report.status_code == 200, report.text
    assert report.json()["updated"] == ["ae-6"] and versions(server)["ae-6"] != old
    assert "padding.bin" in report.json()["refused"]["ae-1"] and "bound" in report.json()["refused"]["ae-1"]
    assert took < 5, f"the reload took {took:.1f} s"


@pytest.mark.timeout(120)
def test_links_out_of_the_models_folder_are_refused_and_readyz_leaks_no_hash_or_path(
    tmp_path: Path, start_server: StartServer
) -> None:
    """Finding 10: a weights file linked to a file outside (a hash oracle on main), a folder linked to a checkpoint
    kept outside; at startup (skipped) and at a reload (refused)."""
    models = build_checkpoints(tmp_path / "models")
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("the content of a file the service can read but must not reveal\n")
    secret_digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    shutil.copytree(models / "ae-2", models / "ae-3")
    (models / "ae-3" / WEIGHTS_FILE).unlink()
    (models / "ae-3" / WEIGHTS_FILE).symlink_to(secret)
    server = start_server(models, reload_interval_s=0, admin_key=ADMIN_KEY, skip_bad_checkpoints="true")

    shutil.copytree(models / "ae-2", outside / "ae-4")  # a valid checkpoint, but out of the models folder
    (models / "ae-4").symlink_to(outside / "ae-4", target_is_directory=True)
    (models / "ae-5").mkdir()
    (models / "ae-5" / CARD_FILE).symlink_to(secret)
    report = httpx.post(f"{server.url}/admin/reload", headers=ADMIN, timeout=10).json()
    # ae-3, skipped at startup, is looked at again by the first reload (it may have been half-written then)
    assert sorted(report["refused"]) == ["ae-3", "ae-4", "ae-5"] and not report["added"], report

    public = httpx.get(f"{server.url}/readyz")
    assert public.status_code == 200
    body = public.json()
    assert list(body["skipped"]) == ["ae-3"] and sorted(body["refused"]) == ["ae-3", "ae-4", "ae-5"]
    assert "ae-4" not in body["models"]
    for leak in (secret_digest[:8], str(tmp_path), "/"):
        assert leak not in json.dumps({"skipped": body["skipped"], "refused": body["refused"]}), body
    assert not re.search(r"[0-9a-f]{8}", json.dumps([body["skipped"], body["refused"]])), body

    detailed = httpx.get(f"{server.url}/readyz", headers=ADMIN).json()  # the admin key shows why
    for name in ("ae-3", "ae-4", "ae-5"):
        problem = {**detailed["skipped"], **detailed["refused"]}[name]
        assert "link out of the models folder" in problem and secret_digest[:8] not in problem, problem
