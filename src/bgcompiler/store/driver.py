"""A batch of writes run on the database driver's own connection.

Each statement is compiled by SQLAlchemy once and then handed to the driver's cursor with
its parameters. Through SQLAlchemy's `Connection`, every execution cost about 0.1 ms of CPU
here (its execution context, its result object, its events): more than SQLite or
PostgreSQL takes to run one of a job's small writes, and on the path of every job's answer
(a job's end is two to four statements).

On PostgreSQL a batch goes in pipeline mode: its statements, with their BEGIN and COMMIT,
reach the server together and are answered in one round trip. What a statement returns is
then read once that round trip is done: `Rows.exists()`. A `Pipeline`
records the statements and sends them from the event loop on an asyncio connection, with
no thread to hand the batch to and back (each hand-over is a wake-up that waits for a CPU
while the engine handles a run's end).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement, Executable

# Compiled statements kept (the statements every job runs are a few dozen).
COMPILED_KEPT = 256


@dataclass(frozen=True, slots=True)
class _Compiled:
    statement: Executable  # held, so that its id is not reused while it is kept
    query: str
    construct: Callable[[Mapping[str, Any]], MutableMapping[str, Any] | None]
    processors: Mapping[str, Callable[[Any], Any]]
    positions: tuple[str, ...] | None  # qmark (SQLite): the parameters' names in order

    def values(self, params: Mapping[str, Any]) -> Any:
        values = self.construct(params) or {}
        for name, process in self.processors.items():
            if values.get(name) is not None:
                values[name] = process(values[name])
        if self.positions is None:
            return values
        return tuple(values[name] for name in self.positions)


class Rows:
    """What one statement returned: read once, when its answer has come."""

    __slots__ = ("_cursor", "_found")

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self._found: bool | None = None

    def exists(self) -> bool:
        """Whether the statement returned a row (SQLite: at once; PostgreSQL in a pipeline:
        only after `OnConnection.settle()`, or once `Pipeline.send()` returned)."""
        if self._found is None:
            assert self._cursor is not None, "a pipeline's rows are read once it is sent"
            returns = self._cursor.description is not None
            self._found = returns and self._cursor.fetchone() is not None
            self._cursor.close()
        return self._found


class Statements:
    """What a batch's writes are given: `execute` a statement with its parameters, or `sql`
    a statement of neither parameters nor rows."""

    dialect: Dialect

    def execute(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Rows:
        raise NotImplementedError

    def sql(self, query: str) -> None:
        raise NotImplementedError


class OnConnection(Statements):
    """Runs statements at once on the driver connection under `connection` (SQLAlchemy's,
    checked out of its pool and in the transaction state the caller set up)."""

    def __init__(self, connection: Connection) -> None:
        self._driver = connection.connection.driver_connection
        self.dialect: Dialect = connection.dialect
        self._rows: list[Rows] = []

    def execute(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Rows:
        compiled = _compiled(statement, self.dialect)
        cursor = self._driver.cursor()  # type: ignore[union-attr]
        cursor.execute(compiled.query, compiled.values(params or {}))
        rows = Rows(cursor)
        self._rows.append(rows)
        return rows

    def sql(self, query: str) -> None:
        """A statement of no parameters and no rows (BEGIN, COMMIT, a PRAGMA)."""
        cursor = self._driver.cursor()  # type: ignore[union-attr]
        cursor.execute(query)
        cursor.close()

    def settle(self) -> None:
        """Reads what every statement returned: once the batch has been answered, before
        the connection goes back to its pool."""
        for rows in self._rows:
            rows.exists()
        self._rows.clear()


class Pipeline(Statements):
    """PostgreSQL: records the statements, then `send`s them all in pipeline mode on an
    asyncio connection of the driver's (in autocommit: the batch brings its BEGIN and
    COMMIT). What they return is read before `send` returns."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._queued: list[tuple[str, Any, Rows | None]] = []

    def execute(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Rows:
        compiled = _compiled(statement, self.dialect)
        rows = Rows(None)
        self._queued.append((compiled.query, compiled.values(params or {}), rows))
        return rows

    def sql(self, query: str) -> None:
        self._queued.append((query, None, None))

    async def send(self, connection: psycopg.AsyncConnection[Any]) -> None:
        sent: list[tuple[psycopg.AsyncCursor[Any], Rows | None]] = []
        async with connection.pipeline():
            for query, values, rows in self._queued:
                cursor = connection.cursor()
                await cursor.execute(query, values)
                sent.append((cursor, rows))
        for cursor, rows in sent:
            if rows is not None:
                returned = cursor.description is not None and await cursor.fetchone() is not None
                rows._found = returned
            await cursor.close()


_kept: OrderedDict[tuple[int, str], _Compiled] = OrderedDict()


def _compiled(statement: Executable, dialect: Dialect) -> _Compiled:
    key = (id(statement), dialect.name)
    found = _kept.get(key)
    if found is not None and found.statement is statement:
        _kept.move_to_end(key)
        return found
    assert isinstance(statement, ClauseElement)  # insert, update, text: all are
    compiled = statement.compile(dialect=dialect)
    made = _Compiled(
        statement,
        compiled.string,
        compiled.construct_params,
        # The types' own conversions (SQLite's floats), as SQLAlchemy applies them.
        dict(compiled._bind_processors),  # type: ignore[attr-defined]
        tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None,  # type: ignore[attr-defined]
    )
    _kept[key] = made
    while len(_kept) > COMPILED_KEPT:
        _kept.popitem(last=False)
    return made


async def fetch(
    connection: psycopg.AsyncConnection[Any],
    statement: Executable,
    dialect: Dialect,
    params: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """PostgreSQL: one statement on an asyncio connection (in autocommit, a write commits
    by itself); the rows it returned, by column name."""
    compiled = _compiled(statement, dialect)
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(compiled.query, compiled.values(params))
        return await cursor.fetchall() if cursor.description is not None else []
