"""Shared fixtures: real service processes on loopback, and the no-leftover check."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

SERVICE_LABEL = "io.bg-compiler.service=bg-compiler"
BUSYBOX = "bgc/busybox:latest"
PYTHON = "bgc/python:3"


def our_containers(instance: str | None = None) -> list[str]:
    """Containers of the service (of one instance of it, when given)."""
    label = f"io.bg-compiler.instance={instance}" if instance else SERVICE_LABEL
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A `bg-compiler start` process on loopback, with its log file."""

    process: subprocess.Popen[bytes]
    port: int
    state_dir: Path
    log_path: Path
    runtime: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=120)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = self.client.get("/api/v1/status").json()
        return found

    def settled(self, timeout: float = 15) -> bool:
        """Waits until every container of this instance is a warm one, waiting for a run:
        none is being removed, and none exists that the service does not account for."""

        def accounted() -> bool:
            sandbox = self.status()["sandbox"]
            if sandbox["removing"]:
                return False
            expected = sandbox["pool_ready"] + sandbox["pool_starting"]
            return len(our_containers(sandbox["instance"])) == expected

        return wait_until(accounted, timeout=timeout, interval=0.2)

    def busy(self) -> bool:
        return bool(self.status()["busy_workers"])

    def compile(self, **body: Any) -> httpx.Response:
        return self.client.post("/compile", json=body)

    def run(
        self, script: str, *, image: str = BUSYBOX, cmd: str = "sh", **body: Any
    ) -> dict[str, Any]:
        """Posts one run and returns its result object (asserting the request itself succeeded)."""
        response = self.compile(script=script, image=image, cmd=cmd, count=1, **body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()[0]
        return result

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.client.close()
        return code


def launch(
    tmp: Path,
    *args: str,
    runtime: str = "runc",
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> Server:
    """Starts the service with the given flags; waits until GET / answers 200."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    state_dir = tmp / "state"
    log_path = tmp / f"service-{port}.log"
    runtime_args = ["--gvisor"] if runtime == "runsc" else []
    command = [
        sys.executable,
        "-m",
        "bgcompiler",
        "start",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        *runtime_args,
        *args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    server = Server(process, port, state_dir, log_path, runtime)
    _LAUNCHED.append(server)
    if wait:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"service exited early:\n{server.log()}")
            try:
                return httpx.get(f"{server.url}/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(ready, timeout=60), server.log()
    return server


_LAUNCHED: list[Server] = []


def docker_inspect(container: str) -> dict[str, Any] | None:
    """The container's configuration and state; None if it is already gone."""
    done = subprocess.run(["docker", "inspect", container], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(done.stdout)[0]
    return found


# Small limits keep the suites fast: timeouts in 3 s, memory kills at 256 MB, and writable
# dirs small enough (2 x 16 MB) that filling both stays inside the memory limit.
TEST_FLAGS = (
    *("--timeout", "3", "--memory", "256", "--output", "30", "--workers", "2"),
    *("--disk", "16", "--backlog", "40", "--max-count", "20", "--shutdown-grace", "2"),
)

RUNTIMES = ["runc", pytest.param("runsc", marks=pytest.mark.gvisor)]


@pytest.fixture(scope="session", params=RUNTIMES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The service with TEST_FLAGS under the parametrized runtime, shared by the session."""
    runtime: str = request.param
    service = launch(tmp_path_factory.mktemp(f"svc-{runtime}"), *TEST_FLAGS, runtime=runtime)
    yield service
    assert service.stop() == 0, service.log()


@pytest.fixture(scope="session", autouse=True)
def no_container_left_behind() -> Iterator[None]:
    """After the whole suite, no service started by a test still runs (a failed test may
    not have stopped its own), and no container of ours remains on the engine."""
    yield
    for server in _LAUNCHED:
        if server.process.poll() is None:
            server.process.terminate()
            server.process.wait(timeout=60)
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return
    left = our_containers()
    if left and not wait_until(lambda: not our_containers(), timeout=15):
        pytest.fail(f"containers left behind: {our_containers()}")
