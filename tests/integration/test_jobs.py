"""Durable jobs on the real engine, with the embedded SQLite store and a real PostgreSQL:
results, live event streams, cancels, webhooks, a restart after SIGKILL, and load."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BUSYBOX, Server, free_port, launch, wait_until
from tests.integration.conftest import Receiver
from tests.postgres import postgres_cluster

pytestmark = pytest.mark.integration

SECRET = "test-secret"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_flags(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The flags of a service with a store of its own (a fresh database for PostgreSQL)."""
    if request.param == "sqlite":
        return ["--data-dir", str(tmp_path / "data")]
    base: str = request.getfixturevalue("postgres_url")
    name = f"t{time.monotonic_ns()}"
    server, _, _ = base.rpartition("/")
    import subprocess

    subprocess.run(
        ["psql", base, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True
    )
    return ["--database-url", f"{server}/{name}"]


def submit(server: Server, **body: Any) -> dict[str, Any]:
    response = server.client.post("/api/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def waited(server: Server, job_id: str, seconds: float = 60) -> dict[str, Any]:
    response = server.client.get(f"/api/v1/jobs/{job_id}", params={"wait": seconds})
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def test_a_job_runs_on_the_engine_and_its_result_is_the_v1_document(
    tmp_path: Path, store_flags: list[str]
) -> None:
    """Submit, wait: done, with the same shape and outputs as POST /api/v1/runs."""
    server = launch(tmp_path, *store_flags)
    try:
        body = {"image": BUSYBOX, "run": "cat; echo", "script": "", "stdin": "x", "count": 2}
        job = submit(server, **body)
        done = waited(server, job["id"])
        assert done["status"] == "done"
        direct = server.v1(**body)
        result = done["result"]
        assert result["id"] == job["id"]
        assert set(result) == set(direct)
        assert [r["stdout"] for r in result["runs"]] == [r["stdout"] for r in direct["runs"]]
        assert [list(r) for r in result["runs"]] == [list(r) for r in direct["runs"]]
        assert result["environment"] == direct["environment"]
    finally:
        assert server.stop() == 0


def test_events_stream_live_as_runs_finish(tmp_path: Path) -> None:
    """`curl -N` style: each run's event arrives while the job is still running; the stream
    ends with `done`, and a reconnect with Last-Event-ID misses nothing and repeats nothing."""
    server = launch(tmp_path, "--data-dir", str(tmp_path / "data"))
    try:
        job = submit(server, image=BUSYBOX, run="sleep 0.5; echo r", script="", count=3)
        received: list[tuple[str, str, bool]] = []
        with (
            httpx.Client(base_url=server.url, timeout=60) as client,
            client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as stream,
        ):
            event = ident = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("id: "):
                    ident = line.removeprefix("id: ")
                elif line == "" and event:
                    status = server.client.get(f"/api/v1/jobs/{job['id']}").json()["status"]
                    received.append((event, ident, status == "running"))
                    event = ""
        kinds = [kind for kind, _, _ in received]
        assert kinds == ["started", "run", "run", "run", "done"]
        assert received[1][2], "the first run's event came only after the job had ended"
        with httpx.Client(base_url=server.url, timeout=60) as client:
            again = client.get(
                f"/api/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": received[2][1]}
            ).text
        assert [line for line in again.splitlines() if line.startswith("id: ")] == [
            f"id: {ident}" for _, ident, _ in received[3:]
        ]
    finally:
        assert server.stop() == 0


def test_a_job_runs_through_a_database_outage_and_loses_nothing(tmp_path: Path) -> None:
    """PostgreSQL stops while a job runs and comes back after it has ended: meanwhile the
    job is still answered (as last committed), a new submit gets 503 store_unavailable (not
    queued, not lost: refused), and once the database is back the job ends `done` with
    every run and every event, in order."""
    with postgres_cluster(free_port()) as database:
        server = launch(tmp_path, "--database-url", database.url)
        try:
            job = submit(server, image=BUSYBOX, run="sleep 1; echo r", script="", count=3)
            assert wait_until(
                lambda: (
                    server.client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "running"
                ),
                timeout=30,
            )
            database.stop()
            during = server.client.get(f"/api/v1/jobs/{job['id']}")
            assert during.status_code == 200, during.text
            assert during.json()["status"] == "running"
            refused = server.client.post(
                "/api/v1/jobs", json={"image": BUSYBOX, "run": "echo", "script": ""}
            )
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "store_unavailable"
            time.sleep(4)  # the job's three runs end while the database is down
            database.start()
            done = waited(server, job["id"])
            assert (done["status"], done["runs_done"]) == ("done", 3), done
            assert [run["stdout"] for run in done["result"]["runs"]] == ["r\n"] * 3
            replay = server.client.get(f"/api/v1/jobs/{job['id']}/events").text
            kinds = [line.removeprefix("event: ") for line in replay.splitlines()]
            assert [k for k in kinds if not k.startswith(("id:", "data:", ":")) and k] == [
                "started",
                "run",
                "run",
                "run",
                "done",
            ]
            listed = server.client.get("/api/v1/jobs").json()["jobs"]
            assert [row["id"] for row in listed] == [job["id"]]
        finally:
            assert server.stop() == 0


def test_cancel_kills_the_running_container_at_once(tmp_path: Path) -> None:
    """DELETE on a running job: answered promptly (its run sleeps 60 s), cancelled, and its
    container is gone."""
    server = launch(tmp_path, "--data-dir", str(tmp_path / "data"), "--timeout", "60")
    try:
        job = submit(server, image=BUSYBOX, run="sleep 60", script="", count=3)
        assert wait_until(server.program_running, timeout=30)
        started = time.monotonic()
        response = server.client.delete(f"/api/v1/jobs/{job['id']}")
        assert time.monotonic() - started < 10
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        assert response.json()["result"]["runs"] == []
        assert server.settled(timeout=30)
        assert server.client.delete(f"/api/v1/jobs/{job['id']}").status_code == 200
    finally:
        assert server.stop() == 0


def test_jobs_accepted_survive_a_sigkill_and_end_done_after_a_restart(
    tmp_path: Path, store_flags: list[str]
) -> None:
    """SIGKILL with jobs running and queued; a new instance on the same store: the queued
    ones run, the running one runs again from the start (attempts 2), every job ends done
    with correct results, and no container of either instance is left."""
    flags = [*store_flags, "--workers", "1", "--timeout", "60"]
    first = launch(tmp_path / "first", *flags)
    jobs = [submit(first, image=BUSYBOX, run="sleep 1; echo slow", script="", count=2)]
    jobs += [
        submit(first, image=BUSYBOX, run=f"echo quick {n}", script="", count=1) for n in range(4)
    ]
    assert wait_until(
        lambda: first.client.get(f"/api/v1/jobs/{jobs[0]['id']}").json()["runs_done"] >= 1,
        timeout=30,
    )
    first.kill()
    second = launch(tmp_path / "second", *flags)
    try:
        ended = [waited(second, job["id"]) for job in jobs]
        assert [job["status"] for job in ended] == ["done"] * 5
        assert ended[0]["attempts"] == 2
        assert [r["stdout"] for r in ended[0]["result"]["runs"]] == ["slow\n", "slow\n"]
        for n, job in enumerate(ended[1:]):
            assert job["attempts"] == 1
            assert job["result"]["runs"][0]["stdout"] == f"quick {n}\n"
        assert first.containers() == [], "the dead instance's containers were not removed"
        assert second.settled()
    finally:
        assert second.stop() == 0


def test_a_webhook_is_signed_retried_and_recorded(
    tmp_path: Path, receiver: tuple[str, type[Receiver]]
) -> None:
    """The receiver fails twice, then accepts: three signed calls carrying the job document,
    and the job shows the three attempts and the delivery."""
    url, handler = receiver
    handler.fail = 2
    server = launch(
        tmp_path,
        *("--data-dir", str(tmp_path / "data"), "--webhook-secret", SECRET),
        *("--webhook-retries", "3", "--webhook-allow-private"),
    )
    try:
        job = submit(
            server, image=BUSYBOX, run="echo hi", script="", callback_url=url, metadata={"k": 1}
        )
        assert wait_until(lambda: len(handler.calls) == 3, timeout=30)
        for headers, body in handler.calls:
            timestamp = headers["X-BGC-Timestamp"]
            expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
            assert headers["X-BGC-Signature"] == "sha256=" + expected.hexdigest()
            assert headers["Content-Type"] == "application/json"
            document = json.loads(body)
            assert document["id"] == job["id"]
            assert document["status"] == "done"
            assert document["metadata"] == {"k": 1}
            assert document["result"]["runs"][0]["stdout"] == "hi\n"

        def recorded() -> bool:
            hook = server.client.get(f"/api/v1/jobs/{job['id']}").json()["webhook"]
            return bool(hook["delivered"]) and len(hook["attempts"]) == 3

        assert wait_until(recorded, timeout=10)
        hook = server.client.get(f"/api/v1/jobs/{job['id']}").json()["webhook"]
        assert [a["status_code"] for a in hook["attempts"]] == [500, 500, 200]
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_a_thousand_one_run_jobs_from_twenty_clients(
    tmp_path: Path, store_flags: list[str]
) -> None:
    """1000 jobs from 20 concurrent clients: every one accepted (no 5xx), done, correct,
    with exactly one run each, against each store (SQLite's single writer is the one that
    could serialise runs behind commits). On the OCI engine, whose runs go about four
    times as fast as dockerd's: the store sees four times the writes a second, and the
    test takes a quarter of the time."""
    total = 1000
    server = launch(tmp_path, *store_flags, "--backlog", "2000", "--workers", "4", engine="oci")
    try:

        def one(n: int) -> tuple[int, str]:
            response = server.client.post(
                "/api/v1/jobs",
                json={"image": BUSYBOX, "run": f"echo {n}", "script": ""},
            )
            return response.status_code, response.json().get("id", "")

        with ThreadPoolExecutor(20) as pool:
            submitted = list(pool.map(one, range(total)))
        assert Counter(code for code, _ in submitted) == {202: total}
        with ThreadPoolExecutor(20) as pool:
            ended = list(pool.map(lambda pair: waited(server, pair[1]), submitted))
        assert Counter(job["status"] for job in ended) == {"done": total}
        for n, job in enumerate(ended):
            [run] = job["result"]["runs"]
            assert run["stdout"] == f"{n}\n"
            assert job["runs_done"] == 1
            assert job["attempts"] == 1
        assert server.settled()
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_an_idle_stream_gets_keep_alive_comments(tmp_path: Path) -> None:
    """While nothing happens (a run of 3 s), the stream carries keep-alive comments (every
    --keepalive seconds: 1 here, 15 by default), so that proxies do not cut it; the run's
    event follows."""
    server = launch(tmp_path, "--timeout", "60", "--keepalive", "1")
    try:
        job = submit(server, image=BUSYBOX, run="sleep 3; echo late", script="")
        lines: list[str] = []
        with (
            httpx.Client(base_url=server.url, timeout=60) as client,
            client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as stream,
        ):
            for line in stream.iter_lines():
                lines.append(line)
                if line == "event: done":
                    break
        kinds = [line for line in lines if line.startswith(("event: ", ": "))]
        assert kinds.index(": ping") < kinds.index("event: run"), kinds
    finally:
        assert server.stop() == 0
