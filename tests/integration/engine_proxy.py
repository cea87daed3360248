"""A unix-socket proxy in front of the Docker engine that a test can cut, or freeze.

It lets tests make the engine unreachable (or unresponsive) for one service instance
without touching the daemon every other test and service on this machine depends on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

ENGINE_SOCKET = "/var/run/docker.sock"


def _is_container_inspect(request_line: bytes) -> bool:
    """`GET /v1.41/containers/<id>/json`, not the container list `GET .../containers/json`."""
    method, _, rest = request_line.partition(b" ")
    target = rest.partition(b" ")[0]
    path = target.split(b"?", 1)[0].split(b"/")
    return method == b"GET" and len(path) == 5 and path[2:5:2] == [b"containers", b"json"]


class EngineProxy:
    """Forwards connections to the engine; `cut()` refuses them, `freeze()` never answers,
    `kill_delay_s` holds each kill request that long before passing it on (a container
    slow to come down: the engine answers a kill only once it is down), and
    `inspect_delay_s` each container inspect (dockerd holds a container's lock while it
    handles its exit, and an inspect waits for the lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mode = "forward"
        self.kill_delay_s = 0.0
        self.inspect_delay_s = 0.0
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Closes every connection and refuses new ones, as a stopped engine would."""
        self.mode = "cut"
        self._drop_all()

    def freeze(self) -> None:
        """Accepts connections and reads requests but never answers, as a SIGSTOPped engine."""
        self.mode = "freeze"
        self._drop_all()

    def restore(self) -> None:
        self.mode = "forward"

    def stop(self) -> None:
        self.cut()
        if self._listener is not None:
            self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _drop_all(self) -> None:
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._connections.clear()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                client.close()
                continue
            with self._lock:
                self._connections.append(client)
            if self.mode == "freeze":
                continue  # held open, never answered
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(ENGINE_SOCKET)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.append(upstream)
            requests = threading.Thread(
                target=self._pipe, args=(client, upstream, True), daemon=True
            )
            requests.start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, requests: bool = False) -> None:
        try:
            while data := source.recv(65536):
                # The engine's small requests arrive whole: a kill is recognised by its line.
                first_line = data.split(b"\r\n", 1)[0]
                if requests and first_line.startswith(b"POST ") and b"/kill" in first_line:
                    time.sleep(self.kill_delay_s)
                if requests and _is_container_inspect(first_line):
                    time.sleep(self.inspect_delay_s)
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)  # pass half-closes through (stdin EOF)
        except OSError:
            # Both ends: an engine left writing into a connection nobody reads would block
            # (a container's exit waits for its attached output to be delivered).
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
