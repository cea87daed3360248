"""The service's life on a real engine, with runc and with runsc: start-up checks, leftovers,
backpressure, shutdown, client disconnects, and an engine that goes away.

Containers are counted per instance (never all of the service's), and states are polled
for rather than slept for.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSYBOX, RUNTIMES, Server, launch, timed, wait_until
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


@contextlib.contextmanager
def requested(server: Server, path: str, body: dict[str, Any]) -> Iterator[None]:
    """Sends a request on a connection of its own, and closes that connection (without
    reading an answer) when the block ends: a client that goes away."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(head + payload)
        yield


def in_background(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Runs `call` in a thread; the dict gets its `result` or its `error`."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = call()
        except Exception as exc:  # reported to the test through `outcome`
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_start_removes_leftovers_of_dead_instances_only(tmp_path: Path) -> None:
    """Containers of an instance that died (its lock file left, unlocked) are removed; a
    live instance's are kept, and so are those of an instance whose lock file is not in
    this state dir (another --state-dir: it cannot be told dead)."""
    from tests.conftest import _launcher

    assert _launcher is not None
    state = _launcher.state_dir
    live_lock = os.open(state / "aaaa1111bbbb2222.lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(live_lock, fcntl.LOCK_EX)  # this test process plays a live instance
    (state / "dead0000dead0000.lock").touch()  # a crashed instance left its lock file
    dead = make_container("dead0000dead0000")
    live = make_container("aaaa1111bbbb2222")
    elsewhere = make_container("e1sewhere0000000")
    try:
        server = launch(tmp_path)
        try:
            assert not exists(dead)
            assert exists(live)
            assert exists(elsewhere)
            assert not (state / "dead0000dead0000.lock").exists()
        finally:
            assert server.stop() == 0
        assert exists(live), "stopping the service must not touch another instance's containers"
    finally:
        subprocess.run(["docker", "rm", "-f", dead, live, elsewhere], capture_output=True)
        os.close(live_lock)
        (state / "aaaa1111bbbb2222.lock").unlink(missing_ok=True)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigkill_leftovers_are_removed_by_the_next_start(tmp_path: Path, runtime: str) -> None:
    """A service killed with SIGKILL mid-run leaves its containers; the next start on the
    host removes exactly those, and leaves a live instance's alone."""
    bystander = launch(tmp_path / "bystander", "--pool", "2", runtime=runtime)
    server = launch(tmp_path / "victim", "--timeout", "60", "--pool", "2", runtime=runtime)
    try:
        bystander.run("echo warm the bystander's pool")
        assert wait_until(lambda: len(bystander.containers()) >= 2, timeout=30)
        request, _ = in_background(lambda: server.run("sleep 60"))
        assert wait_until(server.busy, timeout=30)
        assert wait_until(lambda: len(server.containers()) >= 2, timeout=30)  # run + warm
        left = server.containers()
        server.kill()
        request.join(timeout=10)
        assert all(exists(c) for c in left), "SIGKILL must leave them: nothing removed them"
        kept = bystander.containers()
        successor = launch(tmp_path / "successor", runtime=runtime)
        try:
            assert not [c for c in left if exists(c)], "the dead instance's containers remain"
            assert all(exists(c) for c in kept), "a live instance's containers were removed"
        finally:
            assert successor.stop() == 0
    finally:
        assert bystander.stop() == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_full_backlog_answers_503_at_once(tmp_path: Path, runtime: str) -> None:
    """Seed bug: --backlog had no effect and a full queue blocked. Now 503 + Retry-After,
    long before any room could appear (the run ahead sleeps 30 s)."""
    # No grace at the stop: the run ahead is only there to hold the worker.
    server = launch(
        tmp_path, "--workers", "1", "--backlog", "1", "--pool", "0", "--timeout", "60",
        "--shutdown-grace", "0", runtime=runtime,
    )  # fmt: skip
    try:
        in_background(lambda: server.run("sleep 30"))
        assert wait_until(server.busy, timeout=30)
        in_background(lambda: server.run("echo queued"))
        assert wait_until(lambda: server.status()["waiting_runs"] == 1, timeout=10)
        started = time.monotonic()
        response = server.compile(script="echo no", image=BUSYBOX, cmd="sh", count=1)
        answered = time.monotonic() - started
        assert response.status_code == 503
        assert response.json()["error"] == "busy"
        assert int(response.headers["retry-after"]) >= 1
        assert answered < 10, "the refusal waited for room instead of answering at once"
        assert server.status()["waiting_runs"] == 1, "the refused request was queued"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigterm_lets_short_runs_finish_and_ends_long_ones_at_the_grace(
    tmp_path: Path, runtime: str
) -> None:
    """On SIGTERM: a run that ends within --shutdown-grace answers normally; a longer one is
    answered 503 shutting_down once the grace is over (not before, not a 500); the service
    exits 0 with nothing left."""
    grace = 4
    server = launch(
        tmp_path, "--timeout", "60", "--shutdown-grace", str(grace), "--workers", "2",
        "--pool", "0", runtime=runtime,
    )  # fmt: skip
    short_thread, short = in_background(lambda: server.run("sleep 1; echo finished"))
    long_thread, long = in_background(
        lambda: server.compile(script="sleep 60", image=BUSYBOX, cmd="sh", count=1)
    )
    assert wait_until(lambda: len(server.running_containers()) == 2, timeout=30)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    long_thread.join(timeout=30)
    long_answered = time.monotonic() - started
    assert server.stop() == 0
    short_thread.join(timeout=10)
    assert not short_thread.is_alive()
    assert not long_thread.is_alive()
    assert short.get("result", {}).get("stdout") == "finished\n", short
    response = long.get("result")
    assert response is not None, long
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "shutting_down"
    assert grace - 0.5 <= long_answered <= grace + 10, long_answered
    assert "stopped" in server.log()


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("pool", ["0", "4"])
def test_client_disconnect_drops_queued_runs_and_kills_the_running_one(
    tmp_path: Path, runtime: str, pool: str
) -> None:
    """A client that goes away while its run is running: that container is killed and its
    other runs never start, with or without warm containers."""
    server = launch(tmp_path, "--timeout", "60", "--workers", "1", "--pool", pool, runtime=runtime)
    try:
        body = {"script": "sleep 60", "image": BUSYBOX, "cmd": "sh", "count": 5}
        with requested(server, "/compile", body):
            assert wait_until(lambda: server.program_running(), timeout=30)
        # the connection is closed here, mid-run
        assert wait_until(lambda: not server.busy(), timeout=15), "its runs went on"
        assert server.status()["waiting_runs"] == 0
        # Every container left is a warm one the service accounts for: the run's is gone.
        assert server.settled(timeout=30), "the running container was not removed"
        assert server.run("echo still serving")["stdout"] == "still serving\n"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_client_disconnect_during_a_compile_stage_and_spread_runs(
    tmp_path: Path, runtime: str
) -> None:
    """v1: a client gone during the compile stage, or while spread runs execute on both
    workers, leaves no container and no busy worker behind."""
    server = launch(tmp_path, "--timeout", "60", "--workers", "2", runtime=runtime)
    bodies = [
        {"image": BUSYBOX, "script": "", "compile": "sleep 60", "run": "true"},
        {"image": BUSYBOX, "script": "", "run": "sleep 60", "count": 4, "sequential": False},
    ]
    try:
        for body in bodies:
            with requested(server, "/api/v1/runs", body):
                assert wait_until(server.busy, timeout=30)
            assert wait_until(lambda: not server.busy(), timeout=15), body
            assert server.status()["waiting_runs"] == 0
            assert server.settled(timeout=30), json.dumps(
                [body, server.status(), server.containers()]
            )
    finally:
        assert server.stop() == 0


def test_engine_unreachable_at_start_exits_with_a_clear_message(tmp_path: Path) -> None:
    """With no engine at the address, `start` exits non-zero and says so."""
    server = launch(tmp_path, "--docker-host", f"unix://{tmp_path}/no.sock", wait=False)
    assert server.process.wait(timeout=30) != 0
    assert "not reachable" in server.log()
    assert "is dockerd running?" in server.log()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_engine_lost_while_serving_gives_503_then_recovers(tmp_path: Path, runtime: str) -> None:
    """Engine gone: GET / and POST /compile answer 503; back: the service serves again by itself."""
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    server = launch(tmp_path, "--docker-host", proxy.url, "--engine-timeout", "2", runtime=runtime)
    try:
        assert server.run("echo up")["stdout"] == "up\n"
        proxy.cut()
        assert server.client.get("/").status_code == 503
        response = server.compile(script="echo", image=BUSYBOX, cmd="sh", count=1)
        assert response.status_code == 503
        assert response.json()["error"] == "engine_unavailable"
        proxy.restore()
        assert wait_until(lambda: server.client.get("/").status_code == 200, timeout=15)
        assert server.run("echo back")["stdout"] == "back\n"
    finally:
        proxy.restore()
        assert server.stop() == 0
        proxy.stop()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_hung_engine_gives_503_within_the_engine_timeout(tmp_path: Path, runtime: str) -> None:
    """An engine that accepts but never answers: 503 well before a request could hang
    (--engine-timeout 2; a hang would be the client's 120 s), not a hang."""
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    server = launch(tmp_path, "--docker-host", proxy.url, "--engine-timeout", "2", runtime=runtime)
    try:
        proxy.freeze()
        started = time.monotonic()
        response = server.compile(script="echo", image=BUSYBOX, cmd="sh", count=1)
        assert response.status_code == 503
        assert time.monotonic() - started < 2 + 3  # --engine-timeout, and a margin
        proxy.restore()
        assert wait_until(lambda: server.client.get("/").status_code == 200, timeout=15)
    finally:
        proxy.restore()
        assert server.stop() == 0
        proxy.stop()


def test_a_container_slow_to_come_down_still_answers_its_status_in_time(tmp_path: Path) -> None:
    """The engine answers a kill only once the container is down, and a gVisor sandbox
    killing a fork bomb under load took over 30 s to come down. Such a run still answers
    its own status soon after the kill (EXIT_PATIENCE_S, 3 s), its exit code unknown rather
    than invented, and its container is removed once down; the engine's slowness is not
    an internal error. Here the engine's proxy holds every kill request for 20 s."""
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    server = launch(tmp_path, "--docker-host", proxy.url, "--output", "1", "--timeout", "30")
    try:
        proxy.kill_delay_s = 20
        response, waited = timed(
            lambda: server.compile(script="yes; sleep 60", image=BUSYBOX, cmd="sh", count=1)
        )
        assert response.status_code == 200, response.text
        result = response.json()[0]
        assert (result["status"], result["exit_code"], result.get("error")) == (
            "output_limit",
            None,
            None,
        )
        assert waited < 3 + 4  # the patience, and a margin (the old wait was 10 s, then 500)
        # The removal does not wait for the held kill: the container is gone well before.
        assert server.settled(timeout=15), server.containers()
        proxy.kill_delay_s = 0
        assert server.run("echo after")["stdout"] == "after\n"
    finally:
        proxy.kill_delay_s = 0
        assert server.stop() == 0
        proxy.stop()


def test_an_inspect_slowed_by_the_exit_still_gives_the_run_its_result(tmp_path: Path) -> None:
    """dockerd holds a container's lock while it handles the container's exit, and after a
    fork bomb under gVisor that took over 2 s: the inspect that follows the exit waited
    past the quick deadline and the run was reported as an internal error. While the
    engine answers pings, a slow inspect is waited for; the run gets its own result.
    Here the engine's proxy holds every container inspect for twice the engine timeout."""
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    server = launch(tmp_path, "--docker-host", proxy.url, "--engine-timeout", "1.5")
    try:
        proxy.inspect_delay_s = 3
        response = server.compile(script="echo slow; exit 3", image=BUSYBOX, cmd="sh", count=1)
        assert response.status_code == 200, response.text
        result = response.json()[0]
        assert (result["status"], result["exit_code"], result["stdout"]) == (
            "runtime_error",
            3,
            "slow\n",
        ), result
    finally:
        proxy.inspect_delay_s = 0
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
        v1 = server.v1(image=BUSYBOX, script="", compile="echo built > out", run="cat out")
        assert v1["runs"][0]["stdout"] == "built\n"
    finally:
        assert server.stop() == 0
    assert list(tmpdir.iterdir()) == []


def test_a_body_over_max_body_is_a_413_through_the_real_server(tmp_path: Path) -> None:
    """A body past --max-body gets 413 with a JSON reason, and nothing runs."""
    server = launch(tmp_path, "--max-body", "4", "--pool", "0")
    try:
        script = "echo " + "x" * 8192
        response = server.compile(script=script, image=BUSYBOX, cmd="sh", count=1)
        assert response.status_code == 413
        assert response.json()["error"] == "body_too_large"
        assert server.containers() == []
        assert server.run("echo small")["stdout"] == "small\n"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_warm_pool_shrinks_and_idle_containers_are_removed(
    tmp_path: Path, runtime: str
) -> None:
    """Concurrent demand grows the warm containers of a kind; quiet periods shrink them
    back; unused for --pool-idle, they are all removed."""
    server = launch(tmp_path, "--workers", "3", "--pool", "8", "--pool-idle", "8", runtime=runtime)
    try:
        burst = [in_background(lambda: server.run("sleep 0.5")) for _ in range(6)]
        for thread, outcome in burst:
            thread.join(timeout=60)
            assert outcome["result"]["status"] == "ok", outcome
        assert wait_until(lambda: server.status()["sandbox"]["pool_ready"] > 2, timeout=30)
        peak = server.status()["sandbox"]["pool_ready"]
        assert wait_until(
            lambda: 0 < server.status()["sandbox"]["pool_ready"] < peak, timeout=15
        ), "quiet periods did not shrink the pool"
        assert wait_until(lambda: server.containers() == [], timeout=30), "idle pool kept"
        assert server.status()["sandbox"]["pool_ready"] == 0
    finally:
        assert server.stop() == 0


def test_the_cli_is_the_seeds(tmp_path: Path) -> None:
    """`bg-compiler start --help` runs from the console script with the seed's flags."""
    out = subprocess.run(
        [sys.executable, "-m", "bgcompiler", "start", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--backlog", "--memory", "--cpu", "--output", "--timeout", "--workers"):
        assert flag in out
    assert "--gvisor" in out
    assert "-v, --verbose" in out
