"""The job queue of distributed mode, on Redis through Taskiq's stream broker (taskiq-redis).

A message is only a job id: the job itself is in the store. Each route is a Redis stream
named by what a job needs (its runtime and its image); a worker reads, in one consumer
group, the streams of everything it can run, so a job only reaches a worker able to run it.
A message stays pending (unacknowledged) until the worker has finished with the job; the
pending messages of a worker that died are claimed by another after the visibility
timeout (the broker's XAUTOCLAIM). docs/deployment.md says why this engine.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage
from taskiq_redis import RedisStreamBroker

from bgcompiler.errors import QueueUnavailable

log = structlog.get_logger(__name__)

TASK_NAME = "bgcompiler.run_job"
GROUP = "bgc-workers"
# Waits this long on an idle read before asking again (a read returns at once when a
# message arrives): how fast a stopping worker notices it should stop reading.
READ_BLOCK_MS = 1000
# The pending messages of consumers that died are looked for this often (each message is
# claimed once it has been idle for the visibility timeout).
AUTOCLAIM_EVERY_S = 1.0
# Streams keep this many messages at most (acknowledged ones are trimmed; the backlog is
# bounded by --backlog, far below it).
STREAM_MAXLEN = 100_000
EPOCH_KEY = "bgc:epoch"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


def route(runtime: str, image: str) -> str:
    """The stream a job goes to: the runtime and image it needs."""
    return "bgc:jobs:" + _UNSAFE.sub("_", f"{runtime}:{image}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A job id taken from the queue; `ack` once the job is finished or handed back."""

    job_id: str
    ack: Callable[[], Awaitable[None]]


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """The one place Redis's errors become ours."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise QueueUnavailable(f"the job queue is not available: {exc}") from exc


class JobQueue:
    """The API node's side: sends job ids to their routes."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self._broker = _broker(url, "bgc:jobs:none", [], timeout_s=timeout_s, idle_ms=0)

    async def send(self, job_id: str, to: str) -> None:
        message = BrokerMessage(
            task_id=uuid.uuid4().hex,
            task_name=TASK_NAME,
            message=job_id.encode(),
            labels={"queue_name": to},
        )
        with _translated():
            await self._broker.kick(message)

    async def ping(self) -> None:
        with _translated():
            async with self._broker.connection() as redis:
                await redis.ping()

    async def restarted(self) -> bool:
        """Whether Redis lost its data since this was last asked (by any node): a key set
        once is gone after a restart without persistence."""
        with _translated():
            async with self._broker.connection() as redis:
                return bool(await redis.set(EPOCH_KEY, uuid.uuid4().hex, nx=True))

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._broker.shutdown()


class JobReader:
    """A worker's side: reads the job ids of its routes, one when it has room for one."""

    def __init__(self, url: str, routes: list[str], *, visibility_s: float, consumer: str) -> None:
        self._routes = routes
        self._broker = _broker(
            url,
            routes[0],
            routes[1:],
            timeout_s=5.0 + READ_BLOCK_MS / 1000,
            idle_ms=int(visibility_s * 1000),
            consumer=consumer,
        )
        self._messages: AsyncGenerator[AckableMessage, None] | None = None

    async def next(self) -> Delivery:
        """The next job id for this worker (waits until there is one)."""
        while True:
            if self._messages is None:
                with _translated():
                    # Again after an error: a Redis that restarted has lost the groups.
                    await self._broker.startup()
                self._messages = self._broker.listen()
            try:
                with _translated():
                    message = await anext(self._messages)
            except QueueUnavailable:
                self._messages = None
                raise
            return Delivery(bytes(message.data).decode(), _acker(message))

    async def close(self) -> None:
        if self._messages is not None:
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await self._messages.aclose()
        with contextlib.suppress(RedisError, OSError):
            async with self._broker.connection() as redis:
                # A worker that stops cleanly leaves no consumer behind in the group, unless
                # it still has messages pending (deleting it would drop them: left, they are
                # claimed by another worker after the visibility timeout).
                name = self._broker.consumer_name
                for stream in self._routes:
                    pending = await redis.xpending_range(
                        stream, GROUP, min="-", max="+", count=1, consumername=name
                    )
                    if not pending:
                        await redis.xgroup_delconsumer(stream, GROUP, name)
        with contextlib.suppress(RedisError, OSError):
            await self._broker.shutdown()


