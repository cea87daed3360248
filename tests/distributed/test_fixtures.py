"""The fixtures of the distributed tests do what the tests rely on: a Redis that answers and
comes back on the same port, and a second engine that is really another engine and leaves
nothing behind."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX, free_port
from tests.redis_server import RedisServer, process_alive, redis_server
from tests.second_engine import SecondEngine, second_engine

pytestmark = pytest.mark.integration


def _first_engine_containers(label: str) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()


def test_redis_answers_ping(redis: RedisServer) -> None:
    """The session's Redis answers PING on the port of its URL."""
    assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
    assert redis.ping()


def test_redis_restart_keeps_the_port() -> None:
    """A stopped Redis does not answer; started again it answers on the same port and URL,
    and after the context nothing of it runs and its files are gone."""
    with redis_server(free_port()) as server:
        url = server.url
        server.stop()
        assert not server.ping()
        server.start()
        assert server.ping()
        assert server.url == url
        pid = int(server.pidfile.read_text())
    assert not process_alive(pid)
    assert not server.root.exists()


def test_container_runs_on_the_second_engine_and_not_the_first(
    second_engine: SecondEngine,
) -> None:
    """A container started on the second engine is listed there, not on the first; its
    address is on the second engine's own bridge; the first engine's docker0 is still there."""
    label = f"io.bg-compiler.test={secrets.token_hex(8)}"
    started = second_engine.docker("run", "-d", "--label", label, BUSYBOX, "sleep", "60")
    container = started.stdout.strip()
    try:
        assert container in second_engine.containers()
        assert _first_engine_containers(label) == []
        state = json.loads(second_engine.docker("inspect", container).stdout)[0]
        address = state["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        assert (
            address.rsplit(".", 1)[0] == str(second_engine.subnet.network_address).rsplit(".", 1)[0]
        )
    finally:
        second_engine.docker("rm", "-f", container)
    docker0 = subprocess.run(["ip", "link", "show", "docker0"], capture_output=True)
    assert docker0.returncode == 0, "the first engine's bridge docker0 is gone"


def test_second_engine_runs_runsc(second_engine: SecondEngine) -> None:
    """The second engine has the first engine's runtimes: a runsc container runs gVisor
    (its kernel log says so; reading it is a call Docker's seccomp profile refuses, which
    runsc applies as registered, with --oci-seccomp: unconfined for this one look)."""
    done = second_engine.docker(
        "run", "--rm", "--runtime=runsc", "--network=none",
        "--security-opt", "seccomp=unconfined", BUSYBOX, "dmesg",
    )  # fmt: skip
    assert "Starting gVisor" in done.stdout


def test_second_engine_leaves_nothing_behind() -> None:
    """Torn down with a container still running, a second engine leaves no process, mount,
    bridge or directory behind."""
    with second_engine([BUSYBOX]) as engine:
        engine.docker("run", "-d", BUSYBOX, "sleep", "600")
        root, bridge = engine.root, engine.bridge
        pid = engine.pid()
    assert pid is not None
    assert not process_alive(pid)
    assert not root.exists()
    mounts = Path("/proc/self/mounts").read_text()
    assert str(root) not in mounts
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                assert str(root).encode() not in (entry / "cmdline").read_bytes()
            except OSError:  # it ended meanwhile
                continue
    link = subprocess.run(["ip", "link", "show", bridge], capture_output=True)
    assert link.returncode != 0, f"bridge {bridge} is still there"
