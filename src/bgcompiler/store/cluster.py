"""The distributed mode's shared state in the store: the live worker nodes (their heartbeats
and what each can run) and the watchdog's view of jobs whose worker vanished or whose
message the queue may have lost.

The store is the source of truth; the queue only carries job ids. So every guarantee
(nothing stuck, exactly one result) is decided here, by conditional writes that only one
node can win.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import String, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from bgcompiler.store.database import for_reads
from bgcompiler.store.jobs import (
    CANCELLED,
    END_MARK,
    FAILED,
    JOBS_CHANNEL,
    QUEUED,
    RUNNING,
    translated,
)
from bgcompiler.store.schema import events, jobs, workers

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker node announces in each heartbeat."""

    id: str
    host: str
    runtime: str
    images: tuple[str, ...]  # the image names its engine has
    capacity: int  # runs at once
    busy: int  # runs executing now
    pool: dict[str, int | str]
    draining: bool
    started_at: float
    seen_at: float = 0.0

    def can_run(self, runtime: str, images: tuple[str, ...]) -> bool:
        return not self.draining and runtime == self.runtime and set(images) <= set(self.images)


@dataclass(frozen=True, slots=True)
class Orphan:
    """A job the watchdog took back from a vanished worker, or whose message may be lost."""

    id: str
    route: str | None
    requeued: bool  # False: it was failed (it used up its attempts)


class ClusterStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reads = for_reads(engine)

    # --- workers -------------------------------------------------------------------------

    async def heartbeat(self, info: WorkerInfo) -> None:
        """Records the worker as alive now, with what it can run and its load."""
        values = {
            "host": info.host,
            "runtime": info.runtime,
            "images": json.dumps(sorted(info.images)),
            "capacity": info.capacity,
            "busy": info.busy,
            "pool": json.dumps(info.pool),
            "draining": info.draining,
            "started_at": info.started_at,
            "seen_at": time.time(),
        }

        def beat(connection: Connection) -> None:
            # A process started earlier under the same name no longer overwrites the row.
            changed = connection.execute(
                update(workers)
                .where(workers.c.id == info.id, workers.c.started_at <= info.started_at)
                .values(**values)
            )
            if changed.rowcount == 0 and not connection.scalar(
                select(func.count()).select_from(workers).where(workers.c.id == info.id)
            ):
                connection.execute(insert(workers).values(id=info.id, **values))

        await self._write(beat)

    async def leave(self, worker_id: str, started_at: float | None = None) -> None:
        """The worker stopped cleanly: it is no longer listed (unless a process started
        later under its name: that one stays)."""

        def leave(connection: Connection) -> None:
            query = delete(workers).where(workers.c.id == worker_id)
            if started_at is not None:
                query = query.where(workers.c.started_at <= started_at)
            connection.execute(query)

        await self._write(leave)

    async def live_workers(self, seen_after: float) -> list[WorkerInfo]:
        """Workers heard from since `seen_after`, oldest first."""

        def live(connection: Connection) -> list[WorkerInfo]:
            rows = connection.execute(
                select(workers)
                .where(workers.c.seen_at >= seen_after)
                .order_by(workers.c.started_at)
            ).all()
            return [
                WorkerInfo(
                    id=row.id,
                    host=row.host,
                    runtime=row.runtime,
                    images=tuple(json.loads(row.images)),
                    capacity=row.capacity,
                    busy=row.busy,
                    pool=json.loads(row.pool),
                    draining=row.draining,
                    started_at=row.started_at,
                    seen_at=row.seen_at,
                )
                for row in rows
            ]

        return await self._read(live)

    async def forget_workers(self, seen_before: float) -> int:
        """Removes workers not heard from since long ago (their jobs were taken over)."""

        def forget(connection: Connection) -> int:
            return int(
                connection.execute(delete(workers).where(workers.c.seen_at < seen_before)).rowcount
            )

        return await self._write(forget)

    # --- jobs ----------------------------------------------------------------------------

    async def sent(self, job_ids: list[str], route: str) -> None:
        """The jobs were handed to the queue now (on `route`). Only those still queued: a job
        a worker holds keeps the row its claim returned (its end tells the other nodes that
        row, store/ends.py)."""
        now = time.time()

        def sent(connection: Connection) -> None:
            connection.execute(
                update(jobs)
                .where(jobs.c.id.in_(job_ids), jobs.c.status == QUEUED)
                .values(sent_at=now, route=route)
            )

        await self._write(sent)

    async def discard(self, job_id: str) -> None:
        """Removes a job that was stored but never handed to the queue (the submit failed)."""

        def discard(connection: Connection) -> None:
            connection.execute(delete(events).where(events.c.job_id == job_id))
            connection.execute(delete(jobs).where(jobs.c.id == job_id, jobs.c.status == QUEUED))

        await self._write(discard)

    async def take_back(self, stale_before: float, max_attempts: int) -> list[Orphan]:
        """Jobs running on a worker not heard from since `stale_before` go back to the queue
        (or fail, once they have used `max_attempts`), each with the reason written on it."""

        def take_back(connection: Connection) -> list[Orphan]:
            live = select(workers.c.id).where(workers.c.seen_at >= stale_before)
            stuck = connection.execute(
                select(jobs.c.id, jobs.c.worker, jobs.c.attempts, jobs.c.route).where(
                    jobs.c.status == RUNNING,
                    jobs.c.worker.is_not(None),
                    jobs.c.worker.not_in(live),
                )
            ).all()
            orphans: list[Orphan] = []
            now = time.time()
            for row in stuck:
                reason = f"its worker {row.worker} stopped answering during attempt {row.attempts}"
                held = (
                    jobs.c.id == row.id,
                    jobs.c.attempts == row.attempts,
                    jobs.c.status == RUNNING,
                )
                if row.attempts >= max_attempts:
                    values = {"status": FAILED, "finished_at": now, "error": f"{reason}; given up"}
                else:
                    values = {"status": QUEUED, "worker": None, "runs_done": 0, "error": reason}
                changed = connection.execute(update(jobs).where(*held).values(**values))
                if changed.rowcount == 1:
                    requeued = values["status"] == QUEUED
                    if not requeued:
                        _done_event(connection, row.id, row.attempts)
                    orphans.append(Orphan(row.id, row.route, requeued))
            return orphans

        return await self._write(take_back)

    async def release(self, worker_id: str) -> list[Orphan]:
        """A worker that starts under the name of one that died (a stable --worker-id) first
        gives back what its previous life held: queued again, the reason written on it.
        Its heartbeat would otherwise make those jobs look held by a live worker."""

        def release(connection: Connection) -> list[Orphan]:
            rows = connection.execute(
                update(jobs)
                .where(jobs.c.status == RUNNING, jobs.c.worker == worker_id)
                .values(
                    status=QUEUED,
                    worker=None,
                    runs_done=0,
                    error=f"its worker {worker_id} restarted during attempt "
                    + jobs.c.attempts.cast(String),
                )
                .returning(jobs.c.id, jobs.c.route)
            ).all()
            return [Orphan(row.id, row.route, True) for row in rows]

        return await self._write(release)

    async def unsent(self, sent_before: float, limit: int) -> list[Orphan]:
        """Queued jobs last handed to the queue before `sent_before`: their message may be
        lost (a Redis restart without persistence), so they are sent again."""

        def unsent(connection: Connection) -> list[Orphan]:
            rows = connection.execute(
                select(jobs.c.id, jobs.c.route)
                .where(jobs.c.status == QUEUED, jobs.c.sent_at < sent_before)
                .order_by(jobs.c.created_at)
                .limit(limit)
            ).all()
            return [Orphan(row.id, row.route, True) for row in rows]

        return await self._read(unsent)

    async def cancel(
        self, job_id: str, status_from: str, outcome: bytes, error: str | None
    ) -> bool:
        """Cancels the job if it is still `status_from` (queued, or running on a worker that
        did not answer the cancel); whether it did."""

        def cancel(connection: Connection) -> bool:
            attempts = connection.scalar(
                select(jobs.c.attempts).where(jobs.c.id == job_id, jobs.c.status == status_from)
            )
            if attempts is None:
                return False
            changed = connection.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id, jobs.c.status == status_from, jobs.c.attempts == attempts
                )
                .values(status=CANCELLED, finished_at=time.time(), outcome=outcome, error=error)
            )
            if changed.rowcount != 1:
                return False
            _done_event(connection, job_id, attempts)
            return True

        return await self._write(cancel)

    async def notify(self, channel: str, payload: str) -> None:
        def notify(connection: Connection) -> None:
            connection.execute(select(func.pg_notify(channel, payload)))

        await self._write(notify)

    # --- plumbing ------------------------------------------------------------------------

    async def _write(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with translated(), self._engine.begin() as connection:
                return work(connection)

        return await asyncio.to_thread(run)

    async def _read(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with translated(), self._reads.connect() as connection:
                return work(connection)

        return await asyncio.to_thread(run)


def _done_event(connection: Connection, job_id: str, attempt: int) -> None:
    """The job's final `done` event (its stream ends), after its last one."""
    last = connection.scalar(select(func.max(events.c.id)).where(events.c.job_id == job_id))
    connection.execute(
        insert(events).values(
            job_id=job_id, id=int(last or 0) + 1, attempt=attempt, kind="done", data=b""
        )
    )
    connection.execute(select(func.pg_notify(JOBS_CHANNEL, job_id + END_MARK)))
