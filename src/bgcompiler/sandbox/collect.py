"""Reading a run's output until it is over: the loop shared by both engines."""

from __future__ import annotations

import asyncio

from bgcompiler.sandbox.capture import Capture
from bgcompiler.sandbox.live import Live
from bgcompiler.sandbox.outcome import Ending
from bgcompiler.sandbox.stream import RunStream

# Past the cap, bytes that could begin the helper's mark wait this long for the rest of it.
PARTIAL_MARK_WAIT_S = 0.5


async def collect(
    stream: RunStream, capture: Capture, *, deadline: float, live: Live | None = None
) -> Ending:
    """Reads frames until the output ends, the program passes a cap, or the deadline (in
    the loop's time). A possible mark past the cap that goes no further within
    PARTIAL_MARK_WAIT_S was the program's: it is over the cap. With `live`, the program's
    bytes of each frame go to it at once (those past the cap never)."""
    loop = asyncio.get_running_loop()
    while True:
        until = deadline
        if capture.pending:
            until = min(deadline, loop.time() + PARTIAL_MARK_WAIT_S)
        try:
            async with asyncio.timeout_at(until):
                frame = await stream.read_frame()
        except TimeoutError:
            if until < deadline:
                capture.stalled = True
                return Ending.OVER
            return Ending.TIMEOUT
        if frame is None:
            return Ending.ENDED
        capture.feed(*frame)
        if live is not None:
            for kind, data in capture.fresh():
                live.output(kind, data)
        if capture.over:
            return Ending.OVER
        if capture.complete:
            return Ending.ENDED  # the program has ended; its output is all here
