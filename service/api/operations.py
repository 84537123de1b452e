"""Liveness, readiness and the metrics: never behind a key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.deps import (
    ServiceDep,
)
from service.api.errors import error_responses
from service.api.security import has_admin_key
from service.catalog.registry import public_problems
from service.codec.answers import Health, Readiness
from service.codec.errors import SHUTTING_DOWN, ApiError
from service.codec.render import (
    json_response,
)
from service.runtime.metrics import metrics_text, observe_readiness, observe_served

ops = APIRouter(tags=["operations"])


@ops.get("/healthz", summary="Liveness", description="200 while the process runs.", response_model=Health)
async def healthz() -> Response:
    return json_response({"status": "ok"})


@ops.get(
    "/readyz",
    summary="Readiness",
    description="200 once every model is loaded and verified, with the served models and their versions, the "
    "verified judges, the checkpoints skipped at startup and those refused by a reload (damaged: the previous "
    "version serves on); 503 before that, and from SIGTERM on (draining, then stopping). Why a checkpoint was "
    "skipped or refused (which file, which hash) is shown only with the admin key.",
    response_model=Readiness,
    responses=error_responses(503),
)
async def readyz(request: Request, service: ServiceDep) -> Response:
    if request.app.state.drain.draining:
        raise ApiError(
            503,
            "the service is stopping (draining after SIGTERM); send requests to another replica",
            code=SHUTTING_DOWN,
        )
    registry = service.registry
    admin = await has_admin_key(request)
    return json_response(
        {
            "status": "ready",
            "models": list(registry.models),
            "versions": {name: model.version for name, model in registry.models.items()},
            "judges": registry.judges,
            "skipped": registry.skipped if admin else public_problems(registry.skipped, "skipped"),
            "refused": registry.refused if admin else public_problems(registry.refused, "refused"),
        }
    )


@ops.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Requests and latency by route template and status, micro-batch sizes and inference time, in "
    "Prometheus text format.",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    service = request.app.state.service
    observe_readiness(service is not None and not request.app.state.drain.draining)
    if service is not None:
        observe_served({name: model.version for name, model in service.registry.models.items()})
    content, media_type = metrics_text()
    return Response(content, media_type=media_type)
