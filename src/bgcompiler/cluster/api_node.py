"""An API node of distributed mode: it stores jobs, sends their ids to the queue, and serves
their state from the store as the workers write it. It has no engine of its own.

Every API works as on a single node: the asynchronous ones (jobs, Judge0 submissions) are
jobs already; a synchronous request (`POST /compile`, `/api/v1/runs`, Piston's execute) is
submitted as a job of the `sync` API and answered when it ends (a client that goes away
cancels it). Only Piston's interactive WebSocket needs a node with an engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import structlog

from bgcompiler.cluster.notify import CANCEL_CHANNEL
from bgcompiler.cluster.queue import JobQueue, route
from bgcompiler.core.outcome import Outcome, outcome_from_json, outcome_to_json, summarize
from bgcompiler.core.plan import Plan
from bgcompiler.errors import (
    BgcError,
    Busy,
    Conflict,
    ImageNotFound,
    NoWorker,
    QueueUnavailable,
    ShuttingDown,
    StoreUnavailable,
    Unavailable,
)
from bgcompiler.jobs.service import JobService
from bgcompiler.models import RunResult, RunSpec
from bgcompiler.sandbox.live import Live
from bgcompiler.scheduler import Job
from bgcompiler.store.cluster import ClusterStore, WorkerInfo
from bgcompiler.store.jobs import CANCELLED, FAILED, FINAL, QUEUED, JobRow, JobStore

log = structlog.get_logger(__name__)

# The cluster's view (live workers, queued runs) is read again after this long: in the
# background, so that a request does not wait for it (it does only when the background
# reads fail, e.g. while the store is down).
REFRESH_S = 0.5
# A cancel waits this long for the worker to stop the job's runs before the store is told
# the job is cancelled without it (the worker's later writes are then refused).
CANCEL_WAIT_S = 5.0
SYNC_API = "sync"


@dataclass(eq=False)
class Cluster:
    """What an API node knows of the cluster: the live workers and the queued runs, read
    from the store at most every REFRESH_S."""

    store: ClusterStore
    jobs: JobStore
    queue: JobQueue
    runtime: str  # the runtime this node's jobs ask for
    visibility_s: float
    backlog: int
    _workers: list[WorkerInfo] = field(default_factory=list)
    _queued_runs: int = 0
    _admitted: int = 0  # runs admitted here since the last read
    _read_at: float = -1e9

    async def refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._read_at < REFRESH_S:
            return
        seen_after = time.time() - self.visibility_s
        self._workers = await self.store.live_workers(seen_after)
        self._queued_runs = await self.jobs.count_queued_runs()
        self._admitted = 0
        self._read_at = now

    async def keep_fresh(self) -> None:
        """Reads the view again every half REFRESH_S, until cancelled."""
        while True:
            try:
                await self.refresh(force=True)
            except BgcError as exc:
                log.warning("the cluster's view could not be read", error=exc.message)
            await asyncio.sleep(REFRESH_S / 2)

    async def count_queued(self) -> None:
        self._queued_runs = await self.jobs.count_queued_runs()
        self._admitted = 0

    @property
    def workers(self) -> list[WorkerInfo]:
        return self._workers

    @property
    def waiting_runs(self) -> int:
        return self._queued_runs + self._admitted

    def route_for(self, plan: Plan) -> str:
        """The queue of a worker able to run the plan; NoWorker when no live one can."""
        images = {plan.run.image} | ({plan.compile.image} if plan.compile is not None else set())
        if not any(worker.can_run(self.runtime, tuple(images)) for worker in self._workers):
            raise NoWorker(
                f"no live worker can run {', '.join(sorted(images))} under {self.runtime}",
                retry_after=max(1, int(self.visibility_s)),
            )
        return route(self.runtime, plan.run.image)

    def admit(self, runs: int) -> None:
        """Counts the runs against the cluster's backlog, or raises Busy."""
        if self.waiting_runs + runs > self.backlog:
            raise Busy(
                f"the backlog is full: {self.waiting_runs} runs are waiting in the cluster and "
                f"this request adds {runs}; at most {self.backlog} may wait",
                retry_after=2,
            )
        self._admitted += runs


