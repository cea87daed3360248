"""Calling a job's callback URL when it ends: signed, retried with backoff, never on a
worker's path, every attempt recorded on the job.

The body is the job document. Headers: `X-BGC-Timestamp` (seconds since the epoch) and
`X-BGC-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with
--webhook-secret>`. A 2xx answer is a delivery; anything else (an error status, no answer
within 10 s, a refused connection) is retried after 1, 2, 4, ... s, --webhook-retries times.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import structlog

from bgcompiler.jobs.addresses import PublicResolver, check_callback
from bgcompiler.metrics import Metrics
from bgcompiler.store.jobs import JobStore

log = structlog.get_logger(__name__)

TIMEOUT_S = 10
FIRST_BACKOFF_S = 1.0


@dataclass(frozen=True, slots=True)
class Callback:
    """What a job's callback sends: its API's document of the job, by its API's method
    (POST for ours, PUT for Judge0's)."""

    body: bytes
    method: str = "POST"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class Webhooks:
    def __init__(
        self,
        store: JobStore,
        *,
        secret: str | None,
        retries: int,
        allow_private: bool,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._secret = secret
        self._retries = retries
        self._resolver = PublicResolver(allow_private)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.first_backoff_s = FIRST_BACKOFF_S

    @property
    def enabled(self) -> bool:
        return self._secret is not None

    async def check(self, url: str) -> None:
        await check_callback(url, self._resolver)

    def deliver(self, job_id: str, url: str, document: Callable[[], Awaitable[Callback]]) -> None:
        """Calls `url` with the job document in the background, retrying as it must."""
        task = asyncio.create_task(self._deliver(job_id, url, document))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        await self._resolver.close()

    async def _deliver(
        self, job_id: str, url: str, document: Callable[[], Awaitable[Callback]]
    ) -> None:
        assert self._secret is not None
        callback = await document()
        body = callback.body
        backoff = self.first_backoff_s
        for attempt in range(1, self._retries + 2):
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-BGC-Timestamp": timestamp,
                "X-BGC-Signature": signature(self._secret, timestamp, body),
            }
            status: int | None = None
            error: str | None = None
            try:
                sent = self._client().request(callback.method, url, data=body, headers=headers)
                async with sent as response:
                    status = response.status
                    await response.read()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._store.delivery(job_id, attempt, status, error)
            delivered = status is not None and 200 <= status < 300
            if self._metrics is not None:
                self._metrics.webhook_attempt(status)
                if delivered or attempt > self._retries:
                    self._metrics.webhook_ended(delivered=delivered)
            if delivered:
                return
            if attempt <= self._retries:
                await asyncio.sleep(backoff)
                backoff *= 2
        log.warning("webhook not delivered", job=job_id, attempts=self._retries + 1)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=self._resolver)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)
            )
        return self._session
