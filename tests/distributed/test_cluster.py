"""Distributed mode end to end: an API node and worker nodes (one on a second engine) over a
real PostgreSQL and a real Redis, and what happens when a part dies, freezes or stops."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.conftest as shared
from bgcompiler.cluster.queue import JobQueue
from tests.conftest import BUSYBOX, PYTHON, Server, free_port, launch, wait_until
from tests.distributed.cluster import (
    Cluster,
    Worker,
    done_events,
    frozen,
    result,
    submit,
)
from tests.postgres import PostgresCluster, postgres_cluster
from tests.redis_server import RedisServer
from tests.second_engine import SecondEngine

pytestmark = pytest.mark.timeout(300)

API_FLAGS = ("--visibility-timeout", "3", "--backlog", "400", "--max-count", "50")


def echo(text: str, *, sleep: float = 0, count: int = 1) -> dict[str, Any]:
    run = f"sleep {sleep}; echo {text}" if sleep else f"echo {text}"
    return {"image": BUSYBOX, "run": f"sh -c '{run}'", "script": "", "count": count}


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    with postgres_cluster(free_port()) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    database: PostgresCluster,
    redis: RedisServer,
    second_engine: SecondEngine,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    assert shared._launcher is not None
    made = Cluster(
        database.url,
        redis.url,
        tmp_path_factory.mktemp("cluster"),
        shared._launcher.state_dir,
    )
    made.start_worker("local-a")
    made.start_worker("local-b")
    made.start_worker("remote", docker_host=second_engine.host)
    yield made
    for worker in made.workers.values():
        worker.stop()
    # Every worker process the module started, the killed ones included.
    leftovers = {
        worker.log_path.name: worker.containers()
        for worker in made.started
        if worker.instance is not None and worker.containers()
    }
    assert not leftovers, leftovers
    assert second_engine.containers() == []


@pytest.fixture(scope="module")
def api(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    node = launch(
        tmp_path_factory.mktemp("api"),
        *("--queue-url", cluster.queue_url, "--database-url", cluster.database_url),
        *API_FLAGS,
    )
    yield node
    assert node.stop() == 0, node.log()


def holder(cluster: Cluster, job_id: str) -> Worker:
    """The worker running the job (waits until one is)."""
    state = cluster.wait_job(job_id, {"running"}, timeout=30)
    assert wait_until(lambda: cluster.job(job_id)["worker"] is not None, timeout=10)
    state = cluster.job(job_id)
    return cluster.workers[state["worker"]]


def replace_worker(cluster: Cluster, gone: Worker) -> None:
    """A new worker in place of one that died; its start-up reaps the dead one's containers."""
    cluster.start_worker(f"{gone.name}-2", docker_host=gone.docker_host)
    assert wait_until(lambda: gone.containers() == [], timeout=30), gone.containers()


def test_jobs_run_on_workers_and_every_api_answers(api: Server, cluster: Cluster) -> None:
    """A job, a synchronous run and the seed's /compile are all executed by workers."""
    job_id = submit(api.url, echo("from-a-worker", count=2))
    document = result(api.url, job_id)
    assert document["status"] == "done"
    assert [run["stdout"] for run in document["result"]["runs"]] == ["from-a-worker\n"] * 2
    # The `?wait` answer, made from what the worker's end told (store/ends.py), is the job
    # as stored.
    assert api.client.get(f"/api/v1/jobs/{job_id}").json() == document
    assert cluster.job(job_id)["worker"] in cluster.workers
    runs = api.client.post("/api/v1/runs", json=echo("synchronous"))
    assert runs.status_code == 200, runs.text
    assert runs.json()["runs"][0]["stdout"] == "synchronous\n"
    seed = api.run("echo seed")
    assert seed["stdout"] == "seed\n", seed


