"""The warm pool: containers created, attached and started ahead of demand.

A pooled container has run nothing yet: its bootstrap waits for the run's archive on stdin
(the command, files and stdin all travel there), so taking one from the pool costs no
Engine API call at all. Each is used for exactly one run and removed after it, like any
other: a run never sees a used container, and its configuration (hardening, limits) is
the very same as a container made on demand.

Containers are kept per key (image, runtime, limits, stage kind, cpuset). Each key has a
target: it starts at 2 (one ready while the next one starts), grows by one each time a run
finds the key empty (demand outran the pool) and shrinks by one in each quiet period, when
a ready container beyond the new target is removed. Each take refills the key up to its
target in the background (once the runs pause: sandbox/housekeeping.py), within a budget
for all keys together; keys unused for `idle_s` are emptied, and the least recently used key
gives way when the budget is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import NamedTuple

import structlog

from bgcompiler.errors import BgcError
from bgcompiler.metrics import PoolCount
from bgcompiler.models import Limits, RunSpec
from bgcompiler.sandbox.attach import AttachedStream
from bgcompiler.sandbox.monitor import ContainerWatch, EngineMonitor

log = structlog.get_logger(__name__)

# A quiet period: the pool is looked over this often (or four times per idle_s if shorter).
REAP_EVERY_S = 5.0
MIN_TARGET = 2


@dataclass(slots=True)
class Started:
    """A container that is started and attached, waiting for its run's archive."""

    container_id: str
    stream: AttachedStream
    watch: ContainerWatch


class PoolKey(NamedTuple):
    image: str
    runtime: str | None
    limits: Limits
    artifacts: bool
    cpuset: str | None


def pool_key(spec: RunSpec) -> PoolKey:
    """Everything a container's configuration depends on (the command is not among it)."""
    return PoolKey(spec.image, spec.runtime, spec.limits, spec.artifacts, spec.cpuset)


class WarmPool:
    def __init__(
        self,
        launch: Callable[[RunSpec], Awaitable[Started]],
        discard: Callable[[Started], None],
        monitor: EngineMonitor,
        work: Callable[[], AbstractAsyncContextManager[None]],
        *,
        budget: int,
        idle_s: float = 60.0,
    ) -> None:
        self._launch = launch
        self._discard = discard
        self._monitor = monitor
        self._work = work
        self._budget = budget
        self._idle_s = idle_s
        self._ready: OrderedDict[PoolKey, deque[Started]] = OrderedDict()  # LRU order
        self._last_used: dict[PoolKey, float] = {}
        self._target: dict[PoolKey, int] = {}
        self._missed: set[PoolKey] = set()  # keys found empty since the last reap
        self._filling: dict[PoolKey, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None

    @property
    def size(self) -> int:
        return sum(len(ready) for ready in self._ready.values())

    @property
    def starting(self) -> int:
        return sum(self._filling.values())

    def counts(self) -> list[PoolCount]:
        """Ready and starting containers of each key in use (for the metrics)."""
        keys: list[PoolKey] = [
            *self._ready,
            *(k for k, n in self._filling.items() if n and k not in self._ready),
        ]
        return [
            PoolCount(
                key.image,
                key.runtime,
                key.artifacts,
                len(self._ready.get(key, ())),
                self._filling.get(key, 0),
            )
            for key in keys
        ]

    async def settle(self) -> None:
        """Returns once no container is being started for the pool."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_idle(), name="pool-reaper")

    def take(self, spec: RunSpec) -> Started | None:
        """A ready container for this spec (and a replacement is asked for), or None."""
        key = pool_key(spec)
        self._last_used[key] = time.monotonic()
        ready = self._ready.get(key)
        self._ready.setdefault(key, deque())
        self._ready.move_to_end(key)
        taken = None
        while ready:
            candidate = ready.popleft()
            if self._healthy(candidate):
                taken = candidate
                break
            self._discard(candidate)
        if taken is None:
            self._missed.add(key)
            self._target[key] = min(self._target.get(key, MIN_TARGET) + 1, self._budget)
        self._refill(key, spec)
        return taken

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._reaper is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for ready in self._ready.values():
            while ready:
                self._discard(ready.popleft())

    def _healthy(self, started: Started) -> bool:
        """Still waiting, and the engine has not gone away or touched it since it started."""
        watch = started.watch
        return (
            not started.stream.closed
            and not watch.killed_by_other
            and not watch.died.is_set()
            and watch.generation == self._monitor.generation
            and self._monitor.connected
        )

    def _refill(self, key: PoolKey, spec: RunSpec) -> None:
        """Starts containers for the key until ready + starting reach its target."""
        target = self._target.setdefault(key, min(MIN_TARGET, self._budget))
        while len(self._ready[key]) + self._filling.get(key, 0) < target:
            filling = sum(self._filling.values())
            if self.size + filling >= self._budget and not self._evict_other(key):
                return
            self._filling[key] = self._filling.get(key, 0) + 1
            task = asyncio.create_task(self._fill(key, spec))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _evict_other(self, key: PoolKey) -> bool:
        """Frees one place by removing a container of the least recently used other key."""
        for other, ready in self._ready.items():
            if other != key and ready:
                self._discard(ready.popleft())
                return True
        return False

    async def _fill(self, key: PoolKey, spec: RunSpec) -> None:
        try:
            async with self._work():  # a replacement is no run's answer: after a pause
                started = await self._launch(spec)
        except BgcError as exc:
            log.warning("could not warm a container", error=exc.message)
            return
        finally:
            self._filling[key] -= 1
        self._ready.setdefault(key, deque()).append(started)

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(REAP_EVERY_S, self._idle_s / 4))
            self.reap(time.monotonic())

    def reap(self, now: float) -> None:
        """One quiet-period check: shrink the targets of keys that were not short, remove
        ready containers beyond them, and empty the keys unused for `idle_s`."""
        for key in list(self._target):
            if key not in self._missed:  # a quiet period: shrink towards the minimum
                self._target[key] = max(MIN_TARGET, self._target[key] - 1)
                ready = self._ready.get(key)
                while ready and len(ready) > self._target[key]:
                    self._discard(ready.pop())
        self._missed.clear()
        for key, ready in list(self._ready.items()):
            if now - self._last_used.get(key, 0.0) > self._idle_s:
                while ready:
                    self._discard(ready.popleft())
                del self._ready[key]
                self._last_used.pop(key, None)
                self._target.pop(key, None)
