"""The HTTP server: uvicorn, plus a deadline on reading each request.

uvicorn has no deadline for a client that trickles its headers or body a byte at a time
(its keep-alive timer only runs between requests), so a few hundred such clients would hold
connections and file descriptors forever. Here every request must be read whole (headers
and body) within `--client-timeout` seconds of its first byte, or of the connection being
made; a client that is too slow gets 408 (if its headers never ended) and is disconnected.
A request whose body was cut off counts as a client that went away: nothing of it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bgcompiler.settings import Settings

# uvicorn's shutdown deadline comes this long after the app has answered what still ran.
ANSWER_MARGIN_S = 5

_TOO_SLOW = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)
_TOO_SLOW_BODY = b'{"error":"request_timeout","message":"the request was not sent in time"}'


def deadline_protocol(deadline_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline for reading each request."""

    class DeadlineHttpToolsProtocol(HttpToolsProtocol):
        _read_deadline: asyncio.TimerHandle | None = None
        _headers_done = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._headers_done = False
            self._arm()

        def on_headers_complete(self) -> None:
            self._headers_done = True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _arm(self) -> None:
            self._disarm()
            self._read_deadline = self.loop.call_later(deadline_s, self._too_slow)

        def _disarm(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None

        def _too_slow(self) -> None:
            self._read_deadline = None
            if self.transport.is_closing():
                return
            if not self._headers_done:
                self.transport.write(_TOO_SLOW % (len(_TOO_SLOW_BODY), _TOO_SLOW_BODY))
            self.transport.close()

    return DeadlineHttpToolsProtocol


def raise_open_file_limit() -> None:
    """Thousands of clients at once need thousands of descriptors: use the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class StoppingServer(uvicorn.Server):
    """uvicorn's server, which also tells the app the moment a stop signal arrives, so that
    the grace for runs starts then (the app's lifespan shutdown only starts once every
    connection has closed)."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        with contextlib.suppress(RuntimeError):  # no loop yet: nothing runs to stop
            asyncio.get_running_loop().call_soon_threadsafe(self._on_stop)


def server_config(app: Any, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=deadline_protocol(settings.client_timeout),
        log_level="debug" if settings.verbose else "info",
        # In JSON, uvicorn's loggers propagate to the JSON handler instead of their own text.
        log_config=None if settings.json_logs else uvicorn.config.LOGGING_CONFIG,
        # After SIGTERM the app itself ends what is still running at --shutdown-grace, with
        # a 503 for each request (StoppingServer); uvicorn's own deadline, which would cancel
        # the requests and answer a plain-text 500, comes only after those answers are out.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace) + ANSWER_MARGIN_S,
        timeout_keep_alive=5,
        backlog=4096,
        access_log=settings.verbose,
        lifespan="on",
    )