def test_a_job_sent_before_its_insert_commits_is_claimed_once_it_is_there(
    api: Server, cluster: Cluster
) -> None:
    """An API node sends a job to the queue while its insert commits, so a worker can read
    it before the row exists: it looks again (here the row comes 1.5 s later) and runs it
    once, rather than dropping it as a second delivery."""
    model = submit(api.url, echo("model"))
    assert result(api.url, model)["status"] == "done"
    [(to,)] = cluster.sql("SELECT route FROM jobs WHERE id = %s", model)
    early = uuid.uuid4().hex

    async def send() -> None:
        queue = JobQueue(cluster.queue_url)
        try:
            await queue.send(early, to)
        finally:
            await queue.close()

    asyncio.run(send())
    time.sleep(1.5)
    cluster.sql(
        "INSERT INTO jobs (id, status, created_at, attempts, runs_total, runs_done, plan, api,"
        " route, sent_at) SELECT %s, 'queued', created_at, 0, runs_total, 0, plan, api, route,"
        " sent_at FROM jobs WHERE id = %s RETURNING id",
        early,
        model,
    )
    document = result(api.url, early)
    assert (document["status"], document["attempts"]) == ("done", 1), document
    assert document["result"]["runs"][0]["stdout"] == "model\n"


def test_workers_are_listed_with_what_they_can_run(api: Server, cluster: Cluster) -> None:
    listed = {worker["id"]: worker for worker in api.client.get("/api/v1/workers").json()}
    assert {"local-a", "local-b", "remote"} <= set(listed)
    assert PYTHON in listed["local-a"]["images"]
    assert listed["remote"]["images"] == [BUSYBOX]  # its engine has only what it was given
    assert all(worker["runtimes"] == ["runc"] for worker in listed.values())
    status = api.client.get("/api/v1/status").json()
    assert status["workers"] == sum(worker["capacity"] for worker in listed.values())


def test_a_job_goes_only_to_a_worker_with_its_image(api: Server, cluster: Cluster) -> None:
    """The remote worker's engine has no Python image: Python jobs never reach it."""
    body = {"language": "python", "script": "print(6 * 7)"}
    job_ids = [submit(api.url, body) for _ in range(6)]
    for job_id in job_ids:
        assert result(api.url, job_id)["result"]["runs"][0]["stdout"] == "42\n"
    assert {cluster.job(job_id)["worker"] for job_id in job_ids} <= {"local-a", "local-b"}


def test_a_job_no_live_worker_can_run_is_refused_and_not_stored(
    cluster: Cluster, tmp_path: Path
) -> None:
    """An API node whose jobs need gVisor, and no worker runs runsc: 503 at submit."""
    node = launch(
        tmp_path,
        *("--queue-url", cluster.queue_url, "--database-url", cluster.database_url),
        *API_FLAGS,
        runtime="runsc",
    )
    try:
        before = cluster.sql("SELECT count(*) FROM jobs")[0][0]
        refused = node.client.post("/api/v1/jobs", json=echo("never"))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "no_worker"
        assert "runsc" in refused.json()["message"]
        assert "Retry-After" in refused.headers
        assert cluster.sql("SELECT count(*) FROM jobs")[0][0] == before
    finally:
        assert node.stop() == 0, node.log()


def test_a_killed_worker_s_job_runs_again_elsewhere_with_one_result(
    api: Server, cluster: Cluster
) -> None:
    job_id = submit(api.url, echo("survived", sleep=2))
    victim = holder(cluster, job_id)
    victim.signal(signal.SIGKILL)
    victim.process.wait(10)
    document = result(api.url, job_id)
    assert document["status"] == "done", document
    assert document["result"]["runs"][0]["stdout"] == "survived\n"
    state = cluster.job(job_id)
    assert state["attempts"] == 2
    assert state["worker"] != victim.name
    assert f"its worker {victim.name} stopped answering" in state["error"]
    assert done_events(cluster, job_id) == 1
    del cluster.workers[victim.name]
    replace_worker(cluster, victim)


def test_a_frozen_worker_loses_its_job_and_cannot_overwrite_it(
    api: Server, cluster: Cluster
) -> None:
    job_id = submit(api.url, echo("taken-over", sleep=2))
    victim = holder(cluster, job_id)
    victim.signal(signal.SIGSTOP)
    try:
        document = result(api.url, job_id)
        finished = cluster.job(job_id)
        assert document["status"] == "done"
        assert finished["worker"] != victim.name
        assert finished["attempts"] == 2
    finally:
        victim.signal(signal.SIGCONT)
    # Thawed, it finds the job held by another attempt and writes nothing of it.
    assert wait_until(lambda: "taken over by another attempt" in victim.log(), timeout=30)
    assert cluster.job(job_id) == finished
    assert done_events(cluster, job_id) == 1
    assert victim.settled(api.url), victim.containers()


