"""The jobs API over the fake sandbox and a real SQLite store: submit, wait, stream,
cancel, list, and the refusals."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bgcompiler.sandbox.fake import FakeSandbox

BODY = {"image": "fake/image", "run": "stdin", "script": "", "stdin": "in\n"}


def sse(text: str) -> list[dict[str, Any]]:
    """The events of a text/event-stream body (comments dropped)."""
    events = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if fields:
            fields["data"] = json.loads(fields["data"])
            events.append(fields)
    return events


async def submitted(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/jobs", json={**BODY, **extra})
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/api/v1/jobs/{response.json()['id']}"
    job: dict[str, Any] = response.json()
    return job


async def test_a_job_is_stored_before_the_202_and_its_result_is_the_runs_document(
    api: Callable[..., Any],
) -> None:
    """202 with the stored job; ?wait answers once it is done; `result` is exactly what
    POST /api/v1/runs answers for the same body (but for the id, the job's)."""
    client = await api()
    job = await submitted(client, count=3, metadata={"user": "u1", "n": [1, 2]})
    assert job["status"] in ("queued", "running")
    assert job["metadata"] == {"user": "u1", "n": [1, 2]}
    assert job["runs_total"] == 3
    done = (await client.get(f"/api/v1/jobs/{job['id']}", params={"wait": 10})).json()
    assert done["status"] == "done"
    assert done["runs_done"] == 3
    assert done["attempts"] == 1
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    direct = (await client.post("/api/v1/runs", json={**BODY, "count": 3})).json()
    direct["id"] = job["id"]
    assert done["result"] == direct


async def test_submit_with_wait_answers_201_with_the_ended_job_or_202_if_it_runs_on(
    api: Callable[..., Any],
) -> None:
    """POST ?wait=S: one request instead of submit and GET ?wait. A job that ends within
    S seconds: 201, the same document GET ?wait answers. One still running after S: 202,
    the job as it is, and it goes on (GET ?wait finds it done)."""
    client = await api()
    quick = await client.post("/api/v1/jobs", json={**BODY, "count": 2}, params={"wait": 10})
    assert quick.status_code == 201, quick.text
    ended = quick.json()
    assert quick.headers["location"] == f"/api/v1/jobs/{ended['id']}"
    assert (ended["status"], ended["runs_done"]) == ("done", 2)
    assert ended == (await client.get(f"/api/v1/jobs/{ended['id']}")).json()
    slow = await client.post(
        "/api/v1/jobs", json={**BODY, "run": "sleep 0.5; echo late"}, params={"wait": 0.05}
    )
    assert slow.status_code == 202, slow.text
    assert slow.json()["status"] in ("queued", "running")
    later = await client.get(f"/api/v1/jobs/{slow.json()['id']}", params={"wait": 10})
    assert later.json()["status"] == "done"
    assert later.json()["result"]["runs"][0]["stdout"] == "late\n"
    refused = await client.post("/api/v1/jobs", json=BODY, params={"wait": 61})
    assert refused.status_code == 422
    assert (await client.get("/api/v1/jobs")).json()["jobs"] == [
        {key: value for key, value in job.items() if key != "result"}
        for job in (later.json(), ended)
    ]


async def test_events_replay_in_order_and_resume_after_last_event_id(
    api: Callable[..., Any],
) -> None:
    """A finished job's stream: started, one run per run (with its index), done with the
    whole job; with Last-Event-ID only the events after it, none repeated."""
    client = await api()
    job = await submitted(client, count=2)
    await client.get(f"/api/v1/jobs/{job['id']}", params={"wait": 10})
    events = sse((await client.get(f"/api/v1/jobs/{job['id']}/events")).text)
    assert [e["event"] for e in events] == ["started", "run", "run", "done"]
    assert [int(e["id"]) for e in events] == [1, 2, 3, 4]
    assert [e["data"]["index"] for e in events[1:3]] == [0, 1]
    assert events[1]["data"]["run"]["stdout"] == "in\n"
    assert events[-1]["data"]["status"] == "done"
    assert events[-1]["data"]["result"]["summary"]["runs"] == 2
    rest = await client.get(
        f"/api/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": events[1]["id"]}
    )
    assert [e["id"] for e in sse(rest.text)] == ["3", "4"]


async def test_cancelling_a_running_job_keeps_its_finished_runs(
    api: Callable[..., Any], fake: FakeSandbox
) -> None:
    """DELETE while running: its run is killed, the runs already done are kept in a
    partial result; again: the same answer; a finished job: 409."""
    client = await api()
    job = await submitted(client, run="echo x; sleep 0.05", count=1, warmup=0)
    await client.get(f"/api/v1/jobs/{job['id']}", params={"wait": 10})
    slow = await submitted(client, run="sleep 0.05; echo r; sleep 0.5", count=5)
    for _ in range(100):
        state = (await client.get(f"/api/v1/jobs/{slow['id']}")).json()
        if state["runs_done"] >= 1:
            break
        await asyncio.sleep(0.05)
    cancelled = await client.delete(f"/api/v1/jobs/{slow['id']}")
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["status"] == "cancelled"
    kept = body["result"]["runs"]
    assert 1 <= len(kept) < 5
    assert all(run["stdout"] == "r\n" for run in kept)
    assert fake.cancelled == 1
    again = await client.delete(f"/api/v1/jobs/{slow['id']}")
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    finished = await client.delete(f"/api/v1/jobs/{job['id']}")
    assert finished.status_code == 409
    assert finished.json()["error"] == "conflict"


