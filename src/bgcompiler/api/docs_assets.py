"""`/docs` (Swagger UI) and `/redoc` served with their scripts and styles from the package,
so they work on a network that reaches no CDN.

The assets come from the `fastapi-offline` distribution (pinned in pyproject.toml), which
ships Swagger UI's and ReDoc's bundles as package data; only those files are used, through
FastAPI's own page builders, so `pip install` is all it takes (no npm at build time).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PACKAGE = ("fastapi_offline", "static")
ASSETS_URL = "/docs-assets"
SWAGGER_JS = f"{ASSETS_URL}/swagger-ui-bundle.js"
SWAGGER_CSS = f"{ASSETS_URL}/swagger-ui.css"
REDOC_JS = f"{ASSETS_URL}/redoc.standalone.js"
FAVICON = f"{ASSETS_URL}/favicon.png"


def install_docs(app: FastAPI) -> None:
    """Adds /docs, /redoc and their assets. The app must be made with docs_url=None and
    redoc_url=None, or FastAPI's CDN pages would answer first."""
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("FastAPI's own /docs and /redoc load their scripts from a CDN")
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")
    # Swagger UI otherwise asks validator.swagger.io to check the schema, from the browser.
    swagger_parameters = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=root + SWAGGER_JS,
            swagger_css_url=root + SWAGGER_CSS,
            swagger_favicon_url=root + FAVICON,
            swagger_ui_parameters=swagger_parameters,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=root + REDOC_JS,
            redoc_favicon_url=root + FAVICON,
            with_google_fonts=False,
        )
