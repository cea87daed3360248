"""A hijacked `attach` connection: exact stdout/stderr frames in, stdin out with a half-close.

aiodocker's own attach inspects the container first (one more round-trip) and can only
close both directions at once; a program reading to end of input needs stdin closed
while its output is still being read, so we speak the protocol directly.
"""

from __future__ import annotations

import asyncio
import struct
from types import TracebackType

from bgcompiler.errors import EngineUnavailable, SandboxError
from bgcompiler.models import STDERR, STDOUT

__all__ = ["STDERR", "STDOUT", "AttachedStream"]
_HEADER = struct.Struct(">BxxxL")
_MAX_RESPONSE_HEAD = 64 * 1024


class AttachedStream:
    """One attach connection to one container. Use as an async context manager."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        # A frame's header once read, until its data is: a read cancelled by a deadline in
        # between must not lose it, or every later frame would be misread.
        self._header: tuple[int, int] | None = None

    @classmethod
    async def open(cls, socket_path: str, api_version: str, container_id: str) -> AttachedStream:
        try:
            reader, writer = await asyncio.open_unix_connection(socket_path, limit=2**20)
        except OSError as exc:
            raise EngineUnavailable(f"cannot reach the Docker engine at {socket_path}") from exc
        request = (
            f"POST /{api_version}/containers/{container_id}/attach"
            "?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
            "Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        )
        stream = cls(reader, writer)
        try:
            writer.write(request.encode("ascii"))
            head = await reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            stream.close()
            raise EngineUnavailable("the engine closed the attach connection") from exc
        status_line = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(status_line) < 2 or status_line[1] not in (b"101", b"200"):
            stream.close()
            raise SandboxError(f"attach refused by the engine: {head[:200]!r}")
        return stream

    async def send_stdin(self, data: bytes) -> None:
        """Writes all of `data` to the container's stdin, then closes stdin (not stdout)."""
        try:
            self._writer.write(data)
            await self._writer.drain()
            if self._writer.can_write_eof():
                self._writer.write_eof()
        except (OSError, RuntimeError):
            # The container is gone or closed its stdin: nothing more to deliver.
            return

    async def send(self, data: bytes) -> bool:
        """Writes `data` to the container's stdin, leaving it open (an interactive run).
        False once the container is gone or closed its stdin."""
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, RuntimeError):
            return False
        return True

    async def read_frame(self) -> tuple[int, bytes] | None:
        """The next (stream, bytes) frame, or None once the container's output has ended.

        Safe to cancel: readexactly consumes nothing unless it returns, and a header already
        read is kept for the next call."""
        try:
            if self._header is None:
                self._header = _HEADER.unpack(await self._reader.readexactly(_HEADER.size))
            kind, length = self._header
            data = await self._reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return None
        except OSError as exc:
            raise SandboxError("the attach connection broke") from exc
        self._header = None
        return kind, data

    @property
    def closed(self) -> bool:
        """The engine ended the connection (the container is gone) or we closed it."""
        return self._writer.is_closing() or self._reader.at_eof()

    def close(self) -> None:
        self._writer.close()

    async def __aenter__(self) -> AttachedStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
