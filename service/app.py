"""The FastAPI application: `create_app(settings)` wires settings, middleware, routes and the lifespan.

uvicorn runs it as `service.app:create_app` with `factory=True` (each worker builds its own, reading
the same DIGITAE_* environment); `python -m service` does that for you.
"""

from __future__ import annotations

import gc
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import torch
from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware

from service.api import generation, inference, models, v2
from service.api.admin import admin
from service.api.declarations import FIELDS_BY_PATH
from service.api.deps import Service
from service.api.dispatch import FastDispatch
from service.api.errors import install_error_handlers
from service.api.explorer import install_explorer
from service.api.openapi import add_request_schemas, document_contract, document_deployment, document_fields
from service.api.operations import ops
from service.api.security import require_admin_key, require_api_key
from service.catalog.registry import Registry, StartupError, load_registry
from service.catalog.reloading import Reloader, start_reloading
from service.engine.inference import InferenceEngine
from service.middleware.body_limit import BodyLimitMiddleware
from service.middleware.in_flight import InFlight, InFlightMiddleware
from service.middleware.request_context import MODEL_HEADERS, TRACE_HEADERS, RequestContextMiddleware
from service.runtime.draining import Drain
from service.runtime.metrics import observe_batch, observe_model_change, observe_readiness, observe_served
from service.runtime.process import handle_sighup
from service.runtime.tracing import start_tracing, stop_tracing
from service.settings import Settings

log = logging.getLogger("digitae")

VERSION = importlib.metadata.version("digitae")  # pyproject.toml's, as installed
DESCRIPTION = """\
**[Open the explorer](/)**: draw a digit and see what the models learned, in the browser.

Auto-encoders for MNIST digits, served: **encode** an image into its latent code, **reconstruct** it (optionally
corrupted first: the report's robustness experiment), **decode** a latent, **sample** new digits around a digit's
centroid, and **interpolate** between digits, latents or images; **classify** names the digit in any image
(the judge of the report's experiments).

**Images in**: JSON `image` (a PNG, JPEG, BMP, GIF or WebP file, base64), JSON `pixels` (28x28 numbers with their
`scale`, `0-1` or `0-255`), a multipart upload in the field `file`, or the file itself as the body with its type
(`Content-Type: image/png`, `image/jpeg`, ...). Any size and mode: images are preprocessed the
way MNIST was made (grayscale, white ink on black, cropped, fitted into 20x20, centered by mass); an image that already
looks like an MNIST digit passes unchanged.

**Images out**: base64 PNG strings in JSON; with `Accept: image/png` the PNG itself (a grid for several). `upscale`
enlarges them. `fields` (e.g. `?fields=loss,latent`) trims an answer to the fields named: the rest is never computed.

**Bulk**: `encode`, `reconstruct` and `decode` take a `.npy` array (`Content-Type: application/x-npy`; N x 28 x 28
`uint8` or `float32` images, N x latent_dim `float32` latents; N up to max_bulk) and answer, streamed, with JSON
`results` or one `.npy` array (`Accept: application/x-npy`; `fields` picks which).

**Errors** all have one shape: `{"error": {"code", "message", "detail", "request_id"}}` (see `ErrorResponse`).
Every response carries `X-Request-ID`; every answer from a model names it and its version (`X-Model-Name`,
`X-Model-Version`). When the service has API keys, `/v1` needs `Authorization: Bearer <key>`.
"""
TAGS = [
    {"name": "models", "description": "What is being served."},
    {"name": "inference", "description": "Images in, latents and images out; single or batched."},
    {"name": "generation", "description": "New images from the latent space."},
    {"name": "operations", "description": "Liveness, readiness and metrics (never need a key)."},
    {"name": v2.TAG, "description": "The Open Inference Protocol (KServe V2, Triton's binary tensors): /v2."},
    {
        "name": "admin",
        "description": "Operator actions, with the admin key (off, 403, unless DIGITAE_ADMIN_KEY is set).",
    },
]


# What a browser client reads beside the model and trace headers: a .npy answer's layout, when to retry, how to
# authenticate, and that a request form is deprecated (and what succeeds it).
ARRAY_HEADERS = ("X-Array-Field", "X-Array-Columns")
CLIENT_HEADERS = ("Retry-After", "WWW-Authenticate", "Deprecation", "Link")


def build_registry(settings: Settings) -> Registry:
    """Load every checkpoint as configured; raises StartupError with a message naming the problem."""
    return load_registry(
        settings.models_dir, settings.device, skip_bad=settings.skip_bad_checkpoints, bounds=settings.checkpoint_bounds
    )


