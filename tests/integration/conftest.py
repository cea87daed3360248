"""Integration fixtures: one service per runtime, shared by the tests of a session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, launch

# Small limits keep the suite fast: timeouts in 3 s, memory kills at 128 MB.
TEST_FLAGS = (
    "--timeout",
    "3",
    "--memory",
    "128",
    "--output",
    "30",
    "--workers",
    "2",
    "--backlog",
    "40",
    "--max-count",
    "20",
    "--shutdown-grace",
    "2",
)

RUNTIMES = ["runc", pytest.param("runsc", marks=pytest.mark.gvisor)]


@pytest.fixture(scope="session", params=RUNTIMES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The service with TEST_FLAGS under the parametrized runtime."""
    runtime: str = request.param
    service = launch(tmp_path_factory.mktemp(f"svc-{runtime}"), *TEST_FLAGS, runtime=runtime)
    yield service
    assert service.stop() == 0, service.log()


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
