"""The HTTP floor: a FastAPI endpoint that reads the request body and answers a small JSON, nothing else.

Served exactly as `python -m service` serves digitae (service.runtime.server: uvicorn's httptools protocol with the
connection bounds, uvloop, the default DIGITAE_* limits, no access log, no server header), so the difference between
the two is what digitae itself costs per request. With DIGITAE_NOOP_SERVER=plain it is served by plain uvicorn
instead (no bounds): the benchmark runs both, to show what the bounds cost.
With DIGITAE_NOOP_SERVER=digitae it serves digitae's own floor instead: the service's app (`create_app`: its
middleware, request ids, metrics, access log, body cap, error envelope; the models from DIGITAE_MODELS_DIR) with one
more route, shaped like an inference route (it reads `name`, `upscale` and `fields` as the inference routes do), that
reads the body and answers the same small JSON: what a request costs in digitae before any image or model work.
Run by the benchmark as `python benchmarks/noop_app.py` with DIGITAE_PORT set.
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response

app = FastAPI(title="no-op")
OK = b'{"ok":true}'


@app.post("/noop")
async def noop(request: Request) -> Response:
    await request.body()
    return Response(OK, media_type="application/json")


@app.get("/healthz")
async def healthz() -> Response:
    return Response(OK, media_type="application/json")


def digitae_floor() -> FastAPI:
    """digitae's app with a no-op inference-shaped route: `POST /v1/models/{name}/noop`."""
    from service.api.deps import image_model_call
    from service.app import create_app
    from service.settings import Settings

    floor = create_app(Settings())

    @floor.post("/v1/models/{name}/noop")
    async def model_noop(request: Request) -> Response:
        image_model_call(request)
        await request.body()
        return Response(OK, media_type="application/json")

    return floor


if __name__ == "__main__":
    workers = int(os.environ.get("DIGITAE_WORKERS", "1"))
    if os.environ.get("DIGITAE_NOOP_SERVER") == "digitae":
        import logging.config

        from service.runtime.logs import logging_config
        from service.runtime.process import serve
        from service.settings import Settings

        settings = Settings()
        logging.config.dictConfig(logging_config(settings.log_level))
        serve(settings, digitae_floor(), None)
        raise SystemExit(0)
    target = "benchmarks.noop_app:app" if workers > 1 else app
    if os.environ.get("DIGITAE_NOOP_SERVER", "bounded") == "plain":
        uvicorn.run(
            target,
            workers=workers,
            host="127.0.0.1",
            port=int(os.environ["DIGITAE_PORT"]),
            log_level="info",  # the service's default; uvicorn logs nothing per request either way
            log_config=None,
            access_log=False,
            server_header=False,
        )
    else:
        from service.runtime.process import serve
        from service.settings import Settings

        serve(Settings(), target, None)