async def test_jobs_are_listed_newest_first_a_page_at_a_time(api: Callable[..., Any]) -> None:
    """Keyset pages: every job once, newest first; a status filter; a bad cursor is a 422."""
    client = await api(backlog=50)
    ids = [(await submitted(client))["id"] for _ in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/jobs", params=params)).json()
        seen += [job["id"] for job in page["jobs"]]
        assert all("result" not in job for job in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    for job_id in ids:
        await client.get(f"/api/v1/jobs/{job_id}", params={"wait": 10})
    done = (await client.get("/api/v1/jobs", params={"status": "done", "limit": 100})).json()
    assert len(done["jobs"]) == 7
    bad = await client.get("/api/v1/jobs", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422
    assert bad.json()["field"] == "cursor"


async def test_refusals_are_clear_and_store_nothing(api: Callable[..., Any]) -> None:
    """Unknown id 404; ?wait out of (0, 60] 422; metadata over 4 KB 422; a callback on a
    server without a secret, or to a private address, 422 naming callback_url."""
    client = await api()
    assert (await client.get("/api/v1/jobs/nope")).status_code == 404
    assert (await client.get("/api/v1/jobs/nope", params={"wait": 1})).status_code == 404
    assert (await client.get("/api/v1/jobs/nope/events")).status_code == 404
    assert (await client.delete("/api/v1/jobs/nope")).status_code == 404
    for wait in (0, 61):
        response = await client.get("/api/v1/jobs/nope", params={"wait": wait})
        assert response.status_code == 422
    big = await client.post("/api/v1/jobs", json={**BODY, "metadata": {"x": "y" * 5000}})
    assert big.status_code == 422
    assert big.json()["field"] == "metadata"
    no_secret = await client.post(
        "/api/v1/jobs", json={**BODY, "callback_url": "https://example.com/hook"}
    )
    assert no_secret.status_code == 422
    assert no_secret.json()["field"] == "callback_url"
    assert (await client.get("/api/v1/jobs")).json()["jobs"] == []


async def test_a_callback_to_a_private_address_is_refused(api: Callable[..., Any]) -> None:
    """Loopback, private, link-local: 422 naming callback_url; other schemes too."""
    client = await api(webhook_secret="s3cret")
    for url in (
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "ftp://example.com/x",
        "http://user:pw@example.com/",
    ):
        response = await client.post("/api/v1/jobs", json={**BODY, "callback_url": url})
        assert response.status_code == 422, url
        assert response.json()["field"] == "callback_url"


async def test_over_capacity_is_a_503_and_nothing_is_stored(
    api: Callable[..., Any],
) -> None:
    """A job that does not fit in the backlog: 503 with Retry-After, no job stored."""
    client = await api(backlog=2, workers=1)
    await submitted(client, run="sleep 0.3", count=1)
    await submitted(client, run="sleep 0.3", count=2)
    refused = await client.post("/api/v1/jobs", json={**BODY, "count": 5})
    assert refused.status_code == 503
    assert "retry-after" in refused.headers
    assert len((await client.get("/api/v1/jobs")).json()["jobs"]) == 2


async def test_a_job_the_store_cannot_commit_is_a_503_and_is_not_run(
    api: Callable[..., Any], tmp_path: Path
) -> None:
    """The store refuses the insert: 503 store_unavailable, no job listed, and the run that
    had begun meanwhile is stopped (the service is idle again); then the store serves."""
    client = await api(workers=1)
    database = sqlite3.connect(tmp_path / "data" / "jobs.db")
    database.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    database.commit()
    refused = await client.post("/api/v1/jobs", json={**BODY, "run": "sleep 5"})
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "store_unavailable"
    assert (await client.get("/api/v1/jobs")).json()["jobs"] == []

    async def idle() -> dict[str, Any]:
        while True:  # the cancelled run ends a few loop turns later
            status: dict[str, Any] = (await client.get("/api/v1/status")).json()
            if (status["busy_workers"], status["waiting_runs"]) == (0, 0):
                return status
            await asyncio.sleep(0.01)

    await asyncio.wait_for(idle(), 2)  # the run it began sleeps 5 s unless stopped
    database.execute("DROP TRIGGER refuse")
    database.commit()
    database.close()
    job = await submitted(client)
    done = (await client.get(f"/api/v1/jobs/{job['id']}", params={"wait": 10})).json()
    assert done["status"] == "done"
