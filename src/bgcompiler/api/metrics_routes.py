"""GET /metrics (Prometheus text format), and the request latency it reports."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bgcompiler.errors import Unavailable
from bgcompiler.metrics import OTHER, Metrics

router = APIRouter()

# The route label of a request no route matches (a scan of random paths is one series).
UNMATCHED = "unmatched"
# Methods a client may send are any token: others are counted as one.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _metrics(app: object) -> Metrics | None:
    """The app's metrics; None before its lifespan has made them (or after a failed start)."""
    state = getattr(app, "state", None)
    found = getattr(state, "metrics", None)
    return found if isinstance(found, Metrics) else None


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "The metrics."}},
)
async def metrics(request: Request) -> Response:
    """The service's metrics in Prometheus text format (docs/operations.md lists them)."""
    found = _metrics(request.app)
    if found is None:
        raise Unavailable("the service is starting")
    body = await found.scrape(request.app.state.services.sandbox.ping)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def route_template(scope: Scope) -> str:
    """The template of the route the router chose (`/api/v1/jobs/{job_id}`), never the raw
    path: ids in paths would make a series per job. The router notes its choice in the
    scope it is given, so this middleware must sit inside any that copy the scope."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestMetrics:
    """Times each HTTP request, to the end of its answer's body, by route template.
    Installed innermost (first added): it reads the route the router notes in the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        begun = time.perf_counter()
        code = 500  # what the client gets if the app fails before answering

        async def send_noting(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_noting)
        finally:
            found = _metrics(scope.get("app"))
            if found is not None:
                method = scope["method"] if scope["method"] in METHODS else OTHER
                found.request(method, route_template(scope), code, time.perf_counter() - begun)
