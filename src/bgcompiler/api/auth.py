"""API keys at the door (with --require-api-key): every request but liveness, readiness and
the API's docs must carry a live key, before its body is read or a route runs.

The key is taken from `Authorization: Bearer <key>` or `X-API-Key` (on Judge0's routes also
`X-Auth-Token`, its own header); a WebSocket's from its upgrade request. A key in the query
string is refused even with a good one in a header: URLs end up in logs, proxies and
browser histories. Missing, unknown or revoked: 401 (Judge0's routes answer as Judge0 does:
an empty body). /metrics needs an admin key (403 otherwise).

The key found, with its allowance, is the request's `caller` (request.state), bound to the
log context as `key`, and every answer carries its RateLimit header fields as they stand
when the answer starts (after the request's runs were charged, when it had any).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import structlog
from fastapi import FastAPI
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from bgcompiler.api.errors import error_response
from bgcompiler.errors import Forbidden, StoreUnavailable, Unauthorized
from bgcompiler.keys import ApiKey
from bgcompiler.ratelimit import Allowance, headers
from bgcompiler.store.keys import KeyStore

# Open with keys on: liveness and readiness (probes carry no secrets), and the API's
# description (it holds no data, and a browser cannot send a header to open it).
# The playground is a page like /docs: open, and it sends the key the user types with each
# API call it makes.
OPEN_PATHS = frozenset(
    ("/", "/health/live", "/health/ready", "/docs", "/redoc", "/openapi.json", "/play")
)
OPEN_PREFIXES = ("/docs-assets/", "/play/assets/")
ADMIN_PATHS = frozenset(("/metrics",))
# Names under which clients put keys in URLs; any of them refuses the request.
QUERY_KEY_NAMES = frozenset(
    ("api_key", "apikey", "api-key", "key", "access_token", "token", "x-api-key", "x-auth-token")
)
SCHEME = 'Bearer realm="bg-compiler"'


@dataclass(eq=False)
class Caller:
    """The key a request came with, and its allowance (updated when runs are charged)."""

    key: ApiKey
    allowance: Allowance


def caller_of(connection: HTTPConnection) -> Caller | None:
    """The request's key; None when keys are off."""
    found: Caller | None = getattr(connection.state, "caller", None)
    return found


def owner_of(connection: HTTPConnection) -> str | None:
    """The name jobs submitted by this request are stored under (None: keys are off)."""
    caller = caller_of(connection)
    return caller.key.name if caller is not None else None


def may_see(connection: HTTPConnection, owner: str | None) -> bool:
    """Whether this request may see a job of `owner`: its own, or any with an admin key or
    with keys off."""
    caller = caller_of(connection)
    return caller is None or caller.key.admin or caller.key.name == owner


class ApiKeys:
    """Pure ASGI: it answers before the body is read, and binds the key to the log context
    of the task that serves the request."""

    def __init__(self, app: ASGIApp, *, judge0: Callable[[Scope], bool]) -> None:
        self.app = app
        self._judge0 = judge0  # whether a request is for one of Judge0's routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] not in ("http", "websocket")
            or path in OPEN_PATHS
            or path.startswith(OPEN_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        judge0 = scope["type"] == "http" and self._judge0(scope)
        try:
            caller = await self._caller(scope, judge0=judge0)
        except (Unauthorized, Forbidden, StoreUnavailable) as exc:
            await _refuse(scope, receive, send, exc, judge0=judge0)
            return
        scope.setdefault("state", {})["caller"] = caller

        async def send_with_limits(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                limits = headers(caller.key, caller.allowance)
                message = {**message, "headers": [*message.get("headers", []), *limits]}
            await send(message)

        with structlog.contextvars.bound_contextvars(key=caller.key.name):
            await self.app(scope, receive, send_with_limits)

    async def _caller(self, scope: Scope, *, judge0: bool) -> Caller:
        query = scope.get("query_string", b"").decode("latin-1")
        if any(name.lower() in QUERY_KEY_NAMES for name, _ in parse_qsl(query, True)):
            raise Unauthorized(
                "an API key in the query string is refused (URLs are logged); send it in the "
                "Authorization: Bearer header or X-API-Key"
            )
        secret = _secret(scope, judge0=judge0)
        if secret is None:
            raise Unauthorized(
                "this server needs an API key: Authorization: Bearer <key>, or X-API-Key"
            )
        store: KeyStore = scope["app"].state.keys
        found = await store.find(secret)
        if found is None:
            raise Unauthorized("the API key is not valid (unknown or revoked)")
        key, allowance = found
        if scope.get("path") in ADMIN_PATHS and not key.admin:
            raise Forbidden("this route needs an admin key")
        return Caller(key, allowance)


def _secret(scope: Scope, *, judge0: bool) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return str(credentials.strip())
        elif (name == b"x-api-key" or (judge0 and name == b"x-auth-token")) and value.strip():
            return str(value.decode("latin-1").strip())
    return None


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    exc: Unauthorized | Forbidden | StoreUnavailable,
    *,
    judge0: bool,
) -> None:
    answer: Response
    if judge0 and not isinstance(exc, StoreUnavailable):
        # Judge0 answers 401 and 403 with an empty text/html body; its clients expect that.
        answer = Response(status_code=exc.http_status, media_type="text/html")
    else:
        extra = {"WWW-Authenticate": SCHEME} if isinstance(exc, Unauthorized) else {}
        if isinstance(exc, StoreUnavailable):
            extra["Retry-After"] = str(exc.retry_after)
        answer = error_response(exc.http_status, exc.code, exc.message, headers=extra)
    if scope["type"] == "http":
        await answer(scope, receive, send)
        return
    websocket = WebSocket(scope, receive, send)
    if "websocket.http.response" in scope.get("extensions", {}):
        await websocket.send_denial_response(answer)
    else:
        await websocket.close(1008, exc.message[:120])


def document_keys(app: FastAPI) -> None:
    """With keys on, the schema says so: the two ways to send a key (so /docs offers to
    take one), required by every operation but the open ones."""
    make_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = make_schema()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearer"] = {"type": "http", "scheme": "bearer"}
        schemes["apiKey"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        for path, operations in schema.get("paths", {}).items():
            if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
                continue
            for operation in operations.values():
                if isinstance(operation, dict):
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
