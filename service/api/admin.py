"""Operator actions, behind the admin key."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.api.deps import (
    ServiceDep,
)
from service.api.errors import error_responses
from service.catalog.reloading import signal_other_workers
from service.codec.answers import ReloadResult
from service.codec.render import (
    json_response,
)

admin = APIRouter(prefix="/admin", tags=["admin"])  # create_app mounts it, with its key check, when a key is set


@admin.post(
    "/reload",
    summary="Reload the models now",
    description="Looks for new, changed and removed checkpoint folders and swaps them in, as the periodic poll "
    "does, and answers what changed in the worker process that took the request. The other workers of the server "
    "are sent SIGHUP and reload too. A damaged checkpoint is refused (listed in `refused`) and the version already "
    "loaded serves on. Needs `Authorization: Bearer <DIGITAE_ADMIN_KEY>`: without a key 401, with another key 403; "
    "a service started without DIGITAE_ADMIN_KEY answers 403 to any key (admin operations are off).",
    response_model=ReloadResult,
    responses=error_responses(401, 403, 503),
)
async def reload_models(service: ServiceDep) -> Response:
    report = await service.reloader.reload("admin")
    signal_other_workers()
    return json_response(report.as_dict())
