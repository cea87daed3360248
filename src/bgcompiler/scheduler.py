"""The bounded backlog and the worker pool.

`submit` admits all runs of a job or raises Busy at once; it never waits for room.
Each job runs on one worker, its runs one after another (runs of one request never
compete with each other for the CPU, so their timings can be compared). `--workers`
jobs run at once; at most `--backlog` runs wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

from bgcompiler.errors import Busy, ShuttingDown
from bgcompiler.models import RunResult, RunSpec
from bgcompiler.sandbox.base import Sandbox

log = structlog.get_logger(__name__)

T = TypeVar("T")
RunOnce = Callable[[RunSpec], Awaitable[RunResult]]
Work = Callable[[RunOnce], Awaitable[T]]

_RETRY_AFTER_MAX_S = 60


class Job(Generic[T]):
    """Up to `runs` sandbox runs, performed by `work` through the runner it is given."""

    def __init__(self, runs: int, work: Work[T]) -> None:
        if runs < 1:
            raise ValueError("a job has at least one run")
        self.runs = runs
        self.work = work
        self.result: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.not_started = runs
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False
        self.cpuset: str | None = None  # the CPU its runs were pinned to, if any


class Scheduler:
    """Admission control plus `workers` coroutines that execute jobs in FIFO order."""

    def __init__(
        self, sandbox: Sandbox, *, workers: int, backlog: int, pin_cpus: bool = False
    ) -> None:
        self._sandbox = sandbox
        self._workers = workers
        # With a CPU to spare for the service and the engine (CPU 0), each worker's runs are
        # pinned to a CPU of their own, so that runs do not migrate or share a core.
        spare = (os.cpu_count() or 1) > workers
        self._worker_cpus = [str(n + 1) for n in range(workers)] if pin_cpus and spare else None
        self._backlog = backlog
        self._queue: deque[Job[object]] = deque()
        self._wakeup = asyncio.Event()
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._busy_workers = 0
        self._pending = 0  # runs admitted and not started
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._mean_run_s = 0.5  # a running estimate, for Retry-After

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
    def workers(self) -> int:
        return self._workers

    def check_room(self, runs: int) -> None:
        """Raises Busy/ShuttingDown now if a job of `runs` runs would be refused.

        Lets a request be refused before any engine call is made for it: under overload,
        rejections cost the engine nothing and come back at once.
        """
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        would_wait = self._waiting_if(self._pending + runs, len(self._queue) + 1)
        if would_wait > self._backlog:
            raise Busy(
                f"the backlog is full: {self.waiting_runs} runs are waiting and this request "
                f"adds {runs}; at most {self._backlog} may wait",
                retry_after=self._retry_after(),
            )

    def submit_all(self, jobs: list[Job[T]]) -> list[Job[T]]:
        """Queues all the jobs, or none of them (Busy/ShuttingDown)."""
        self.check_room(sum(job.runs for job in jobs))
        return [self.submit(job) for job in jobs]

    def submit(self, job: Job[T]) -> Job[T]:
        """Queues the job, or raises Busy/ShuttingDown without queueing anything."""
        self.check_room(job.runs)
        self._pending += job.runs
        self._queue.append(job)  # type: ignore[arg-type]
        self._idle.clear()
        self._wakeup.set()
        return job

    def cancel(self, job: Job[T]) -> None:
        """Drops the job's queued runs and kills its running one (the client went away)."""
        if job.cancelled or job.result.done():
            return
        job.cancelled = True
        if job.task is not None:
            job.task.cancel()
            return
        with contextlib.suppress(ValueError):
            self._queue.remove(job)  # type: ignore[arg-type]
        self._pending -= job.not_started
        job.not_started = 0
        job.result.cancel()
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
            self._pending -= job.not_started
            job.not_started = 0
            if not job.result.done():
                job.result.set_exception(ShuttingDown("the service stopped before the runs began"))
        for task in self._worker_tasks:
            task.cancel()
        await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        self._worker_tasks = []

    # --- the workers ---------------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            job = self._queue.popleft()
            job.cpuset = self._worker_cpus[index] if self._worker_cpus else None
            self._busy_workers += 1
            job.task = asyncio.create_task(self._execute(job))
            try:
                await asyncio.wait([job.task])
            except asyncio.CancelledError:
                job.task.cancel()
                await asyncio.wait([job.task])
                raise
            finally:
                self._busy_workers -= 1
                self._update_idle()

    async def _execute(self, job: Job[T]) -> None:
        loop = asyncio.get_running_loop()

        async def run_once(spec: RunSpec) -> RunResult:
            if job.not_started <= 0:
                raise RuntimeError("a job ran more runs than it declared")
            job.not_started -= 1
            self._pending -= 1
            started = loop.time()
            if job.cpuset is not None:
                spec = dataclasses.replace(spec, cpuset=job.cpuset)
            result = await self._sandbox.run(spec)
            self._mean_run_s += 0.1 * ((loop.time() - started) - self._mean_run_s)
            return result

        try:
            value = await job.work(run_once)
        except asyncio.CancelledError:
            if self._closing and not job.cancelled:
                job.result.set_exception(ShuttingDown("the service stopped before the runs ended"))
            else:
                job.result.cancel()
            raise
        except Exception as exc:  # a bug in the work: the request gets a 500, the worker lives
            log.exception("job failed")
            job.result.set_exception(exc)
        else:
            job.result.set_result(value)
        finally:
            self._pending -= job.not_started  # runs the work chose not to do never will
            job.not_started = 0

    def _update_idle(self) -> None:
        if not self._queue and self._busy_workers == 0:
            self._idle.set()

    def _retry_after(self) -> int:
        seconds = self.waiting_runs * self._mean_run_s / self._workers
        return max(1, min(_RETRY_AFTER_MAX_S, math.ceil(seconds)))
