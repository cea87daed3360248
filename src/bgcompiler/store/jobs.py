"""Jobs, their events and deliveries in the store.

Every write goes through one writer task that commits in batches: SQLite has a single
writer, and a commit per event would put every run behind a disk sync. A write returns at
once (`submit`); `create` and `flush` wait for the commit. After each commit, the jobs it
touched are announced (`change_of`), so that waiters and event streams read what is new
as soon as it is there, without polling.

The database is used through SQLAlchemy's synchronous engine, each batch or read as one
call on a thread of the store's own: an async driver hands every statement, cursor and
commit over between the event loop and its thread, and while the loop is busy with runs
each hand-over waits (a three-statement commit took 4.8 ms that way against 1.2 ms as one
call, with the loop half busy; benchmarks/results/jobs.md has the end-to-end figures).
A batch's writes run on the driver's connection itself (store/driver.py says why).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import psycopg
import structlog
from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.sql import Executable

from bgcompiler.errors import InvalidRequest, NotFound, StoreUnavailable, WorkerReplaced
from bgcompiler.store import statements
from bgcompiler.store.database import BUSY_TIMEOUT_MS, for_reads, server_ended
from bgcompiler.store.driver import OnConnection, Pipeline, Statements, fetch
from bgcompiler.store.ends import ENDS_CHANNEL, JobEnd, end_changes, end_payload
from bgcompiler.store.schema import deliveries, events, jobs, workers

log = structlog.get_logger(__name__)

T = TypeVar("T")
Write = Callable[[Statements], None]
BATCH = 256
# Turns of the event loop the writer lets pass after a job's insert (see _write_batches).
GATHER_TURNS = 3
# SQLite: the WAL is checkpointed (copied into the database file) after this many commits.
CHECKPOINT_EVERY = 200
# Reads at once (waiters, event streams, lists); each is one short statement.
READER_THREADS = 4
# Rows of jobs that ended lately are kept (for their waiters), up to this many bytes.
ENDED_KEPT_BYTES = 16 * 1024 * 1024
# PostgreSQL: how long the event loop's connection may take to open.
CONNECT_S = 5.0
# While the database does not answer, the writes nobody waits for (a running job's events
# and its end) are kept, in order, and tried again after this long, doubling up to the max.
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


class _StoreDown(StoreUnavailable):
    """The database did not answer (down, restarting, locked): worth trying again."""


QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"
# Distributed mode: the PostgreSQL channel on which a commit names the jobs it changed.
JOBS_CHANNEL = "bgc_jobs"
# Appended to a notification's job id when the commit ended the job.
END_MARK = ":end"
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")
FINAL = (DONE, CANCELLED, FAILED)


@dataclass(frozen=True, slots=True)
class JobRow:
    id: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    runs_total: int
    runs_done: int
    plan: bytes
    outcome: bytes | None
    metadata: str | None
    callback_url: str | None
    error: str | None
    api: str = "v1"  # the API that took the job
    request: bytes | None = None  # its request, for an API that answers with it (Judge0)
    owner: str | None = None  # the API key that submitted it; None: keys were off
    worker: str | None = None  # distributed mode: the worker that holds it
    route: str | None = None  # distributed mode: the queue it goes to
    sent_at: float | None = None  # distributed mode: when it was last handed to the queue


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    attempt: int
    kind: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    attempt: int
    at: float
    status_code: int | None
    error: str | None


@dataclass(slots=True)
class _Pending:
    write: Write
    jobs: tuple[str, ...]
    done: asyncio.Future[None] | None
    committed: Callable[[], None] | None = None  # brings the rows kept in memory up to date
    ends: bool = False  # the write ends the job (its final state)
    told_end: str | None = None  # distributed mode: the end's notification with its columns
    gathers: bool = False  # writes that follow at once (a job's start) join its commit


@dataclass(frozen=True, slots=True)
class Claim:
    """A job a worker took: the job as it was, and the attempt the worker now holds."""

    row: JobRow
    attempt: int


class JobStore:
    """`keeps_rows`: this process is the only writer of the jobs it runs (single node), so
    their rows are served from memory. In distributed mode (`keeps_rows=False`) every node
    reads the database, a worker's writes are guarded by the attempt it holds (a write of
    an attempt that lost the job changes nothing, and `on_lost` is told), and every commit
    notifies the other nodes (`notifies`, PostgreSQL's NOTIFY on `jobs_changed`)."""

    def __init__(
        self,
        engine: Engine,
        *,
        keeps_rows: bool = True,
        notifies: bool = False,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self._engine = engine
        self._reads = for_reads(engine)
        self._keeps_rows = keeps_rows
        self._notifies = notifies
        self._pipelines = engine.dialect.name == "postgresql"
        # PostgreSQL: batches are sent from the event loop on a connection of its own.
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(False)
        self._on_loop: psycopg.AsyncConnection[Any] | None = None
        self._on_loop_lock = asyncio.Lock()  # one batch or statement on it at a time
        # SQLite: a batch is committed on the event loop's thread when the writer's thread
        # is idle (see _write_batches); the WAL is checkpointed on that thread.
        self._inline = engine.dialect.name == "sqlite"
        self._thread_work = 0  # calls handed to the writer's thread, not yet returned
        self._commits_since_checkpoint = 0
        self._on_lost = on_lost
        # Distributed mode: each job this worker holds, as its row will be once the writes
        # queued so far commit (the attempt held is its `attempts`; its end is told with it).
        self._held: dict[str, JobRow] = {}
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader_threads = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="store-reader")
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._changes: dict[str, asyncio.Event] = {}
        self._ends: dict[str, JobEnd] = {}
        # An API node's jobs not ended yet: their end as watched since the insert, and the
        # row as inserted (`watched`).
        self._submitted: dict[str, tuple[JobEnd, JobRow]] = {}
        self._last_event: dict[str, int] = {}
        self._attempt: dict[str, int] = {}
        # The rows of the jobs this process runs, as last committed (their only writer is
        # this store), and of those that ended lately: read without asking the database.
        self._rows: dict[str, JobRow] = {}
        self._ended: OrderedDict[str, JobRow] = OrderedDict()
        self._ended_bytes = 0

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_batches(), name="store-writer")

    async def close(self) -> None:
        """Commits what is queued, then stops the writer and closes the connections."""
        if self._writer is not None:
            with contextlib.suppress(StoreUnavailable):
                await self.flush()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self._disconnect()
        for threads in (self._writer_thread, self._reader_threads):
            await asyncio.to_thread(threads.shutdown)
        self._engine.dispose()

    async def flush(self) -> None:
        """Returns once every write submitted before it is committed."""
        await self._submit(_noop, ())

    # --- writes --------------------------------------------------------------------------

    def create(
        self,
        job_id: str,
        *,
        plan: bytes,
        runs_total: int,
        metadata: str | None,
        callback_url: str | None,
        api: str = "v1",
        request: bytes | None = None,
        owner: str | None = None,
        route: str | None = None,
    ) -> tuple[JobRow, asyncio.Future[None]]:
        """Queues the job's insert at once (before any later write of it); returns the job
        and a future done once it is committed."""
        row = JobRow(
            id=job_id,
            status=QUEUED,
            created_at=time.time(),
            started_at=None,
            finished_at=None,
            attempts=0,
            runs_total=runs_total,
            runs_done=0,
            plan=plan,
            outcome=None,
            metadata=metadata,
            callback_url=callback_url,
            error=None,
            api=api,
            request=request,
            owner=owner,
            route=route,
            sent_at=time.time() if route is not None else None,
        )
        if self._keeps_rows:  # this process runs it (distributed: a worker claims it)
            self._last_event[job_id] = 0

        if not self._keeps_rows:
            # Distributed mode: the job's later writes are its worker's, and nobody waits on
            # a job before its 202: its insert is a statement of its own (one round trip,
            # where a transaction with a notification takes four).
            async def insert() -> None:
                await self._alone(statements.insert_job(JobRow.__slots__), _fields(row))

            inserted = asyncio.ensure_future(insert())
            if self._notifies:
                # An API node watches the end of the jobs it submits from before their insert:
                # a `?wait` for one of them waits with the row as inserted, and the end's
                # columns laid over it make the answer, without reading the job at all.
                self._submitted[job_id] = (self._ends.setdefault(job_id, JobEnd()), row)
                inserted.add_done_callback(
                    lambda done: (
                        self.unwatch(job_id)
                        if done.cancelled() or done.exception() is not None
                        else None
                    )
                )
            return row, inserted

        def write(connection: Statements) -> None:
            connection.execute(statements.insert_job(JobRow.__slots__), _fields(row))

        def committed() -> None:
            self._rows[job_id] = row

        return row, self._submit(write, (job_id,), committed, gathers=True)

    def started(self, job_id: str) -> int:
        """The job begins (again) on a worker: running, attempts + 1. Returns the attempt.
        A job this worker claimed is already running in the attempt the claim took."""
        if (held := self._held.get(job_id)) is not None:
            return held.attempts
        attempt = self._attempt.get(job_id, 0) + 1
        self._attempt[job_id] = attempt
        now = time.time()

        def write(connection: Statements) -> None:
            connection.execute(
                statements.change_job(("attempts", "runs_done", "started_at", "status")),
                {
                    "job_id": job_id,
                    "set_status": RUNNING,
                    "set_started_at": now,
                    "set_attempts": attempt,
                    "set_runs_done": 0,
                },
            )

        self._enqueue(
            write,
            job_id,
            lambda: self._change_row(
                job_id, status=RUNNING, started_at=now, attempts=attempt, runs_done=0
            ),
        )
        return attempt

    def event(self, job_id: str, kind: str, data: bytes, *, counts_run: bool = False) -> None:
        """Appends an event to the job (its id: the job's next one)."""
        event_id = self._last_event.get(job_id, 0) + 1
        self._last_event[job_id] = event_id
        attempt = self._attempt.get(job_id, 0)
        row = {"job_id": job_id, "id": event_id, "attempt": attempt, "kind": kind, "data": data}

        held_row = self._held.get(job_id)
        held = held_row.attempts if held_row is not None else None
        if counts_run and held_row is not None:
            self._held[job_id] = replace(held_row, runs_done=held_row.runs_done + 1)
        appended: list[Callable[[], bool]] = []  # the last try's

        def write(connection: Statements) -> None:
            appended.append(
                statements.event_with_job(connection, row, held, {}, counts_run=counts_run)
            )

        def committed() -> None:
            if not appended[-1]():
                self._lost(job_id)
            elif counts_run and (kept := self._rows.get(job_id)) is not None:
                self._rows[job_id] = replace(kept, runs_done=kept.runs_done + 1)

        self._enqueue(write, job_id, committed)

    def finished(
        self, job_id: str, status: str, *, outcome: bytes | None = None, error: str | None = None
    ) -> None:
        """The job ended (done, cancelled or failed); a final `done` event follows."""
        now = time.time()
        event_id = self._last_event.get(job_id, 0) + 1
        done = {"job_id": job_id, "id": event_id, "attempt": self._attempt.get(job_id, 0)}

        held_row = self._held.pop(job_id, None)
        held = held_row.attempts if held_row is not None else None
        told_end = None
        if held_row is not None and self._notifies:
            # A reason written earlier (why the job was run again) stays on a job that ends.
            kept_error = error if error is not None else held_row.error
            told_end = end_payload(
                replace(held_row, status=status, finished_at=now, outcome=outcome, error=kept_error)
            )
        wrote: list[Callable[[], bool]] = []  # the last try's

        def write(connection: Statements) -> None:
            # One write: whoever sees the job ended finds its `done` event committed with it.
            # A reason written earlier (why the job was run again) stays on a job that ends.
            reason = {"error": error} if error is not None else {}
            ended = {"status": status, "finished_at": now, "outcome": outcome, **reason}
            row = {**done, "kind": "done", "data": b""}
            wrote.append(statements.event_with_job(connection, row, held, ended))

        def committed() -> None:
            if not wrote[-1]():
                self._lost(job_id)  # another attempt holds it now: its end was not ours
                return
            kept = self._rows.pop(job_id, None)
            if kept is not None:
                ended = replace(kept, status=status, finished_at=now, outcome=outcome, error=error)
                self._keep_ended(ended)

        self._enqueue(write, job_id, committed, ends=True, told_end=told_end)
        self._attempt.pop(job_id, None)
        self._last_event.pop(job_id, None)  # an ended job gets no more events

    # --- distributed mode: a worker's hold on a job -----------------------------------------

    async def claim(
        self,
        job_id: str,
        worker_id: str,
        *,
        stale_before: float,
        incarnation: float | None = None,
    ) -> Claim | None:
        """Takes the job for this worker in a new attempt, if it is queued, or running on a
        worker not seen since `stale_before` (gone); None when it has ended or a live worker
        holds it (a message delivered twice is then dropped); NotFound when there is no
        such job (yet: its insert may still be committing). The runs of an interrupted
        attempt are discarded; event ids are never reused. With `incarnation` (the start of
        this worker's process), WorkerReplaced if a process started later under its name."""

        def claim(connection: Connection) -> tuple[Claim, int] | None:
            now = time.time()
            if incarnation is not None:
                current = connection.scalar(
                    select(workers.c.started_at).where(workers.c.id == worker_id)
                )
                if current is not None and current != incarnation:
                    raise WorkerReplaced(f"a newer process runs as worker {worker_id}")
            found = connection.execute(
                select(jobs).where(jobs.c.id == job_id).with_for_update()
            ).first()
            if found is None:
                raise NotFound(f"no job {job_id!r}")
            row = _job(found._mapping)
            if row.status == RUNNING and row.worker is not None:
                seen = connection.scalar(
                    select(workers.c.seen_at).where(workers.c.id == row.worker)
                )
                if seen is not None and seen >= stale_before:
                    return None
            elif row.status != QUEUED:
                return None
            last = connection.scalar(select(func.max(events.c.id)).where(events.c.job_id == job_id))
            connection.execute(
                delete(events).where(
                    events.c.job_id == job_id, events.c.kind.in_(("compile", "run"))
                )
            )
            taken = connection.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.attempts == row.attempts)
                .values(
                    status=RUNNING,
                    attempts=row.attempts + 1,
                    worker=worker_id,
                    started_at=now,
                    runs_done=0,
                )
            )
            if taken.rowcount != 1:
                return None
            held = replace(
                row,
                status=RUNNING,
                attempts=row.attempts + 1,
                worker=worker_id,
                started_at=now,
                runs_done=0,
            )
            return Claim(held, held.attempts), int(last or 0)

        # The common case in one statement, a transaction of its own (one round trip): a
        # job never run before (no events yet).
        params = {"job_id": job_id, "claimer": worker_id, "now": time.time()}
        first_claim = statements.FIRST_CLAIM
        if incarnation is not None:
            params["incarnation"] = incarnation
            first_claim = statements.FIRST_CLAIM_OF_INCARNATION
        first = await self._alone(first_claim, params)
        taken = (Claim(_job(first[0]), 1), 0) if first else None
        if taken is None:
            taken = await self._transaction(claim)
        if taken is None:
            return None
        claim_, last = taken
        self._held[job_id] = claim_.row
        self._attempt[job_id] = claim_.attempt
        self._last_event[job_id] = last
        return claim_

    def hand_back(self, job_id: str) -> None:
        """This worker gives the job up unfinished (it is stopping): queued again, for
        another worker to run from the start."""
        held_row = self._held.pop(job_id, None)
        self._attempt.pop(job_id, None)
        self._last_event.pop(job_id, None)
        if held_row is None:
            return
        held = held_row.attempts

        def write(connection: Statements) -> None:
            connection.execute(
                update(jobs)
                .where(_is_held(job_id, held))
                .values(status=QUEUED, worker=None, runs_done=0)
            )

        self._enqueue(write, job_id)

    def holds(self, job_id: str) -> bool:
        return job_id in self._held

    def delivery(
        self, job_id: str, attempt: int, status_code: int | None, error: str | None
    ) -> None:
        now = time.time()

        def write(connection: Statements) -> None:
            connection.execute(
                insert(deliveries).values(
                    job_id=job_id, attempt=attempt, at=now, status_code=status_code, error=error
                )
            )

        self._enqueue(write, job_id)

    async def recover(self) -> list[JobRow]:
        """After a restart: jobs that were running are queued again (the runs of their
        interrupted attempt discarded, their event ids never reused); returns every queued
        job, oldest first."""

        def recover(connection: Connection) -> tuple[dict[str, int], list[JobRow]]:
            unfinished = jobs.c.status.in_((QUEUED, RUNNING))
            last = {
                job_id: int(last_id or 0)
                for job_id, last_id in connection.execute(
                    select(events.c.job_id, func.max(events.c.id))
                    .join(jobs, jobs.c.id == events.c.job_id)
                    .where(unfinished)
                    .group_by(events.c.job_id)
                ).all()
            }
            interrupted = (
                connection.execute(select(jobs.c.id).where(jobs.c.status == RUNNING))
                .scalars()
                .all()
            )
            if interrupted:
                connection.execute(
                    delete(events).where(
                        events.c.job_id.in_(interrupted), events.c.kind.in_(("compile", "run"))
                    )
                )
                connection.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(interrupted))
                    .values(status=QUEUED, runs_done=0)
                )
            rows = connection.execute(
                select(jobs).where(jobs.c.status == QUEUED).order_by(jobs.c.created_at)
            ).all()
            return last, [_job(row._mapping) for row in rows]

        last, found = await self._transaction(recover)
        for row in found:
            self._last_event[row.id] = last.get(row.id, 0)
            self._attempt[row.id] = row.attempts
            self._rows[row.id] = row  # queued again here: this process runs it
        return found

    async def purge(self, finished_before: float) -> int:
        """Removes jobs that ended before the time given (their events and deliveries too)."""

        def purge(connection: Connection) -> list[str]:
            old = list(
                connection.execute(
                    select(jobs.c.id).where(
                        jobs.c.status.in_(FINAL), jobs.c.finished_at < finished_before
                    )
                )
                .scalars()
                .all()
            )
            for chunk in _chunks(old, 500):
                connection.execute(delete(events).where(events.c.job_id.in_(chunk)))
                connection.execute(delete(deliveries).where(deliveries.c.job_id.in_(chunk)))
                connection.execute(delete(jobs).where(jobs.c.id.in_(chunk)))
            return old

        old = await self._transaction(purge)
        for job_id in old:
            self._last_event.pop(job_id, None)
            if (ended := self._ended.pop(job_id, None)) is not None:
                self._ended_bytes -= _size(ended)
        return len(old)

    # --- reads ---------------------------------------------------------------------------

    def change_of(self, job_id: str) -> asyncio.Event:
        """Set at the next commit that touches the job. Take it before reading, then wait."""
        return self._changes.setdefault(job_id, asyncio.Event())

    def end_of(self, job_id: str) -> asyncio.Event:
        """What a waiter for the job's end waits on. On a single node, every change of the
        job (a woken waiter reads the row kept in memory); on an API node of distributed
        mode, only its end, announced by the worker's notification (a `JobEnd`: when the
        notification carried the end's columns, the waiter needs no read). Take it before
        reading, then wait."""
        if self._keeps_rows or not self._notifies:
            return self.change_of(job_id)
        return self._ends.setdefault(job_id, JobEnd())

    def forget_change(self, job_id: str, change: asyncio.Event) -> None:
        """Drops the change of a job that has ended (it would never be announced)."""
        for waited in (self._changes, self._ends):
            if waited.get(job_id) is change and not change.is_set():
                del waited[job_id]
        submitted = self._submitted.get(job_id)
        if submitted is not None and submitted[0] is change:
            del self._submitted[job_id]

    def unwatch(self, job_id: str) -> None:
        """An API node's job that will never end (its insert failed, or it was removed
        unsent): nothing of it is kept for waiters."""
        submitted = self._submitted.pop(job_id, None)
        if submitted is not None:
            self.forget_change(job_id, submitted[0])

    def watched(self, job_id: str) -> tuple[JobEnd, JobRow] | None:
        """An API node's own job that has not ended (as far as its notifications say): its
        end, watched since before its insert, and its row as inserted, which a waiter may
        take for the row it would read (the end's columns replace all that changed)."""
        return self._submitted.get(job_id)

    async def get(self, job_id: str) -> JobRow | None:
        kept = self._rows.get(job_id) or self._ended.get(job_id)
        if kept is not None:
            return kept
        if self._pipelines:
            found = await self._on_loop_alone(statements.GET_JOB, {"job_id": job_id})
            if found is not None:
                return _job(found[0]) if found else None

        def get(connection: Connection) -> JobRow | None:
            row = connection.execute(statements.GET_JOB, {"job_id": job_id}).first()
            return _job(row._mapping) if row is not None else None

        return await self._read(get)

    async def events_after(self, job_id: str, after: int) -> list[StoredEvent]:
        def events_after(connection: Connection) -> list[StoredEvent]:
            rows = connection.execute(
                statements.EVENTS_AFTER, {"job_id": job_id, "after": after}
            ).all()
            return [StoredEvent(row.id, row.attempt, row.kind, row.data) for row in rows]

        return await self._read(events_after)

    async def deliveries(self, job_id: str) -> list[Delivery]:
        def of_job(connection: Connection) -> list[Delivery]:
            rows = connection.execute(
                select(deliveries)
                .where(deliveries.c.job_id == job_id)
                .order_by(deliveries.c.attempt)
            ).all()
            return [Delivery(row.attempt, row.at, row.status_code, row.error) for row in rows]

        return await self._read(of_job)

    async def of_api(self, api: str) -> list[JobRow]:
        """Every job an API took (bounded by the retention's purge), oldest first."""

        def of_api(connection: Connection) -> list[JobRow]:
            query = select(jobs).where(jobs.c.api == api).order_by(jobs.c.created_at)
            return [_job(row._mapping) for row in connection.execute(query).all()]

        return await self._read(of_api)

    async def page(
        self,
        *,
        status: str | None,
        limit: int,
        cursor: str | None,
        owner: str | None = None,
    ) -> tuple[list[JobRow], str | None]:
        """Newest first, `limit` at most, after `cursor` (keyset: no offset to skip or
        repeat under inserts), only `owner`'s when given. Returns the jobs and the cursor
        of the next page."""
        query = select(jobs)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        if status is not None:
            query = query.where(jobs.c.status == status)
        if cursor is not None:
            created_at, job_id = _parse_cursor(cursor)
            query = query.where(
                or_(
                    jobs.c.created_at < created_at,
                    and_(jobs.c.created_at == created_at, jobs.c.id < job_id),
                )
            )
        query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)

        def page(connection: Connection) -> list[JobRow]:
            return [_job(row._mapping) for row in connection.execute(query).all()]

        rows = await self._read(page)
        more = len(rows) > limit
        rows = rows[:limit]
        following = _make_cursor(rows[-1]) if more and rows else None
        return rows, following

    async def ping(self) -> None:
        """One cheap read of the jobs table: StoreUnavailable unless the database answers."""

        def one(connection: Connection) -> None:
            connection.execute(select(jobs.c.id).limit(1)).all()

        await self._read(one)

    async def count_queued_runs(self) -> int:
        def count(connection: Connection) -> int:
            total = connection.scalar(
                select(func.coalesce(func.sum(jobs.c.runs_total), 0)).where(jobs.c.status == QUEUED)
            )
            return int(total or 0)

        return await self._read(count)

    # --- the writer ----------------------------------------------------------------------

    def _enqueue(
        self,
        write: Write,
        job_id: str,
        committed: Callable[[], None] | None = None,
        *,
        ends: bool = False,
        told_end: str | None = None,
    ) -> None:
        self._queue.put_nowait(_Pending(write, (job_id,), None, committed, ends, told_end))

    def _submit(
        self,
        write: Write,
        job_ids: tuple[str, ...],
        committed: Callable[[], None] | None = None,
        *,
        gathers: bool = False,
    ) -> asyncio.Future[None]:
        """Queues the write; the future is done once it is committed (or has failed)."""
        done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(write, job_ids, done, committed, gathers=gathers))
        return done

    def _change_row(self, job_id: str, **changes: Any) -> None:
        kept = self._rows.get(job_id)
        if kept is not None:
            self._rows[job_id] = replace(kept, **changes)

    def _keep_ended(self, row: JobRow) -> None:
        self._ended[row.id] = row
        self._ended_bytes += _size(row)
        while self._ended_bytes > ENDED_KEPT_BYTES and len(self._ended) > 1:
            _, oldest = self._ended.popitem(last=False)
            self._ended_bytes -= _size(oldest)

    async def _write_batches(self) -> None:
        """Commits what is queued, in order. While the database does not answer, a write
        someone waits for fails at once (a submit answers 503), and the others are kept and
        tried again: a job that runs through an outage still has all its events after it."""
        kept: list[_Pending] = []
        delay = RETRY_FIRST_S
        while True:
            batch = kept or [await self._queue.get()]
            self._take_queued(batch)
            if any(pending.gathers for pending in batch):
                # A job's insert: its start on a free worker follows within a few turns of
                # the loop and joins its commit (one commit instead of two). Nothing else
                # waits these turns (a job's end goes at once).
                for _ in range(GATHER_TURNS):
                    await asyncio.sleep(0)
                self._take_queued(batch)
            errors: list[StoreUnavailable | None] | None = None
            if self._pipelines:
                errors = await self._commit_on_loop(batch)
            elif self._inline and not self._thread_work:
                errors = self._commit_inline(batch)
                if errors is not None:
                    await self._checkpoint_now_and_then()
            if errors is None:
                # The whole batch in one call on the writer's thread: one hand-over each
                # way, however busy the event loop is with the runs.
                errors = await self._on_writer_thread(self._commit, batch)
            kept = []
            for pending, error in zip(batch, errors, strict=True):
                if isinstance(error, _StoreDown) and pending.done is None:
                    kept.append(pending)
                    continue
                if error is None and pending.committed is not None:
                    pending.committed()
                if pending.done is not None and not pending.done.done():
                    if error is None:
                        pending.done.set_result(None)
                    else:
                        pending.done.set_exception(error)
            kept_ids = {job for pending in kept for job in pending.jobs}
            self._announce(job for p in batch for job in p.jobs if job not in kept_ids)
            if kept:
                log.warning("the job store does not answer; writes kept", writes=len(kept))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                delay = RETRY_FIRST_S

    async def _on_writer_thread(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` on the writer's thread; while it runs, no batch is committed on the
        loop (SQLite would make the loop wait for that thread's write lock)."""
        self._thread_work += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._writer_thread, call, *args
            )
        finally:
            self._thread_work -= 1

    async def _checkpoint_now_and_then(self) -> None:
        """SQLite's WAL is copied into the database every CHECKPOINT_EVERY commits, on the
        writer's thread (its disk syncs never on the loop: automatic checkpoints are off)."""
        self._commits_since_checkpoint += 1
        if self._commits_since_checkpoint < CHECKPOINT_EVERY:
            return
        self._commits_since_checkpoint = 0
        with contextlib.suppress(StoreUnavailable):
            await self._on_writer_thread(self._checkpoint)

    def _checkpoint(self) -> None:
        with translated(), self._engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def _take_queued(self, batch: list[_Pending]) -> None:
        while len(batch) < BATCH and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _commit_on_loop(self, batch: list[_Pending]) -> list[StoreUnavailable | None] | None:
        """PostgreSQL: the batch sent from the event loop, in pipeline mode, one round trip
        (a hand-over to the writer's thread and back added 0.3-0.4 ms at rest here, more
        while the engine handles a run's end). None, with the connection dropped, when it
        failed: the writer's thread tries again, a write at a time, and logs what is
        refused (a failed pipeline's transaction is rolled back by the server)."""
        pipeline = Pipeline(self._engine.dialect)
        try:
            self._transaction_of(batch, pipeline)
            async with self._on_loop_lock:
                await pipeline.send(await self._connected())
        except (psycopg.Error, SQLAlchemyError, OSError, TimeoutError):
            await self._disconnect()
            return None
        return [None] * len(batch)

    async def _alone(self, statement: Executable, params: dict[str, Any]) -> list[dict[str, Any]]:
        """One statement, committed by itself; the rows it returned, by column name."""
        if self._pipelines and (rows := await self._on_loop_alone(statement, params)) is not None:
            return rows

        def alone(connection: Connection) -> list[dict[str, Any]]:
            result = connection.execute(statement, params)
            return [dict(row._mapping) for row in result] if result.returns_rows else []

        return await self._statement(alone)

    async def _on_loop_alone(
        self, statement: Executable, params: dict[str, Any]
    ) -> list[dict[str, Any]] | None:
        """PostgreSQL: one statement on the event loop's connection, in autocommit (a hand
        over to a thread and back is two more wake-ups, each waiting for a CPU on a busy
        machine). None when that connection cannot be opened: the caller goes by a
        thread. Once sent, a statement is never sent again: its error is the caller's."""
        async with self._on_loop_lock:
            try:
                connection = await self._connected()
            except (psycopg.Error, OSError, TimeoutError):
                await self._disconnect()
                return None
            try:
                with translated():
                    return await fetch(connection, statement, self._engine.dialect, params)
            except StoreUnavailable:
                await self._disconnect()
                raise

    async def _connected(self) -> psycopg.AsyncConnection[Any]:
        """The event loop's connection, opened again if the server ended it."""
        if self._on_loop is not None and (self._on_loop.closed or server_ended(self._on_loop)):
            await self._disconnect()
        if self._on_loop is None:
            async with asyncio.timeout(CONNECT_S):
                self._on_loop = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                )
        return self._on_loop

    async def _disconnect(self) -> None:
        connection, self._on_loop = self._on_loop, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await connection.close()

    def _commit_inline(self, batch: list[_Pending]) -> list[StoreUnavailable | None] | None:
        """SQLite, nothing else of ours writing: the batch committed here, on the event loop,
        a fraction of a millisecond of it (no disk sync: see _sqlite_pragmas). Handed to a
        thread, the commit waited for the interpreter's lock at each step while the loop
        handled the run's end: 1.3 ms for a job's end against 0.8, and its answer 2 ms later.
        None, with nothing written, when the writer's thread must do it: another process
        holds the write lock (not waited for here), or the batch failed (the thread tries
        again, a write at a time, and logs what is refused)."""
        try:
            with self._engine.begin() as connection:
                statements_ = OnConnection(connection)
                # The write lock is taken at the first write (in WAL mode the COMMIT needs
                # no other): held by another process, it is not waited for on the loop.
                statements_.sql("PRAGMA busy_timeout=0")
                try:
                    for pending in batch:
                        pending.write(statements_)
                    statements_.settle()
                finally:
                    statements_.sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except (SQLAlchemyError, sqlite3.Error, OSError):
            return None
        return [None] * len(batch)

    def _commit(self, batch: list[_Pending]) -> list[StoreUnavailable | None]:
        """Commits the batch; each write's error, if any. A batch that fails is tried again
        a write at a time, so that one refused write (a job whose insert failed, and the
        writes that followed it) does not take the others down with it."""
        alone = len(batch) == 1
        try:
            # A refused batch is not logged: its writes are tried again one at a time, and
            # the write that is refused then is the one logged.
            with translated(log_refusal=alone):
                self._write(batch)
            return [None] * len(batch)
        except StoreUnavailable as exc:
            if alone or isinstance(exc, _StoreDown):
                return [exc] * len(batch)
        errors: list[StoreUnavailable | None] = []
        for pending in batch:
            try:
                with translated():
                    self._write([pending])
                errors.append(None)
            except StoreUnavailable as exc:
                errors.append(exc)
        return errors

    def _write(self, batch: list[_Pending]) -> None:
        """The batch's writes, committed. On PostgreSQL in pipeline mode, with the
        notifications to the other nodes: BEGIN, the statements, the notifications and the
        COMMIT reach the server together, one round trip instead of one each (a job's end
        took four; each waits for the CPU where the engine is busy). A statement's rows
        (whether a guarded write found its attempt still holding the job) are read after."""
        if not self._pipelines:
            with self._engine.begin() as connection:
                statements_ = OnConnection(connection)
                for pending in batch:
                    pending.write(statements_)
                statements_.settle()
            return
        # In autocommit, with BEGIN and COMMIT of our own: the driver's own transaction
        # handling waits for the server at the first statement and at the commit.
        with self._reads.connect() as connection:
            driver = connection.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            statements_ = OnConnection(connection)
            try:
                with driver.pipeline():
                    self._transaction_of(batch, statements_)
                statements_.settle()
            except BaseException:
                # A pipeline that failed can leave its connection inside the aborted
                # transaction: the pool must not hand it out again.
                connection.invalidate()
                raise

    def _transaction_of(self, batch: list[_Pending], into: Statements) -> None:
        """PostgreSQL, in autocommit: BEGIN, the batch's writes, the notifications to the
        other nodes, COMMIT."""
        into.sql("BEGIN")
        for pending in batch:
            pending.write(into)
        # The ends with their columns first: a waiter woken by one of them needs no read.
        for pending in batch if self._notifies else ():
            if pending.told_end is not None:
                into.execute(_NOTIFY, {"channel": ENDS_CHANNEL, "payload": pending.told_end})
        for payload in self._payloads(batch) if self._notifies else ():
            into.execute(_NOTIFY, {"channel": JOBS_CHANNEL, "payload": payload})
        into.sql("COMMIT")

    def _payloads(self, batch: list[_Pending]) -> list[str]:
        """The notification of each job the batch touches (marked if it ended)."""
        ended = {job for pending in batch if pending.ends for job in pending.jobs}
        return [
            job_id + END_MARK if job_id in ended else job_id
            for job_id in sorted({job for pending in batch for job in pending.jobs})
        ]

    def _lost(self, job_id: str) -> None:
        log.warning("the job was taken over by another attempt; this one stops", job=job_id)
        self._held.pop(job_id, None)
        if self._on_lost is not None:
            self._on_lost(job_id)

    def announced(self, payload: str) -> None:
        """Another node changed a job (distributed mode: the payload of its notification):
        wake whoever follows it, and whoever waits for its end if it ended."""
        job_id = payload.removesuffix(END_MARK)
        self._announce((job_id,))
        if payload.endswith(END_MARK):
            self._announce_end(job_id)

    def announced_end(self, payload: str) -> None:
        """A worker ended a job, and told the columns its end left (ENDS_CHANNEL): whoever
        waits for the end gets them with it."""
        try:
            job_id, changes = end_changes(payload)
        except ValueError:
            log.warning("a notification on the ends' channel is not a job's end")
            return
        self._announce_end(job_id, changes)

    def announce_all(self) -> None:
        """Notifications may have been missed (the listener reconnected): wake every waiter."""
        self._announce(list(self._changes))
        for job_id in list(self._ends):
            self._announce_end(job_id)

    def _announce_end(self, job_id: str, changes: dict[str, Any] | None = None) -> None:
        self._submitted.pop(job_id, None)
        end = self._ends.pop(job_id, None)
        if end is not None:
            end.changes = changes
            end.set()

    def _announce(self, job_ids: Iterable[str]) -> None:
        for job_id in set(job_ids):
            change = self._changes.pop(job_id, None)
            if change is not None:
                change.set()

    async def _read(self, read: Callable[[Connection], T]) -> T:
        def run() -> T:
            with translated(), self._reads.connect() as connection:
                return read(connection)

        return await asyncio.get_running_loop().run_in_executor(self._reader_threads, run)

    async def _statement(self, work: Callable[[Connection], T]) -> T:
        """One statement that writes, committed by itself (autocommit: no BEGIN and COMMIT
        round trips), on the writer's thread."""

        def run() -> T:
            # begin(): commits on SQLite; on PostgreSQL in autocommit, sends nothing more.
            with translated(), self._reads.begin() as connection:
                return work(connection)

        return await self._on_writer_thread(run)

    async def _transaction(self, work: Callable[[Connection], T]) -> T:
        """A transaction of its own on the writer's thread (after what is queued before it
        has been handed over, not necessarily committed)."""

        def run() -> T:
            with translated(), self._engine.begin() as connection:
                return work(connection)

        return await self._on_writer_thread(run)


@contextlib.contextmanager
def translated(*, log_refusal: bool = True) -> Iterator[None]:
    """The one place the store's foreign errors become ours."""
    try:
        yield
    except (
        OperationalError,
        InterfaceError,
        sqlite3.OperationalError,
        sqlite3.InterfaceError,
        DisconnectionError,
        PoolTimeout,
        OSError,
        # The driver's own, raised where SQLAlchemy does not wrap it (a pipeline's end).
        psycopg.OperationalError,
        psycopg.InterfaceError,
    ) as exc:
        log.error("the job store does not answer", error=str(exc))
        raise _StoreDown(f"the job store is not available: {exc}") from exc
    except (SQLAlchemyError, psycopg.Error, sqlite3.Error) as exc:
        if log_refusal:
            log.error("the job store refused", error=str(exc))
        raise StoreUnavailable(f"the job store is not available: {exc}") from exc


def _noop(_: Statements) -> None:
    return None


def _is_held(job_id: str, attempt: int) -> ColumnElement[bool]:
    """The job is still running in this attempt (no other worker has taken it over)."""
    return and_(jobs.c.id == job_id, jobs.c.attempts == attempt, jobs.c.status == RUNNING)


def _size(row: JobRow) -> int:
    return (
        len(row.plan) + len(row.outcome or b"") + len(row.metadata or "") + len(row.request or b"")
    )


def _fields(row: JobRow) -> dict[str, Any]:
    return {key: getattr(row, key) for key in JobRow.__slots__}


def _job(row: Any) -> JobRow:
    return JobRow(**{key: row[key] for key in JobRow.__slots__})


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _make_cursor(row: JobRow) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at!r}|{row.id}".encode()).decode()


def _parse_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return float(created_at), job_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("cursor is not one this service gave", "cursor") from exc
