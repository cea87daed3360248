"""Faults of the service's surroundings: the engine restarting or hanging, overload, and
clients that are too slow. The engine tests act on the real daemon that `make setup`
started, and restart it the same way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import BUSYBOX, RUNTIMES, launch, wait_until

# They freeze (SIGSTOP) and restart the engine every other test uses: they run alone.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.exclusive]

REPO = Path(__file__).resolve().parents[2]
ENGINE_TIMEOUT_S = 2  # the service's default --engine-timeout
MARGIN_S = 3  # for an answer after a deadline, on a loaded machine


def dockerd_pid() -> int:
    return int(Path("/var/run/docker.pid").read_text().strip())


def engine_answers() -> bool:
    return subprocess.run(["docker", "version"], capture_output=True, check=False).returncode == 0


def start_engine() -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "setup-engine.sh")], check=True, capture_output=True
    )


@pytest.fixture
def engine_restored() -> Iterator[None]:
    """Whatever the test does to the daemon, it answers again afterwards."""
    yield
    pid = dockerd_pid() if Path("/var/run/docker.pid").exists() else None
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    if not engine_answers():
        start_engine()
    assert wait_until(engine_answers, timeout=30)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_engine_restart_mid_batch(tmp_path: Path, engine_restored: None, runtime: str) -> None:
    """Runs in flight when the engine restarts report internal_error (never ok with partial
    output); the service answers 503 while it is down (readiness naming the engine) and
    recovers by itself."""
    server = launch(tmp_path, "--timeout", "60", runtime=runtime)
    results: list[dict[str, Any]] = []

    def batch() -> None:
        response = server.compile(
            script="echo start; sleep 4; echo done", image=BUSYBOX, cmd="sh", count=2
        )
        results.extend(response.json())

    thread = threading.Thread(target=batch)
    thread.start()
    try:
        assert wait_until(server.busy, timeout=30)
        assert wait_until(server.program_running, timeout=30)
        pid = dockerd_pid()
        os.kill(pid, signal.SIGTERM)
        assert wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=30)
        down = server.client.get("/")
        assert down.status_code == 503
        assert down.json()["error"] == "engine_unavailable"
        ready = server.client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["engine"] != "ok"
        assert ready.json()["checks"]["store"] == "ok"
        assert server.client.get("/health/live").status_code == 200
        start_engine()
        thread.join(timeout=60)
        assert len(results) == 2
        first = results[0]
        assert first["status"] == "internal_error", first
        for result in results:
            assert result["status"] != "ok" or result["stdout"] == "start\ndone\n", result
        assert wait_until(lambda: server.client.get("/").status_code == 200, timeout=15)
        assert wait_until(lambda: server.client.get("/health/ready").status_code == 200, timeout=15)
        assert server.run("echo recovered")["stdout"] == "recovered\n"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_engine_hang_fails_fast_and_frees_the_workers(
    tmp_path: Path, engine_restored: None, runtime: str
) -> None:
    """With the daemon stopped (SIGSTOP): 503 within a couple of seconds, the run in flight
    ends as internal_error instead of holding its worker, and all is well after SIGCONT.
    (A request in the first second may still be served by a warm container, rightly: the
    test waits that second out, then expects the 503.)"""
    server = launch(tmp_path, "--timeout", "3", "--workers", "1", runtime=runtime)
    in_flight: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: in_flight.update(server.run("sleep 1; echo x")))
    thread.start()
    pid = dockerd_pid()
    try:
        assert wait_until(server.busy, timeout=10)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(1.2)
        started = time.monotonic()
        response = server.compile(script="echo", image=BUSYBOX, cmd="sh", count=1)
        assert response.status_code == 503
        assert time.monotonic() - started < ENGINE_TIMEOUT_S + MARGIN_S
        health_started = time.monotonic()
        assert server.client.get("/").status_code == 503
        assert time.monotonic() - health_started < ENGINE_TIMEOUT_S + MARGIN_S
        thread.join(timeout=15)
        assert not thread.is_alive(), "a worker stayed stuck on the hung engine"
        assert in_flight["status"] == "internal_error"
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        assert wait_until(lambda: server.client.get("/").status_code == 200, timeout=15)
        assert server.run("echo fine")["stdout"] == "fine\n"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_overload_is_rejected_fast_and_accepted_runs_complete(tmp_path: Path, runtime: str) -> None:
    """Thousands of requests beyond the backlog: the excess gets 503 + Retry-After without
    waiting for room (each accepted run takes 2 s, so room appears no sooner), every accepted
    request completes correctly, and nothing else happens."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # A backlog of 4: six accepted runs (6 s of the two workers) show that accepted runs
    # complete; more would only make the test longer.
    server = launch(tmp_path, "--workers", "2", "--backlog", "4", runtime=runtime)
    body = {"script": "sleep 2; echo ok", "image": BUSYBOX, "cmd": "sh", "count": 1}

    async def flood() -> list[tuple[int, float, dict[str, str], Any]]:
        # aiohttp as the client: httpx's pool is itself too slow for 800 connections.
        connector = aiohttp.TCPConnector(limit=800)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> tuple[int, float, dict[str, str], Any]:
                started = time.monotonic()
                async with session.post(f"{server.url}/compile", json=body) as response:
                    payload = await response.json()
                    return (
                        response.status,
                        time.monotonic() - started,
                        {k.lower(): v for k, v in response.headers.items()},
                        payload,
                    )

            return await asyncio.gather(*(one() for _ in range(2000)))

    try:
        outcomes = asyncio.run(flood())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        statuses = {status for status, _, _, _ in outcomes}
        assert statuses <= {200, 503}, statuses
        rejected = [(t, h, p) for s, t, h, p in outcomes if s == 503]
        accepted = [(t, p) for s, t, _, p in outcomes if s == 200]
        assert len(rejected) > 1000
        assert accepted
        assert all(p["error"] == "busy" and "retry-after" in h for _, h, p in rejected)
        # Compared in the same run: refusals come back before any accepted run could end.
        assert statistics.median(t for t, _, _ in rejected) < min(t for t, _ in accepted)
        for _, payload in accepted:
            [result] = payload
            assert result["status"] == "ok"
            assert result["stdout"] == "ok\n"
        assert server.run("echo after")["stdout"] == "after\n"
    finally:
        assert server.stop() == 0


