"""A run's stdio under the OCI engine: three pipes the runtime hands to the container.

The container's stdout and stderr are pipes of their own, so each byte is known to belong
to one stream exactly as the program wrote it (what Docker's attach frames give, without
dockerd in between). Both are read as they come into one queue of (stream, bytes) frames,
in the order they were read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from bgcompiler.models import STDERR, STDOUT

READ_BYTES = 64 * 1024


class PipeStream:
    """The RunStream of one runtime process's pipes (see stream.RunStream)."""

    def __init__(
        self,
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
    ) -> None:
        self._stdin = stdin
        self._frames: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._open = 2  # output pipes not yet at their end
        self._dropping = False
        self._readers = [
            asyncio.create_task(self._pump(STDOUT, stdout)),
            asyncio.create_task(self._pump(STDERR, stderr)),
        ]

    @classmethod
    async def open(cls, stdin: int, stdout: int, stderr: int) -> PipeStream:
        """Takes our ends of the three pipes (file descriptors, owned from now on)."""
        loop = asyncio.get_running_loop()
        readers = []
        for fd in (stdout, stderr):
            reader = asyncio.StreamReader(limit=READ_BYTES, loop=loop)
            await loop.connect_read_pipe(
                lambda reader=reader: asyncio.StreamReaderProtocol(reader),  # type: ignore[misc]
                os.fdopen(fd, "rb", buffering=0),
            )
            readers.append(reader)
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop)),
            os.fdopen(stdin, "wb", buffering=0),
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        return cls(writer, readers[0], readers[1])

    async def _pump(self, kind: int, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(READ_BYTES):
                if not self._dropping:
                    self._frames.put_nowait((kind, data))
        except OSError:
            pass
        finally:
            self._frames.put_nowait(None)

    async def read_frame(self) -> tuple[int, bytes] | None:
        while self._open:
            frame = await self._frames.get()
            if frame is not None:
                return frame
            self._open -= 1
        return None

    async def send_stdin(self, data: bytes) -> None:
        try:
            self._stdin.write(data)
            await self._stdin.drain()
            self._stdin.close()
        except (OSError, RuntimeError):
            return  # the container is gone or closed its stdin: nothing more to deliver

    async def send(self, data: bytes) -> bool:
        try:
            self._stdin.write(data)
            await self._stdin.drain()
        except (OSError, RuntimeError):
            return False
        return True

    def close(self) -> None:
        """Stops taking output: what is still written is read and dropped until the pipes
        end (with the container), so that a writer blocked on a full pipe is never what
        keeps a container from ending, and the pipes close with it."""
        with contextlib.suppress(RuntimeError):
            self._stdin.close()
        self._open = 0
        self._dropping = True
        while not self._frames.empty():
            self._frames.get_nowait()

    async def ended(self) -> None:
        """Returns once both output pipes have ended (every writer in the container gone)."""
        await asyncio.gather(*self._readers, return_exceptions=True)
