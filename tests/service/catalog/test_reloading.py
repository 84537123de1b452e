"""Live model reload with real servers: versions in every answer, a new checkpoint reaching every worker under load
within one polling interval with no failed request, a tampered one refused while the old version serves on, and the
explicit triggers (SIGHUP, POST /admin/reload)."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from service.app import create_app
from service.catalog.registry import load_registry
from service.catalog.reloading import ALL, Reloader
from service.settings import Settings
from tests.support import ServerProcess, build_checkpoints
from tests.support.load import serving_processes
from tests.support.reloads import write_new_version, write_tampered_version

ADMIN_KEY = "admin-key-for-tests-0123"
DECODE_AE6 = ("/v1/models/ae-6/decode", {"latent": [0.5, -0.3, 1.2, 0.0, -0.8, 0.4]})


def served_versions(url: str) -> dict[str, str]:
    return {m["name"]: m["version"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()}


# -- in-process: the reloader's rules ---------------------------------------------------------------------------


def test_the_reloader_adds_updates_refuses_and_removes(tmp_path: Path) -> None:
    models = build_checkpoints(tmp_path / "models")
    registry = load_registry(models, torch.device("cpu"), skip_bad=False)
    swapped: list[set[str]] = []
    changes: list[tuple[str, str]] = []
    reloader = Reloader(
        registry, models, torch.device("cpu"), lambda m: swapped.append(set(m)), lambda *change: changes.append(change)
    )
    reloader.adopt_startup_state()
    before = {name: model.version for name, model in registry.models.items()}

    async def scenario() -> None:
        nothing = await reloader.reload("test")
        assert not nothing.changed and not nothing.refused and not swapped

        ae6 = registry.models["ae-6"]
        write_new_version(models, "ae-6", seed=1)
        shutil.copytree(models / "ae-2", models / "ae-3")  # a copy: the same content under another name
        report = await reloader.reload("test")
        assert (report.added, report.updated, report.removed) == (["ae-3"], ["ae-6"], [])
        assert registry.models["ae-6"] is not ae6 and registry.models["ae-6"].version != before["ae-6"]
        assert registry.models["ae-2"].version == before["ae-2"]  # untouched models stay the same objects
        assert registry.models["ae-3"].version == before["ae-2"]

        serving = registry.models["ae-6"]
        write_tampered_version(models, "ae-6", seed=2)
        refused = await reloader.reload("test")
        assert not refused.changed and "sha256 mismatch" in refused.refused["ae-6"]
        assert (
            registry.models["ae-6"] is serving
            and f"still serving version {serving.version}" in registry.refused["ae-6"]
        )
        again = await reloader.reload("test")  # the same damaged folder is not loaded (nor logged) again
        assert not again.refused and "ae-6" in registry.refused

        write_new_version(models, "ae-6", seed=3)  # fixed: served, and the note goes
        fixed = await reloader.reload("test")
        assert fixed.updated == ["ae-6"] and "ae-6" not in registry.refused

        shutil.rmtree(models / "ae-3")
        removed = await reloader.reload("test")
        assert removed.removed == ["ae-3"] and "ae-3" not in registry.models

        for folder in ("ae-2", "ae-6", "vae-2"):
            shutil.rmtree(models / folder)
        emptied = await reloader.reload("test")  # nothing would be left: refused as a whole
        assert not emptied.changed and ALL in emptied.refused and set(registry.models) == {"ae-2", "ae-6", "vae-2"}

    asyncio.run(scenario())
    assert ("ae-6", "refused") in changes and ("ae-3", "added") in changes and ("ae-3", "removed") in changes


def test_requests_in_flight_finish_on_the_version_they_started_with(tmp_path: Path) -> None:
    """A request holds its model from the start; the engine still computes with that version after a swap."""
    import numpy as np

    from service.engine.inference import InferenceEngine, decode_batch
    from service.settings import Settings

    models = build_checkpoints(tmp_path / "models", judge=False)
    registry = load_registry(models, torch.device("cpu"), skip_bad=False)
    engine = InferenceEngine(Settings(models_dir=models))
    reloader = Reloader(registry, models, torch.device("cpu"), engine.forget_all_but)
    reloader.adopt_startup_state()
    latent = [np.array([0.3, -0.7], dtype=np.float32)]

    async def scenario() -> None:
        started_on = registry.models["ae-2"]  # as a request's dependency takes it
        write_new_version(models, "ae-2", seed=41)
        assert (await reloader.reload("test")).updated == ["ae-2"]
        current = registry.models["ae-2"]
        old_answer, new_answer = await engine.decode(started_on, latent), await engine.decode(current, latent)
        assert np.array_equal(old_answer[0], decode_batch(started_on, latent)[0])
        assert np.array_equal(new_answer[0], decode_batch(current, latent)[0])
        assert not np.array_equal(old_answer[0], new_answer[0])
        await engine.close()

    asyncio.run(scenario())


def test_a_folder_missing_for_an_instant_is_not_removed(tmp_path: Path) -> None:
    """Writing a checkpoint renames the old folder away just before the new one arrives."""
    models = build_checkpoints(tmp_path / "models")
    registry = load_registry(models, torch.device("cpu"), skip_bad=False)
    reloader = Reloader(registry, models, torch.device("cpu"))
    reloader.adopt_startup_state()

    async def scenario() -> None:
        os.replace(models / "ae-2", models / ".ae-2.old")
        asyncio.get_running_loop().call_later(0.1, os.replace, models / ".ae-2.old", models / "ae-2")
        report = await reloader.reload("test")
        assert not report.removed and "ae-2" in registry.models

    asyncio.run(scenario())


# -- real servers -------------------------------------------------------------------------------------------------


@dataclass
class VersionLoad:
    """Requests to ae-6 in a loop, each on a new connection (so every worker gets some), noting the version."""

    answers: list[tuple[float, str]] = field(default_factory=list)  # (time sent, X-Model-Version)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)

    async def run(self, url: str, concurrency: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_keepalive_connections=0)
        path, body = DECODE_AE6

        async def client(http: httpx.AsyncClient) -> None:
            while time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    response = await http.post(path, json=body)
                except httpx.HTTPError as exc:
                    self.failures[type(exc).__name__] += 1
                    continue
                if response.status_code != 200:
                    self.failures[f"HTTP {response.status_code}"] += 1
                else:
                    self.answers.append((sent, response.headers["x-model-version"]))

        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
            await asyncio.gather(*(client(http) for _ in range(concurrency)))


@pytest.mark.slow
@pytest.mark.serial  # its load must reach both workers within the reload's deadline: alone, not beside other tests
@pytest.mark.timeout(180)
def test_a_new_checkpoint_reaches_every_worker_under_load_and_a_tampered_one_is_refused(tmp_path: Path) -> None:
    interval = 1.0
    models = build_checkpoints(tmp_path / "models", judge=False)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    server = ServerProcess(models, tmp_path / "server.log", workers=2, reload_interval_s=interval, admin_key=ADMIN_KEY)
    server.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    server.start(timeout=90)
    try:
        deadline = time.monotonic() + 90  # /readyz answers once the first worker is up; wait for the second
        while server.log().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.process is not None
        workers = {p.pid for p in serving_processes(server.process.pid)}
        assert len(workers) == 2
        old = served_versions(server.url)["ae-6"]

        load = VersionLoad()
        marks: dict[str, float] = {}

        async def scenario() -> None:
            async def update() -> None:
                await asyncio.sleep(2.0)
                marks["new"] = time.monotonic()
                await asyncio.to_thread(write_new_version, models, "ae-6", 7)
                await asyncio.sleep(4.0)
                marks["tampered"] = time.monotonic()
                await asyncio.to_thread(write_tampered_version, models, "ae-6", 8)

            await asyncio.gather(load.run(server.url, concurrency=6, seconds=10.0), update())

        asyncio.run(scenario())
        new = served_versions(server.url)["ae-6"]
        settle = interval + 1.5  # one polling interval, plus loading the checkpoint on a busy 2-core machine
        print(
            f"\nreload under load (2 workers, poll every {interval:g} s): {len(load.answers)} answers, "
            f"{sum(load.failures.values())} failed {dict(load.failures)}; ae-6 {old} -> {new}"
        )

        assert not load.failures, f"requests failed during the reloads: {dict(load.failures)}"
        assert new != old
        before = {v for t, v in load.answers if t < marks["new"]}
        after = {v for t, v in load.answers if t > marks["new"] + settle}
        assert before == {old}
        assert after == {new}, f"answers sent {settle} s after the update still came from {after - {new}}"
        # every worker swapped in the new version (each logs it with its pid)
        log = server.log()
        swapped = set(
            map(int, re.findall(rf"reload \(poll\) in pid (\d+): .*updated \['ae-6'\].*serving .*ae-6 {new}", log))
        )
        assert swapped == workers, f"workers {workers}, swapped: {swapped}\n{log[-3000:]}"
        # the tampered version: refused by every worker, noted, counted; the new one serves on
        refusals = set(map(int, re.findall(r"reload \(poll\) in pid (\d+): .*refused \['ae-6'\]", log)))
        assert refusals == workers, log[-3000:]
        ready = httpx.get(f"{server.url}/readyz", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
        assert "sha256 mismatch" in ready["refused"]["ae-6"] and ready["versions"]["ae-6"] == new
        metrics = httpx.get(f"{server.url}/metrics").text
        assert re.search(r'digitae_model_changes_total\{change="refused",model="ae-6"\} 2\.0', metrics), metrics
    finally:
        server.stop()


def test_versions_headers_sighup_and_the_admin_reload(tmp_path: Path) -> None:
    models = build_checkpoints(tmp_path / "models", judge=False)
    server = ServerProcess(models, tmp_path / "server.log", reload_interval_s=0, admin_key=ADMIN_KEY).start()
    try:
        listed = served_versions(server.url)
        assert set(listed) == {"ae-2", "ae-6", "vae-2"} and all(
            re.fullmatch(r"[0-9a-f]{12}", v) for v in listed.values()
        )
        path, body = DECODE_AE6
        answer = httpx.post(server.url + path, json=body)
        assert answer.headers["x-model-name"] == "ae-6" and answer.headers["x-model-version"] == listed["ae-6"]
        assert "x-model-version" not in httpx.get(f"{server.url}/readyz").headers
        wrong = httpx.post(f"{server.url}/v1/models/ae-6/decode", json={"latent": [1.0]})  # 422: still names it
        assert wrong.status_code == 422 and wrong.headers["x-model-version"] == listed["ae-6"]

        write_new_version(models, "ae-6", seed=11)  # dated: the version starts with the training date
        time.sleep(1.0)
        assert served_versions(server.url) == listed, "polling is off: nothing changes without a trigger"
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while served_versions(server.url)["ae-6"] == listed["ae-6"] and time.monotonic() < deadline:
            time.sleep(0.1)
        after_hup = served_versions(server.url)["ae-6"]
        assert re.fullmatch(r"20261126-[0-9a-f]{12}", after_hup) and server.process.poll() is None

        write_new_version(models, "ae-6", seed=12)
        assert httpx.post(f"{server.url}/admin/reload").status_code == 401
        assert (
            httpx.post(f"{server.url}/admin/reload", headers={"Authorization": "Bearer wrong-key"}).status_code == 403
        )
        report = httpx.post(f"{server.url}/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert report.status_code == 200, report.text
        assert report.json()["updated"] == ["ae-6"] and report.json()["versions"]["ae-6"] not in (
            listed["ae-6"],
            after_hup,
        )
        assert httpx.post(server.url + path, json=body).headers["x-model-version"] == report.json()["versions"]["ae-6"]
    finally:
        server.stop()


def test_without_an_admin_key_the_admin_route_is_off_but_stays_declared(tmp_path: Path) -> None:
    """One OpenAPI document whatever the settings: the route is declared (admin, needing the key); without
    DIGITAE_ADMIN_KEY it asks for a key like any admin route (401), and refuses every key, saying why (403)."""
    models = build_checkpoints(tmp_path / "models", judge=False)
    with TestClient(create_app(Settings(models_dir=models))) as client:
        anonymous = client.post("/admin/reload")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer", anonymous.text
        keyed = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert keyed.status_code == 403 and keyed.json()["error"]["code"] == "forbidden", keyed.text
        assert "started without DIGITAE_ADMIN_KEY" in keyed.json()["error"]["message"], keyed.text
        declared = client.get("/openapi.json").json()["paths"]["/admin/reload"]["post"]
        assert declared["tags"] == ["admin"] and declared["security"] == [{"HTTPBearer": []}]
        assert {"401", "403"} <= set(declared["responses"]) and "404" not in declared["responses"], declared


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_with_several_workers_sighup_and_the_admin_reload_reach_every_worker_and_sigterm_drains_them(
    tmp_path: Path,
) -> None:
    """SIGHUP to the server is passed on to each worker; POST /admin/reload, taken by one worker, reaches the others
    the same way; SIGTERM drains every worker (polling is off here, so only the triggers can do it)."""
    models = build_checkpoints(tmp_path / "models", judge=False)
    server = ServerProcess(
        models, tmp_path / "server.log", workers=2, reload_interval_s=0, admin_key=ADMIN_KEY, drain_s=1.5, grace_s=8
    )
    server.start(timeout=90)
    assert server.process is not None
    try:
        deadline = time.monotonic() + 90
        while server.log().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = {p.pid for p in serving_processes(server.process.pid)}
        assert len(workers) == 2

        def reloaded_by(trigger: str) -> set[int]:
            pattern = rf"reload \({trigger}\) in pid (\d+): .*updated \['ae-6'\]"
            return set(map(int, re.findall(pattern, server.log())))

        write_new_version(models, "ae-6", seed=31)
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while reloaded_by("SIGHUP") != workers and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reloaded_by("SIGHUP") == workers, server.log()[-3000:]

        write_new_version(models, "ae-6", seed=32)
        report = httpx.post(f"{server.url}/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
        assert report["updated"] == ["ae-6"] and report["pid"] in workers
        deadline = time.monotonic() + 20
        while len(re.findall(r"updated \['ae-6'\]", server.log())) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reloaded_by("admin") == {report["pid"]}
        assert reloaded_by("SIGHUP") == workers  # the other worker: told by the supervisor
        assert len(re.findall(r"updated \['ae-6'\]", server.log())) == 4, server.log()[-3000:]

        server.process.send_signal(signal.SIGTERM)  # the supervisor passes it on within its 0.5 s signal loop
        deadline = time.monotonic() + 1.2
        while httpx.get(f"{server.url}/readyz").status_code != 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{server.url}/readyz").status_code == 503
        assert httpx.post(server.url + DECODE_AE6[0], json=DECODE_AE6[1]).status_code == 200  # still serving
        server.process.wait(timeout=15)
        assert set(map(int, re.findall(r"SIGTERM in pid (\d+): not ready", server.log()))) == workers
    finally:
        server.stop()
