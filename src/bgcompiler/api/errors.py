"""The one place errors become HTTP responses, and the request body size cap."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bgcompiler.errors import BgcError, Busy, InvalidRequest, RateLimited, Unauthorized, Unavailable

log = structlog.get_logger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc if part != "body"]
    return ".".join(parts)


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "malformed_json", "the request body is not valid JSON")
    details = [
        {"field": _location(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type")}
        for e in errors
    ]
    if any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        return error_response(
            422, "invalid_request", "the request body must be a JSON object", details=details
        )
    message = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details)
    first = details[0]["field"] if details else None
    return error_response(422, "invalid_request", message, field=first, details=details)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(BgcError)
    async def _ours(request: Request, exc: BgcError) -> JSONResponse:
        headers = None
        if isinstance(exc, Unavailable):
            headers = {"Retry-After": str(exc.retry_after)}
            count_rejection(request, exc)
        elif isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after)}
        elif isinstance(exc, Unauthorized):
            headers = {"WWW-Authenticate": 'Bearer realm="bg-compiler"'}
        field = exc.field if isinstance(exc, InvalidRequest) else None
        return error_response(exc.http_status, exc.code, exc.message, field=field, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", error=repr(exc))
        return error_response(500, "internal_error", "an unexpected error occurred in the service")


def count_rejection(request: Request, exc: BgcError) -> None:
    """A refusal for the service's state, by reason. Busy is counted by the scheduler,
    where every API's admission is decided; a plain Unavailable is a client that left, and
    nobody receives its answer."""
    metrics = getattr(request.app.state, "metrics", None)
    if (
        metrics is not None
        and isinstance(exc, Unavailable)
        and not isinstance(exc, Busy)
        and type(exc) is not Unavailable
    ):
        metrics.rejected(exc.http_status, exc.code)


class RequestBodyLimit:
    """Caps request bodies at `limit` bytes (413, JSON), and reads JSON whatever the Content-Type.

    The seed decoded every body as JSON, so clients like `curl -d` (form content type) worked;
    we keep that. A body is never read past the cap.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = error_response(413, "body_too_large", self._message())
            await response(scope, receive, send)
            return
        scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # FastAPI passes HTTPExceptions raised while reading the body through.
                    raise StarletteHTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.limit} bytes"
