"""The explorer: a static page (service/api/static/) served at GET /, a reference client of the public /v1 API.

Plain HTML, CSS and JavaScript modules from the package, no CDN and no build step, so it works offline like /docs.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_PATH = "/explorer"

page = APIRouter(include_in_schema=False)


@page.get("/")
async def explorer() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def install_explorer(app: FastAPI) -> None:
    """GET / answers the page; its scripts, styles and example digits live under /explorer/."""
    app.include_router(page)
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="explorer")
