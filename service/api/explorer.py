"""The explorer: a static page (service/api/static/) served at GET /, a reference client of the public /v1 API.

Plain HTML, CSS and JavaScript modules from the package, no CDN and no build step, so it works offline like /docs.

The page and its files are sent with SECURITY_HEADERS: a Content-Security-Policy that allows only this origin's
scripts, styles and API (no inline script or style: the page has none), images from this origin or made by the page
(data:, blob:), and no framing by another page (the API-key dialog cannot be clickjacked).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_PATH = "/explorer"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

page = APIRouter(include_in_schema=False)


@page.get("/")
async def explorer() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache", **SECURITY_HEADERS})


class ExplorerFiles(StaticFiles):
    """The page's files, each with SECURITY_HEADERS."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def install_explorer(app: FastAPI) -> None:
    """GET / answers the page; its scripts, styles and example digits live under /explorer/."""
    app.include_router(page)
    app.mount(ASSETS_PATH, ExplorerFiles(directory=STATIC_DIR), name="explorer")
