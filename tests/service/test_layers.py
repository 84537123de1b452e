"""HTTP stays at the edge: the registry raises a domain error that the route layer turns into 404, the routes
leave corruption plans and path ends to the inference module, and only requests that may share a micro-batch
count as company for one (a health check or a metrics scrape never makes a lone request wait)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.corruptions import corrupt_all
from service.app import create_app
from service.catalog.registry import UnknownModel, load_registry
from service.codec.errors import ApiError
from service.codec.render import corruption_view
from service.codec.schemas import CorruptionSpec
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

    async def app(scope: object, receive: object, send: object) -> None:
        seen.append(InFlight.count)

    async def nothing() -> dict[str, object]:
        return {}

    async def ignore(message: object) -> None:
        return None

    before = InFlight.count
    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(InFlightMiddleware(app)(scope, nothing, ignore))
    assert seen == [before + 1 if counted else before]
    assert InFlight.count == before


def test_the_app_counts_in_flight_requests_with_that_middleware(models_dir: Path) -> None:
    app = create_app(Settings(models_dir=models_dir))
    assert InFlightMiddleware.__name__ in [getattr(m.cls, "__name__", "") for m in app.user_middleware]
