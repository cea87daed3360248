"""Unit tests: scheduler and API logic against the fake sandbox (no engine needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgcompiler.app import create_app
from bgcompiler.models import Limits, RunSpec
from bgcompiler.sandbox.fake import FakeSandbox
from bgcompiler.settings import Settings

LIMITS = Limits(
    timeout_s=5, memory_mb=64, cpu_shares=1024, cpus=1, output_bytes=1024, pids=16, disk_mb=4
)


def spec(command: str = "echo hi", stdin: bytes = b"") -> RunSpec:
    return RunSpec(image="fake/image", command=command, files=(), stdin=stdin, limits=LIMITS)


@pytest.fixture
def fake() -> FakeSandbox:
    return FakeSandbox()


ClientFactory = Callable[..., Any]


@pytest.fixture
async def api(fake: FakeSandbox, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Builds an app around the fake sandbox with the given settings and yields a client.
    Its job store is a real SQLite file in the test's own directory."""
    stack: list[Any] = []

    async def make(**overrides: Any) -> httpx.AsyncClient:
        defaults = {"workers": 2, "backlog": 10, "output": 1, "data_dir": str(tmp_path / "data")}
        settings = Settings(**{**defaults, **overrides})
        app = create_app(settings, sandbox=fake)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        stack.append((lifespan, client))
        return client

    yield make
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)
