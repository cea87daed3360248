"""The service's life on a real engine: start-up checks, leftovers, backpressure, shutdown,
client disconnects, and an engine that goes away."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BUSYBOX, launch, our_containers, wait_until
from tests.integration.engine_proxy import EngineProxy

pytestmark = pytest.mark.integration

HOST = socket.gethostname()


def make_container(instance: str) -> str:
    """A sleeping container labelled as made by `instance` of bg-compiler on this host."""
    return subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--network",
            "none",
            "--label",
            "io.bg-compiler.service=bg-compiler",
            "--label",
            f"io.bg-compiler.instance={instance}",
            "--label",
            f"io.bg-compiler.host={HOST}",
            BUSYBOX,
            "sleep",
            "600",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def exists(container: str) -> bool:
    return (
        subprocess.run(
            ["docker", "inspect", container], capture_output=True, check=False
        ).returncode
        == 0
    )


def test_start_removes_leftovers_of_dead_instances_only(tmp_path: Path) -> None:
    """Containers of an instance that is gone are removed; a live instance's are kept."""
    state = tmp_path / "state"
    state.mkdir()
    live_lock = os.open(state / "aaaa1111bbbb2222.lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(live_lock, fcntl.LOCK_EX)  # this test process plays a live instance
    (state / "dead0000dead0000.lock").touch()  # a crashed instance left its lock file
    dead = make_container("dead0000dead0000")
    live = make_container("aaaa1111bbbb2222")
    try:
        server = launch(tmp_path)
        try:
            assert not exists(dead)
            assert exists(live)
            assert not (state / "dead0000dead0000.lock").exists()
        finally:
            assert server.stop() == 0
        assert exists(live), "stopping the service must not touch another instance's containers"
    finally:
        subprocess.run(["docker", "rm", "-f", dead, live], capture_output=True, check=False)
        os.close(live_lock)


def test_sigkill_leftovers_are_removed_by_the_next_start(tmp_path: Path) -> None:
    """A service killed with SIGKILL mid-run leaves containers; the next start removes them."""
    server = launch(tmp_path, "--timeout", "60", "--pool", "0")
    request = threading.Thread(
        target=lambda: _ignore_errors(lambda: server.run("sleep 60")), daemon=True
    )
    request.start()
    assert wait_until(lambda: bool(our_containers()), timeout=10)
    left = our_containers()
    server.process.kill()
    server.process.wait()
    assert all(exists(c) for c in left)
    successor = launch(tmp_path)
    try:
        assert not any(exists(c) for c in left)
    finally:
        assert successor.stop() == 0


def test_full_backlog_answers_503_at_once(tmp_path: Path) -> None:
    """Seed bug: --backlog had no effect and a full queue blocked. Now 503 + Retry-After, fast."""
    server = launch(tmp_path, "--workers", "1", "--backlog", "1", "--pool", "0")
    try:
        busy = threading.Thread(target=lambda: server.run("sleep 2"), daemon=True)
        busy.start()
        assert wait_until(lambda: bool(our_containers()), timeout=10)
        queued = threading.Thread(target=lambda: server.run("echo queued"), daemon=True)
        queued.start()
        time.sleep(0.3)
        started = time.monotonic()
        response = server.compile(script="echo no", image=BUSYBOX, cmd="sh", count=1)
        assert time.monotonic() - started < 1
        assert response.status_code == 503
        assert response.json()["error"] == "busy"
        assert int(response.headers["retry-after"]) >= 1
        busy.join()
        queued.join()
    finally:
        assert server.stop() == 0


def test_sigterm_lets_short_runs_finish_and_kills_long_ones(tmp_path: Path) -> None:
    """On SIGTERM, a run that ends within the grace answers; a longer one is killed; none left."""
    server = launch(
        tmp_path, "--timeout", "60", "--shutdown-grace", "2", "--workers", "2", "--pool", "0"
    )
    short: dict[str, object] = {}
    threads = [
        threading.Thread(target=lambda: short.update(server.run("sleep 1; echo finished"))),
        threading.Thread(target=lambda: _ignore_errors(lambda: server.run("sleep 60"))),
    ]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: len(our_containers()) >= 2, timeout=10)
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15
    for thread in threads:
        thread.join(timeout=10)
    assert short.get("stdout") == "finished\n"
    assert wait_until(lambda: not our_containers(), timeout=5)
    assert "stopped" in server.log()


