"""The app in-process (FastAPI's TestClient): readiness, API keys, CORS, the last-resort 500, the OpenAPI
document and its /docs examples."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.support import build_checkpoints, example_digit, png_bytes


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoints(tmp_path_factory.mktemp("service-units") / "models")


@pytest.fixture(scope="module")
def client(models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=models_dir))) as test_client:
        yield test_client


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
    app.state.drain.started_at = time.monotonic()  # as SIGTERM leaves it: draining, then stopped
    for path in ("/readyz", "/v1/models"):
        stopping = before.get(path)
        assert stopping.status_code == 503 and stopping.json()["error"]["code"] == "shutting_down", stopping.text


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
        assert security == [{"HTTPBearer": []}, {}]  # a key when the service has keys: the same document either way


def test_cors_answers_allowed_origins_only(models_dir: Path) -> None:
    app = create_app(Settings(models_dir=models_dir, cors_origins=["https://digits.example"]))
    with TestClient(app) as client:
        preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
        allowed = client.options("/v1/models/ae-6/decode", headers={"origin": "https://digits.example", **preflight})
        assert allowed.headers["access-control-allow-origin"] == "https://digits.example"
        denied = client.options("/v1/models/ae-6/decode", headers={"origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in denied.headers
        simple = client.get("/v1/models", headers={"origin": "https://digits.example"})
        exposed = {name.strip() for name in simple.headers["access-control-expose-headers"].lower().split(",")}
        read_by_browser_clients = {"x-request-id", "x-model-name", "x-model-version", "x-array-field"}
        assert (
            read_by_browser_clients | {"x-array-columns", "retry-after", "www-authenticate", "deprecation", "link"}
            <= exposed
        ), exposed
        traced = {**preflight, "access-control-request-headers": "content-type,traceparent,tracestate"}
        tracing = client.options("/v1/models/ae-6/decode", headers={"origin": "https://digits.example", **traced})
        assert tracing.status_code == 200, tracing.text


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
    if example_name in ("latent2", "batch2", "prior"):  # prior: /prior/sample, a VAE's
        return ["vae-2", "ae-2"] if example_name != "prior" else ["vae-2"]
    if example_name == "latent6":
        return ["ae-6"]
    return ["ae-6", "vae-2"]


def test_every_docs_example_works_as_it_is(client: TestClient) -> None:
    """What "Try it out" sends: each request example, on the models it is written for."""
    schema = client.get("/openapi.json").json()
    versions = client.get("/readyz").json()["versions"]  # for the Open Inference Protocol's versioned paths
    tried = 0
    for path, methods in schema["paths"].items():
        operation = methods.get("post")
        if operation is None or "requestBody" not in operation:  # POST /admin/reload takes no body
            continue
        for example_name, example in operation["requestBody"]["content"]["application/json"]["examples"].items():
            for model in _applicable_models(example_name):
                live = path.replace("{name}", model).replace("{version}", versions[model])
                response = client.post(live, json=example["value"])
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


# A fresh interpreter: the app's startup, then its first reconstruct; prints the objects the garbage collector still
# tracks in its oldest generation that were not there (frozen or not) before that request.
FIRST_REQUEST_OBJECTS = """
import asyncio, gc, sys
import httpx
from service.app import create_app
from service.settings import Settings
from tests.support import example_digit, png_bytes

app = create_app(Settings(models_dir=sys.argv[1]))

async def first_request():
    async with app.router.lifespan_context(app):
        before = len(gc.get_objects(2))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://digitae") as client:
            files = {"file": ("d.png", png_bytes(example_digit()), "image/png")}
            response = await client.post("/v1/models/ae-6/reconstruct", files=files)
        gc.collect(1)
        print(response.status_code, len(gc.get_objects(2)) - before)

asyncio.run(first_request())
"""


def test_what_torch_imports_on_a_first_forward_pass_is_frozen_at_startup(models_dir: Path) -> None:
    """A full collection scans every object not frozen at startup. torch imports sympy and torch.fx on the first
    forward pass (about 67,000 objects): startup does one, so a first request leaves only its own few thousand."""
    import subprocess
    import sys

    from tests.support import REPO_ROOT

    done = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST_OBJECTS, str(models_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    status, new_objects = (int(word) for word in done.stdout.split())
    assert status == 200
    assert new_objects < 20_000, f"the first request left {new_objects:,} objects for every full collection to scan"
