"""The API node's queue client on a real Redis: its pooled connections outlive a restart of
Redis (they are renewed on the next send instead of failing it), and a Redis that is down
is an unavailable queue."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from bgcompiler.cluster.queue import JobQueue
from bgcompiler.errors import QueueUnavailable
from tests.redis_server import RedisServer

pytestmark = pytest.mark.asyncio

SENDS = 8  # concurrent sends: each holds its own pooled connection


async def stream_length(redis: RedisServer, stream: str) -> int:
    async with Redis.from_url(redis.url) as client:
        return int(await client.xlen(stream))


async def test_sends_after_a_redis_restart_all_succeed(redis: RedisServer) -> None:
    """Connections pooled before a restart are dead after it; every send that picks one up
    reconnects and succeeds (a stale connection used to answer 503 "Connection closed by
    server" once per pooled connection)."""
    queue = JobQueue(redis.url)
    stream = f"bgc:jobs:test-{uuid.uuid4().hex[:8]}"
    try:
        await asyncio.gather(*(queue.send(f"before-{n}", stream) for n in range(SENDS)))
        redis.restart()  # loses every key, and closes every connection
        await asyncio.gather(*(queue.send(f"after-{n}", stream) for n in range(SENDS)))
        assert await stream_length(redis, stream) == SENDS
    finally:
        await queue.close()


async def test_a_send_to_a_stopped_redis_is_an_unavailable_queue(redis: RedisServer) -> None:
    """The renewal is one reconnect: a Redis that is down still fails the send."""
    queue = JobQueue(redis.url)
    try:
        await queue.send("first", "bgc:jobs:test-down")
        redis.stop()
        try:
            with pytest.raises(QueueUnavailable):
                await queue.send("refused", "bgc:jobs:test-down")
        finally:
            redis.start()
    finally:
        await queue.close()
