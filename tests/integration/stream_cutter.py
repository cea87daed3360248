"""A TCP proxy in front of the service that drops the first event stream it carries right
after that stream's first `run` event: a connection lost mid-stream, as a flaky network or
a restarting proxy would lose it."""

from __future__ import annotations

import contextlib
import re
import socket
import threading

_END_OF_RUN_EVENT = re.compile(rb"event: run\r?\n(?:.*\r?\n)*?\r?\n")


class StreamCutter:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.connections = 0
        self.cut = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        seen = b""
        try:
            while chunk := source.recv(65536):
                if answers and not self.cut:
                    seen += chunk
                    end = _END_OF_RUN_EVENT.search(seen)
                    if end is not None:
                        self.cut = True
                        # Up to the end of that event, then nothing more: the line is dead.
                        sink.sendall(chunk[: len(chunk) - (len(seen) - end.end())])
                        break
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end_socket in (source, sink):
                with contextlib.suppress(OSError):
                    end_socket.shutdown(socket.SHUT_RDWR)
                end_socket.close()
