"""Fast dispatch (service/api/dispatch.py) answers exactly as FastAPI does: the same requests sent to two apps on
one registry, one with DIGITAE_FAST_DISPATCH on and one with it off, get the same status, headers and body bytes,
for every operation, answer format and error; the metrics count them under the same route templates; and the
dispatcher's table is what the app's own routes declare, whatever is added to them."""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.responses import Response

from service.api.dispatch import FastDispatch, fast_routes, route_table
from service.app import build_registry, create_app
from service.codec.render import json_response
from service.settings import Settings
from tests.support import b64, build_checkpoints, example_digit, png_bytes

KEY = "fast-dispatch-test-key"
ORIGIN = "https://digits.example"
MAX_UPLOAD = 64 * 1024
DIGIT = example_digit()
DIGIT_PNG = png_bytes(DIGIT)
NPY = "application/x-npy"
PNG = "image/png"


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@dataclass
class Call:
    """One request, sent as it is to both apps."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    files: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def send(self, client: TestClient, request_id: str) -> Any:
        return client.request(
            self.method,
            self.path,
            json=self.json,
            content=self.content,
            files=self.files,
            headers={"X-Request-ID": request_id, **self.headers},
        )


def post(path: str, **kwargs: Any) -> Call:
    return Call("POST", path, **kwargs)


def raw(path: str, body: bytes, content_type: str, accept: str | None = None) -> Call:
    headers = {"Content-Type": content_type} | ({"Accept": accept} if accept else {})
    return post(path, content=body, headers=headers)


PIXELS = {"pixels": DIGIT.tolist(), "scale": "0-255"}
IMAGE = {"image": b64(DIGIT_PNG)}
UPLOAD = {"file": ("digit.png", DIGIT_PNG, PNG)}
DIGITS = np.stack([DIGIT, DIGIT[::-1], DIGIT.T])
INFER = {"inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "UINT8", "data": DIGIT.ravel().tolist()}]}

# Every inference operation and answer format, and the errors each can answer.
CALLS = [
    Call("GET", "/v1/models"),
    Call("GET", "/v1/models/ae-2"),
    Call("GET", "/v1/models/ae-2/atlas"),
    Call("GET", "/v1/models/ae-2", headers={"Accept": PNG}),
    post("/v1/models/ae-6/encode", json=PIXELS),
    post("/v1/models/ae-6/encode", json=IMAGE),
    post("/v1/models/ae-6/encode", files=UPLOAD),
    raw("/v1/models/ae-6/encode", DIGIT_PNG, PNG),
    post("/v1/models/ae-6/encode", json={"images": [PIXELS, IMAGE]}),
    post("/v1/models/vae-2/encode?fields=latent,logvar", json=IMAGE),
    post("/v1/models/vae-2/encode?fields=latent&fields=nearest_digit", json=IMAGE),
    post("/v1/models/ae-6/encode", json=IMAGE, headers={"Accept": NPY}),
    raw("/v1/models/ae-6/encode", npy(DIGITS), NPY),
    raw("/v1/models/ae-6/encode?fields=centroid_distances", npy(DIGITS), NPY, accept=NPY),
    post("/v1/models/vae-2/reconstruct", json=IMAGE),
    post("/v1/models/vae-2/reconstruct", files=UPLOAD),
    post("/v1/models/vae-2/reconstruct", files={**UPLOAD, "corruption": (None, '{"noise": {"std": 0.5}, "seed": 7}')}),
    raw("/v1/models/vae-2/reconstruct", DIGIT_PNG, PNG),
    raw("/v1/models/vae-2/reconstruct?upscale=2", DIGIT_PNG, PNG, accept=PNG),
    post("/v1/models/ae-2/reconstruct?fields=loss,latent", json={"images": [IMAGE, PIXELS]}),
    post("/v1/models/ae-2/reconstruct", json={**IMAGE, "corruption": {"occlusion": {"area": 0.2}, "seed": 3}}),
    raw("/v1/models/ae-2/reconstruct", npy(DIGITS), NPY, accept=NPY),
    raw("/v1/models/ae-2/reconstruct?fields=loss", npy(DIGITS), NPY, accept=NPY),
    raw("/v1/models/ae-2/reconstruct", npy(DIGITS.astype(np.float32) / 255), NPY),
    post("/v1/models/ae-2/decode", json={"latent": [0.5, -1.0]}),
    post("/v1/models/ae-2/decode", json={"latents": [[0.5, -1.0], [2, 0]]}, headers={"Accept": PNG}),
    raw("/v1/models/ae-2/decode", npy(np.ones((3, 2), np.float32)), NPY, accept=NPY),
    post("/v1/models/vae-2/sample", json={"digit": 3, "n": 4, "seed": 11}),
    post("/v1/models/vae-2/sample", json={"n": 2, "seed": 5}, headers={"Accept": PNG}),
    post("/v1/models/vae-2/sample?fields=latents", json={"digit": 1, "n": 2, "seed": 5}, headers={"Accept": NPY}),
    post("/v1/models/ae-6/interpolate", json={"from": {"digit": 1}, "to": IMAGE, "steps": 5}),
    post("/v1/models/ae-6/interpolate", json={"from": {"digit": 1}, "to": {"digit": 7}}, headers={"Accept": PNG}),
    post("/v1/classify", json=IMAGE),
    post("/v1/classify?fields=digit", files=UPLOAD),
    post("/v1/classify", json={"images": [IMAGE, PIXELS]}),
    post("/v2/models/ae-6/infer", json=INFER),
    post("/v2/models/ae-6/versions/nope/infer", json=INFER),
    Call("GET", "/v2/models/vae-2"),
    Call("GET", "/v2/models/vae-2/ready"),
    Call("GET", "/v2"),
    Call("GET", "/healthz"),
    Call("GET", "/readyz"),
    Call("GET", "/openapi.json"),  # a Starlette route: FastAPI's
    Call("GET", "/docs"),
    Call("GET", "/"),  # the explorer's page: a file
    Call("GET", "/explorer/main.js"),  # a mount: FastAPI's
    # errors
    post("/v1/models/ae-7/encode", json=IMAGE),  # unknown model: 404 naming the known ones
    post("/v2/models/ae-7/infer", json=INFER),  # the protocol's error shape
    post("/v1/models/Bad!/encode", json=IMAGE),  # the name's pattern: 422
    post("/v1/models/ae-2/decode", json={"latent": [1.0]}),  # wrong length: 422
    post("/v1/models/ae-2/decode", json={"latent": [1.0, 2.0], "extra": 1}),  # extra field: 422
    raw("/v1/models/ae-2/decode", b"{not json", "application/json"),  # 422
    post("/v1/models/ae-2/reconstruct?upscale=0", json=IMAGE),  # 422
    post("/v1/classify?fields=" + "x" * 600, json=IMAGE),  # FastAPI's own check of the declared parameter: 422
    post("/v1/classify?fields=nope", json=IMAGE),  # 422 naming the fields
    post("/v1/classify?fields=" + "x" * 600, json=IMAGE, headers={"Accept": PNG}),  # the dependency first: 406
    post("/v1/models/ae-6/encode", json=IMAGE, headers={"Accept": "text/html"}),  # 406
    post("/v1/models/ae-6/encode", json=IMAGE, headers={"Accept": PNG}),  # encode has no PNG: 406
    raw("/v1/models/ae-6/encode", b"digits", "text/plain"),  # 415
    raw("/v1/models/ae-6/encode", b"%PDF-1.4 not an image", PNG),  # 415
    raw(
        "/v1/models/ae-6/encode", png_bytes(np.zeros((300, 300), np.uint8), compress_level=0), PNG
    ),  # the file cap: 413
    raw("/v1/models/ae-6/encode", b"x" * 200_000, PNG),  # over the body cap: 413
    raw("/v1/models/ae-6/encode", npy(np.zeros((2, 5, 5), np.uint8)), NPY),  # 422
    Call("GET", "/v1/models/ae-6/encode"),  # 405
    Call("HEAD", "/v1/models/ae-6/encode"),  # 405
    Call("PUT", "/v1/classify"),  # 405
    Call("HEAD", "/v1/models"),  # 405: a GET route takes no HEAD
    Call("POST", "/v1/nothing-here"),  # 404
    Call("GET", "/v1/models/ae-6/encode/"),  # no slash redirect: 404
]


def answer_of(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Everything the client sees: status, every header in order (the request id is the one sent), the body bytes."""
    return response.status_code, response.headers.multi_items(), response.content


