"""A node's bounded backlog and its workers, which execute jobs (plans as data).

`submit` admits a whole job or raises Busy at once; it never waits for room. A job runs on
one worker: its runs one after another, so they never compete with each other for the CPU
and their timings can be compared. A plan that asks to be spread hands its measured runs to
every free worker (its own included). `--workers` runs execute at once; at most
`--backlog` runs wait. Each worker pins its runs to a CPU of its own when the node has one
to spare: pinning belongs to the node, not to the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import math
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from bgcompiler.core.events import Event, JobFinished
from bgcompiler.core.execute import execute
from bgcompiler.core.outcome import Outcome
from bgcompiler.core.plan import Plan
from bgcompiler.errors import BgcError, Busy, ShuttingDown
from bgcompiler.logs import run_figures
from bgcompiler.metrics import Metrics
from bgcompiler.models import RunResult, RunSpec
from bgcompiler.sandbox.base import Sandbox
from bgcompiler.sandbox.live import Live

log = structlog.get_logger(__name__)

EventSink = Callable[[Event], Awaitable[None]]

_RETRY_AFTER_MAX_S = 60


async def _nowhere(_: Event) -> None:
    """The sink of a job whose events nobody follows (its outcome is still returned)."""


@dataclass(eq=False)
class Job:
    """A plan to execute, and where its events go as they happen. A `live` job's runs are
    interactive: their input, signals and output go through it as they happen."""

    id: str
    plan: Plan
    sink: EventSink = _nowhere
    live: Live | None = None
    outcome: asyncio.Future[Outcome] = field(init=False)
    not_started: int = field(init=False)
    task: asyncio.Task[None] | None = field(default=None, init=False)
    cancelled: bool = field(default=False, init=False)
    # Whoever submitted it bound their log context (request id, ...); with the job's id it
    # goes with the job's work to whichever worker runs it.
    log_context: contextvars.Context = field(init=False)
    queued_at: float = field(default=0.0, init=False)  # the loop's time at admission

    def __post_init__(self) -> None:
        self.outcome = asyncio.get_running_loop().create_future()
        self.log_context = contextvars.copy_context()
        self.log_context.run(structlog.contextvars.bind_contextvars, job=self.id)
        self.not_started = self.plan.total_runs


@dataclass(eq=False)
class _Spread:
    """A job's runs offered to every free worker."""

    job: Job
    pending: deque[tuple[int, RunSpec]]
    finished: asyncio.Queue[tuple[int, RunResult | BaseException]] = field(
        default_factory=asyncio.Queue
    )
    running: set[asyncio.Task[None]] = field(default_factory=set)


