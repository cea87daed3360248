"""The watchdog of distributed mode (on every API node): no job stays queued or running
forever.

- A job running on a worker that has not been heard from for the visibility timeout goes
  back to the queue (or fails once it has used its attempts), the reason written on it.
- When the queue has lost its data (Redis restarted without persistence), every queued job
  is sent again; a job queued for long without being taken is sent again too.
A job sent twice runs once: a worker's claim in the store takes it only once.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from bgcompiler.cluster.queue import JobQueue
from bgcompiler.errors import BgcError
from bgcompiler.store.cluster import ClusterStore, Orphan

log = structlog.get_logger(__name__)

# A queued job not taken for this long is sent again (at least; more under a long backlog).
RESEND_AFTER_S = 120.0
RESEND_BATCH = 500


class Watchdog:
    def __init__(
        self, store: ClusterStore, queue: JobQueue, *, visibility_s: float, max_attempts: int
    ) -> None:
        self._store = store
        self._queue = queue
        self._visibility_s = visibility_s
        self._max_attempts = max_attempts
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def check(self) -> None:
        """One round: take back orphans, send again what the queue may have lost."""
        now = time.time()
        orphans = await self._store.take_back(now - self._visibility_s, self._max_attempts)
        for orphan in orphans:
            log.warning(
                "a job's worker vanished",
                job=orphan.id,
                action="queued again" if orphan.requeued else "failed",
            )
        lost = await self._queue.restarted()
        resend_before = now if lost else now - RESEND_AFTER_S
        unsent = await self._store.unsent(resend_before, RESEND_BATCH)
        if lost and unsent:
            log.warning("the job queue lost its messages; queued jobs sent again", jobs=len(unsent))
        await self._send([o for o in orphans if o.requeued] + unsent)
        await self._store.forget_workers(now - 10 * self._visibility_s)

    async def _send(self, orphans: list[Orphan]) -> None:
        by_route: dict[str, list[str]] = {}
        for orphan in orphans:
            if orphan.route is None:
                continue
            await self._queue.send(orphan.id, orphan.route)
            by_route.setdefault(orphan.route, []).append(orphan.id)
        for to, job_ids in by_route.items():
            await self._store.sent(job_ids, to)

    async def _watch(self) -> None:
        while True:
            try:
                await self.check()
            except BgcError as exc:  # the store or the queue is down: next round
                log.warning("watchdog round skipped", error=exc.message)
            await asyncio.sleep(max(self._visibility_s / 3, 0.2))