def test_sigterm_finishes_within_grace_and_hands_back_the_rest(
    api: Server, cluster: Cluster
) -> None:
    """A worker told to stop hands back a job longer than its grace (1 s): another worker
    runs it from the start; the stopping worker exits cleanly, leaving nothing."""
    job_id = submit(api.url, echo("handed-back", sleep=4))
    leaving = holder(cluster, job_id)
    leaving.signal(signal.SIGTERM)
    assert leaving.process.wait(30) == 0, leaving.log()[-3000:]
    assert leaving.containers() == []
    document = result(api.url, job_id)
    assert document["status"] == "done", document
    assert document["result"]["runs"][0]["stdout"] == "handed-back\n"
    state = cluster.job(job_id)
    assert state["attempts"] == 2
    assert state["worker"] != leaving.name
    names = [worker["id"] for worker in api.client.get("/api/v1/workers").json()]
    assert leaving.name not in names
    del cluster.workers[leaving.name]
    cluster.start_worker(f"{leaving.name}-2", docker_host=leaving.docker_host)


def test_queued_runs_of_the_whole_cluster_count_against_the_backlog(
    api: Server, cluster: Cluster, tmp_path: Path
) -> None:
    """Runs queued through one API node fill the backlog of another: 503 + Retry-After."""
    small = launch(
        tmp_path,
        *("--queue-url", cluster.queue_url, "--database-url", cluster.database_url),
        *("--visibility-timeout", "3", "--backlog", "30", "--max-count", "50"),
    )
    workers = list(cluster.workers.values())
    try:
        with frozen(workers):
            first = submit(api.url, echo("waits", count=20))
            before = cluster.sql("SELECT count(*) FROM jobs")[0][0]
            refused = small.client.post("/api/v1/jobs", json=echo("refused", count=20))
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "busy"
            assert int(refused.headers["Retry-After"]) >= 1
            assert cluster.sql("SELECT count(*) FROM jobs")[0][0] == before
        assert result(api.url, first)["status"] == "done"
    finally:
        assert small.stop() == 0, small.log()


def test_redis_restart_answers_503_then_loses_nothing(
    api: Server, cluster: Cluster, redis: RedisServer
) -> None:
    """Jobs accepted before Redis restarts (empty) all run: more of them than the frozen
    workers' pending reads can hold, so some messages are really lost with Redis's data."""
    workers = list(cluster.workers.values())
    with frozen(workers):
        accepted = {submit(api.url, echo(f"before-{n}")): f"before-{n}\n" for n in range(6)}
        redis.stop()
        refused = api.client.post("/api/v1/jobs", json=echo("refused"))
        ready = api.client.get("/health/ready")
        redis.start()
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "queue_unavailable"
    assert ready.status_code == 503
    for job_id, expected in accepted.items():
        document = result(api.url, job_id)
        assert document["status"] == "done", document
        assert document["result"]["runs"][0]["stdout"] == expected
    assert "the job queue lost its messages" in api.log()
    again = submit(api.url, echo("after-restart"))
    assert result(api.url, again)["result"]["runs"][0]["stdout"] == "after-restart\n"


def test_postgres_restart_answers_503_then_recovers(
    api: Server, cluster: Cluster, database: PostgresCluster
) -> None:
    database.stop()
    try:
        refused = api.client.post("/api/v1/jobs", json=echo("refused"))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "store_unavailable"
    finally:
        database.start()

    def accepted() -> bool:
        return api.client.post("/api/v1/jobs", json=echo("after")).status_code == 202

    assert wait_until(accepted, timeout=30)
    job_id = submit(api.url, echo("recovered"))
    assert result(api.url, job_id)["result"]["runs"][0]["stdout"] == "recovered\n"