REQUESTS = re.compile(r'^digitae_http_requests_total\{method="(\w+)",route="([^"]*)",status="(\d+)"\} (\S+)$', re.M)


def request_counts(client: TestClient) -> Counter[tuple[str, str, str]]:
    """The request counter of /metrics (one registry for the process: both apps count into it)."""
    text = client.get("/metrics").text
    return Counter({(m, route, status): float(n) for m, route, status, n in REQUESTS.findall(text)})


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoints(tmp_path_factory.mktemp("models"))


def app_pair(models_dir: Path, **settings: Any) -> Iterator[tuple[TestClient, TestClient]]:
    """(fast, slow): two apps on one registry, fast dispatch on and off, started."""
    base = Settings(models_dir=models_dir, max_upload_bytes=MAX_UPLOAD, reload_interval_s=0, **settings)
    registry = build_registry(base)
    fast_app = create_app(base.model_copy(update={"fast_dispatch": True}), registry)
    slow_app = create_app(base.model_copy(update={"fast_dispatch": False}), registry)
    with TestClient(fast_app) as fast, TestClient(slow_app) as slow:
        yield fast, slow


@pytest.fixture(scope="module")
def apps(models_dir: Path) -> Iterator[tuple[TestClient, TestClient]]:
    yield from app_pair(models_dir)


