"""The scheduler: admission control, sequential runs per job, cancellation, shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

from bgcompiler.core.plan import Plan
from bgcompiler.errors import Busy, ImageNotFound, ShuttingDown
from bgcompiler.models import RunResult
from bgcompiler.sandbox.fake import FakeSandbox
from bgcompiler.scheduler import Job, Scheduler
from tests.unit.conftest import spec


def repeat(command: str, count: int, **plan: object) -> Job:
    return Job(uuid.uuid4().hex, Plan(run=spec(command), count=count, **plan))  # type: ignore[arg-type]


async def results(job: Job) -> list[RunResult]:
    return [record.result for record in (await job.outcome).runs]


async def test_runs_of_one_job_execute_one_after_another(fake: FakeSandbox) -> None:
    """A job's runs never overlap, even with idle workers available."""
    scheduler = Scheduler(fake, workers=4, backlog=100)
    scheduler.start()
    job = scheduler.submit(repeat("sleep 0.01; echo x", 5))
    done = await results(job)
    assert [r.stdout for r in done] == [b"x\n"] * 5
    assert fake.max_running == 1
    await scheduler.shutdown(1)


async def test_workers_bound_concurrency(fake: FakeSandbox) -> None:
    """At most `workers` runs execute at once, however many jobs wait."""
    scheduler = Scheduler(fake, workers=2, backlog=100)
    scheduler.start()
    jobs = [scheduler.submit(repeat("sleep 0.02", 1)) for _ in range(6)]
    await asyncio.gather(*(job.outcome for job in jobs))
    assert fake.max_running == 2
    assert len(fake.started) == 6
    await scheduler.shutdown(1)


async def test_a_job_that_does_not_fit_is_rejected_whole_and_at_once(fake: FakeSandbox) -> None:
    """Busy is raised synchronously; none of the rejected job's runs ever start."""
    scheduler = Scheduler(fake, workers=1, backlog=3)
    scheduler.start()
    first = scheduler.submit(repeat("sleep 0.05", 1))  # starts at once, waits for nothing
    second = scheduler.submit(repeat("sleep 0.01", 3))  # 3 runs wait
    with pytest.raises(Busy) as raised:
        scheduler.submit(repeat("echo rejected", 1))
    assert raised.value.retry_after >= 1
    assert scheduler.waiting_runs == 3  # first's run starts at once: only second's wait
    await asyncio.gather(first.outcome, second.outcome)
    assert all(s.command != "echo rejected" for s in fake.started)
    assert scheduler.waiting_runs == 0
    await scheduler.shutdown(1)


async def test_backlog_zero_still_runs_on_an_idle_worker(fake: FakeSandbox) -> None:
    """With --backlog 0 a single run is admitted when a worker is free (nothing waits)."""
    scheduler = Scheduler(fake, workers=1, backlog=0)
    scheduler.start()
    job = scheduler.submit(repeat("echo ok", 1))
    with pytest.raises(Busy):
        scheduler.submit(repeat("echo ok", 1))
    assert (await results(job))[0].stdout == b"ok\n"
    await scheduler.shutdown(1)


async def test_cancelling_a_queued_job_drops_its_runs(fake: FakeSandbox) -> None:
    """A job cancelled while queued frees its backlog space and never runs."""
    scheduler = Scheduler(fake, workers=1, backlog=10)
    scheduler.start()
    blocker = scheduler.submit(repeat("sleep 0.1", 1))
    queued = scheduler.submit(repeat("echo dropped", 4))
    await asyncio.sleep(0.01)
    assert scheduler.waiting_runs == 4
    scheduler.cancel(queued)
    assert scheduler.waiting_runs == 0
    assert queued.outcome.cancelled()
    await blocker.outcome
    await asyncio.sleep(0.05)
    assert all(s.command != "echo dropped" for s in fake.started)
    await scheduler.shutdown(1)


async def test_cancelling_a_running_job_cancels_its_run(fake: FakeSandbox) -> None:
    """The running run is cancelled (the sandbox kills its container); later runs never start."""
    scheduler = Scheduler(fake, workers=1, backlog=10)
    scheduler.start()
    job = scheduler.submit(repeat("sleep 5", 3))
    await asyncio.sleep(0.05)
    scheduler.cancel(job)
    await asyncio.sleep(0.05)
    assert fake.cancelled == 1
    assert len(fake.started) == 1
    assert scheduler.waiting_runs == 0
    # the worker survives and serves the next job
    assert (await results(scheduler.submit(repeat("echo next", 1))))[0].stdout == b"next\n"
    await scheduler.shutdown(1)