def test_300_jobs_with_a_worker_killed_midway(api: Server, cluster: Cluster) -> None:
    """300 jobs from concurrent clients across 3 workers (one on its own engine), one worker
    SIGKILLed in the middle: 300 correct results, one each, none stuck, no container left."""
    total, clients = 300, 6
    job_ids: dict[str, str] = {}
    lock = threading.Lock()

    def client(start: int) -> None:
        with httpx.Client(base_url=api.url, timeout=60) as http:
            for n in range(start, total, clients):
                response = http.post("/api/v1/jobs", json=echo(f"job-{n}"))
                assert response.status_code == 202, response.text
                with lock:
                    job_ids[response.json()["id"]] = f"job-{n}\n"

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    done = "SELECT count(*) FROM jobs WHERE status = 'done'"
    start_done = cluster.sql(done)[0][0]
    assert wait_until(lambda: cluster.sql(done)[0][0] >= start_done + total // 3, timeout=120)
    victim = (
        cluster.workers["local-b"]
        if "local-b" in cluster.workers
        else next(worker for worker in cluster.workers.values() if worker.docker_host is None)
    )
    victim.signal(signal.SIGKILL)
    victim.process.wait(10)
    for thread in threads:
        thread.join()
    assert len(job_ids) == total
    for job_id, expected in job_ids.items():
        document = result(api.url, job_id, wait_s=120)
        assert document["status"] == "done", document
        assert document["result"]["runs"][0]["stdout"] == expected
    counts = cluster.sql(
        "SELECT job_id, count(*) FROM events WHERE kind = 'done' AND job_id = ANY(%s) "
        "GROUP BY job_id",
        list(job_ids),
    )
    assert len(counts) == total
    assert all(count == 1 for _, count in counts)
    stuck = cluster.sql("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")
    assert stuck[0][0] == 0
    del cluster.workers[victim.name]
    replace_worker(cluster, victim)
    time.sleep(0)  # the module's teardown checks both engines for containers


def test_cancel_reaches_the_worker_that_runs_the_job(api: Server, cluster: Cluster) -> None:
    """DELETE on the API node: the worker holding the job kills its runs and writes the
    cancel itself (the API node's fallback, for a worker that does not answer, says so)."""
    job_id = submit(api.url, echo("never", sleep=8, count=2))
    worker = holder(cluster, job_id)
    response = api.client.delete(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    state = cluster.job(job_id)
    assert state["status"] == "cancelled"
    assert state["error"] is None  # written by the worker, not by the fallback
    assert done_events(cluster, job_id) == 1
    assert worker.settled(api.url), worker.containers()


def test_events_stream_through_the_api_node(api: Server, cluster: Cluster) -> None:
    """The SSE stream of a job run by a worker: each run, then done, in order."""
    job_id = submit(api.url, echo("streamed", count=3))
    kinds: list[str] = []
    url = f"{api.url}/api/v1/jobs/{job_id}/events"
    with httpx.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event:"):
                kinds.append(line.split(":", 1)[1].strip())
                if kinds[-1] == "done":
                    break
    assert [kind for kind in kinds if kind != "started"] == ["run", "run", "run", "done"]


def test_a_worker_restarted_under_its_name_gives_back_what_it_held(
    api: Server, cluster: Cluster
) -> None:
    """A stable --worker-id: a process started under a worker's name is alive under it, so
    the watchdog would never take back what the previous one held; the new one's start-up
    gives it back. (The new one starts before the old one is killed, so that the name's
    heartbeat never stops: the watchdog is out of the picture.)"""
    job_id = submit(api.url, echo("after-restart", sleep=6))
    victim = holder(cluster, job_id)
    cluster.start_worker(victim.name, docker_host=victim.docker_host)
    victim.signal(signal.SIGKILL)
    victim.process.wait(10)
    document = result(api.url, job_id)
    assert document["status"] == "done", document
    assert document["result"]["runs"][0]["stdout"] == "after-restart\n"
    state = cluster.job(job_id)
    assert state["attempts"] == 2
    assert state["error"] == f"its worker {victim.name} restarted during attempt 1"
    assert done_events(cluster, job_id) == 1
    replace_worker(cluster, victim)  # a start after its death reaps its containers