class ClusterJobs(JobService):
    """The job service of an API node: jobs go to the queue, their state comes back
    through the store."""

    def __init__(self, cluster: Cluster, executor: ClusterExecutor, **kwargs: object) -> None:
        # No recovery at start: the watchdog hands on the jobs of a node that stopped.
        super().__init__(scheduler=executor, recovers=False, **kwargs)  # type: ignore[arg-type]
        self._cluster = cluster
        self._closing = False

    @property
    def cluster(self) -> Cluster:
        return self._cluster

    async def close(self) -> None:
        self._closing = True
        await super().close()

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
        """Stores the job (committed) and sends it to a worker able to run it. Refused with
        nothing stored when no live worker can run it or the cluster's backlog is full;
        with a 503 (and the job removed) when the queue does not take it."""
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        await self._cluster.refresh()
        to = self._cluster.route_for(plan)
        if self._cluster.waiting_runs + plan.total_runs > self._cluster.backlog // 2:
            # Near the limit, exact: what every API node has queued counts against it.
            await self._cluster.count_queued()
        self._cluster.admit(plan.total_runs)
        row, stored = self._store.create(
            job_id,
            plan=plan.to_json(),
            runs_total=plan.measured_runs,
            metadata=metadata,
            callback_url=callback_url,
            api=api,
            request=request,
            owner=owner,
            route=to,
        )
        # Sent while the insert commits: the worker's claim waits for the row
        # (worker_node.CLAIM_PATIENCE_S), and the answer waits for both.
        sent = asyncio.ensure_future(self._cluster.queue.send(job_id, to))
        try:
            await stored
        except BgcError:
            # Never stored: a message that went finds no job, and the worker drops it.
            await asyncio.gather(sent, return_exceptions=True)
            raise
        try:
            await sent
        except QueueUnavailable:
            self._store.unwatch(job_id)  # removed: it will never end
            with contextlib.suppress(StoreUnavailable):
                await self._cluster.store.discard(job_id)
            raise
        return row

    async def cancel(self, job_id: str) -> JobRow:
        row = await self.get(job_id)
        if row.status == CANCELLED:
            return row
        if row.status in FINAL:
            raise Conflict(f"job {job_id!r} has already ended: {row.status}")
        untouched = _cancelled_outcome(row)
        if row.status == QUEUED and await self._cluster.store.cancel(
            job_id, QUEUED, untouched, None
        ):
            return await self.get(job_id)
        # Running: its worker kills its runs and writes the partial outcome.
        await self._cluster.store.notify(CANCEL_CHANNEL, job_id)
        row = await self.wait(job_id, CANCEL_WAIT_S)
        if row.status not in FINAL:
            await self._cluster.store.cancel(
                job_id, row.status, untouched, "its worker did not answer the cancel"
            )
        return await self.get(job_id)


def _cancelled_outcome(row: JobRow) -> bytes:
    plan = Plan.from_json(row.plan)
    return outcome_to_json(Outcome(None, (), summarize(plan, ()), "", None))


class ClusterExecutor:
    """The `Executor` of an API node: a synchronous request's job runs in the cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._jobs: ClusterJobs | None = None
        self._forwarding: dict[Job, asyncio.Task[None]] = {}
        self._closing = False

    def attach(self, jobs: ClusterJobs) -> None:
        self._jobs = jobs

    @property
    def workers(self) -> int:
        return sum(worker.capacity for worker in self._cluster.workers)

    @property
    def busy_workers(self) -> int:
        return sum(worker.busy for worker in self._cluster.workers)

    @property
    def waiting_runs(self) -> int:
        return self._cluster.waiting_runs

    @property
    def accepting(self) -> bool:
        return not self._closing

    def check_room(self, runs: int) -> None:
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        if self._cluster.waiting_runs + runs > self._cluster.backlog:
            self._cluster.admit(runs)  # raises Busy with the cluster's figures

    def submit(self, job: Job, *, force: bool = False) -> Job:
        self.check_room(job.not_started)
        task = asyncio.create_task(self._forward(job), name=f"forward-{job.id}")
        self._forwarding[job] = task
        task.add_done_callback(lambda _: self._forwarding.pop(job, None))
        return job

    def cancel(self, job: Job) -> None:
        if job.cancelled or job.outcome.done():
            return
        job.cancelled = True
        task = self._forwarding.get(job)
        if task is not None:
            task.cancel()
        job.outcome.cancel()

    async def shutdown(self) -> None:
        self._closing = True
        for task in list(self._forwarding.values()):
            task.cancel()
        await asyncio.gather(*self._forwarding.values(), return_exceptions=True)

    async def _forward(self, job: Job) -> None:
        jobs = self._jobs
        assert jobs is not None
        submitted = False

        async def submit() -> JobRow:
            nonlocal submitted
            row = await jobs.submit(
                job.id, job.plan, metadata=None, callback_url=None, api=SYNC_API
            )
            submitted = True
            return row

        try:
            row = await jobs.submit_and_wait(job.id, 60, submit)
            while row.status not in FINAL:
                row = await jobs.wait(job.id, 60)
            if not job.outcome.done():
                if row.status == FAILED or row.outcome is None:
                    job.outcome.set_exception(Unavailable(row.error or "the job failed"))
                elif row.status == CANCELLED:
                    job.outcome.cancel()
                else:
                    job.outcome.set_result(outcome_from_json(row.outcome))
        except asyncio.CancelledError:
            if submitted:
                # The client went away: its runs stop in the cluster too.
                with contextlib.suppress(BgcError):
                    await asyncio.shield(jobs.cancel(job.id))
            raise
        except BgcError as exc:
            if not job.outcome.done():
                job.outcome.set_exception(exc)


class ClusterView:
    """The `Sandbox` an API node's handlers see: images are those of live workers; runs
    happen on workers, never here."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    async def open(self) -> None:
        await self._cluster.queue.ping()

    async def close(self) -> None:
        await self._cluster.queue.close()

    async def ping(self) -> None:
        """The queue answers and at least one worker is alive."""
        await self._cluster.queue.ping()
        await self._cluster.refresh()
        if not self._cluster.workers:
            raise NoWorker("no live worker")

    async def check_image(self, image: str) -> str:
        await self._cluster.refresh()
        if not any(image in worker.images for worker in self._cluster.workers):
            raise ImageNotFound(f"no live worker has the image {image!r}")
        return image

    def status(self) -> dict[str, int | str]:
        workers = self._cluster.workers
        return {
            "mode": "api-node",
            "live_workers": len(workers),
            "capacity": sum(worker.capacity for worker in workers),
            "busy": sum(worker.busy for worker in workers),
        }

    async def run(self, spec: RunSpec) -> RunResult:
        raise Unavailable("runs happen on worker nodes, not on an API node")

    async def run_live(self, spec: RunSpec, live: Live) -> RunResult:
        raise Unavailable("interactive runs need a node with an engine of its own")