def _trickle(port: int, data: bytes, stop: threading.Event, got: list[bytes]) -> None:
    """Connects, then sends `data` one byte every 0.2 s until done, closed, or told to stop."""
    _trickle_on(socket.create_connection(("127.0.0.1", port)), data, stop, got)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_slow_clients_are_cut_off_and_do_not_delay_others(tmp_path: Path, runtime: str) -> None:
    """Clients that trickle headers or a body are closed at --client-timeout (2 s); meanwhile
    other clients are served without waiting for them (well under those 2 s); a trickled
    request never runs."""
    server = launch(tmp_path, "--client-timeout", "2", runtime=runtime)
    payload = b'{"script": "echo trickled", "image": "bgc/busybox:latest", "cmd": "sh"}'
    slow_headers = b"POST /compile HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    slow_body = b"POST /compile HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload)
    stop = threading.Event()
    got: list[bytes] = []
    threads = [
        threading.Thread(target=_trickle, args=(server.port, slow_headers, stop, got))
        for _ in range(20)
    ]
    body_threads = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(slow_body)  # headers at once; the body will trickle
        body_threads.append(threading.Thread(target=_trickle_on, args=(sock, payload, stop, got)))
    started = time.monotonic()
    for thread in threads + body_threads:
        thread.start()
    try:
        latencies = []
        while time.monotonic() - started < 1.5:
            t = time.monotonic()
            assert server.client.get("/").status_code == 200
            latencies.append(time.monotonic() - t)
        assert max(latencies) < 1.5, latencies
        for thread in threads + body_threads:
            thread.join(timeout=10)
        assert not any(thread.is_alive() for thread in threads + body_threads)
        assert time.monotonic() - started < 2 + 10
        assert sum(b"408" in g for g in got) >= 20  # every slow-header client got a 408
        assert not any(b"trickled" in g for g in got)
        assert server.run("echo fine")["stdout"] == "fine\n"
    finally:
        stop.set()
        assert server.stop() == 0


def _trickle_on(sock: socket.socket, data: bytes, stop: threading.Event, got: list[bytes]) -> None:
    """Sends `data` one byte every 0.2 s, then reads, until closed or told to stop."""
    with sock:
        sock.settimeout(0.2)
        received = b""
        for byte in data:
            if stop.is_set():
                break
            try:
                sock.send(bytes([byte]))
                chunk = sock.recv(4096)
                if chunk == b"":
                    break
                received += chunk
            except TimeoutError:
                continue
            except OSError:
                break
        else:
            while not stop.is_set():
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                received += chunk
        got.append(received)
