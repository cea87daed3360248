"""`/play`: the web playground, a page of the service's own (HTML, scripts and styles shipped
as package data under bgcompiler/static/play), so it works on a network that reaches no CDN.

The page is a client of the jobs API like any other: it holds no server-side state, and
these routes stay out of the OpenAPI schema (they are not part of the API).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PLAY_URL = "/play"
ASSETS_URL = "/play/assets"
_PACKAGE = ("bgcompiler", "static/play")


def install_play(app: FastAPI) -> None:
    """Adds /play and its assets (mounted before the page route: both are plain GETs)."""
    app.mount(ASSETS_URL, StaticFiles(packages=[_PACKAGE]), name="play-assets")
    # Read once: the page is a fixed file, and this keeps a request free of disk access.
    page = files("bgcompiler").joinpath("static/play/index.html").read_text(encoding="utf-8")

    @app.get(PLAY_URL, include_in_schema=False)
    async def play() -> HTMLResponse:
        # no-cache: a new version of the service must not meet an old page in the cache.
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
