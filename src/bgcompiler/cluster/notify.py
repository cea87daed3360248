"""PostgreSQL notifications between the nodes of distributed mode.

Every commit that changes a job notifies `bgc_jobs` with its id (store/jobs.py), so an API
node wakes its waiters and event streams as soon as a worker's write is visible, with no
polling. A cancel is announced to the workers on `bgc_cancel`. A listener that loses its
connection connects again and then wakes everyone, since notifications sent meanwhile
were lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import structlog
from psycopg import sql

log = structlog.get_logger(__name__)

CANCEL_CHANNEL = "bgc_cancel"
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


def libpq_url(database_url: str) -> str:
    """The user's PostgreSQL URL as libpq takes it (without SQLAlchemy's driver name)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql://" + database_url.removeprefix(prefix)
    return database_url


class Listener:
    """Calls `handlers[channel](payload)` for each notification; after each (re)connection,
    `connected()` (what was missed meanwhile is to be read again)."""

    def __init__(
        self,
        url: str,
        handlers: dict[str, Callable[[str], None]],
        *,
        connected: Callable[[], None] = lambda: None,
    ) -> None:
        self._url = libpq_url(url)
        self._handlers = handlers
        self._connected = connected
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Starts listening; returns once the first connection listens (or has failed)."""
        self._task = asyncio.create_task(self._listen(), name="store-listener")
        try:
            async with asyncio.timeout(10):
                await self._ready.wait()
        except TimeoutError:
            log.warning("the store's notifications are not listened to yet")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _listen(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5
                ) as connection:
                    for channel in self._handlers:
                        await connection.execute(
                            sql.SQL("LISTEN {}").format(sql.Identifier(channel))
                        )
                    delay = RETRY_FIRST_S
                    self._ready.set()
                    self._connected()
                    async for notification in connection.notifies():
                        handler = self._handlers.get(notification.channel)
                        if handler is not None:
                            handler(notification.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("the store's notifications stopped; listening again", error=str(exc))
            self._ready.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
