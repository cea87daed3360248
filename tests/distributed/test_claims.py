"""The store's side of the distributed mode's guarantees, on a real PostgreSQL: a job is held
by one attempt at a time, a lost attempt writes nothing, the watchdog takes back the jobs of
vanished workers (or fails them once their attempts are used up, saying why)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy.engine import Engine

from bgcompiler.store.cluster import ClusterStore, WorkerInfo
from bgcompiler.store.database import database_url, open_database
from bgcompiler.store.jobs import DONE, JobStore
from tests.distributed.cluster import create_database

pytestmark = pytest.mark.asyncio


class Parts:
    def __init__(
        self, url: str, engine: Engine, jobs: JobStore, cluster: ClusterStore, lost: list[str]
    ) -> None:
        self.url = url
        self.engine = engine
        self.jobs = jobs
        self.cluster = cluster
        self.lost = lost

    async def job(self, plan: bytes = b"{}") -> str:
        job_id = uuid.uuid4().hex
        _, stored = self.jobs.create(
            job_id, plan=plan, runs_total=1, metadata=None, callback_url=None, route="r"
        )
        await stored
        return job_id

    async def beat(self, worker: str, *, ago: float = 0) -> None:
        await self.cluster.heartbeat(
            WorkerInfo(worker, "host", "runc", ("img",), 2, 0, {}, False, time.time())
        )
        if ago:
            with psycopg.connect(self.url, autocommit=True) as connection:
                connection.execute(
                    "UPDATE workers SET seen_at = seen_at - %s WHERE id = %s", (ago, worker)
                )

    def row(self, job_id: str) -> tuple[object, ...]:
        with psycopg.connect(self.url, autocommit=True) as connection:
            found = connection.execute(
                "SELECT status, attempts, worker, error FROM jobs WHERE id = %s", (job_id,)
            ).fetchone()
        assert found is not None
        return tuple(found)


@pytest.fixture
async def parts(postgres_url: str) -> AsyncIterator[Parts]:
    url = create_database(postgres_url, f"claims_{uuid.uuid4().hex[:8]}")
    engine = await open_database(database_url(url, "/tmp"), "/tmp")
    lost: list[str] = []
    jobs = JobStore(engine, keeps_rows=False, notifies=True, on_lost=lost.append)
    jobs.start()
    yield Parts(url, engine, jobs, ClusterStore(engine), lost)
    await jobs.close()


async def test_a_job_held_by_a_live_worker_is_not_claimed_again(parts: Parts) -> None:
    job_id = await parts.job()
    await parts.beat("w1")
    first = await parts.jobs.claim(job_id, "w1", stale_before=time.time() - 5)
    assert first is not None
    assert first.attempt == 1
    assert await parts.jobs.claim(job_id, "w2", stale_before=time.time() - 5) is None
    assert parts.row(job_id)[:3] == ("running", 1, "w1")


async def test_a_vanished_holder_s_job_is_claimed_and_its_late_writes_change_nothing(
    parts: Parts,
) -> None:
    job_id = await parts.job()
    await parts.beat("w1")
    zombie = JobStore(parts.engine, keeps_rows=False, on_lost=parts.lost.append)
    zombie.start()
    try:
        assert await zombie.claim(job_id, "w1", stale_before=time.time() - 5) is not None
        await parts.beat("w1", ago=60)  # silent for a minute: gone
        second = await parts.jobs.claim(job_id, "w2", stale_before=time.time() - 5)
        assert second is not None
        assert second.attempt == 2
        zombie.event(job_id, "run", b"late")
        zombie.finished(job_id, DONE, outcome=b"late outcome")
        await zombie.flush()
        assert set(parts.lost) == {job_id}  # told (once per refused write)
        assert await parts.jobs.events_after(job_id, 0) == []
        assert parts.row(job_id)[:3] == ("running", 2, "w2")
        parts.jobs.finished(job_id, DONE, outcome=b"the outcome")
        await parts.jobs.flush()
        row = await parts.jobs.get(job_id)
        assert row is not None
        assert (row.status, row.outcome) == (DONE, b"the outcome")
    finally:
        await zombie.close()


async def test_the_watchdog_requeues_then_fails_with_the_reason(parts: Parts) -> None:
    job_id = await parts.job()
    await parts.beat("w1", ago=60)
    assert await parts.jobs.claim(job_id, "w1", stale_before=0) is not None
    taken = await parts.cluster.take_back(time.time() - 5, max_attempts=2)
    assert [(o.id, o.requeued) for o in taken] == [(job_id, True)]
    status, attempts, worker, error = parts.row(job_id)
    assert (status, attempts, worker) == ("queued", 1, None)
    assert error == "its worker w1 stopped answering during attempt 1"
    await parts.beat("w2", ago=60)
    assert await parts.jobs.claim(job_id, "w2", stale_before=0) is not None
    taken = await parts.cluster.take_back(time.time() - 5, max_attempts=2)
    assert [(o.id, o.requeued) for o in taken] == [(job_id, False)]
    status, attempts, _, error = parts.row(job_id)
    assert (status, attempts) == ("failed", 2)
    assert error == "its worker w2 stopped answering during attempt 2; given up"
    kinds = [event.kind for event in await parts.jobs.events_after(job_id, 0)]
    assert kinds == ["done"]  # its stream ends


async def test_a_running_job_of_a_live_worker_is_left_alone(parts: Parts) -> None:
    job_id = await parts.job()
    await parts.beat("w1")
    assert await parts.jobs.claim(job_id, "w1", stale_before=0) is not None
    assert await parts.cluster.take_back(time.time() - 5, max_attempts=3) == []
    assert parts.row(job_id)[:3] == ("running", 1, "w1")


async def test_a_process_older_than_its_worker_name_s_newest_claims_nothing(
    parts: Parts,
) -> None:
    """Two processes under one worker name (a restart that overlaps the old process): once
    the newer one has announced itself, the older one's claims are refused (WorkerReplaced),
    fresh job or given-back job alike, and its heartbeat no longer overwrites the newer
    one's; the newer one claims."""
    from bgcompiler.errors import WorkerReplaced

    def info(started_at: float) -> WorkerInfo:
        return WorkerInfo("w1", "host", "runc", ("img",), 2, 0, {}, False, started_at)

    older, newer = time.time() - 10, time.time()
    await parts.cluster.heartbeat(info(older))
    await parts.cluster.heartbeat(info(newer))
    await parts.cluster.heartbeat(info(older))  # the older one still beats
    fresh = await parts.job()
    with pytest.raises(WorkerReplaced):
        await parts.jobs.claim(fresh, "w1", stale_before=0, incarnation=older)
    assert parts.row(fresh)[:2] == ("queued", 0)
    claim = await parts.jobs.claim(fresh, "w1", stale_before=0, incarnation=newer)
    assert claim is not None
    assert claim.attempt == 1
    given_back = await parts.job()
    with psycopg.connect(parts.url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET attempts = 1 WHERE id = %s", (given_back,))
    with pytest.raises(WorkerReplaced):
        await parts.jobs.claim(given_back, "w1", stale_before=0, incarnation=older)
    assert parts.row(given_back)[:2] == ("queued", 1)


async def test_nodes_started_together_on_a_new_database_all_open_it(postgres_url: str) -> None:
    """An API node and its workers started at once against an empty database each apply
    the migrations: one at a time (the later ones find the schema made), none fails."""
    url = database_url(create_database(postgres_url, f"fresh_{uuid.uuid4().hex[:8]}"), "/tmp")
    opened = await asyncio.gather(
        *(open_database(url, "/tmp") for _ in range(4)), return_exceptions=True
    )
    for engine in opened:
        if isinstance(engine, Engine):
            engine.dispose()
    assert [e for e in opened if not isinstance(e, Engine)] == []
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as connection:
        [(version_rows,)] = connection.execute("SELECT count(*) FROM alembic_version")
    assert version_rows == 1


@pytest.mark.parametrize(
    ("rerun", "outcome"),
    [(False, b'{"runs": []}'), (True, b'{"runs": []}'), (False, b"x" * 9000)],
    ids=["first attempt", "run again after its worker vanished", "outcome too large to tell"],
)
async def test_an_api_node_s_waiter_gets_the_end_s_row_with_it(
    parts: Parts, rerun: bool, outcome: bytes
) -> None:
    """A worker's end tells the API nodes the columns it left (store/ends.py): the waiter's
    row with them laid over is exactly the row a read gives, whatever the job went through
    (a run counted, a second attempt whose reason stays on the job). An end too large for a
    notification still wakes the waiter, which then reads."""
    from bgcompiler.cluster.notify import Listener
    from bgcompiler.store.ends import ENDS_CHANNEL, JobEnd
    from bgcompiler.store.jobs import JOBS_CHANNEL

    api = JobStore(parts.engine, keeps_rows=False, notifies=True)
    api.start()
    listener = Listener(parts.url, {ENDS_CHANNEL: api.announced_end, JOBS_CHANNEL: api.announced})
    await listener.start()
    try:
        job_id = await parts.job()
        if rerun:
            await parts.beat("w1", ago=60)
            assert await parts.jobs.claim(job_id, "w1", stale_before=0) is not None
            await parts.cluster.take_back(time.time() - 5, max_attempts=3)
        end = api.end_of(job_id)
        assert isinstance(end, JobEnd)
        before = await api.get(job_id)
        assert before is not None
        await parts.beat("w2")
        claim = await parts.jobs.claim(job_id, "w2", stale_before=time.time() - 5)
        assert claim is not None
        parts.jobs.event(job_id, "run", b"{}", counts_run=True)
        parts.jobs.finished(job_id, DONE, outcome=outcome)
        await parts.jobs.flush()
        async with asyncio.timeout(5):
            await end.wait()
        read = await api.get(job_id)
        assert read is not None
        assert (read.status, read.runs_done, read.attempts, read.outcome) == (
            DONE,
            1,
            2 if rerun else 1,
            outcome,
        )
        if rerun:
            assert read.error == "its worker w1 stopped answering during attempt 1"
        if len(outcome) > 8000:
            assert end.changes is None
            assert end.ended(before) is None
        else:
            assert end.ended(before) == read
    finally:
        await listener.stop()
        await api.close()


async def test_an_api_node_watches_the_end_of_its_own_jobs_from_their_insert(
    parts: Parts,
) -> None:
    """An API node's `?wait` for a job it submitted needs no read: the job's end is watched
    from before its insert, with the row as inserted, and the end's columns laid over that
    row are the job as stored. Once the job has ended, or if its insert failed, nothing of
    it is kept."""
    from bgcompiler.cluster.notify import Listener
    from bgcompiler.errors import BgcError
    from bgcompiler.store.ends import ENDS_CHANNEL
    from bgcompiler.store.jobs import JOBS_CHANNEL

    api = JobStore(parts.engine, keeps_rows=False, notifies=True)
    api.start()
    listener = Listener(parts.url, {ENDS_CHANNEL: api.announced_end, JOBS_CHANNEL: api.announced})
    await listener.start()
    try:
        job_id = uuid.uuid4().hex
        row, stored = api.create(
            job_id, plan=b"{}", runs_total=1, metadata='{"k": 1}', callback_url=None, route="r"
        )
        await stored
        watched = api.watched(job_id)
        assert watched is not None
        end, before = watched
        assert before == row
        await parts.beat("w1")
        assert await parts.jobs.claim(job_id, "w1", stale_before=time.time() - 5) is not None
        parts.jobs.event(job_id, "run", b"{}", counts_run=True)
        parts.jobs.finished(job_id, DONE, outcome=b'{"runs": []}')
        await parts.jobs.flush()
        async with asyncio.timeout(5):
            await end.wait()
        assert end.ended(before) == await api.get(job_id)
        assert api.watched(job_id) is None
        _, again = api.create(  # the same id: its insert fails
            job_id, plan=b"{}", runs_total=1, metadata=None, callback_url=None, route="r"
        )
        with pytest.raises(BgcError):
            await again
        assert api.watched(job_id) is None
    finally:
        await listener.stop()
        await api.close()
