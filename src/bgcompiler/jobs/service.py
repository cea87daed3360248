"""Durable jobs: the store is the source of truth, the scheduler executes, events land in
the store as they happen.

A job is committed before it is acknowledged. If the service stops (or dies) while a job is
queued or running, the next start queues it again; a job that had begun is re-run from the
start (the runs of the interrupted attempt are discarded, its `attempts` go up). A job
ends `done`, `cancelled` (partial runs kept) or `failed` (the service could not run it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from bgcompiler.core.events import (
    CompileFinished,
    Event,
    JobFinished,
    JobStarted,
    RunFinished,
    event_to_json,
)
from bgcompiler.core.outcome import Outcome, RunRecord, outcome_to_json, summarize
from bgcompiler.core.plan import Plan
from bgcompiler.errors import BgcError, Conflict, NotFound, ShuttingDown
from bgcompiler.executor import Executor
from bgcompiler.jobs.webhooks import Callback, Webhooks
from bgcompiler.models import RunResult
from bgcompiler.scheduler import Job
from bgcompiler.store.ends import JobEnd
from bgcompiler.store.jobs import CANCELLED, DONE, FAILED, FINAL, JobRow, JobStore

log = structlog.get_logger(__name__)

PURGE_EVERY_S = 3600.0


@dataclass(eq=False)
class _Progress:
    """What a running job has reported so far (for a cancel's partial outcome)."""

    plan: Plan
    callback_url: str | None
    image_id: str = ""
    compiled: RunResult | None = None
    runs: dict[int, RunRecord] = field(default_factory=dict)


class JobService:
    def __init__(
        self,
        store: JobStore,
        scheduler: Executor,
        webhooks: Webhooks,
        *,
        document: Callable[[str], Awaitable[Callback]],
        retention_s: float,
        recovers: bool = True,
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._webhooks = webhooks
        self._document = document
        self._retention_s = retention_s
        self._jobs: dict[str, Job] = {}
        self._progress: dict[str, _Progress] = {}
        self._purger: asyncio.Task[None] | None = None
        # A worker node of distributed mode takes up no jobs at start: the cluster's
        # watchdog hands another worker the jobs of one that stopped.
        self._recovers = recovers

    @property
    def store(self) -> JobStore:
        return self._store

    async def open(self) -> None:
        """Starts the store's writer, queues every job a previous instance left unfinished,
        and starts purging old jobs."""
        self._store.start()
        for row in await self._store.recover() if self._recovers else []:
            try:
                plan = Plan.from_json(row.plan)
            except ValueError as exc:  # stored by a version whose plans this one cannot read
                self._store.finished(row.id, FAILED, error=f"its plan cannot be read: {exc}")
                continue
            self._enqueue(row.id, plan, row.callback_url, force=True)
        self._purger = asyncio.create_task(self._purge_old(), name="job-purger")

    async def close(self) -> None:
        """After the scheduler has stopped: what still runs stays queued in the store."""
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        await self._webhooks.close()
        await self._store.close()

    # --- what the API asks ---------------------------------------------------------------

    async def submit(
        self,
        job_id: str,
        plan: Plan,
        *,
        metadata: str | None,
        callback_url: str | None,
        api: str = "v1",
        request: bytes | None = None,
        owner: str | None = None,
    ) -> JobRow:
        """Stores the job (committed when this returns) and queues it; Busy before storing
        anything when the backlog cannot hold its runs. Returns the job as stored."""
        self._scheduler.check_room(plan.total_runs)
        row, stored = self._store.create(
            job_id,
            plan=plan.to_json(),
            runs_total=plan.measured_runs,
            metadata=metadata,
            callback_url=callback_url,
            api=api,
            request=request,
            owner=owner,
        )
        # Queued while its insert commits (its own writes follow the insert): the run does
        # not wait for the commit; the answer does.
        self._enqueue(job_id, plan, callback_url, force=True)
        try:
            await stored
        except BgcError:
            self._forget(job_id)  # never stored: never to be answered for
            raise
        return row

    async def get(self, job_id: str) -> JobRow:
        row = await self._store.get(job_id)
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        return row

    async def submit_and_wait(
        self, job_id: str, seconds: float, submit: Callable[[], Awaitable[JobRow]]
    ) -> JobRow:
        """`submit()` (this service's, for the job), then the job once it has ended, or as
        it is after `seconds`."""
        # Watched from before it is sent: an end that comes before the answer is not missed,
        # and the row just stored needs no read.
        change = self._store.end_of(job_id)
        try:
            row = await submit()
        except BaseException:
            self._store.forget_change(job_id, change)
            raise
        return await self.wait(job_id, seconds, first=(change, row))

    async def wait(
        self,
        job_id: str,
        seconds: float,
        *,
        first: tuple[asyncio.Event, JobRow] | None = None,
        allowed: Callable[[JobRow], bool] | None = None,
    ) -> JobRow:
        """The job once it has ended, or as it is after `seconds`. `first`: the job as the
        caller knows it, and its end watched from before that. `allowed`: whether the
        caller may see the job; NotFound, before any wait, if it may not (as if there were
        no such job)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        if first is None:  # an API node's own job: watched since its insert, no read needed
            first = self._store.watched(job_id)
        while True:
            if first is not None:
                (change, row), first = first, None
            else:
                change = self._store.end_of(job_id)  # taken before the read: none is missed
                try:
                    row = await self.get(job_id)
                except NotFound:
                    self._store.forget_change(job_id, change)  # no such job: nobody waits
                    raise
            if allowed is not None:
                if not allowed(row):  # its owner is the same in every row of it
                    raise NotFound(f"no job {job_id!r}")
                allowed = None
            if row.status in FINAL:
                # It will never change again: nobody else can be waiting on this one.
                self._store.forget_change(job_id, change)
                return row
            if loop.time() >= deadline:
                return row
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await change.wait()
            if isinstance(change, JobEnd) and (ended := change.ended(row)) is not None:
                return ended  # the end came with what it left in the row

    async def cancel(self, job_id: str) -> JobRow:
        """Cancels a queued or running job (its containers killed at once); a job that has
        ended is a Conflict. Cancelling a cancelled job again is fine."""
        row = await self.get(job_id)
        if row.status == CANCELLED:
            return row
        if row.status in FINAL:
            raise Conflict(f"job {job_id!r} has already ended: {row.status}")
        job = self._jobs.get(job_id)
        if job is not None:
            self._scheduler.cancel(job)  # the outcome's callback records the cancel
            # Its runs end (their containers killed) before the answer says cancelled.
            await asyncio.wait([job.outcome])
        await self._store.flush()
        return await self.get(job_id)

    # --- a worker node's side (distributed mode) --------------------------------------------

    def run_claimed(
        self, job_id: str, plan: Plan, callback_url: str | None
    ) -> asyncio.Future[Outcome]:
        """Runs a job this node claimed in the store (its writes guarded by the claim's
        attempt); the future ends with the job (ShuttingDown: it was not finished)."""
        return self._enqueue(job_id, plan, callback_url, force=True)

    def cancel_running(self, job_id: str) -> None:
        """Another node asked to cancel the job: its runs are killed, the partial outcome
        written as on a single node."""
        job = self._jobs.get(job_id)
        if job is not None:
            self._scheduler.cancel(job)

    def abandon(self, job_id: str) -> None:
        """Another attempt holds the job now: its runs here stop, and nothing more of it is
        written."""
        self._forget(job_id)

    # --- execution -----------------------------------------------------------------------

    def _enqueue(
        self, job_id: str, plan: Plan, callback_url: str | None, *, force: bool
    ) -> asyncio.Future[Outcome]:
        job = Job(job_id, plan, sink=self._sink_of(job_id))
        self._jobs[job_id] = job
        self._progress[job_id] = _Progress(plan, callback_url)
        self._scheduler.submit(job, force=force)
        job.outcome.add_done_callback(lambda ended: self._ended(job_id, ended))
        return job.outcome

    def _sink_of(self, job_id: str) -> Callable[[Event], Awaitable[None]]:
        async def sink(event: Event) -> None:
            # Writes are queued, not awaited: a run never waits for a commit.
            progress = self._progress.get(job_id)
            if progress is None:  # forgotten (its insert failed) while it was starting
                return
            if isinstance(event, JobStarted):
                progress.image_id = event.image_id
                progress.compiled = None
                progress.runs.clear()
                self._store.started(job_id)
                self._store.event(job_id, "started", b"")
            elif isinstance(event, CompileFinished):
                progress.compiled = event.result
                self._store.event(job_id, "compile", event_to_json(event))
            elif isinstance(event, RunFinished):
                progress.runs[event.record.index] = event.record
                self._store.event(job_id, "run", event_to_json(event), counts_run=True)
            elif isinstance(event, JobFinished):
                self._store.finished(job_id, DONE, outcome=outcome_to_json(event.outcome))

        return sink

    def _forget(self, job_id: str) -> None:
        """Drops a job whose insert failed: its runs stop, and nothing is written of it."""
        self._progress.pop(job_id, None)
        job = self._jobs.pop(job_id, None)
        if job is not None:
            self._scheduler.cancel(job)

    def _ended(self, job_id: str, ended: asyncio.Future[Outcome]) -> None:
        self._jobs.pop(job_id, None)
        progress = self._progress.pop(job_id, None)
        if progress is None:  # forgotten
            return
        if ended.cancelled():
            runs = tuple(progress.runs[index] for index in sorted(progress.runs))
            partial = Outcome(
                progress.compiled,
                runs,
                summarize(progress.plan, runs),
                progress.image_id,
                None,
            )
            self._store.finished(job_id, CANCELLED, outcome=outcome_to_json(partial))
        elif (error := ended.exception()) is not None:
            if isinstance(error, ShuttingDown):
                return  # left queued or running in the store: the next start takes it up
            message = error.message if isinstance(error, BgcError) else repr(error)
            self._store.finished(job_id, FAILED, error=message)
        if progress.callback_url is not None and self._webhooks.enabled:
            url = progress.callback_url
            self._webhooks.deliver(job_id, url, lambda: self._committed_document(job_id))

    async def _committed_document(self, job_id: str) -> Callback:
        await self._store.flush()
        return await self._document(job_id)

    async def _purge_old(self) -> None:
        while True:
            try:
                purged = await self._store.purge(time.time() - self._retention_s)
                if purged:
                    log.info("purged old jobs", count=purged)
            except BgcError as exc:
                log.warning("could not purge old jobs", error=exc.message)
            await asyncio.sleep(PURGE_EVERY_S)
