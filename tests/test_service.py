"""Service units: settings, content negotiation, the micro-batcher, the registry, and the app in-process
(FastAPI's TestClient) for auth, CORS, readiness, the OpenAPI document and its /docs examples."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from service_support import build_checkpoints, example_digit, png_bytes

from models.checkpoint import WEIGHTS_FILE
from service.app import create_app
from service.batching import MicroBatcher
from service.registry import StartupError, load_registry
from service.render import negotiate
from service.settings import Settings


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoints(tmp_path_factory.mktemp("service-units") / "models")


@pytest.fixture(scope="module")
def client(models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=models_dir))) as test_client:
        yield test_client


# -- settings ----------------------------------------------------------------------------------------------


def test_settings_come_from_digitae_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIGITAE_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("DIGITAE_PORT", "9001")
    monkeypatch.setenv("DIGITAE_API_KEYS", "first-key-123, second-key-456")
    monkeypatch.setenv("DIGITAE_CORS_ORIGINS", '["https://a.example", "https://b.example"]')
    monkeypatch.setenv("DIGITAE_MICROBATCH_ENABLED", "false")
    monkeypatch.setenv("DIGITAE_LOG_LEVEL", "WARNING")
    settings = Settings()
    assert settings.models_dir == tmp_path and settings.port == 9001
    assert settings.api_keys == ["first-key-123", "second-key-456"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.microbatch_enabled is False and settings.log_level == "warning"
    shown = settings.public()
    assert "first-key-123" not in str(shown) and len(shown["api_keys"]) == 2


def test_settings_defaults_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (defaults.host, defaults.port, defaults.workers, defaults.torch_threads) == ("127.0.0.1", 8000, 1, 1)
    assert defaults.max_upload_bytes == 5 * 1024 * 1024 and defaults.max_batch == 64
    assert defaults.api_keys == [] and defaults.skip_bad_checkpoints is False
    assert defaults.max_request_bytes > defaults.max_upload_bytes * 4 / 3
    for name, value in [("PORT", "70000"), ("DEVICE", "tpu"), ("API_KEYS", "short"), ("WORKERS", "0")]:
        monkeypatch.setenv(f"DIGITAE_{name}", value)
        with pytest.raises(ValueError):
            Settings()
        monkeypatch.delenv(f"DIGITAE_{name}")


# -- content negotiation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("image/png", "image/png"),
        ("image/*", "image/png"),
        ("application/json, image/png", "application/json"),
        ("application/json;q=0.5, image/png", "image/png"),
        ("image/png;q=0, */*", "application/json"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "application/json"),
        ("text/html", None),
        ("application/json;q=0", None),
        ("garbage", None),
    ],
)
def test_negotiate_picks_the_preferred_offer(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept, ("application/json", "image/png")) == expected


# -- micro-batcher ----------------------------------------------------------------------------------------------


def test_microbatcher_groups_concurrent_items_and_keeps_their_order() -> None:
    sizes: list[int] = []

    def double(items: list[int]) -> list[int]:
        time.sleep(0.005)  # a forward pass takes a while; more callers queue meanwhile
        return [2 * item for item in items]

    async def scenario() -> list[int]:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(
                double, executor=executor, max_size=16, wait_s=0.005, observe=lambda size, _: sizes.append(size)
            )
            return await asyncio.gather(*(batcher.submit(i) for i in range(100)))

    assert asyncio.run(scenario()) == [2 * i for i in range(100)]
    assert sum(sizes) == 100 and max(sizes) <= 16 and len(sizes) < 100


def test_microbatcher_sends_a_lone_item_at_once_when_nobody_could_join() -> None:
    async def scenario() -> float:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(lambda items: items, executor=executor, wait_s=30.0, worth_waiting=lambda: False)
            return await asyncio.wait_for(batcher.submit(7), timeout=10)

    assert asyncio.run(scenario()) == 7  # did not sit out the 30 s wait


def test_microbatcher_errors_reach_only_the_caller_that_caused_them() -> None:
    def picky(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("13 is unlucky")
        return [item + 1 for item in items]

    async def scenario() -> list[int | BaseException]:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(picky, executor=executor, max_size=64, wait_s=0.01)
            return await asyncio.gather(*(batcher.submit(i) for i in range(20)), return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[13], ValueError)
    assert [o for i, o in enumerate(outcomes) if i != 13] == [i + 1 for i in range(20) if i != 13]


def test_microbatcher_can_be_switched_off() -> None:
    sizes: list[int] = []

    async def scenario() -> list[int]:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(
                lambda items: [-i for i in items],
                executor=executor,
                enabled=False,
                observe=lambda size, _: sizes.append(size),
            )
            singles = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
            many = await batcher.submit_many(list(range(5)))
            return [*singles, *many]

    assert asyncio.run(scenario()) == [-i for i in range(10)] + [-i for i in range(5)]
    assert sizes == [1] * 10 + [5]  # a batch request still travels as one forward pass


def test_microbatcher_runs_off_the_event_loop() -> None:
    loop_thread: list[int] = []
    work_thread: list[int] = []

    def record(items: list[int]) -> list[int]:
        work_thread.append(threading.get_ident())
        return items

    async def scenario() -> None:
        loop_thread.append(threading.get_ident())
        with ThreadPoolExecutor(1) as executor:
            await MicroBatcher(record, executor=executor).submit(1)

    asyncio.run(scenario())
    assert work_thread and work_thread[0] != loop_thread[0]


# -- registry ---------------------------------------------------------------------------------------------------


def test_a_damaged_checkpoint_is_named_or_skipped(tmp_path: Path) -> None:
    root = build_checkpoints(tmp_path / "models")
    weights = root / "ae-6" / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(StartupError, match=r"ae-6/weights\.safetensors.*sha256"):
        load_registry(root, torch.device("cpu"), skip_bad=False)
    registry = load_registry(root, torch.device("cpu"), skip_bad=True)
    assert list(registry.models) == ["ae-2", "vae-2"]
    assert "weights.safetensors" in registry.skipped["ae-6"]


def test_a_folder_without_a_card_or_models_is_refused(tmp_path: Path) -> None:
    (tmp_path / "stray").mkdir()
    with pytest.raises(StartupError, match=r"stray/card\.json: missing"):
        load_registry(tmp_path, torch.device("cpu"), skip_bad=False)
    with pytest.raises(StartupError, match="nothing to serve"):
        load_registry(tmp_path, torch.device("cpu"), skip_bad=True)
    with pytest.raises(StartupError, match="does not exist"):
        load_registry(tmp_path / "absent", torch.device("cpu"), skip_bad=False)


# -- the app in-process --------------------------------------------------------------------------------------------


def test_not_ready_until_the_lifespan_has_loaded_the_models(models_dir: Path) -> None:
    app = create_app(Settings(models_dir=models_dir))
    before = TestClient(app)  # not entered: the lifespan has not run
    assert before.get("/healthz").status_code == 200
    response = before.get("/readyz")
    assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"
    assert before.get("/v1/models").status_code == 503
    with TestClient(app) as running:
        assert running.get("/readyz").status_code == 200
    assert before.get("/readyz").status_code == 503  # stopped again


def test_api_keys_guard_v1_and_nothing_else(models_dir: Path) -> None:
    app = create_app(Settings(models_dir=models_dir, api_keys=["secret-key-1", "secret-key-2"]))
    with TestClient(app) as client:
        missing = client.get("/v1/models")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"]["code"] == "unauthorized"
        assert client.get("/v1/models", headers={"authorization": "Bearer wrong-key-0"}).status_code == 401
        assert client.get("/v1/models", headers={"authorization": "Basic c2VjcmV0LWtleS0x"}).status_code == 401
        assert client.post("/v1/models/ae-6/decode", json={"latent": [0] * 6}).status_code == 401
        for key in ("secret-key-1", "secret-key-2"):
            assert client.get("/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200
        for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
            assert client.get(path).status_code == 200, path
        security = client.get("/openapi.json").json()["paths"]["/v1/models"]["get"]["security"]
        assert security == [{"HTTPBearer": []}]


def test_cors_answers_allowed_origins_only(models_dir: Path) -> None:
    app = create_app(Settings(models_dir=models_dir, cors_origins=["https://digits.example"]))
    with TestClient(app) as client:
        preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
        allowed = client.options("/v1/models/ae-6/decode", headers={"origin": "https://digits.example", **preflight})
        assert allowed.headers["access-control-allow-origin"] == "https://digits.example"
        denied = client.options("/v1/models/ae-6/decode", headers={"origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in denied.headers
        simple = client.get("/v1/models", headers={"origin": "https://digits.example"})
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


def test_an_unexpected_error_is_a_json_500_that_leaks_nothing(models_dir: Path) -> None:
    app = create_app(Settings(models_dir=models_dir))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"x-request-id": "boom-1"})
    assert response.status_code == 500 and response.headers["x-request-id"] == "boom-1"
    error = response.json()["error"]
    assert error["code"] == "internal_error" and error["request_id"] == "boom-1"
    assert "secret" not in response.text and "RuntimeError" not in response.text


# -- OpenAPI and /docs ---------------------------------------------------------------------------------------------


def test_every_route_is_documented_with_its_errors(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "ErrorResponse" in schema["components"]["schemas"]
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            assert operation.get("summary") and operation.get("description"), f"{method} {path}"
            if not path.startswith("/v1"):
                continue
            responses = operation["responses"]
            assert {"404", "406", "422"} <= set(responses) or path == "/v1/models", f"{method} {path}"
            for status, response in responses.items():
                if status != "200":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorResponse"), f"{method} {path} {status}"
            if method == "post":
                assert {"413", "415"} <= set(responses)
                body = operation["requestBody"]["content"]["application/json"]
                assert body["schema"]["$ref"].split("/")[-1] in schema["components"]["schemas"]
                assert body["examples"], f"{method} {path} has no request examples"


def _applicable_models(example_name: str) -> list[str]:
    if example_name in ("latent2", "batch2", "prior"):
        return ["vae-2", "ae-2"] if example_name != "prior" else ["vae-2"]
    if example_name == "latent6":
        return ["ae-6"]
    return ["ae-6", "vae-2"]


def test_every_docs_example_works_as_it_is(client: TestClient) -> None:
    """What "Try it out" sends: each request example, on the models it is written for."""
    schema = client.get("/openapi.json").json()
    tried = 0
    for path, methods in schema["paths"].items():
        operation = methods.get("post")
        if operation is None:
            continue
        for example_name, example in operation["requestBody"]["content"]["application/json"]["examples"].items():
            for model in _applicable_models(example_name):
                response = client.post(path.replace("{name}", model), json=example["value"])
                assert response.status_code == 200, f"{path} {example_name} on {model}: {response.text}"
                tried += 1
        if "multipart/form-data" in operation["requestBody"]["content"]:
            upload = {"file": ("digit.png", png_bytes(example_digit()), "image/png")}
            assert client.post(path.replace("{name}", "ae-6"), files=upload).status_code == 200
    assert tried >= 15


def test_docs_pages_load_their_assets_from_the_service_not_a_cdn(client: TestClient) -> None:
    """No internet at run time: /docs and /redoc must work from the service alone."""
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html.text)
        assert assets, f"{page} names no script or stylesheet"
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
            assert client.get(asset).status_code == 200, asset
