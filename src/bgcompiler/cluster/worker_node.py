"""A worker node of distributed mode: today's execution stack (its own engine, runtime, warm
pool and scheduler) fed by the job queue instead of HTTP.

For each job id it reads, the worker claims the job in the store (a new attempt); the
job's events and end are written under that attempt only, so a worker that lost the job
(it was frozen, or too slow to answer) can no longer change it. The message is acknowledged
once the job's end is committed. It announces itself (what it can run, its load) by a
heartbeat in the store; the watchdog of the API nodes takes back the jobs of a worker
whose heartbeat stops.

SIGTERM: it stops reading, lets running jobs finish for --shutdown-grace, then hands the
rest back to the queue (queued again in the store, sent again) and leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable

import structlog

from bgcompiler.cluster.notify import CANCEL_CHANNEL, Listener
from bgcompiler.cluster.queue import Delivery, JobQueue, JobReader, route
from bgcompiler.core.plan import Plan
from bgcompiler.errors import BgcError, NotFound, ShuttingDown, StartupError, WorkerReplaced
from bgcompiler.jobs.service import JobService
from bgcompiler.languages import load_languages
from bgcompiler.metrics import Metrics
from bgcompiler.sandbox.base import Sandbox
from bgcompiler.services import present_images
from bgcompiler.settings import Settings
from bgcompiler.store.cluster import ClusterStore, WorkerInfo
from bgcompiler.store.database import database_url, open_database
from bgcompiler.store.jobs import FAILED, Claim, JobStore

log = structlog.get_logger(__name__)

# A job read from the queue before its insert has committed is looked for again: first
# after this long, doubling up to the max, for up to the patience.
CLAIM_RETRY_FIRST_S = 0.002
CLAIM_RETRY_MAX_S = 1.0
CLAIM_PATIENCE_S = 10.0


def worker_id(settings: Settings) -> str:
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class WorkerNode:
    def __init__(self, settings: Settings, sandbox: Sandbox | None = None) -> None:
        if settings.queue_url is None or settings.database_url is None:
            raise StartupError("a worker needs --queue-url and a PostgreSQL --database-url")
        self._settings = settings
        self._sandbox_given = sandbox
        self._id = worker_id(settings)
        self._started_at = time.time()
        self._runtime = settings.runtime_name or "runc"
        self._images: tuple[str, ...] = ()
        self._draining = False
        self._replaced = False  # a newer process took this worker's name
        self._running: set[asyncio.Task[None]] = set()

    @property
    def id(self) -> str:
        return self._id

    async def serve(self, stop: asyncio.Event) -> None:
        """Runs until `stop` is set, then shuts down gracefully."""
        from bgcompiler.app import (  # the app's own parts
            configured_sandbox,
            job_callbacks,
            started_scheduler,
            webhooks_of,
        )

        settings = self._settings
        assert settings.queue_url is not None
        assert settings.database_url is not None
        languages = load_languages(settings.languages)
        url = database_url(settings.database_url, settings.data_dir)
        engine = await open_database(url, settings.data_dir)
        metrics = Metrics(languages)
        box = self._sandbox_given or configured_sandbox(settings, metrics)
        try:
            await box.open()
        except StartupError:
            engine.dispose()
            raise
        scheduler = started_scheduler(box, settings, metrics)
        jobs_holder: list[JobService] = []
        store = JobStore(
            engine,
            keeps_rows=False,
            notifies=True,
            on_lost=lambda job_id: jobs_holder[0].abandon(job_id),
        )
        cluster = ClusterStore(engine)
        webhooks = webhooks_of(store, settings, metrics)
        jobs = JobService(
            store,
            scheduler,
            webhooks,
            document=job_callbacks(store, languages),
            retention_s=settings.retention_days * 86400,
            recovers=False,
        )
        jobs_holder.append(jobs)
        await jobs.open()
        self._images = await present_images(box, languages)
        if not self._images:
            raise StartupError("the engine has none of the languages' images: nothing to run")
        routes = sorted({route(self._runtime, image) for image in self._images})
        sender = JobQueue(settings.queue_url)
        reader = JobReader(
            settings.queue_url,
            routes,
            visibility_s=settings.visibility_timeout,
            consumer=self._id,
        )

        def info() -> WorkerInfo:
            return WorkerInfo(
                id=self._id,
                host=socket.gethostname(),
                runtime=self._runtime,
                images=self._images,
                capacity=settings.workers,
                busy=scheduler.busy_workers,
                pool=box.status(),
                draining=self._draining,
                started_at=self._started_at,
            )

        # Alive first: from now on a process that ran earlier under this name can no longer
        # claim (its claims check the name's start time), so what is given back below can
        # only go to a live worker.
        await cluster.heartbeat(info())
        for orphan in await cluster.release(self._id):
            if orphan.route is not None:
                await sender.send(orphan.id, orphan.route)
        cancels = Listener(settings.database_url, {CANCEL_CHANNEL: jobs.cancel_running})
        await cancels.start()
        beating = asyncio.create_task(self._beat(cluster, info), name="heartbeat")
        reading = asyncio.create_task(
            self._read(reader, store, jobs, sender, settings), name="job-reader"
        )
        log.info("worker ready", worker=self._id, runtime=self._runtime, routes=len(routes))
        try:
            await stop.wait()
        finally:
            # Stop taking jobs; let the running ones finish up to the grace, hand back the rest.
            self._draining = True
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            with contextlib.suppress(BgcError):
                await cluster.heartbeat(info())
            await scheduler.shutdown(settings.shutdown_grace)
            await asyncio.gather(*self._running, return_exceptions=True)
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            await cancels.stop()
            await reader.close()
            await sender.close()
            with contextlib.suppress(BgcError):
                await cluster.leave(self._id, self._started_at)
            await jobs.close()
            await box.close()
            log.info("worker stopped", worker=self._id)

    async def _beat(self, cluster: ClusterStore, info: Callable[[], WorkerInfo]) -> None:
        every = max(self._settings.visibility_timeout / 4, 0.25)
        while True:
            await asyncio.sleep(every)
            try:
                await cluster.heartbeat(info())
            except BgcError as exc:
                log.warning("heartbeat not recorded", error=exc.message)

    async def _read(
        self,
        reader: JobReader,
        store: JobStore,
        jobs: JobService,
        sender: JobQueue,
        settings: Settings,
    ) -> None:
        room = asyncio.Semaphore(settings.workers)
        delay = 0.2
        while not self._replaced:
            await room.acquire()
            try:
                delivery = await reader.next()
            except BgcError as exc:
                room.release()
                log.warning("the job queue does not answer", error=exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            task = asyncio.create_task(self._handle(delivery, store, jobs, sender, settings))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            task.add_done_callback(lambda _: room.release())

    async def _claim(self, store: JobStore, job_id: str, settings: Settings) -> Claim | None:
        """Claims the job; an API node sends it while its insert commits, so a job not
        found yet is looked for again, for up to CLAIM_PATIENCE_S."""
        delay = CLAIM_RETRY_FIRST_S
        give_up = time.monotonic() + CLAIM_PATIENCE_S
        while True:
            try:
                return await store.claim(
                    job_id,
                    self._id,
                    stale_before=time.time() - settings.visibility_timeout,
                    incarnation=self._started_at,
                )
            except NotFound:
                if time.monotonic() + delay > give_up:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, CLAIM_RETRY_MAX_S)

    async def _handle(
        self,
        delivery: Delivery,
        store: JobStore,
        jobs: JobService,
        sender: JobQueue,
        settings: Settings,
    ) -> None:
        job_id = delivery.job_id
        try:
            try:
                claim = await self._claim(store, job_id, settings)
            except NotFound:
                # Its insert failed (the submit answered 503), or has not committed for
                # longer than anyone waits: the watchdog sends a job queued for long again.
                log.warning("a job sent to the queue is not in the store", job=job_id)
                await delivery.ack()
                return
            except WorkerReplaced:
                # A newer process runs under this name: the job goes back to the queue for
                # a live worker, and this process reads no more.
                log.warning("this worker's name was taken over; it takes no more jobs")
                self._replaced = True
                row = await store.get(job_id)
                if row is not None and row.route is not None:
                    await sender.send(job_id, row.route)
                await delivery.ack()
                return
            if claim is None:  # ended, or a live worker holds it: a second delivery
                await delivery.ack()
                return
            try:
                plan = Plan.from_json(claim.row.plan)
            except ValueError as exc:
                store.finished(job_id, FAILED, error=f"its plan cannot be read: {exc}")
                await store.flush()
                await delivery.ack()
                return
            ended = jobs.run_claimed(job_id, plan, claim.row.callback_url)
            await asyncio.wait([ended])
            unfinished = not ended.cancelled() and isinstance(ended.exception(), ShuttingDown)
            if unfinished and store.holds(job_id):
                store.hand_back(job_id)
                await store.flush()
                if claim.row.route is not None:
                    await sender.send(job_id, claim.row.route)
            await store.flush()  # its end is committed before the message goes
            await delivery.ack()
        except BgcError as exc:
            # Left unacknowledged: the message comes back after the visibility timeout,
            # and the watchdog takes the job back if this worker's hold is lost.
            log.warning("a job could not be handled", job=job_id, error=exc.message)