@pytest.fixture(scope="module")
def keyed_apps(models_dir: Path) -> Iterator[tuple[TestClient, TestClient]]:
    yield from app_pair(models_dir, api_keys=[KEY], cors_origins=[ORIGIN])


def is_fast(client: TestClient) -> bool:
    return any(middleware.cls is FastDispatch for middleware in client.app.user_middleware)  # type: ignore[attr-defined]


def test_the_pair_differs_only_in_the_dispatch(apps: tuple[TestClient, TestClient]) -> None:
    fast, slow = apps
    assert is_fast(fast) and not is_fast(slow), "the fast app has the dispatcher, the other has not"


@pytest.mark.parametrize("call", CALLS, ids=[f"{c.method} {c.path[:60]} {i}" for i, c in enumerate(CALLS)])
def test_every_answer_is_the_same_byte_for_byte(apps: tuple[TestClient, TestClient], call: Call) -> None:
    fast, slow = apps
    request_id = f"same-{CALLS.index(call)}"
    fast_answer, slow_answer = answer_of(call.send(fast, request_id)), answer_of(call.send(slow, request_id))
    assert fast_answer[:2] == slow_answer[:2], f"status and headers: fast {fast_answer[:2]}, slow {slow_answer[:2]}"
    assert fast_answer[2] == slow_answer[2], f"body: fast {fast_answer[2][:300]!r}, slow {slow_answer[2][:300]!r}"


def test_the_calls_cover_every_answer_kind(apps: tuple[TestClient, TestClient]) -> None:
    """The comparison above would prove little if the calls did not reach the answers and errors they are for."""
    fast, _ = apps
    answers = [call.send(fast, "cover") for call in CALLS]
    statuses = Counter(answer.status_code for answer in answers)
    assert {200, 404, 405, 406, 413, 415, 422} <= set(statuses), f"statuses answered: {statuses}"
    types = {answer.headers.get("content-type") for answer in answers}
    assert {"application/json", PNG, NPY} <= types, f"answer types: {types}"


