"""HTTP stays at the edge: the registry raises a domain error that the route layer turns into 404, corruption
plans live in models/ (a request's corruption becomes one), only requests that may share a micro-batch count as
company for one (a health check or a metrics scrape never makes a lone request wait), and the folder map in
service/__init__.py names exactly the folders and top modules there are."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.corruptions import corrupt_all
from service.app import create_app
from service.catalog.registry import UnknownModel, load_registry
from service.codec.corruption_request import CorruptionSpec
from service.codec.errors import ApiError
from service.codec.render import corruption_view
from service.middleware.in_flight import InFlight, InFlightMiddleware
from service.settings import Settings
from tests.support import build_checkpoints


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoints(tmp_path_factory.mktemp("service-layers") / "models", judge=False)


def test_the_registry_raises_a_domain_error_and_the_route_answers_404(models_dir: Path) -> None:
    import torch

    registry = load_registry(models_dir, torch.device("cpu"), skip_bad=False)
    with pytest.raises(UnknownModel) as caught:
        registry.get("ae-7")
    assert not isinstance(caught.value, ApiError)
    assert "ae-2, ae-6, vae-2" in str(caught.value)
    with TestClient(create_app(Settings(models_dir=models_dir))) as client:
        response = client.post("/v1/models/ae-7/decode", json={"latent": [0.0, 0.0]})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "unknown model 'ae-7'; known models: ae-2, ae-6, vae-2"


def test_corruption_plans_live_in_models_and_repeat_from_their_seed() -> None:
    spec = CorruptionSpec.model_validate({"occlusion": {"area": 0.2}, "noise": {"std": 0.3}, "seed": 5})
    plan = spec.plan()
    assert plan.seed == 5
    clean = [np.full((28, 28), 0.5, np.float32), np.zeros((28, 28), np.float32)]
    seen, rectangles = corrupt_all(clean, plan)
    again, _ = corrupt_all(clean, plan)
    assert all(np.array_equal(a, b) for a, b in zip(seen, again, strict=True))
    assert not np.array_equal(seen[0], clean[0])
    view = corruption_view(plan, rectangles[0])
    assert view is not None and view["seed"] == 5 and view["occlusion"]["height"] >= 1
    assert corrupt_all(clean, None) == (clean, [None, None])


@pytest.mark.parametrize(
    ("method", "path", "counted"),
    [
        ("GET", "/healthz", False),
        ("GET", "/metrics", False),
        ("GET", "/readyz", False),
        ("GET", "/docs", False),
        ("GET", "/v1/models", False),
        ("POST", "/v1/models/ae-6/encode", True),
        ("POST", "/v1/models/ae-6/reconstruct", True),
    ],
)
def test_only_requests_that_may_share_a_batch_count_as_company(method: str, path: str, counted: bool) -> None:
    seen: list[int] = []
    in_flight = InFlight()

    async def app(scope: object, receive: object, send: object) -> None:
        seen.append(in_flight.count)

    async def nothing() -> dict[str, object]:
        return {}

    async def ignore(message: object) -> None:
        return None

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(InFlightMiddleware(app, in_flight)(scope, nothing, ignore))
    assert seen == [1 if counted else 0], "only a POST under /v1 counts while the app handles it"
    assert in_flight.count == 0, "the count goes back down when the request is done"


def test_the_app_counts_an_inference_request_as_in_flight_while_it_reads_the_body(models_dir: Path) -> None:
    """The app's own count (the one its engine asks before waiting for company) is 1 while an encode request is
    being read, and 0 again once it is answered."""
    app = create_app(Settings(models_dir=models_dir))
    seen_while_reading: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        yield b'{"pixels": '
        seen_while_reading.append(app.state.in_flight.count)
        yield json.dumps(np.zeros((28, 28)).tolist()).encode() + b', "scale": "0-1"}'

    async def encode() -> int:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://digitae") as client:
                headers = {"Content-Type": "application/json"}
                response = await client.post("/v1/models/ae-6/encode", content=body(), headers=headers)
                return response.status_code

    assert asyncio.run(encode()) == 200
    assert seen_while_reading == [1], "the request counts while the route reads its body"
    assert app.state.in_flight.count == 0, "and no longer once it is answered"
    assert app.state.in_flight.coming == 0, "nor as on its way to a batcher"


def test_the_folder_map_of_the_service_names_every_layer_and_top_module_and_nothing_else() -> None:
    import service

    root = Path(service.__file__).parent
    on_disk = {f"{p.name}/" for p in root.iterdir() if (p / "__init__.py").is_file()}
    on_disk |= {p.name for p in root.glob("*.py") if p.name != "__init__.py"}
    doc = service.__doc__ or ""
    named = set(re.findall(r"^    ([A-Za-z_]+(?:\.py|/))\s", doc, flags=re.MULTILINE))
    assert named == on_disk, (
        f"missing from the map: {sorted(on_disk - named)}; named but absent: {sorted(named - on_disk)}"
    )
