"""An interactive run's channel: the client's input and signals in, the program's output out.

One `Live` serves every stage of a job (compile, then run). Standard input is kept in order
until a stage that takes it (a run; a compile stage's input is closed at once) passes it on
to its program, so input typed during a compile is the run's. A signal is for the stage
running when it arrives: with none running it is dropped, as there is nobody to receive it.
Both travel to the helper as frames after the run's archive (payload.py, helper/bgc-run.c).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from bgcompiler.sandbox.payload import eof_frame, signal_frame, stdin_frame
from bgcompiler.sandbox.stream import RunStream

# Input the program has not taken yet is held here up to this much; past it, `room` makes
# the client's reader wait (so a client cannot fill the service's memory).
STDIN_HELD_MAX = 1024 * 1024
# The largest frame of input sent at once.
FRAME_BYTES = 64 * 1024


class Live:
    """The live side of an interactive job, shared by the sandbox and the API."""

    def __init__(self, output: Callable[[int, bytes], None], started: Callable[[], None]) -> None:
        self._output = output
        self._started = started
        self._stdin: deque[bytes | None] = deque()  # None: the end of input
        self._held = 0
        self._signals: list[int] = []
        self._changed = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.running = False

    # --- the client's side ---------------------------------------------------------------

    def write(self, data: bytes, *, eof: bool = False) -> None:
        """Queues input for the program; `eof` ends its input after it."""
        if data:
            self._stdin.append(data)
            self._held += len(data)
            if self._held > STDIN_HELD_MAX:
                self._room.clear()
        if eof:
            self._stdin.append(None)
        self._changed.set()

    async def room(self) -> None:
        """Returns once the input held is back under STDIN_HELD_MAX."""
        await self._room.wait()

    def signal(self, number: int) -> bool:
        """Sends the signal to the running stage's program; False when none runs."""
        if not self.running:
            return False
        self._signals.append(number)
        self._changed.set()
        return True

    # --- the sandbox's side --------------------------------------------------------------

    def begin(self) -> None:
        """A stage's container is about to get its archive."""
        self._signals.clear()
        self.running = True
        self._started()

    def end(self) -> None:
        self.running = False
        self._signals.clear()

    def output(self, kind: int, data: bytes) -> None:
        self._output(kind, data)

    async def feed(
        self, stream: RunStream, payload: bytes, nonce: str, *, takes_stdin: bool
    ) -> None:
        """Sends the archive, then the client's input (if this stage takes it) and signals
        as they come, each frame with the run's nonce, until cancelled at the stage's end or
        the container goes."""
        head = payload if takes_stdin else payload + eof_frame(nonce)
        if not await stream.send(head):
            return
        while True:
            await self._changed.wait()
            self._changed.clear()
            frames = [signal_frame(nonce, number) for number in self._signals]
            self._signals.clear()
            while takes_stdin and self._stdin:
                data = self._stdin.popleft()
                if data is None:
                    frames.append(eof_frame(nonce))
                    continue
                self._held -= len(data)
                frames.extend(
                    stdin_frame(nonce, data[at : at + FRAME_BYTES])
                    for at in range(0, len(data), FRAME_BYTES)
                )
            if self._held <= STDIN_HELD_MAX:
                self._room.set()
            if frames and not await stream.send(b"".join(frames)):
                return