def test_the_metrics_count_both_under_the_same_route_templates(apps: tuple[TestClient, TestClient]) -> None:
    fast, slow = apps
    deltas = []
    for client in (slow, fast):
        before = request_counts(client)
        for index, call in enumerate(CALLS):
            call.send(client, f"metrics-{index}")
        after = request_counts(client)
        delta = after - before
        delta.pop(("GET", "/metrics", "200"), None)
        deltas.append(delta)
    assert deltas[0] == deltas[1], f"slow {sorted(deltas[0].items())} != fast {sorted(deltas[1].items())}"
    routes = {route for _, route, _ in deltas[1]}
    for template in ("/v1/models/{name}/encode", "/v1/classify", "/v2/models/{name}/infer", "<unmatched>"):
        assert template in routes, f"{template} counted: {sorted(routes)}"


KEYED_CALLS = [
    post("/v1/models/ae-6/encode", json=IMAGE),  # missing key: 401
    post("/v1/models/ae-6/encode", json=IMAGE, headers={"Authorization": "Bearer wrong-key-1234"}),  # 401
    post("/v1/models/ae-6/encode", json=IMAGE, headers={"Authorization": "Basic " + KEY}),  # not a bearer: 401
    post("/v1/models/ae-6/encode", json=IMAGE, headers={"Authorization": f"Bearer {KEY}"}),
    raw("/v1/models/ae-6/reconstruct", DIGIT_PNG, PNG, accept=PNG),
    post("/v1/classify", json=IMAGE, headers={"Authorization": f"Bearer {KEY}", "Origin": ORIGIN}),
    post("/v1/classify", json=IMAGE, headers={"Origin": ORIGIN}),  # 401, with the CORS headers
    post("/v2/models/ae-6/infer", json=INFER),  # 401 in the protocol's shape
    post("/v1/classify?fields=" + "x" * 600, json=IMAGE, headers={"Accept": PNG}),  # the key is checked first: 401
    Call("GET", "/v1/models/Bad!", headers={"Authorization": f"Bearer {KEY}"}),  # then the name: 422
    post("/v2/models/ae-6/infer", json=INFER, headers={"Authorization": f"Bearer {KEY}"}),
    Call("GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"}),
    Call("GET", "/healthz", headers={"Origin": ORIGIN}),  # never behind a key
    Call(
        "OPTIONS",
        "/v1/models/ae-6/encode",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    ),
    post("/admin/reload"),  # no admin key set: 404
]


@pytest.mark.parametrize("call", KEYED_CALLS, ids=[f"{c.method} {c.path} {i}" for i, c in enumerate(KEYED_CALLS)])
def test_keys_and_cors_answer_the_same(keyed_apps: tuple[TestClient, TestClient], call: Call) -> None:
    fast, slow = keyed_apps
    request_id = f"keyed-{KEYED_CALLS.index(call)}"
    assert answer_of(call.send(fast, request_id)) == answer_of(call.send(slow, request_id))


def test_a_key_is_checked_on_the_fast_path(keyed_apps: tuple[TestClient, TestClient]) -> None:
    fast, _ = keyed_apps
    keyed = {route.path for route in fast_routes(fast.app.routes)}  # type: ignore[attr-defined]
    assert "/v1/models/{name}/encode" in keyed, f"the key check is a dependency the dispatcher runs: {keyed}"
    missing = KEYED_CALLS[0].send(fast, "k")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer", missing.text
    assert KEYED_CALLS[3].send(fast, "k").status_code == 200, "the right key is let through"


# -- the table ------------------------------------------------------------------------------------------------------


def test_the_table_is_every_route_whose_declaration_it_can_answer(apps: tuple[TestClient, TestClient]) -> None:
    """Derived from the app's routes: the inference operations are in it, and what needs FastAPI (a Starlette
    route, a mount) is not."""
    fast, _ = apps
    table = {(route.path, method) for route in fast_routes(fast.app.routes) for method in route.methods}  # type: ignore[attr-defined]
    for operation in ("encode", "reconstruct", "decode", "sample", "interpolate"):
        assert (f"/v1/models/{{name}}/{operation}", "POST") in table, f"{operation} is dispatched fast: {table}"
    assert ("/v1/classify", "POST") in table and ("/v2/models/{name}/infer", "POST") in table, table
    slow_paths = {c.context.path for c in route_table(fast.app.routes) if c.fast is None}  # type: ignore[attr-defined]
    assert {"/openapi.json", "/explorer"} <= slow_paths, slow_paths
    running = dispatcher(fast)
    live = {
        (c.fast.route.path, method) for method, candidates in running.by_method.items() for c in candidates if c.fast
    }
    assert live == table, f"the running app's table is the one its routes give: {live ^ table}"