def test_client_disconnect_drops_queued_runs_and_kills_the_running_one(tmp_path: Path) -> None:
    """A client that goes away: its running container is killed and its other runs never start."""
    server = launch(tmp_path, "--timeout", "60", "--workers", "1", "--pool", "0")
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{server.url}/compile",
                json={"script": "sleep 60", "image": BUSYBOX, "cmd": "sh", "count": 5},
                timeout=httpx.Timeout(5, read=1.5),
            )
        assert wait_until(lambda: not our_containers(), timeout=10)
        time.sleep(1)
        assert not our_containers(), "a queued run of the gone client was started"
        assert server.run("echo still serving")["stdout"] == "still serving\n"
    finally:
        assert server.stop() == 0


def test_engine_unreachable_at_start_exits_with_a_clear_message(tmp_path: Path) -> None:
    """With no engine at the address, `start` exits non-zero and says so."""
    server = launch(tmp_path, "--docker-host", f"unix://{tmp_path}/no.sock", wait=False)
    assert server.process.wait(timeout=30) != 0
    assert "dockerd" in server.log() or "not reachable" in server.log()


def test_engine_lost_while_serving_gives_503_then_recovers(tmp_path: Path) -> None:
    """Engine gone: GET / and POST /compile answer 503; back: the service serves again by itself."""
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    server = launch(tmp_path, "--docker-host", proxy.url, "--engine-timeout", "2")
    try:
        assert server.run("echo up")["stdout"] == "up\n"
        proxy.cut()
        assert server.client.get("/").status_code == 503
        response = server.compile(script="echo", image=BUSYBOX, cmd="sh", count=1)
        assert response.status_code == 503
        assert response.json()["error"] == "engine_unavailable"
        proxy.restore()
        assert wait_until(lambda: server.client.get("/").status_code == 200, timeout=10)
        assert server.run("echo back")["stdout"] == "back\n"
    finally:
        proxy.restore()
        assert server.stop() == 0
        proxy.stop()


def test_a_hung_engine_gives_503_within_the_engine_timeout(tmp_path: Path) -> None:
    """An engine that accepts but never answers: 503 after --engine-timeout, not a hang."""
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    server = launch(tmp_path, "--docker-host", proxy.url, "--engine-timeout", "2")
    try:
        proxy.freeze()
        started = time.monotonic()
        response = server.compile(script="echo", image=BUSYBOX, cmd="sh", count=1)
        assert response.status_code == 503
        assert time.monotonic() - started < 4
        proxy.restore()
        assert wait_until(lambda: server.client.get("/").status_code == 200, timeout=10)
    finally:
        proxy.restore()
        assert server.stop() == 0
        proxy.stop()


def test_gvisor_with_an_unknown_runtime_refuses_to_start(tmp_path: Path) -> None:
    """--gvisor checks the runtime is registered; an unknown one stops start-up with a reason."""
    server = launch(tmp_path, "--runtime", "no-such-runtime", runtime="runsc", wait=False)
    assert server.process.wait(timeout=30) != 0
    assert "no runtime 'no-such-runtime'" in server.log()


def test_runs_leave_no_temporary_files(tmp_path: Path) -> None:
    """Seed bug: temp dirs were never removed. The service writes no temp file at all."""
    tmpdir = tmp_path / "service-tmp"
    tmpdir.mkdir()
    server = launch(tmp_path, env={"TMPDIR": str(tmpdir)})
    try:
        for _ in range(3):
            server.run("echo x > /bg/file; cat /bg/file", input="data")
    finally:
        assert server.stop() == 0
    assert list(tmpdir.iterdir()) == []


def test_the_cli_is_the_seeds(tmp_path: Path) -> None:
    """`bg-compiler start --help` runs from the console script with the seed's flags."""
    out = subprocess.run(
        [sys.executable, "-m", "bgcompiler", "start", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--backlog" in out
    assert "--gvisor" in out


def _ignore_errors(call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except Exception:  # the service was stopped under this request on purpose
        return
