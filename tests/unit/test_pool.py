"""The warm pool's bookkeeping, with a stand-in for starting containers (no engine)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from bgcompiler.sandbox.housekeeping import Housekeeping
from bgcompiler.sandbox.monitor import ContainerWatch
from bgcompiler.sandbox.pool import Started, WarmPool
from tests.unit.conftest import spec


class FakeStream:
    closed = False

    def close(self) -> None:
        self.closed = True


class FakeMonitor:
    generation = 0
    connected = True


def make_pool(budget: int) -> tuple[WarmPool, list[str], list[str]]:
    launched: list[str] = []
    discarded: list[str] = []
    monitor = FakeMonitor()

    async def launch(_: Any) -> Started:
        await asyncio.sleep(0)
        name = f"c{len(launched)}"
        launched.append(name)
        return Started(name, FakeStream(), ContainerWatch(generation=monitor.generation))  # type: ignore[arg-type]

    def discard(started: Started) -> None:
        discarded.append(started.container_id)

    pool = WarmPool(launch, discard, monitor, Housekeeping().work, budget=budget)  # type: ignore[arg-type]
    return pool, launched, discarded


async def test_a_miss_starts_containers_and_the_next_run_takes_one() -> None:
    """The first run of a spec finds nothing; containers start for it; the next takes one."""
    pool, launched, _ = make_pool(budget=4)
    assert pool.take(spec("echo a")) is None
    await pool.settle()
    assert pool.size >= 2  # one ready while the next one starts, plus one for the miss
    taken = pool.take(spec("echo b"))  # another command, same configuration: same key
    assert taken is not None
    assert taken.container_id in launched
    await pool.settle()
    assert pool.take(spec("echo c")) is not None
    await pool.close()


async def test_each_container_is_handed_out_once() -> None:
    """No container is ever given to two runs."""
    pool, _, _ = make_pool(budget=4)
    pool.take(spec())
    await pool.settle()
    seen = set()
    for _ in range(10):
        taken = pool.take(spec())
        if taken is not None:
            assert taken.container_id not in seen
            seen.add(taken.container_id)
        await pool.settle()
    assert len(seen) >= 5
    await pool.close()


async def test_the_budget_holds_across_keys_and_the_least_recent_key_gives_way() -> None:
    """Never more than the budget; a new key evicts the least recently used one's."""
    pool, _, discarded = make_pool(budget=2)
    other = dataclasses.replace(spec(), image="other/image")
    pool.take(spec())
    await pool.settle()
    assert pool.size == 2
    pool.take(other)
    await pool.settle()
    assert pool.size <= 2
    assert discarded  # the first key's containers made room
    await pool.close()


async def test_containers_from_before_an_engine_restart_are_not_used() -> None:
    """A warm container that saw the engine go away is discarded, not handed out."""
    pool, _, discarded = make_pool(budget=4)
    pool.take(spec())
    await pool.settle()
    pool._monitor.generation += 1  # the engine went away and came back
    assert pool.take(spec()) is None
    assert discarded
    await pool.close()


async def test_a_zero_budget_starts_nothing() -> None:
    """--pool 0: every run makes its own container."""
    pool, launched, _ = make_pool(budget=0)
    assert pool.take(spec()) is None
    await pool.settle()
    assert launched == []
    await pool.close()


async def test_quiet_periods_shrink_the_pool_back_and_idle_keys_are_emptied() -> None:
    """A burst of misses grows a key's ready containers; each quiet period removes one
    beyond the minimum; a key unused for idle_s loses all of them."""
    pool, _, discarded = make_pool(budget=8)
    for _ in range(4):  # four runs at once find the key empty: its target grows
        pool.take(spec())
    await pool.settle()
    grown = pool.size
    assert grown > 2
    now = time.monotonic()  # the pool's clock
    pool.reap(now)  # the period of the misses ends: nothing shrinks
    assert pool.size == grown
    pool.reap(now)  # a quiet period, the key recently used: not idle
    assert pool.size == grown - 1
    assert len(discarded) == 1
    for _ in range(10):
        pool.reap(now)
    assert pool.size == 2  # never below the minimum while the key is in use
    pool.reap(now + 10_000.0)  # long unused: emptied
    assert pool.size == 0
    await pool.close()