async def test_shutdown_lets_runs_finish_within_the_grace(fake: FakeSandbox) -> None:
    """Runs that end before the deadline complete normally; new jobs are refused."""
    scheduler = Scheduler(fake, workers=1, backlog=10)
    scheduler.start()
    job = scheduler.submit(repeat("sleep 0.05; echo done", 2))
    stopping = asyncio.create_task(scheduler.shutdown(5))
    await asyncio.sleep(0)
    with pytest.raises(ShuttingDown):
        scheduler.submit(repeat("echo late", 1))
    await stopping
    assert [r.result.stdout for r in job.outcome.result().runs] == [b"done\n"] * 2


async def test_shutdown_cancels_runs_past_the_grace(fake: FakeSandbox) -> None:
    """After the deadline, running runs are cancelled; their job, and a job that never
    started, fail with ShuttingDown (a 503 for whoever waits, never a cancelled request)."""
    scheduler = Scheduler(fake, workers=1, backlog=10)
    scheduler.start()
    job = scheduler.submit(repeat("sleep 10", 1))
    queued = scheduler.submit(repeat("echo never", 1))
    await asyncio.sleep(0.02)
    await asyncio.wait_for(scheduler.shutdown(0.1), timeout=2)
    assert fake.cancelled == 1
    with pytest.raises(ShuttingDown):
        job.outcome.result()
    with pytest.raises(ShuttingDown):
        queued.outcome.result()


async def test_a_failed_compile_releases_the_runs_it_will_not_do(fake: FakeSandbox) -> None:
    """A job does fewer runs than it planned when its compile fails: the rest stop counting."""
    scheduler = Scheduler(fake, workers=1, backlog=5)
    scheduler.start()
    failing = dataclasses.replace(spec("exit 1"), artifacts=True)
    job = scheduler.submit(repeat("echo never", 4, compile=failing))
    outcome = await job.outcome
    assert outcome.compile is not None
    assert outcome.runs == ()
    assert scheduler.waiting_runs == 0
    assert [s.command for s in fake.started] == ["exit 1"]
    await scheduler.shutdown(1)


async def test_a_failing_job_does_not_kill_its_worker(fake: FakeSandbox) -> None:
    """A job whose image is gone fails with ImageNotFound for its submitter; the worker
    goes on."""
    scheduler = Scheduler(fake, workers=1, backlog=5)
    scheduler.start()
    gone = Job("j", Plan(run=dataclasses.replace(spec("echo x"), image="gone/image")))
    scheduler.submit(gone)
    with pytest.raises(ImageNotFound):
        await gone.outcome
    assert (await results(scheduler.submit(repeat("echo alive", 1))))[0].stdout == b"alive\n"
    await scheduler.shutdown(1)


async def test_spread_runs_use_every_worker_and_keep_their_order(fake: FakeSandbox) -> None:
    """sequential=false: the runs execute on all the workers at once; the outcome lists them
    in plan order whatever order they finished in."""
    scheduler = Scheduler(fake, workers=3, backlog=10)
    scheduler.start()
    job = scheduler.submit(repeat("sleep 0.05; stdin", 6, sequential=False))
    outcome = await job.outcome
    assert fake.max_running == 3
    assert [record.index for record in outcome.runs] == list(range(6))
    assert outcome.cpuset is None
    await asyncio.sleep(0.01)  # the outcome is out just before the worker is free again
    assert scheduler.busy_workers == 0
    await scheduler.shutdown(1)


async def test_a_spread_job_on_one_worker_still_finishes(fake: FakeSandbox) -> None:
    """With a single worker the job's own worker runs all of its spread runs."""
    scheduler = Scheduler(fake, workers=1, backlog=10)
    scheduler.start()
    job = scheduler.submit(repeat("echo s", 4, sequential=False))
    assert len((await job.outcome).runs) == 4
    await scheduler.shutdown(1)


async def test_cancelling_a_spread_job_cancels_its_runs_on_other_workers(
    fake: FakeSandbox,
) -> None:
    """A spread job cancelled mid-way: every one of its running runs is cancelled."""
    scheduler = Scheduler(fake, workers=3, backlog=10)
    scheduler.start()
    job = scheduler.submit(repeat("sleep 5", 6, sequential=False))
    await asyncio.sleep(0.05)
    assert fake.running == 3
    scheduler.cancel(job)
    await asyncio.sleep(0.05)
    assert fake.running == 0
    assert fake.cancelled == 3
    assert scheduler.waiting_runs == 0
    assert scheduler.busy_workers == 0
    await scheduler.shutdown(1)
