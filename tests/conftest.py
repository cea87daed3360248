"""Shared fixtures: real service processes on loopback, and leak checks by instance.

Every service a test starts shares one `--state-dir`, as instances on one host do: so a
start-up removes only the containers of instances that really died, never those of another
live test service (a private state dir per launch made each start-up reap everyone else's
containers, hiding their leaks). Containers are always counted per instance, never all of
the service's: other instances of it may run on this machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from bgcompiler.sandbox.oci.volatile import volatile_dir

T = TypeVar("T")
BUSYBOX = "bgc/busybox:latest"
PYTHON = "bgc/python:3"
INSTANCE_LABEL = "io.bg-compiler.instance"
_INSTANCE_IN_LOG = re.compile(r"instance=([0-9a-f]{16})")


def our_containers(instance: str) -> list[str]:
    """The containers of one instance of the service (running or not)."""
    assert instance, "count the containers of one instance, never all of them"
    return containers_of_instances({instance}).get(instance, [])


def containers_of_instances(instances: set[str]) -> dict[str, list[str]]:
    """The containers (running or not) of each of these instances that has any: one question
    to the engine for all of them (one question per instance took seconds at the end of a
    session)."""
    assert instances, "count the containers of given instances only"
    assert all(instances), "an instance id is never empty"
    listing = f'{{{{.ID}}}} {{{{.Label "{INSTANCE_LABEL}"}}}}'
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            f"label={INSTANCE_LABEL}",
            "--format",
            listing,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        container, _, instance = line.partition(" ")
        if instance in instances:
            found.setdefault(instance, []).append(container)
    return found


def oci_leftovers(state_dir: Path, instance: str, *, alive: bool = False) -> list[str]:
    """What the oci engine of one instance has on the host: its containers in the runtimes'
    state, its run bundles, its cgroups, and its runtime processes."""
    assert instance, "count what one instance has, never everything"
    volatile = volatile_dir(state_dir)
    found = [
        str(entry)
        for runtime in ("runc", "runsc")
        if (volatile / runtime).is_dir()
        for entry in (volatile / runtime).iterdir()
        if instance in entry.name
    ]
    for runs in (volatile / "runs" / instance, state_dir / "oci" / "hostnames" / instance):
        if runs.is_dir():
            found += [str(entry) for entry in runs.iterdir()]
    for controller in Path("/sys/fs/cgroup").iterdir():
        base = controller / "bgc-oci" / instance
        if base.is_dir():  # the instance's own stays while it lives; its runs' never
            runs_cgroups = [str(entry) for entry in base.iterdir() if entry.is_dir()]
            found += runs_cgroups if alive else [str(base)]
    processes = subprocess.run(["pgrep", "-af", f"bgc-{instance}-"], capture_output=True, text=True)
    found += processes.stdout.splitlines()
    return found


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.1
) -> bool:
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


def docker_inspect(container: str) -> dict[str, Any] | None:
    """The container's configuration and state; None if it is already gone."""
    done = subprocess.run(["docker", "inspect", container], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(done.stdout)[0]
    return found


@dataclass
class Server:
    """A `bg-compiler start` process on loopback, with its log file."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    runtime: str
    engine: str = "docker"
    state_dir: Path | None = None
    client: httpx.Client = field(init=False)
    killed: bool = False  # stopped by SIGKILL: its containers are left for a successor

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=120)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def instance(self) -> str | None:
        """Its instance id, as its log announced it (None: it never got that far)."""
        found = _INSTANCE_IN_LOG.search(self.log())
        return found.group(1) if found else None

    def containers(self) -> list[str]:
        instance = self.instance
        if not instance:
            return []
        if self.engine == "oci":
            assert self.state_dir is not None
            return oci_leftovers(self.state_dir, instance, alive=self.process.poll() is None)
        return our_containers(instance)

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
            return len(self.containers()) == expected

        return wait_until(accounted, timeout=timeout, interval=0.2)

    def busy(self) -> bool:
        return bool(self.status()["busy_workers"])

    def running_containers(self) -> list[str]:
        """Its containers that are running (warm ones included: they wait, started)."""
        ids = self.containers()
        if not ids:
            return []
        states = subprocess.run(
            ["docker", "inspect", "-f", "{{.Id}} {{.State.Running}}", *ids],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split("\n")
        return [line.split()[0] for line in states if line.endswith(" true")]

    def program_running(self) -> bool:
        """A worker is busy and more containers run than the warm ones it accounts for."""
        status = self.status()
        sandbox = status["sandbox"]
        warm = sandbox["pool_ready"] + sandbox["pool_starting"]
        return bool(status["busy_workers"]) and len(self.running_containers()) > warm

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

    def post_ok(self, path: str, **body: Any) -> dict[str, Any]:
        """Posts `body` as JSON to `path` and returns the answer (asserting a 200)."""
        response = self.client.post(path, json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def v1(self, **body: Any) -> dict[str, Any]:
        """Posts a v1 request and returns its answer (asserting it succeeded)."""
        return self.post_ok("/api/v1/runs", **body)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Stops it and returns its exit code. After a stop it had time to handle, no
        container of its instance may remain."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.client.close()
        if sig == signal.SIGKILL:
            self.killed = True
        else:
            left = self.containers()
            assert not left, f"stopping left containers of instance {self.instance}: {left}"
        return code

    def kill(self) -> None:
        """SIGKILL: as a crash. Its containers stay until the next start on this host."""
        self.stop(signal.SIGKILL)


@dataclass
class Launcher:
    """Starts services that share one state dir, and remembers them for the final check."""

    state_dir: Path
    launched: list[Server] = field(default_factory=list)


_launcher: Launcher | None = None


def launch(
    tmp: Path,
    *args: str,
    runtime: str = "runc",
    engine: str = "docker",
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> Server:
    """Starts the service with the given flags; waits until GET / answers 200."""
    assert _launcher is not None, "the session fixture sets the launcher up"
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / f"service-{port}.log"
    runtime_args = ["--gvisor"] if runtime == "runsc" else []
    if engine != "docker":
        runtime_args += ["--engine", engine]
    if "--data-dir" not in args and "--database-url" not in args:
        # A job store of its own: never the user's, nor another test's (whose unfinished
        # jobs a start-up would take up).
        runtime_args += ["--data-dir", str(tmp / f"data-{port}")]
    command = [
        sys.executable,
        "-m",
        "bgcompiler",
        "start",
        "--port",
        str(port),
        "--state-dir",
        str(_launcher.state_dir),
        *runtime_args,
        *args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    server = Server(process, port, log_path, runtime, engine, _launcher.state_dir)
    _launcher.launched.append(server)
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


# Small limits keep the suites fast: timeouts in 3 s, memory kills at 256 MB, and writable
# dirs small enough (2 x 16 MB) that filling both stays inside the memory limit.
TEST_FLAGS = (
    *("--timeout", "3", "--memory", "256", "--output", "30", "--workers", "2"),
    *("--disk", "16", "--backlog", "40", "--max-count", "20", "--shutdown-grace", "2"),
)

RUNTIMES = ["runc", pytest.param("runsc", marks=pytest.mark.gvisor)]

# A Python program for a run: the positive control of network tests (a listener on the run's
# own loopback, listening before its client connects: no race, on a loaded machine too),
# then a TCP connection to each of TARGETS ("host:port"), and a DNS lookup. It prints
# "loopback: loop", then "<target> <errno name>" (or CONNECTED), then "dns: <outcome>".
NETWORK_PROBE = """
import errno, socket
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
client = socket.create_connection(listener.getsockname(), timeout=10)
accepted, _ = listener.accept()
client.sendall(b"loop")
print("loopback:", accepted.recv(16).decode())
servers = [line.split()[1] for line in open("/etc/resolv.conf") if line.startswith("nameserver")]
for target in TARGETS + [server + ":53" for server in servers]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        print(target, "CONNECTED")
    except OSError as error:
        print(target, errno.errorcode.get(error.errno, error.errno))
try:
    socket.getaddrinfo("example.com", 80)
    print("dns: resolved")
except OSError:
    print("dns: failed")
"""


def network_probe(*targets: str) -> str:
    return f"TARGETS = {list(targets)!r}\n" + NETWORK_PROBE


# Both engines, each with both runtimes: for the suites that must hold on every one.
ENGINE_RUNTIMES = [
    pytest.param(("docker", "runc"), id="docker-runc"),
    pytest.param(("docker", "runsc"), id="docker-runsc", marks=pytest.mark.gvisor),
    pytest.param(("oci", "runc"), id="oci-runc"),
    pytest.param(("oci", "runsc"), id="oci-runsc", marks=pytest.mark.gvisor),
]


@pytest.fixture(scope="session", params=RUNTIMES)
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The service with TEST_FLAGS under the parametrized runtime, shared by the session."""
    runtime: str = request.param
    service = launch(tmp_path_factory.mktemp(f"svc-{runtime}"), *TEST_FLAGS, runtime=runtime)
    yield service
    assert service.stop() == 0, service.log()


@pytest.fixture(scope="session", params=ENGINE_RUNTIMES)
def shared_engine_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The service with TEST_FLAGS on each engine under each runtime."""
    engine, runtime = request.param
    tmp = tmp_path_factory.mktemp(f"svc-{engine}-{runtime}")
    service = launch(tmp, *TEST_FLAGS, runtime=runtime, engine=engine)
    yield service
    assert service.stop() == 0, service.log()


@pytest.fixture(scope="session", params=ENGINE_RUNTIMES)
def shared_engine_patient_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The service with PATIENT_FLAGS on each engine under each runtime."""
    engine, runtime = request.param
    tmp = tmp_path_factory.mktemp(f"patient-{engine}-{runtime}")
    service = launch(tmp, *PATIENT_FLAGS, runtime=runtime, engine=engine)
    yield service
    assert service.stop() == 0, service.log()


def settled_after(server: Server) -> None:
    """After a test: every container of the service's instance is accounted for (a warm
    one), so a leak shows in the test that caused it."""
    if server.process.poll() is None:
        assert server.settled(), (
            f"containers of instance {server.instance} left behind: "
            f"{server.containers()}, status {server.status()}"
        )


@pytest.fixture
def server(shared_server: Server) -> Iterator[Server]:
    """The shared service; after each test every container of its instance must be
    accounted for (a warm one), so a leak shows in the test that caused it."""
    yield shared_server
    settled_after(shared_server)


# The same, with a time limit far beyond any kill or answer a test waits for: what is "at
# once" is then timed on the client (the answer), and cannot be mistaken for a timeout.
PATIENT_FLAGS = (*TEST_FLAGS, "--timeout", "60")


@pytest.fixture(scope="session", params=RUNTIMES)
def shared_patient_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    runtime: str = request.param
    service = launch(tmp_path_factory.mktemp(f"patient-{runtime}"), *PATIENT_FLAGS, runtime=runtime)
    yield service
    assert service.stop() == 0, service.log()


@pytest.fixture
def patient_server(shared_patient_server: Server) -> Iterator[Server]:
    """The shared service with PATIENT_FLAGS; checked after each test as `server` is."""
    yield shared_patient_server
    if shared_patient_server.process.poll() is None:
        assert shared_patient_server.settled(), shared_patient_server.containers()


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """The call's value, and the seconds the caller waited for it."""
    started = time.monotonic()
    value = call()
    return value, time.monotonic() - started


@pytest.fixture(scope="session", autouse=True)
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """The launcher of every service in the session. At the end: every service a test
    started is stopped, and no container of any of their instances remains."""
    global _launcher
    _launcher = Launcher(tmp_path_factory.mktemp("state"))
    yield _launcher
    launched, _state_dir, _launcher = _launcher.launched, _launcher.state_dir, None
    for server in launched:
        if server.process.poll() is None:
            server.process.terminate()
            server.process.wait(timeout=60)
    instances = {server.instance for server in launched} - {None}
    if not instances:
        return
    engine = subprocess.run(["docker", "info"], capture_output=True, check=False)
    assert engine.returncode == 0, "cannot check for leftover containers: the engine is down"
    left = containers_of_instances(instances)  # type: ignore[arg-type]
    assert not left, f"containers left behind: {left}"
    oci = {
        server.instance: oci_leftovers(_state_dir, server.instance)
        for server in launched
        if server.engine == "oci" and server.instance
    }
    assert not any(oci.values()), f"oci engine state left behind: {oci}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (its own cluster, a free loopback port)."""
    from tests.postgres import postgres_server

    with postgres_server(free_port()) as url:
        yield url
