"""Opening the store: SQLite in --data-dir by default, or PostgreSQL by --database-url;
migrations are applied at start-up (Alembic)."""

from __future__ import annotations

import asyncio
import select
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError

from bgcompiler.errors import StartupError

_MIGRATIONS = Path(__file__).with_name("migrations")
# SQLite: how long a statement waits for a write lock another connection holds.
BUSY_TIMEOUT_MS = 5000
# The PostgreSQL advisory lock that serialises migrations (any constant of our own).
_MIGRATION_LOCK = 0x6267632D6D6967  # "bgc-mig"


def database_url(database_url: str | None, data_dir: str) -> str:
    """SQLAlchemy's URL, with our drivers (Python's sqlite3, psycopg 3) for what the user
    wrote."""
    if database_url is None:
        return f"sqlite:///{Path(data_dir) / 'jobs.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url.removeprefix(prefix)
    if database_url.startswith(("postgresql+psycopg://", "sqlite://")):
        return database_url
    raise StartupError(
        f"--database-url must be a postgresql:// URL, not {database_url.split(':', 1)[0]!r}"
    )


async def open_database(url: str, data_dir: str) -> Engine:
    """An engine on the store, its schema migrated to the latest version. The store uses
    it from threads of its own (store/jobs.py says why)."""
    return await asyncio.to_thread(_open, url, data_dir)


def _open(url: str, data_dir: str) -> Engine:
    if url.startswith("sqlite"):
        Path(data_dir).mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        event.listen(engine, "checkout", _still_connected)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # Nodes started together (an API node and its workers) would each create the
                # schema: one at a time, the later ones find it made. Held until the commit.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            _migrate(connection)
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise StartupError(f"cannot open the job store: {exc}") from exc
    return engine


def for_reads(engine: Engine) -> Engine:
    """The engine for reads: on PostgreSQL each read is a statement of its own
    (autocommit), one round trip instead of three (BEGIN, the read, ROLLBACK). SQLite
    starts no transaction for a read anyway."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def _sqlite_pragmas(connection: object, _: object) -> None:
    # WAL: readers never block the writer; foreign keys: events go with their job. A commit
    # syncs nothing to disk (synchronous=NORMAL); a checkpoint does, so it is not left to
    # whichever commit fills the WAL (commits may run on the event loop): the store runs
    # one on its own thread every so many commits (store/jobs.py).
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _still_connected(dbapi_connection: Any, _record: object, _proxy: object) -> None:
    """A pooled connection whose server went away (restarted, or ended it) is replaced
    before it is used. (SQLAlchemy's pre-ping costs a round trip per checkout, about 1 ms
    of every read and commit under load.)"""
    if server_ended(dbapi_connection):
        raise DisconnectionError("the server ended the connection, or it is closed")


def server_ended(connection: Any) -> bool:
    """Whether an idle PostgreSQL connection can no longer be used. Checked without a
    round trip: an idle connection's socket has nothing to read unless the server said
    goodbye or closed it."""
    try:
        poll = select.poll()
        poll.register(connection.fileno(), select.POLLIN)
        return bool(poll.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


def _migrate(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