def freeze_what_lives_on() -> None:
    """Move every object alive now out of the garbage collector's sight (see the lifespan)."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """The app. `registry`, when given, is served as it is (already loaded); else the lifespan loads it."""
    settings = settings if settings is not None else Settings()
    in_flight = InFlight()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(settings.torch_threads)
        start_tracing()  # only when the OTEL_* variables ask for it; in each worker (its own export thread)
        loaded = registry if registry is not None else build_registry(settings)
        engine = InferenceEngine(
            settings, observe=observe_batch, worth_waiting=in_flight.others_coming, arrived=in_flight.arrived
        )
        reloader = Reloader(
            loaded,
            settings.models_dir,
            loaded.device,
            engine.forget_all_but,
            observe_model_change,
            settings.checkpoint_bounds,
        )
        reloader.adopt_startup_state()
        app.state.service = service = Service(settings=settings, registry=loaded, engine=engine, reloader=reloader)
        app.state.drain.install()
        stop_reloading = start_reloading(reloader, settings.reload_interval_s)
        # What startup built lives as long as the process: out of the garbage collector's sight, a full
        # collection under load scans only what requests create (shorter pauses, a shorter latency tail).
        freeze_what_lives_on()
        # What torch imports on a first forward pass too, frozen once a first pass (off the event loop) is done.
        if (first := next(iter(loaded.models.values()), None)) is not None:
            engine.warm_up_soon(first, then=freeze_what_lives_on)
        log.info("ready: serving %s", ", ".join(f"{m.name} {m.version}" for m in loaded.models.values()))
        observe_served({m.name: m.version for m in loaded.models.values()})
        observe_readiness(True)
        try:
            with handle_sighup(reloader.on_sighup):  # SIGHUP: reload the models now
                yield
        finally:
            app.state.service = None  # /readyz answers 503 from here on
            observe_readiness(False)
            stop_reloading()
            app.state.drain.uninstall()
            await engine.close()
            stop_tracing()
            service.decode_pool.close()

    # The Swagger UI and ReDoc assets are served from the package, not a CDN: /docs works offline.
    app = FastAPIOffline(
        title="digitae",
        version=VERSION,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        redirect_slashes=False,  # no 307 to a Location built from the Host header: an unknown path is 404
    )
    app.state.settings = settings
    app.state.in_flight = in_flight
    app.state.service = None
    app.state.drain = Drain(settings.drain_s, settings.grace_s)
    app.state.api_keys = [key.get_secret_value().encode() for key in settings.api_keys]
    app.state.admin_key = settings.admin_key.get_secret_value().encode() if settings.admin_key else b""
    install_error_handlers(app)
    # Only a keyed service checks keys (and says so in its OpenAPI); an open one skips the work.
    for routes in (models.v1, inference.v1, generation.v1, v2.v2):
        app.include_router(routes, dependencies=[Depends(require_api_key)] if settings.api_keys else None)
    app.include_router(ops)
    app.include_router(v2.health)
    install_explorer(app)
    # declared whatever the settings (one OpenAPI contract); without an admin key they are off (403)
    app.include_router(admin, dependencies=[Depends(require_admin_key)])

    # outermost last: request context (id, log, metrics, last-resort 500) > CORS > in-flight count > body cap >
    # fast dispatch (the routes that need nothing of FastAPI's per-request machinery) > app
    if settings.fast_dispatch:
        app.add_middleware(FastDispatch, application=app)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_request_bytes, npy_max_bytes=settings.max_npy_request_bytes
    )
    app.add_middleware(InFlightMiddleware, in_flight=in_flight)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Accept", "X-Request-ID", *TRACE_HEADERS],
            expose_headers=["X-Request-ID", *MODEL_HEADERS, *ARRAY_HEADERS, *TRACE_HEADERS, *CLIENT_HEADERS],
        )
    app.add_middleware(RequestContextMiddleware)
    app.openapi = partial(openapi_schema, app)  # type: ignore[method-assign]
    return app


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the request bodies the routes read themselves, this deployment's caps, and what
    makes it one contract whatever the settings (security, operationIds). Built once."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    add_request_schemas(schema)
    document_fields(schema, FIELDS_BY_PATH)
    document_deployment(schema, app.state.settings)
    document_contract(schema)
    app.openapi_schema = schema
    return schema


__all__ = ["StartupError", "build_registry", "create_app"]
