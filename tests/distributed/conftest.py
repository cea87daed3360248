"""Fixtures of the distributed mode's tests: a real Redis and a second Docker engine, each
started once for the session on this machine and removed after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX, free_port
from tests.redis_server import RedisServer, redis_server
from tests.second_engine import SecondEngine
from tests.second_engine import second_engine as start_second_engine

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The distributed tests run alone (`exclusive`), after the others: they start a second
    dockerd with a bridge of its own, and kill, freeze and restart what a cluster runs on."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.exclusive)


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """A real Redis for the session (Debian's redis-server, a free loopback port, nothing
    saved). A test may `stop()`, `start()` or `restart()` it: it keeps its port and URL."""
    with redis_server(free_port()) as server:
        yield server


@pytest.fixture(scope="session")
def second_engine() -> Iterator[SecondEngine]:
    """A second dockerd beside the machine's engine, with the busybox image loaded from it
    (`load_images()` copies more; bgc/python takes about 8 s). Every container of it is
    removed at the end, the daemon stopped, its bridge and directories deleted."""
    with start_second_engine([BUSYBOX]) as engine:
        yield engine
