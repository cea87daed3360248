"""The job store on a real SQLite file and a real PostgreSQL server: recovery after a
crash, event ids across attempts, pages, and retention."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bgcompiler.store.database import database_url, open_database
from bgcompiler.store.jobs import CANCELLED, DONE, QUEUED, RUNNING, JobStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return database_url(None, str(tmp_path / "data"))
    url = request.getfixturevalue("postgres_url")
    # Each test gets an empty store: a fresh schema of its own in the session's server.
    schema = f"t{uuid.uuid4().hex[:12]}"
    return database_url(f"{url}?options=-csearch_path%3D{schema}", "") + f"#{schema}"


@pytest.fixture
async def store(store_url: str, tmp_path: Path) -> AsyncIterator[JobStore]:
    url, _, schema = store_url.partition("#")
    if schema:
        from sqlalchemy import create_engine, text

        admin = create_engine(url.split("?")[0])
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
    opened = JobStore(await open_database(url, str(tmp_path / "data")))
    opened.start()
    yield opened
    await opened.close()


async def new_job(store: JobStore) -> str:
    job_id = uuid.uuid4().hex
    _, stored = store.create(job_id, plan=b"{}", runs_total=2, metadata=None, callback_url=None)
    await stored
    return job_id


async def test_recovery_requeues_running_jobs_without_their_partial_runs(
    store: JobStore,
) -> None:
    """A job that was running when the service died: queued again, its runs gone, its event
    ids still increasing; queued jobs come back oldest first; ended ones stay ended."""
    running = await new_job(store)
    queued = await new_job(store)
    ended = await new_job(store)
    store.started(running)
    store.event(running, "started", b"")
    store.event(running, "run", b"r1", counts_run=True)
    store.started(ended)
    store.finished(ended, DONE, outcome=b"o")
    await store.flush()
    assert (await store.get(running)).status == RUNNING  # type: ignore[union-attr]
    back = await store.recover()
    assert [row.id for row in back] == [running, queued]
    row = await store.get(running)
    assert row is not None
    assert (row.status, row.runs_done, row.attempts) == (QUEUED, 0, 1)
    assert [e.kind for e in await store.events_after(running, 0)] == ["started"]
    assert store.started(running) == 2
    store.event(running, "started", b"")
    await store.flush()
    ids = [e.id for e in await store.events_after(running, 0)]
    assert ids == [1, 3]  # 2 was the discarded run's: never reused
    assert (await store.get(ended)).status == DONE  # type: ignore[union-attr]


async def test_the_rows_kept_in_memory_are_the_rows_in_the_database(
    store: JobStore, store_url: str, tmp_path: Path
) -> None:
    """The store answers for the jobs it runs from memory: each row, at every step (queued,
    running, runs counted, ended), equals what a store with nothing in memory reads from
    the database."""
    url = store_url.partition("#")[0]
    reader = JobStore(await open_database(url, str(tmp_path / "data")))
    try:
        job_id = uuid.uuid4().hex
        steps = [
            lambda: None,
            lambda: store.started(job_id),
            lambda: store.event(job_id, "run", b"r", counts_run=True),
            lambda: store.event(job_id, "run", b"r", counts_run=True),
            lambda: store.finished(job_id, DONE, outcome=b"\x00\xffo"),
        ]
        _, stored = store.create(
            job_id, plan=b"\x01{}", runs_total=2, metadata='{"a":1}', callback_url=None
        )
        await stored
        for step in steps:
            step()
            await store.flush()
            kept = await store.get(job_id)
            assert kept == await reader.get(job_id)
        assert kept is not None
        assert (kept.status, kept.runs_done) == (DONE, 2)
    finally:
        await reader.close()


async def test_old_finished_jobs_are_purged_with_their_events(store: JobStore) -> None:
    """Jobs that ended before the cut-off go, with their events; newer ones and unfinished
    ones stay."""
    old, recent, waiting = await new_job(store), await new_job(store), await new_job(store)
    for job_id in (old, recent):
        store.started(job_id)
        store.event(job_id, "run", b"x", counts_run=True)
        store.finished(job_id, CANCELLED if job_id == old else DONE)
    store.delivery(old, 1, 500, None)
    await store.flush()
    cut = time.time() + 1  # everything so far counts as old ...
    assert await store.purge(cut - 3600) == 0  # ... but not an hour before now
    assert await store.purge(cut) == 2
    assert await store.get(old) is None
    assert await store.get(recent) is None
    assert await store.events_after(old, 0) == []
    assert await store.deliveries(old) == []
    assert (await store.get(waiting)).status == QUEUED  # type: ignore[union-attr]


async def test_pages_are_newest_first_with_no_job_twice(store: JobStore) -> None:
    """Keyset pages of 2 over 5 jobs: each job exactly once, newest first."""
    made = [await new_job(store) for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        rows, cursor = await store.page(status=None, limit=2, cursor=cursor)
        seen += [row.id for row in rows]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    assert await store.count_queued_runs() == 10


async def test_a_refused_write_in_a_batch_fails_alone_and_is_logged_once(store: JobStore) -> None:
    """A batch with one write the database refuses: the others commit, only that one
    fails, and the refusal is logged once (not once for the batch and once for itself)."""
    from sqlalchemy import text
    from sqlalchemy.engine import Connection
    from sqlalchemy.exc import IntegrityError
    from structlog.testing import capture_logs

    from bgcompiler.store.jobs import _Pending

    def fine(connection: Connection) -> None:
        connection.execute(text("SELECT 1"))

    def refused(connection: Connection) -> None:
        raise IntegrityError("INSERT INTO jobs", None, ValueError("duplicate key"))

    batch = [_Pending(write, (), None) for write in (fine, refused, fine)]
    with capture_logs() as logs:
        errors = store._commit(batch)
    assert [error is None for error in errors] == [True, False, True]
    assert [entry["event"] for entry in logs] == ["the job store refused"]


@pytest.fixture
async def postgres_store_url(postgres_url: str) -> str:
    """An empty schema of its own in the session's server; its connections are named, so
    that a test can end them."""
    from sqlalchemy import create_engine, text

    schema = f"t{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url(postgres_url, ""))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    return database_url(
        f"{postgres_url}?options=-csearch_path%3D{schema}&application_name={schema}", ""
    )


async def test_a_pooled_connection_the_server_ended_is_replaced_before_use(
    postgres_store_url: str, postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL ends every connection of the store (as a restart does) while they sit in
    the pool: the next read and the next write still succeed, each on a new connection."""
    store = JobStore(await open_database(postgres_store_url, str(tmp_path)))
    store.start()
    try:
        await new_job(store)
        assert await store.count_queued_runs() == 2  # both the writer's and a reader's
        name = postgres_store_url.rsplit("application_name=", 1)[1]
        await asyncio.to_thread(_end_connections, database_url(postgres_url, ""), name)
        assert await store.count_queued_runs() == 2
        await new_job(store)
        assert await store.count_queued_runs() == 4
    finally:
        await store.close()


