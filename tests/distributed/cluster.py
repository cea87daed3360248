"""A cluster of real processes for the distributed mode's tests: API nodes (`bg-compiler
start --queue-url`), worker nodes (`bg-compiler worker`) on the machine's engine and on a
second engine, sharing a real PostgreSQL and a real Redis."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.conftest import INSTANCE_LABEL, wait_until

_INSTANCE_IN_LOG = re.compile(r"instance=([0-9a-f]{16})")
# Short, so that the tests of a vanished worker take seconds: a worker silent this long has
# lost its jobs.
VISIBILITY_S = 3
WORKER_FLAGS = (
    *("--timeout", "10", "--memory", "256", "--workers", "2", "--pids", "64"),
    *("--visibility-timeout", str(VISIBILITY_S), "--shutdown-grace", "1"),
)


@dataclass
class Worker:
    """A `bg-compiler worker` process and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    docker_host: str | None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def instance(self) -> str | None:
        found = _INSTANCE_IN_LOG.search(self.log())
        return found.group(1) if found else None

    def containers(self) -> list[str]:
        """The containers of this worker's instance on its engine (running or not)."""
        instance = self.instance
        assert instance, "count the containers of one instance"
        host = ["-H", self.docker_host] if self.docker_host else []
        out = subprocess.run(
            ["docker", *host, "ps", "-aq", "--filter", f"label={INSTANCE_LABEL}={instance}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()

    def settled(self, api: str, timeout: float = 30) -> bool:
        """Waits until every container of this worker is a warm one its last heartbeat
        accounts for (none being removed, none unknown to it)."""

        def accounted() -> bool:
            listed = httpx.get(f"{api}/api/v1/workers", timeout=5).json()
            mine = [worker["pool"] for worker in listed if worker["id"] == self.name]
            if not mine or mine[0]["removing"]:
                return False
            expected = mine[0]["pool_ready"] + mine[0]["pool_starting"]
            return len(self.containers()) == expected

        return wait_until(accounted, timeout=timeout, interval=0.3)

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker {self.name} did not stop:\n{self.log()[-3000:]}") from exc


@dataclass
class Cluster:
    database_url: str
    queue_url: str
    tmp: Path
    state_dir: Path
    workers: dict[str, Worker] = field(default_factory=dict)  # the live ones, by name
    started: list[Worker] = field(default_factory=list)

    def start_worker(
        self, name: str, *, docker_host: str | None = None, extra: tuple[str, ...] = ()
    ) -> Worker:
        """Starts a worker and waits until it reads jobs."""
        log_path = self.tmp / f"worker-{name}-{time.monotonic_ns()}.log"
        host = ("--docker-host", docker_host) if docker_host else ()
        command = [
            sys.executable,
            "-m",
            "bgcompiler",
            "worker",
            *("--worker-id", name),
            *("--queue-url", self.queue_url),
            *("--database-url", self.database_url),
            *("--state-dir", str(self.state_dir)),
            *WORKER_FLAGS,
            *host,
            *extra,
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        worker = Worker(name, process, log_path, docker_host)
        self.workers[name] = worker
        self.started.append(worker)

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"worker {name} exited early:\n{worker.log()}")
            return "worker ready" in worker.log()

        assert wait_until(ready, timeout=60), worker.log()
        return worker

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            return connection.execute(query, params).fetchall()  # type: ignore[arg-type]

    def job(self, job_id: str) -> dict[str, Any]:
        rows = self.sql(
            "SELECT status, attempts, worker, error, outcome FROM jobs WHERE id = %s", job_id
        )
        assert rows, f"no job {job_id}"
        status, attempts, worker, error, outcome = rows[0]
        return {
            "status": status,
            "attempts": attempts,
            "worker": worker,
            "error": error,
            "outcome": outcome,
        }

    def wait_job(self, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        assert wait_until(lambda: self.job(job_id)["status"] in statuses, timeout=timeout), (
            self.job(job_id)
        )
        return self.job(job_id)


def submit(api: str, body: dict[str, Any], timeout: float = 30) -> str:
    response = httpx.post(f"{api}/api/v1/jobs", json=body, timeout=timeout)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def result(api: str, job_id: str, wait_s: int = 60) -> dict[str, Any]:
    """The job once it has ended (GET ?wait until then)."""
    deadline = time.monotonic() + wait_s
    while True:
        response = httpx.get(f"{api}/api/v1/jobs/{job_id}", params={"wait": 30}, timeout=40)
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        if document["status"] in ("done", "cancelled", "failed") or time.monotonic() > deadline:
            return document


def done_events(cluster: Cluster, job_id: str) -> int:
    return int(
        cluster.sql("SELECT count(*) FROM events WHERE job_id = %s AND kind = 'done'", job_id)[0][0]
    )


def create_database(server_url: str, name: str) -> str:
    """A new empty database on the server; its URL."""
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def frozen(workers: list[Worker]) -> Iterator[None]:
    """The workers stopped (SIGSTOP) inside the block: they take nothing meanwhile."""
    for worker in workers:
        worker.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for worker in workers:
            worker.signal(signal.SIGCONT)
