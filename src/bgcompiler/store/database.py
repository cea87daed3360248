"""Opening the store: SQLite in --data-dir by default, or PostgreSQL by --database-url;
migrations are applied at start-up (Alembic)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bgcompiler.errors import StartupError

_MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(database_url: str | None, data_dir: str) -> str:
    """SQLAlchemy's URL: ours drivers (aiosqlite, psycopg 3) for what the user wrote."""
    if database_url is None:
        return f"sqlite+aiosqlite:///{Path(data_dir) / 'jobs.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url.removeprefix(prefix)
    if database_url.startswith(("postgresql+psycopg://", "sqlite+aiosqlite://")):
        return database_url
    raise StartupError(
        f"--database-url must be a postgresql:// URL, not {database_url.split(':', 1)[0]!r}"
    )


async def open_database(url: str, data_dir: str) -> AsyncEngine:
    """An engine on the store, its schema migrated to the latest version."""
    if url.startswith("sqlite"):
        await asyncio.to_thread(Path(data_dir).mkdir, parents=True, exist_ok=True)
    engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate)
    except (SQLAlchemyError, OSError) as exc:
        await engine.dispose()
        raise StartupError(f"cannot open the job store: {exc}") from exc
    return engine


def _sqlite_pragmas(connection: object, _: object) -> None:
    # WAL: readers never block the writer; foreign keys: events go with their job.
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _migrate(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