def _end_connections(url: str, name: str) -> None:
    """Ends the server's connections named `name`; returns once they are gone."""
    from sqlalchemy import create_engine, text

    # Autocommit: pg_stat_activity is read once per transaction.
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            ended = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": name},
            ).all()
            assert ended, "the store had no connection open"
            count = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
            deadline = time.monotonic() + 10
            while connection.execute(count, {"name": name}).scalar():
                assert time.monotonic() < deadline, "the connections did not end"
                time.sleep(0.05)
    finally:
        admin.dispose()


@pytest.mark.parametrize(("notifies", "held"), [(False, False), (True, False), (True, True)])
async def test_the_end_of_a_job_is_one_round_trip_on_postgresql(
    postgres_store_url: str, tmp_path: Path, notifies: bool, held: bool
) -> None:
    """A job's last run and its end (the commit a waiter waits for), with its notification
    to the other nodes, reach PostgreSQL in one round trip (pipeline mode), where they took
    four (BEGIN, a statement each, the notification with COMMIT); a worker's writes too,
    each guarded by the attempt it holds, whose answers (still held or not) are read once
    the round trip is done. Measured through a proxy that delays what the store sends by
    0.4 s: one round trip takes about 0.4 s, four 1.6 s. What they write is what separate
    statements wrote. (Only that step is delayed: the rest would take the test 19 s.)"""
    from sqlalchemy.engine import make_url

    from tests.integration.latency_proxy import LatencyProxy

    url = make_url(postgres_store_url)
    proxy = LatencyProxy(url.port or 5432, delay=0)
    lost: list[str] = []
    store = JobStore(
        await open_database(url.set(port=proxy.port).render_as_string(False), str(tmp_path)),
        notifies=notifies,
        keeps_rows=not held,
        on_lost=lost.append,
    )
    store.start()
    try:
        job_id = await new_job(store)
        if held:
            assert await store.claim(job_id, "w1", stale_before=time.time() - 5) is not None
        store.started(job_id)
        await store.flush()
        store.event(job_id, "run", b'{"index": 0}', counts_run=True)
        store.finished(job_id, DONE, outcome=b"{}")
        proxy.delay = 0.4
        began = time.monotonic()
        await store.flush()
        round_trips = (time.monotonic() - began) / proxy.delay
        proxy.delay = 0
        assert round_trips < 2, round_trips
        row = await store.page(status=DONE, limit=1, cursor=None)
        assert [(job.id, job.runs_done, job.outcome) for job in row[0]] == [(job_id, 1, b"{}")]
        kinds = [stored.kind for stored in await store.events_after(job_id, 0)]
        assert kinds == ["run", "done"]
        assert lost == []
    finally:
        await store.close()
        proxy.close()


