"""Notices what the engine does to our containers behind our back, so that a run it
interrupted is never reported as the program's own result.

A run whose container the engine stopped (a daemon restart sends SIGTERM to every
container, and may answer our calls all along) looks, from its output stream, like a
program that ended. The monitor follows the engine's event stream for this instance's
containers: a `kill` we did not ask for marks that container's run as interrupted. And
the stream breaking means the engine went away: every run in flight then is interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import structlog

from bgcompiler.errors import BgcError
from bgcompiler.sandbox.engine import Engine

log = structlog.get_logger(__name__)

RECONNECT_DELAY_S = 0.5
# How long a finished run waits for its container's `die` event, which tells that every
# earlier event about it (a foreign kill) has been seen. It normally arrives first.
DIE_EVENT_WAIT_S = 1.0
# How long a container killed by SIGKILL that nobody asked for waits for the engine's `oom`
# event. It can follow the container's death: under gVisor the kernel's OOM killer takes
# the whole sandbox, and containerd's notice came up to 0.2 s after the exit here.
OOM_EVENT_WAIT_S = 1.0


@dataclass(slots=True)
class ContainerWatch:
    """What the engine reported about one container while its run was in flight."""

    generation: int
    killing: bool = False  # we asked for its kill: the kill event that follows is ours
    killed_by_other: bool = False
    oom: bool = False  # the kernel killed a process of it for memory
    oomed: asyncio.Event = field(default_factory=asyncio.Event)  # set with `oom`
    died: asyncio.Event = field(default_factory=asyncio.Event)


class EngineMonitor:
    def __init__(self, engine: Engine, labels: dict[str, str]) -> None:
        self._engine = engine
        self._labels = labels
        self.generation = 0
        self.connected = False
        self._watches: dict[str, ContainerWatch] = {}
        self._task: asyncio.Task[None] | None = None
        self._first_connection = asyncio.Event()

    async def start(self) -> None:
        """Starts following; returns once the stream is open (or after one failed attempt)."""
        self._task = asyncio.create_task(self._follow(), name="engine-monitor")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._first_connection.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def watch(self, container_id: str) -> ContainerWatch:
        watch = ContainerWatch(generation=self.generation)
        self._watches[container_id] = watch
        return watch

    def forget(self, container_id: str) -> None:
        self._watches.pop(container_id, None)

    def interrupted_now(self, watch: ContainerWatch) -> bool:
        """What is known already: a foreign kill seen, or the engine gone since the start."""
        return watch.killed_by_other or self.generation != watch.generation or not self.connected

    async def interrupted(self, watch: ContainerWatch) -> bool:
        """True if the engine stopped this run's container, or went away, during the run."""
        if self.connected and not watch.died.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DIE_EVENT_WAIT_S):
                    await watch.died.wait()
        return self.interrupted_now(watch)

    async def oom_reported(self, watch: ContainerWatch) -> bool:
        """Whether the engine reported an OOM kill in the container, waiting a moment
        (OOM_EVENT_WAIT_S) for a report that may follow the container's death."""
        if self.connected and not watch.oom:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OOM_EVENT_WAIT_S):
                    await watch.oomed.wait()
        return watch.oom

    def _on_event(self, event: dict[str, Any]) -> None:
        watch = self._watches.get(str(event.get("id", "")))
        if watch is None:
            return
        action = event.get("Action") or event.get("status")
        if action == "kill" and not watch.killing:
            watch.killed_by_other = True
        elif action == "oom":
            watch.oom = True
            watch.oomed.set()
        elif action == "die":
            watch.died.set()

    def _opened(self) -> None:
        self.connected = True
        self._first_connection.set()
        log.debug("engine event stream open")

    async def _follow(self) -> None:
        while True:
            try:
                await self._engine.follow_events(
                    self._labels, on_open=self._opened, on_event=self._on_event
                )
            except BgcError as exc:
                log.debug("engine event stream unavailable", error=exc.message)
            finally:
                self._first_connection.set()
            if self.connected:
                self.connected = False
                self.generation += 1
                log.warning("lost the engine; runs in flight will be reported as internal errors")
            await asyncio.sleep(RECONNECT_DELAY_S)