def dispatcher(client: TestClient) -> FastDispatch:
    """The FastDispatch in the running app's middleware stack."""
    layer: Any = client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(layer, FastDispatch):
        layer = layer.app
    return layer


class Echo(BaseModel):
    text: str


def test_a_route_added_to_a_router_is_fast_with_no_other_edit_and_one_that_is_not_eligible_works(
    models_dir: Path,
) -> None:
    extra = APIRouter(prefix="/v1")

    @extra.post("/models/{name}/probe")
    async def probe(request: Request) -> Response:  # takes only a Request: eligible
        scope = request.scope
        return json_response(
            {
                "route": scope["route"].path,
                "endpoint": scope["endpoint"].__name__,
                "path_params": scope["path_params"],
                "in_flight": request.app.state.in_flight.count,
                "fast": "fastapi_inner_astack" not in scope,
            }
        )

    @extra.post("/echo")
    async def echo(body: Echo) -> dict[str, str]:  # a body FastAPI parses: not eligible
        return {"echo": body.text}

    settings = Settings(models_dir=models_dir, reload_interval_s=0)
    app = create_app(settings)
    app.include_router(extra)
    with TestClient(app) as client:
        eligible = {route.path for route in fast_routes(app.routes)}
        assert "/v1/models/{name}/probe" in eligible and "/v1/echo" not in eligible, eligible
        answer = client.post("/v1/models/ae-2/probe")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "route": "/v1/models/{name}/probe",
            "endpoint": "probe",
            "path_params": {"name": "ae-2"},
            "in_flight": 1,
            "fast": True,
        }, "answered by the dispatcher, with the scope Starlette's router sets, counted in flight"
        assert client.post("/v1/echo", json={"text": "hi"}).json() == {"echo": "hi"}, "FastAPI answers the rest"
        invalid = client.post("/v1/echo", json={"text": 1})
        assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_request", invalid.text
        assert ("POST", "/v1/models/{name}/probe", "200") in request_counts(client), "counted under its template"
        assert app.state.in_flight.count == 0, "the in-flight count is back to zero"


def test_an_unexpected_error_is_the_same_500(models_dir: Path) -> None:
    broken = APIRouter(prefix="/v1")

    @broken.post("/models/{name}/broken")
    async def broken_route(request: Request) -> Response:
        raise RuntimeError("a bug")

    answers = []
    for fast in (True, False):
        app = create_app(Settings(models_dir=models_dir, reload_interval_s=0, fast_dispatch=fast))
        app.include_router(broken)
        with TestClient(app) as client:
            assert "/v1/models/{name}/broken" in {r.path for r in fast_routes(app.routes)}, "eligible"
            answers.append(answer_of(post("/v1/models/ae-2/broken").send(client, "broken")))
    assert answers[0][0] == 500 and b"internal_error" in answers[0][2], answers[0]
    assert answers[0] == answers[1], f"fast {answers[0]} != slow {answers[1]}"


def test_dependency_overrides_send_requests_through_fastapi(models_dir: Path) -> None:
    from service.api.deps import get_json_service

    settings = Settings(models_dir=models_dir, reload_interval_s=0)
    app = create_app(settings)

    async def no_service() -> None:
        from service.codec.errors import ApiError

        raise ApiError(503, "overridden")

    app.dependency_overrides[get_json_service] = no_service
    with TestClient(app) as client:
        answer = client.post("/v1/classify", json=IMAGE)
        assert answer.status_code == 503 and answer.json()["error"]["message"] == "overridden", answer.text


def test_the_setting_builds_the_app_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_fast(TestClient(create_app(Settings()))), "on by default"
    monkeypatch.setenv("DIGITAE_FAST_DISPATCH", "false")
    assert not is_fast(TestClient(create_app(Settings()))), "DIGITAE_FAST_DISPATCH=false: everything through FastAPI"
