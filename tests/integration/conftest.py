"""Integration tests: the real service against the real engine (fixtures in tests/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest


class Receiver(BaseHTTPRequestHandler):
    """A callback receiver: records each call (method, headers, body); answers 500 to the
    first `fail` calls."""

    calls: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    methods: ClassVar[list[str]] = []
    fail: ClassVar[int] = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).methods.append(self.command)
        type(self).calls.append((dict(self.headers), body))
        status = 500 if len(type(self).calls) <= type(self).fail else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("OneReceiver", (Receiver,), {"calls": [], "methods": [], "fail": 0})
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_address[1]}/hook", handler
    http.shutdown()
    http.server_close()
