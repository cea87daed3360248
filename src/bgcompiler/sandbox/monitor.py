"""Notices when the engine goes away, so that runs it interrupted are never reported ok.

A run whose container the engine killed while restarting looks, from its output stream,
like a program that ended. The monitor holds the engine's event stream open: the stream
breaks when the engine stops serving its API, before it stops containers. Each break bumps
`generation`; a run that saw the generation change (or the stream down) while it was in
flight is reported as `internal_error`.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from bgcompiler.errors import BgcError
from bgcompiler.sandbox.engine import Engine

log = structlog.get_logger(__name__)

RECONNECT_DELAY_S = 0.5


class EngineMonitor:
    def __init__(self, engine: Engine, labels: dict[str, str]) -> None:
        self._engine = engine
        self._labels = labels
        self.generation = 0
        self.connected = False
        self._task: asyncio.Task[None] | None = None
        self._first_connection = asyncio.Event()

    async def start(self) -> None:
        """Starts watching; returns once the stream is open (or after one failed attempt)."""
        self._task = asyncio.create_task(self._watch(), name="engine-monitor")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._first_connection.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _opened(self) -> None:
        self.connected = True
        self._first_connection.set()
        log.debug("engine event stream open")

    def interrupted_since(self, generation: int) -> bool:
        """True if the engine went away at any moment after `generation` was read."""
        return self.generation != generation or not self.connected

    async def _watch(self) -> None:
        while True:
            try:
                await self._engine.follow_events(self._labels, on_open=self._opened)
            except BgcError as exc:
                log.debug("engine event stream unavailable", error=exc.message)
            finally:
                self._first_connection.set()
            if self.connected:
                self.connected = False
                self.generation += 1
                log.warning("lost the engine; runs in flight will be reported as internal errors")
            await asyncio.sleep(RECONNECT_DELAY_S)