class Scheduler:
    """Admission control plus `workers` coroutines that execute jobs in FIFO order."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        workers: int,
        backlog: int,
        pin_cpus: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self._sandbox = sandbox
        self._metrics = metrics
        self._workers = workers
        # With a CPU to spare for the service and the engine (CPU 0), each worker's runs are
        # pinned to a CPU of their own, so that runs do not migrate or share a core.
        spare = (os.cpu_count() or 1) > workers
        self._worker_cpus = [str(n + 1) for n in range(workers)] if pin_cpus and spare else None
        self._backlog = backlog
        self._queue: deque[Job] = deque()
        self._spreads: deque[_Spread] = deque()
        self._wakeup = asyncio.Event()
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._busy_workers = 0
        self._pending = 0  # runs admitted and not started
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._mean_run_s = 0.5  # a running estimate, for Retry-After
        if metrics is not None:
            metrics.watch_queue(self)

    # --- what the API sees ---------------------------------------------------------------

    @property
    def waiting_runs(self) -> int:
        """Runs admitted that are not running and will not start the moment a worker looks."""
        return self._waiting_if(self._pending, len(self._queue))

    def _waiting_if(self, pending: int, queued_jobs: int) -> int:
        # A free worker starts the first run of a queued job at once: that run never waits.
        free_workers = max(self._workers - self._busy_workers, 0)
        return pending - min(queued_jobs, free_workers)

    @property
    def busy_workers(self) -> int:
        return self._busy_workers

    @property
    def accepting(self) -> bool:
        """Whether it admits jobs and has its workers (none has died, it is not stopping)."""
        alive = len(self._worker_tasks) == self._workers
        return alive and not self._closing and not any(t.done() for t in self._worker_tasks)

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def backlog(self) -> int:
        return self._backlog

    def check_room(self, runs: int) -> None:
        """Raises Busy/ShuttingDown now if a job of `runs` runs would be refused.

        Lets a request be refused before any engine call is made for it: under overload,
        rejections cost the engine nothing and come back at once.
        """
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        would_wait = self._waiting_if(self._pending + runs, len(self._queue) + 1)
        if would_wait > self._backlog:
            # Counted here, where every API's admission is decided, whatever shape its
            # 503 then takes.
            if self._metrics is not None:
                self._metrics.rejected(503, Busy.code)
            raise Busy(
                f"the backlog is full: {self.waiting_runs} runs are waiting and this request "
                f"adds {runs}; at most {self._backlog} may wait",
                retry_after=self._retry_after(),
            )

    def submit(self, job: Job, *, force: bool = False) -> Job:
        """Queues the job, or raises Busy/ShuttingDown without queueing anything. `force`
        queues it whatever the backlog holds (jobs accepted before a restart)."""
        if force:
            if self._closing:
                raise ShuttingDown("the service is shutting down")
        else:
            self.check_room(job.not_started)
        self._pending += job.not_started
        job.queued_at = asyncio.get_running_loop().time()
        self._queue.append(job)
        self._idle.clear()
        self._wakeup.set()
        return job

    def cancel(self, job: Job) -> None:
        """Drops the job's queued runs and kills its running ones (the client went away)."""
        if job.cancelled or job.outcome.done():
            return
        job.cancelled = True
        if job.task is not None:
            job.task.cancel()
            return
        with contextlib.suppress(ValueError):
            self._queue.remove(job)
        self._release(job)
        job.outcome.cancel()
        self._update_idle()

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._worker_tasks = [
            asyncio.create_task(self._worker(n), name=f"worker-{n}") for n in range(self._workers)
        ]

    async def shutdown(self, grace_s: float) -> None:
        """Stops admitting; lets work finish for up to `grace_s`, then ends what is left:
        each of those jobs fails with ShuttingDown (a 503 for whoever waits on it)."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self._idle.wait()
        for job in list(self._queue):
            self._queue.remove(job)
            self._release(job)
            if not job.outcome.done():
                job.outcome.set_exception(ShuttingDown("the service stopped before the runs began"))
        for task in self._worker_tasks:
            task.cancel()
        await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        self._worker_tasks = []

    # --- the workers ---------------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        cpuset = self._worker_cpus[index] if self._worker_cpus else None
        while True:
            spread = next((s for s in self._spreads if s.pending), None)
            if spread is not None:
                await self._help(spread, cpuset)
                continue
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            job = self._queue.popleft()
            if self._metrics is not None:
                self._metrics.queue_waited(asyncio.get_running_loop().time() - job.queued_at)
            self._busy_workers += 1
            job.task = asyncio.create_task(
                self._execute(job, cpuset), context=job.log_context.copy()
            )
            try:
                await asyncio.wait([job.task])
            except asyncio.CancelledError:
                job.task.cancel()
                await asyncio.wait([job.task])
                raise
            finally:
                self._busy_workers -= 1
                self._update_idle()

    async def _execute(self, job: Job, cpuset: str | None) -> None:
        runner = _JobRunner(self, job, cpuset)
        try:
            async for event in execute(job.plan, runner):
                await job.sink(event)
                if isinstance(event, JobFinished):
                    job.outcome.set_result(event.outcome)
        except asyncio.CancelledError:
            if self._closing and not job.cancelled:
                job.outcome.set_exception(ShuttingDown("the service stopped before the runs ended"))
            else:
                job.outcome.cancel()
            raise
        except Exception as exc:  # the image vanished, or a bug: the job fails, the worker lives
            if not isinstance(exc, BgcError):  # not one of ours: a bug, fixed by its traceback
                log.error("job failed", job=job.id, error=repr(exc), exc_info=exc)
            elif not isinstance(exc, ShuttingDown):
                log.warning("job failed", job=job.id, error=repr(exc))
            if not job.outcome.done():
                job.outcome.set_exception(exc)
        finally:
            self._release(job)  # runs the job chose not to do (a failed compile) never will

    async def _run(self, job: Job, spec: RunSpec, cpuset: str | None) -> RunResult:
        if job.not_started <= 0:
            raise RuntimeError("a job ran more runs than it planned")
        job.not_started -= 1
        self._pending -= 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        if cpuset is not None:
            spec = dataclasses.replace(spec, cpuset=cpuset)
        if job.live is not None:
            result = await self._sandbox.run_live(spec, job.live)
        else:
            result = await self._sandbox.run(spec)
        log.info("run finished", **run_figures(result))
        elapsed = loop.time() - started
        self._mean_run_s += 0.1 * (elapsed - self._mean_run_s)
        if self._metrics is not None:
            self._metrics.run_finished(
                status=result.status.value,
                runtime=spec.runtime,
                language=job.plan.language,
                compile=spec.artifacts,
                seconds=elapsed,
            )
        return result

    async def _spread(
        self, job: Job, specs: Sequence[RunSpec], cpuset: str | None
    ) -> AsyncIterator[tuple[int, RunResult]]:
        """Offers the runs to every free worker; this job's own worker works on them too."""
        spread = _Spread(job, deque(enumerate(specs)))
        self._spreads.append(spread)
        self._wakeup.set()
        own = asyncio.create_task(self._work_through(spread, cpuset))
        try:
            for _ in range(len(specs)):
                index, result = await spread.finished.get()
                if isinstance(result, BaseException):
                    raise result
                yield index, result
        finally:
            spread.pending.clear()
            with contextlib.suppress(ValueError):
                self._spreads.remove(spread)
            for task in (own, *spread.running):
                task.cancel()
            await asyncio.gather(own, *spread.running, return_exceptions=True)

    async def _work_through(self, spread: _Spread, cpuset: str | None) -> None:
        while spread.pending:
            await self._take_one(spread, cpuset)

    async def _help(self, spread: _Spread, cpuset: str | None) -> None:
        """A free worker runs one of a spread job's runs."""
        self._busy_workers += 1
        try:
            await self._take_one(spread, cpuset)
        finally:
            self._busy_workers -= 1
            self._update_idle()

    async def _take_one(self, spread: _Spread, cpuset: str | None) -> None:
        index, spec = spread.pending.popleft()
        task = asyncio.create_task(
            self._deliver(spread, index, spec, cpuset), context=spread.job.log_context.copy()
        )
        spread.running.add(task)
        try:
            await asyncio.wait([task])
        finally:
            spread.running.discard(task)

    async def _deliver(
        self, spread: _Spread, index: int, spec: RunSpec, cpuset: str | None
    ) -> None:
        try:
            result: RunResult | BaseException = await self._run(spread.job, spec, cpuset)
        except Exception as exc:  # a bug: the job's own worker re-raises it
            result = exc
        spread.finished.put_nowait((index, result))

    def _release(self, job: Job) -> None:
        self._pending -= job.not_started
        job.not_started = 0

    def _update_idle(self) -> None:
        if not self._queue and self._busy_workers == 0:
            self._idle.set()

    def _retry_after(self) -> int:
        seconds = self.waiting_runs * self._mean_run_s / self._workers
        return max(1, min(_RETRY_AFTER_MAX_S, math.ceil(seconds)))


@dataclass(frozen=True, slots=True)
class _JobRunner:
    """What the node lends a job: its worker's runs, the other workers, the sandbox."""

    scheduler: Scheduler
    job: Job
    worker_cpuset: str | None

    @property
    def cpuset(self) -> str | None:
        return self.worker_cpuset

    async def check_image(self, image: str) -> str:
        return await self.scheduler._sandbox.check_image(image)

    async def run(self, spec: RunSpec) -> RunResult:
        return await self.scheduler._run(self.job, spec, self.worker_cpuset)

    def spread(self, specs: Sequence[RunSpec]) -> AsyncIterator[tuple[int, RunResult]]:
        return self.scheduler._spread(self.job, specs, self.worker_cpuset)
