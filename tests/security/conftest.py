"""The adversarial suite: every case of the catalogue in docs/security.md, on both runtimes."""

from __future__ import annotations

from typing import Any

from tests.conftest import Server

BENIGN = "echo benign"


def assert_contained(server: Server, result: dict[str, Any]) -> None:
    """What every case must leave true: a bounded answer, a healthy service, nothing left."""
    for stream in ("stdout", "stderr"):
        assert len(result[stream].encode()) <= 30 * 1024 * 3  # U+FFFD may triple bytes at most
    after = server.run(BENIGN)
    assert after["status"] == "ok", after
    assert after["stdout"] == "benign\n"
    assert server.settled(), "a container was left behind"
