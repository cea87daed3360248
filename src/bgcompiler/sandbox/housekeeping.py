"""Engine work that no answer waits for (removing a used container, warming its
replacement) waits for a pause in the runs.

On a small machine the engine's work for one container (dockerd, containerd, runc: about
170 ms of CPU for a create and start here) takes the CPU from whatever runs beside it. A
warm run whose replacement was started at once took 110 ms instead of 5, and a job's end,
committed while its used container was being removed, waited for the CPU at each hand-over
(a thread's wake-up, each round trip to PostgreSQL). So this work starts once no run has
been in flight for a moment (the time a run's answer takes to go out), or after a bound
whatever happens, so that a node that is never idle still cleans up and refills its pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

# How long after the last run's end the node counts as quiet: a run's answer (its job's
# end committed, the HTTP answer written) goes out within this time when nothing competes.
SETTLE_S = 0.025
# The longest any of this work waits for a pause.
MAX_WAIT_S = 0.25


class _Tally:
    """A count of what is in flight, whose reaching zero can be awaited."""

    def __init__(self) -> None:
        self.count = 0
        self.zero = asyncio.Event()
        self.zero.set()

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        self.count += 1
        self.zero.clear()
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0:
                self.zero.set()


class Housekeeping:
    """Counts the runs in flight and the work under way. Work waits in `work()` for the
    next pause in the runs; a quiet run (judge-grade measurement) waits in `settled()` for
    the work already under way, never for the work that waits for it to end."""

    def __init__(self, *, settle_s: float = SETTLE_S, max_wait_s: float = MAX_WAIT_S) -> None:
        self._settle_s = settle_s
        self._max_wait_s = max_wait_s
        self._runs = _Tally()
        self._last_end = float("-inf")
        self._working = _Tally()

    @property
    def runs(self) -> int:
        return self._runs.count

    @property
    def working(self) -> int:
        return self._working.count

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """A run (its start, its exchange, its answer's making) is in flight."""
        with self._runs.counting():
            try:
                yield
            finally:
                self._last_end = time.monotonic()

    @contextlib.asynccontextmanager
    async def work(self) -> AsyncIterator[None]:
        """Waits for a pause in the runs, then counts as work under way until it exits."""
        await self._pause()
        with self._working.counting():
            yield

    async def settled(self) -> None:
        """Returns once no work is under way (work waiting for a pause does not count)."""
        await self._working.zero.wait()

    async def _pause(self) -> None:
        """Returns once no run has been in flight for `settle_s`, or after `max_wait_s`."""
        deadline = time.monotonic() + self._max_wait_s
        while (now := time.monotonic()) < deadline:
            if self._runs.count:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - now):
                        await self._runs.zero.wait()
                continue
            quiet_at = self._last_end + self._settle_s
            if now >= quiet_at:
                return
            await asyncio.sleep(min(quiet_at, deadline) - now)