def _acker(message: AckableMessage) -> Callable[[], Awaitable[None]]:
    async def acknowledge() -> None:
        try:
            result = message.ack()
            if isinstance(result, Awaitable):
                await result
        except (RedisError, OSError) as exc:
            # Not acknowledged: the message is claimed again after the visibility timeout,
            # and the claim then finds the job ended and drops it.
            log.warning("could not acknowledge a job's message", error=str(exc))

    return acknowledge


class _Broker(RedisStreamBroker):
    """Taskiq's stream broker, whose reader looks for the messages of dead consumers
    (XAUTOCLAIM, a round trip per stream) at most every AUTOCLAIM_EVERY_S after reading
    some, instead of after every message: there, it ran beside the claim of the job just
    read and delayed its start. As in taskiq, an idle reader does not look (the watchdog
    takes back the jobs of a worker that vanished, and writes why)."""

    def connection(self) -> Redis:
        return Redis(connection_pool=self.connection_pool)

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        streams = [self.queue_name, *self.additional_streams]
        async with self.connection() as redis:
            claimed_at = -math.inf
            while True:
                offsets: Any = {self.queue_name: ">", **self.additional_streams}
                fetched: Any = await redis.xreadgroup(
                    self.consumer_group_name,
                    self.consumer_name,
                    offsets,
                    block=self.block,
                    noack=False,
                    count=self.count,
                )
                if not fetched:
                    continue  # as taskiq's: an idle reader leaves them to the watchdog
                for stream, messages in fetched:
                    for message_id, message in messages:
                        yield self._ackable(stream, message_id, message)
                if time.monotonic() - claimed_at < AUTOCLAIM_EVERY_S:
                    continue
                claimed_at = time.monotonic()
                for stream in streams:
                    claimed: Any = await redis.xautoclaim(
                        stream,
                        self.consumer_group_name,
                        self.consumer_name,
                        min_idle_time=self.idle_timeout,
                        count=self.unacknowledged_batch_size,
                    )
                    for message_id, message in claimed[1]:
                        yield self._ackable(stream, message_id, message)

    def _ackable(self, stream: Any, message_id: Any, message: Any) -> AckableMessage:
        return AckableMessage(
            data=message[b"data"], ack=self._ack_generator(id=message_id, queue_name=stream)
        )


def _broker(
    url: str,
    first: str,
    others: list[str],
    *,
    timeout_s: float,
    idle_ms: int,
    consumer: str | None = None,
) -> _Broker:
    return _Broker(
        url,
        queue_name=first,
        consumer_group_name=GROUP,
        consumer_name=consumer,
        # From the start of each stream: jobs sent before any worker read them are not lost.
        consumer_id="0",
        xread_block=READ_BLOCK_MS,
        xread_count=1,  # one at a time: a busy worker leaves the rest to the others
        maxlen=STREAM_MAXLEN,
        idle_timeout=max(idle_ms, 1),
        unacknowledged_batch_size=1,
        unacknowledged_lock_timeout=max(idle_ms / 1000, 1.0),
        additional_streams=dict.fromkeys(others, ">"),
        socket_connect_timeout=2.0,
        socket_timeout=timeout_s,
        # A pooled connection is dead after Redis restarted; a command that finds it so is
        # sent once more on a new connection (a Redis still down then fails it). Only on a
        # connection error: a timeout is not doubled. A send repeated after it was already
        # taken is a duplicate message, which a worker's claim drops.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
