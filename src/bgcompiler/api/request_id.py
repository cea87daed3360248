"""Every request gets an id: the client's `X-Request-ID` when it is a sane one, else a new
one. It is bound to the request's log context, so every line logged while the request is
served (its job's and its runs' included) carries it, and it comes back in the answer's
`X-Request-ID` header, so a client can quote it."""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
# The id goes into logs and back into a header: printable ASCII without spaces, bounded.
_SANE = re.compile(rb"[\x21-\x7e]{1,128}")


def request_id_of(scope: Scope) -> str:
    """The client's id when it sent one fit to log and echo, else a fresh one."""
    for name, value in scope.get("headers") or []:
        if name == HEADER and _SANE.fullmatch(value):
            return str(value.decode("ascii"))
    return uuid.uuid4().hex


class RequestId:
    """Pure ASGI (not BaseHTTPMiddleware): the handler runs in this task, so what it binds
    to the log context stays within the request, and nothing is buffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        header = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)
