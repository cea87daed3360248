"""The statements a job's life runs through, built once with bound parameters.

Building a statement with its values (`insert(t).values(**row)`) costs SQLAlchemy about
0.15-0.25 ms of CPU per execution here, more than SQLite takes to run it; a statement built
once and given its parameters costs a fraction of that. Only the statements every job runs
are here (its insert, start, events, end, claim, reads); the rare ones stay where they are
used.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Executable, and_, bindparam, exists, insert, select
from sqlalchemy import update as update_

from bgcompiler.store.driver import Statements
from bgcompiler.store.schema import events, jobs, workers

RUNNING = "running"  # store/jobs.py's (which imports this module)
EVENT_COLUMNS = ("job_id", "id", "attempt", "kind", "data")

GET_JOB = select(jobs).where(jobs.c.id == bindparam("job_id"))
EVENTS_AFTER = (
    select(events.c.id, events.c.attempt, events.c.kind, events.c.data)
    .where(events.c.job_id == bindparam("job_id"), events.c.id > bindparam("after"))
    .order_by(events.c.id)
)


@functools.cache
def insert_job(columns: tuple[str, ...]) -> Executable:
    """INSERT INTO jobs, a parameter of its name for each column."""
    return insert(jobs).values({name: bindparam(name) for name in columns})


def change_job(keys: tuple[str, ...]) -> Executable:
    """UPDATE jobs SET each of `keys` (parameters named `set_<key>`) WHERE id = :job_id."""
    return _job_update(keys, False)


# Takes a job never run before (queued, no attempt yet) for a worker; RETURNING it.
FIRST_CLAIM = (
    update_(jobs)
    .where(jobs.c.id == bindparam("job_id"), jobs.c.status == "queued", jobs.c.attempts == 0)
    .values(status=RUNNING, attempts=1, worker=bindparam("claimer"), started_at=bindparam("now"))
    .returning(*jobs.c)
)
# The same, only for the process that started last under the worker's name.
FIRST_CLAIM_OF_INCARNATION = FIRST_CLAIM.where(
    exists(
        select(workers.c.id).where(
            workers.c.id == bindparam("claimer"),
            workers.c.started_at == bindparam("incarnation"),
        )
    )
)


def event_with_job(
    connection: Statements,
    row: dict[str, Any],
    held: int | None,
    changes: dict[str, Any],
    *,
    counts_run: bool = False,
) -> Callable[[], bool]:
    """Appends the event `row` and makes `changes` to its job (and counts a run on it);
    with `held`, only while that attempt holds the job. Returns whether it did, to be asked
    once the batch is committed (in a PostgreSQL pipeline, the answer comes with the
    commit's). On PostgreSQL one statement (a data-modifying CTE)."""
    keys = tuple(sorted(changes))
    # Named apart from the jobs' columns: SQLAlchemy would SET a column a parameter names.
    params = {f"event_{name}": row[name] for name in EVENT_COLUMNS}
    params |= {"job_id": row["job_id"]}
    params |= {f"set_{key}": value for key, value in changes.items()}
    if held is not None:
        params["held"] = held
    changes_job = bool(keys) or counts_run
    if connection.dialect.name == "postgresql" and changes_job:
        statement = _event_changing_job(keys, counts_run, held is not None)
        appended = connection.execute(statement, params)
        return _done if held is None else appended.exists
    if held is None:
        connection.execute(_INSERT_EVENT, params)
        if changes_job:
            connection.execute(_job_update(keys, counts_run), params)
        return _done
    appended = connection.execute(_INSERT_EVENT_IF_HELD, params)
    if not changes_job:
        return appended.exists
    # SQLite (PostgreSQL did both above): what it returns is there at once.
    if not appended.exists():
        return _not_done
    connection.execute(_job_update(keys, counts_run), params)
    return _done


def _done() -> bool:
    return True


def _not_done() -> bool:
    return False


def _held() -> ColumnElement[bool]:
    """The job is still running in the attempt `:held` (no other worker took it over)."""
    return and_(
        jobs.c.id == bindparam("job_id"),
        jobs.c.attempts == bindparam("held"),
        jobs.c.status == RUNNING,
    )


def _event_values() -> Any:
    return select(
        *(bindparam(f"event_{name}", type_=events.c[name].type) for name in EVENT_COLUMNS)
    )


_INSERT_EVENT = insert(events).values({name: bindparam(f"event_{name}") for name in EVENT_COLUMNS})
_INSERT_EVENT_IF_HELD = (
    insert(events)
    .from_select(EVENT_COLUMNS, _event_values().where(exists(select(jobs.c.id).where(_held()))))
    .returning(events.c.id)
)


@functools.cache
def _change_job_values(keys: tuple[str, ...], counts_run: bool) -> Any:
    values: dict[str, Any] = {key: bindparam(f"set_{key}") for key in keys}
    if counts_run:
        values["runs_done"] = jobs.c.runs_done + 1
    return values


@functools.cache
def _job_update(keys: tuple[str, ...], counts_run: bool) -> Executable:
    return (
        update_(jobs)
        .where(jobs.c.id == bindparam("job_id"))
        .values(_change_job_values(keys, counts_run))
    )


@functools.cache
def _event_changing_job(keys: tuple[str, ...], counts_run: bool, held: bool) -> Executable:
    """PostgreSQL: the event and its job's change in one statement (a data-modifying CTE)."""
    values = _change_job_values(keys, counts_run)
    if not held:
        appended = (
            insert(events)
            .values({name: bindparam(f"event_{name}") for name in EVENT_COLUMNS})
            .returning(events.c.job_id)
            .cte("appended")
        )
        return (
            update_(jobs)
            .where(jobs.c.id.in_(select(appended.c.job_id)))
            .values(values)
            .add_cte(appended)
        )
    # The job changes only while the attempt holds it, and the event goes with it.
    holding = update_(jobs).where(_held()).values(values).returning(jobs.c.id).cte("holding")
    return (
        insert(events)
        .from_select(EVENT_COLUMNS, _event_values().select_from(holding))
        .add_cte(holding)
        .returning(events.c.id)
    )
