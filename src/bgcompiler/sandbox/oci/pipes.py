"""A run's stdio under the OCI engine: three pipes the runtime hands to the container.

The container's stdout and stderr are pipes of their own, so each byte is known to belong
to one stream exactly as the program wrote it (what Docker's attach frames give, without
dockerd in between). Both are read as they come into one queue of (stream, bytes) frames,
in the order they were read.

The descriptors are watched with the loop's add_reader/add_writer and closed here, once
each. Not through the loop's pipe transports: uvloop's `connect_read_pipe` and
`connect_write_pipe` hand the file object's descriptor to libuv, which closes it, and the
file object closes the same number again (uvloop issue 763). Under load the number had
been given to another pipe or file by then, and that one was closed under its owner: runs
failed with EBADF, or with EEXIST when a reused number was still registered with the loop.
"""

from __future__ import annotations

import asyncio
import os

from bgcompiler.models import STDERR, STDOUT

READ_BYTES = 64 * 1024


class PipeStream:
    """The RunStream of one runtime process's pipes (see stream.RunStream). It owns the
    three descriptors from its creation: each output pipe is closed at its end, stdin when
    it has been delivered or the stream is closed."""

    def __init__(self, stdin: int, stdout: int, stderr: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._stdin: int | None = stdin
        self._write_ready: asyncio.Future[None] | None = None  # a send waiting for room
        self._frames: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._open = 2  # output pipes not yet at their end
        self._dropping = False
        self._readers = [self._read(STDOUT, stdout), self._read(STDERR, stderr)]
        os.set_blocking(stdin, False)

    def _read(self, kind: int, fd: int) -> asyncio.Future[None]:
        """Reads the pipe as data comes, into the frames; the future ends at its end."""
        ended: asyncio.Future[None] = self._loop.create_future()
        os.set_blocking(fd, False)

        def readable() -> None:
            try:
                data = os.read(fd, READ_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                if not self._dropping:
                    self._frames.put_nowait((kind, data))
                return
            self._loop.remove_reader(fd)
            os.close(fd)
            self._frames.put_nowait(None)
            ended.set_result(None)

        self._loop.add_reader(fd, readable)
        return ended

    async def read_frame(self) -> tuple[int, bytes] | None:
        while self._open:
            frame = await self._frames.get()
            if frame is not None:
                return frame
            self._open -= 1
        return None

    async def send_stdin(self, data: bytes) -> None:
        await self.send(data)  # the container is gone or closed its stdin: nothing more to do
        self._close_stdin()

    async def send(self, data: bytes) -> bool:
        """Writes all of `data` to the container's stdin; False once it cannot (closed, or
        the container gone)."""
        view = memoryview(data)
        while view:
            fd = self._stdin
            if fd is None:
                return False
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await self._writable(fd)
            except OSError:
                return False
        return True

    async def _writable(self, fd: int) -> None:
        """Returns once the pipe takes more, or stdin was closed meanwhile."""
        ready: asyncio.Future[None] = self._loop.create_future()
        self._write_ready = ready

        def writable() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_writer(fd, writable)
        try:
            await ready
        finally:
            self._write_ready = None
            if self._stdin == fd:  # not closed meanwhile (closing removes the writer)
                self._loop.remove_writer(fd)

    def _close_stdin(self) -> None:
        fd, self._stdin = self._stdin, None
        if fd is None:
            return
        self._loop.remove_writer(fd)
        os.close(fd)
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)  # the writer finds stdin closed

    def close(self) -> None:
        """Stops taking output: what is still written is read and dropped until the pipes
        end (with the container), so that a writer blocked on a full pipe is never what
        keeps a container from ending, and the pipes close with it."""
        self._close_stdin()
        self._open = 0
        self._dropping = True
        while not self._frames.empty():
            self._frames.get_nowait()

    async def ended(self) -> None:
        """Returns once both output pipes have ended (every writer in the container gone)."""
        await asyncio.gather(*self._readers, return_exceptions=True)