async def test_a_job_s_insert_and_its_start_right_after_are_one_commit(
    store: JobStore, store_url: str, tmp_path: Path
) -> None:
    """A job started on a free worker two turns of the loop after its insert (as a job
    submitted to an idle node is): its insert, its start and its `started` event are
    committed together, one commit instead of two. Seen by the database: on PostgreSQL a
    trigger records the transaction that wrote each row; on SQLite the library traces the
    statements it runs, its own BEGIN and COMMIT included."""
    from sqlalchemy import create_engine, event, text

    url, _, schema = store_url.partition("#")
    traced: list[str] = []
    if schema:
        ddl = create_engine(url)
        with ddl.begin() as connection:
            connection.execute(text("CREATE TABLE written (xact text)"))
            connection.execute(
                text(
                    "CREATE FUNCTION note_xact() RETURNS trigger AS $$ BEGIN "
                    "INSERT INTO written VALUES (pg_current_xact_id()::text); RETURN NEW; "
                    "END $$ LANGUAGE plpgsql"
                )
            )
            for table in ("jobs", "events"):
                connection.execute(
                    text(
                        f"CREATE TRIGGER note_{table} AFTER INSERT OR UPDATE ON {table} "
                        "FOR EACH ROW EXECUTE FUNCTION note_xact()"
                    )
                )
    else:
        # Every connection the store takes from its pool traces its statements.
        def trace(dbapi_connection: Any, *_: Any) -> None:
            dbapi_connection.set_trace_callback(traced.append)

        event.listen(store._engine, "checkout", trace)
    job_id = uuid.uuid4().hex
    loop = asyncio.get_running_loop()

    def start() -> None:
        store.started(job_id)
        store.event(job_id, "started", b"")

    _, stored = store.create(job_id, plan=b"{}", runs_total=1, metadata=None, callback_url=None)
    loop.call_soon(loop.call_soon, start)
    await stored
    await store.flush()
    if schema:
        with ddl.begin() as connection:
            xacts = connection.execute(text("SELECT xact FROM written")).scalars().all()
        ddl.dispose()
        assert len(xacts) == 3, xacts  # the job's insert and update, the event's insert
        assert len(set(xacts)) == 1, xacts
    else:
        kinds = [
            "commit" if sql == "COMMIT" else "write"
            for sql in traced
            if "INTO" in sql or sql.startswith(("UPDATE", "COMMIT"))
        ]
        writing = [batch for batch in " ".join(kinds).split("commit") if "write" in batch]
        assert len(writing) == 1, traced
        assert kinds.count("write") == 3, traced
    assert (await store.get(job_id)).status == RUNNING  # type: ignore[union-attr]
    assert [stored.kind for stored in await store.events_after(job_id, 0)] == ["started"]


async def test_a_write_lock_held_by_another_process_never_blocks_the_event_loop(
    tmp_path: Path,
) -> None:
    """SQLite commits a batch on the event loop when the store's thread is idle. Another
    process holding the database's write lock (here a connection of its own, for 1.5 s)
    does not stall the loop: the batch goes to the store's thread, which waits for the
    lock, and is committed once it is free."""
    import sqlite3

    data = tmp_path / "data"
    store = JobStore(await open_database(database_url(None, str(data)), str(data)))
    store.start()
    try:
        job_id = await new_job(store)
        other = sqlite3.connect(data / "jobs.db", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # the write lock, as a second writer holds it
        asyncio.get_running_loop().call_later(1.5, other.execute, "COMMIT")
        stalls: list[float] = []

        async def ticker() -> None:
            while True:
                before = time.monotonic()
                await asyncio.sleep(0.01)
                stalls.append(time.monotonic() - before)

        ticking = asyncio.create_task(ticker())
        store.started(job_id)
        began = time.monotonic()
        await store.flush()
        waited = time.monotonic() - began
        ticking.cancel()
        other.close()
        assert waited > 1.0  # the write did wait for the lock
        assert max(stalls) < 0.5, max(stalls)  # the loop did not
        assert (await store.get(job_id)).status == RUNNING  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_sqlite_s_log_is_checkpointed_so_it_stops_growing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Automatic checkpoints are off (a commit may run on the event loop): the store
    checkpoints the WAL itself every CHECKPOINT_EVERY commits, so the log file is reused
    instead of growing with every commit."""
    from bgcompiler.store import jobs as jobs_module

    monkeypatch.setattr(jobs_module, "CHECKPOINT_EVERY", 10)
    data = tmp_path / "data"
    store = JobStore(await open_database(database_url(None, str(data)), str(data)))
    store.start()
    wal = data / "jobs.db-wal"
    try:
        for _ in range(20):
            await new_job(store)
        early = wal.stat().st_size
        for _ in range(200):
            await new_job(store)
        assert wal.stat().st_size < 2 * early, (early, wal.stat().st_size)
    finally:
        await store.close()
