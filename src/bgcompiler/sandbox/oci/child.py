"""Runtime processes started with vfork and awaited through a pidfd, not the loop's machinery.

The service runs on uvloop, whose subprocesses are made with fork(): the service (100 MB
and more) has its page tables copied for each runc process, 10-12 ms of CPU and of latency
per run measured here, against about 2 ms for Python's own spawn (vfork then exec). So the
runtime's processes are spawned with `subprocess.Popen`, and their end is awaited with a
pidfd read by the event loop: no child watcher, no thread per process, on any loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


class Child:
    """One process of ours; `wait` reaps it."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.returncode: int | None = None

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        stdin: int,
        stdout: int,
        stderr: int,
        env: dict[str, str],
        cwd: Path | None = None,
    ) -> Child:
        """Starts the process (vfork, exec); `stdin`/`stdout`/`stderr` are descriptors or
        subprocess.PIPE / DEVNULL / STDOUT. Raises OSError."""
        return cls(
            subprocess.Popen(
                list(argv), stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd
            )
        )

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        """Its exit status if it has exited (then reaped), else None; never blocks."""
        if self.returncode is None:
            self.returncode = self._popen.poll()
        return self.returncode

    async def wait(self) -> int:
        """Its exit status (negative: the signal that killed it), once it has exited."""
        if self.returncode is not None:
            return self.returncode
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self._popen.pid)
        except ProcessLookupError:  # already reaped (never, as we alone wait), or gone
            self.returncode = self._popen.wait()
            return self.returncode
        try:
            exited: asyncio.Future[None] = loop.create_future()

            def readable() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(pidfd, readable)
            try:
                if self._popen.poll() is None:
                    await exited
            finally:
                loop.remove_reader(pidfd)
        finally:
            os.close(pidfd)
        self.returncode = self._popen.wait()  # exited: this does not block
        return self.returncode

    def output(self) -> bytes:
        """What it wrote on its stdout pipe (spawned with stdout=PIPE), read once it has
        exited, without waiting on anyone still holding the pipe."""
        pipe = self._popen.stdout
        if pipe is None:
            return b""
        chunks = []
        os.set_blocking(pipe.fileno(), False)
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(pipe.fileno(), 65536):
                chunks.append(chunk)
        pipe.close()
        return b"".join(chunks)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._popen.kill()
