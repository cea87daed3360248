"""The Python SDK (bgcompiler.client) against the real service: typed runs, jobs, their
event streams (resumed after a dropped connection), cancels, and 503s retried as asked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from bgcompiler.client import (
    AsyncClient,
    Client,
    JobOut,
    NotFound,
    RequestRejected,
    RunResponse,
    ServiceUnavailable,
)
from tests.conftest import BUSYBOX, TEST_FLAGS, Server, launch, wait_until
from tests.integration.stream_cutter import StreamCutter
from tests.integration.test_keys import create_key

pytestmark = pytest.mark.integration
# The client is the same whatever runs the containers: runc's shared service only.
RUNC_ONLY = pytest.mark.parametrize("shared_server", ["runc"], indirect=True)


@RUNC_ONLY
def test_languages_and_a_run_come_back_as_the_server_models(server: Server) -> None:
    """languages() lists the registry (sh's file, its image present); run() waits for the
    batch and answers a RunResponse whose runs read the stdin; limits() are what the server
    admits (its time limit passes, one run more than max_runs does not); a bad request raises
    RequestRejected naming the server's code and field, and an unknown job NotFound."""
    with Client(server.url) as client:
        languages = {language.name: language for language in client.languages()}
        assert languages["sh"].file == "main.sh"
        assert languages["sh"].image_present
        result = client.run(language="sh", script="cat; echo", stdin="abc", count=2)
        assert isinstance(result, RunResponse)
        assert [run.stdout for run in result.runs] == ["abc\n", "abc\n"]
        assert result.summary.runs == 2
        assert result.summary.wall_ms is not None
        limits = client.limits()
        with pytest.raises(RequestRejected) as too_many:
            client.run(language="sh", script="", count=limits.max_runs + 1)
        assert too_many.value.field == "count"
        client.run(language="sh", script="", count=1, limits={"time_ms": limits.time_ms})
        with pytest.raises(RequestRejected) as rejected:
            client.run(language="no-such-language", script="")
        assert (rejected.value.status, rejected.value.code) == (422, "invalid_request")
        assert rejected.value.field == "language"
        with pytest.raises(NotFound):
            client.job("0" * 32)


@RUNC_ONLY
def test_submit_events_wait_and_cancel(server: Server) -> None:
    """submit() returns at once; events() yields started, each run, then done (ids rising,
    the runs' data typed); wait() gives the job done with its result; cancel() ends a
    running job, and cancelling it again after it ended is a 409 (the job did not
    run to its end)."""
    with Client(server.url) as client:
        job = client.submit(image=BUSYBOX, run="sleep 0.2; echo r", script="", count=3)
        assert job.document.status in ("queued", "running")
        events = list(job.events())
        assert [event.kind for event in events] == ["started", "run", "run", "run", "done"]
        assert [event.id for event in events] == sorted({event.id for event in events})
        assert all(event.data.run is not None for event in events[1:4])  # type: ignore[union-attr]
        done = job.wait()
        assert done.status == "done"
        assert done.result is not None
        assert [run.stdout for run in done.result.runs] == ["r\n"] * 3
        # With `wait`: one request, the job as it ended.
        at_once = client.submit(image=BUSYBOX, run="echo now", script="", wait=30)
        assert at_once.document.status == "done"
        assert at_once.document.result is not None
        assert at_once.document.result.runs[0].stdout == "now\n"

        slow = client.submit(image=BUSYBOX, run="sleep 30", script="")
        assert wait_until(lambda: slow.refresh().status == "running", timeout=20)
        assert slow.cancel().status == "cancelled"
        assert slow.wait(timeout=10).status == "cancelled"


@RUNC_ONLY
async def test_async_client_runs_submits_waits_cancels_and_names_problems(
    server: Server,
) -> None:
    """The AsyncClient as the blocking one: languages() and limits(); run() waits for a typed
    RunResponse; submit() returns at once and wait() gives the job done with its runs;
    events() yields started, each run, done; cancel() ends a running job (again: no change;
    a job that ran to its end: 409); a bad request is RequestRejected naming the server's
    code and field, and an unknown job NotFound."""
    async with AsyncClient(server.url) as client:
        languages = {language.name: language for language in await client.languages()}
        assert languages["sh"].image_present
        limits = await client.limits()
        result = await client.run(language="sh", script="cat; echo", stdin="abc", count=2)
        assert isinstance(result, RunResponse)
        assert [run.stdout for run in result.runs] == ["abc\n", "abc\n"]

        job = await client.submit(image=BUSYBOX, run="sleep 0.2; echo r", script="", count=2)
        assert job.document.status in ("queued", "running")
        done = await job.wait(timeout=60)
        assert done.status == "done"
        assert done.result is not None
        assert [run.stdout for run in done.result.runs] == ["r\n", "r\n"]
        kinds = [event.kind async for event in job.events()]
        assert kinds == ["started", "run", "run", "done"]
        at_once = await client.submit(image=BUSYBOX, run="echo now", script="", wait=30)
        assert at_once.document.status == "done"
        assert at_once.document.result is not None
        assert at_once.document.result.runs[0].stdout == "now\n"

        slow = await client.submit(image=BUSYBOX, run="sleep 30", script="")
        for _ in range(100):
            if (await slow.refresh()).status == "running":
                break
            await asyncio.sleep(0.2)
        assert (await slow.cancel()).status == "cancelled"
        assert (await slow.wait(timeout=10)).status == "cancelled"
        assert (await slow.cancel()).status == "cancelled"  # again: nothing changes
        with pytest.raises(RequestRejected) as ended:
            await job.cancel()  # it ran to its end: too late
        assert (ended.value.status, ended.value.code) == (409, "conflict")

        over = {"memory_mb": limits.memory_mb + 1}  # one above what limits() published
        with pytest.raises(RequestRejected) as rejected:
            await client.submit(language="sh", script="x", limits=over)
        assert (rejected.value.status, rejected.value.code) == (422, "invalid_request")
        assert rejected.value.field == "limits.memory_mb"
        with pytest.raises(NotFound):
            await client.job("0" * 32)


@RUNC_ONLY
async def test_events_resume_after_a_dropped_connection(server: Server) -> None:
    """Read two events, close the stream, reopen after the last id: the rest, none missed
    or repeated. And a stream cut by the network right after its first `run` event is
    reopened by events() itself with Last-Event-ID: again each event exactly once."""
    async with AsyncClient(server.url) as client:
        job = await client.submit(image=BUSYBOX, run="echo r", script="", count=3)
        await job.wait()
        first: list[int] = []
        async for event in job.events():
            first.append(event.id)
            if len(first) == 2:
                break
        rest = [event.id async for event in job.events(after=first[-1])]
        every = [event.id async for event in job.events()]
        assert first + rest == every
        assert len(every) == 5

    cutter = StreamCutter(server.port)
    try:
        async with AsyncClient(cutter.url) as client:
            job = await client.submit(image=BUSYBOX, run="sleep 0.3; echo r", script="", count=3)
            events = [event async for event in job.events()]
    finally:
        cutter.close()
    assert cutter.cut, "the stream was never cut: the test tested nothing"
    assert cutter.connections >= 2  # the stream reopened on a new connection after the cut
    assert [event.kind for event in events] == ["started", "run", "run", "run", "done"]
    ids = [event.id for event in events]
    assert ids == sorted(set(ids))
    assert isinstance(events[-1].data, JobOut)
    assert events[-1].data.status == "done"


def occupy(server: Server) -> threading.Thread:
    """A 3 s run holding the server's one worker, started once the server says so."""
    body = {"image": BUSYBOX, "run": "sleep 3", "script": ""}
    occupier = threading.Thread(
        target=lambda: httpx.post(f"{server.url}/api/v1/runs", json=body, timeout=30)
    )
    occupier.start()
    assert wait_until(server.busy, timeout=20)
    return occupier


def test_503_is_retried_after_the_servers_retry_after(tmp_path: Path) -> None:
    """One worker, no backlog, a 3 s run occupying it: without retries the run is refused
    at once (503 busy, its Retry-After kept); with retries the client sleeps as the server
    asks between attempts and gets through once the worker is free. Client and
    AsyncClient alike."""
    server = launch(
        tmp_path, *TEST_FLAGS, "--workers", "1", "--backlog", "0", "--pool", "0", "--timeout", "10"
    )
    occupiers = []
    try:
        occupiers.append(occupy(server))
        with Client(server.url, retries=0) as impatient, pytest.raises(ServiceUnavailable) as busy:
            impatient.run(language="sh", script="echo no")
        assert busy.value.code == "busy"
        assert busy.value.retry_after >= 1
        started = time.monotonic()
        with Client(server.url, retries=10) as patient:
            result = patient.run(language="sh", script="echo through")
        assert result.runs[0].stdout == "through\n"
        # Ten retries without the server's wait between them would be spent in milliseconds.
        assert time.monotonic() - started >= 1

        occupiers.append(occupy(server))
        asyncio.run(async_503(server))
    finally:
        for occupier in occupiers:
            occupier.join(timeout=30)
        assert server.stop() == 0


async def async_503(server: Server) -> None:
    """The AsyncClient's half of the test above, on a server whose one worker is busy."""
    async with AsyncClient(server.url, retries=0) as impatient:
        with pytest.raises(ServiceUnavailable) as busy:
            await impatient.run(language="sh", script="echo no")
    assert busy.value.code == "busy"
    assert busy.value.retry_after >= 1
    started = time.monotonic()
    async with AsyncClient(server.url, retries=10) as patient:
        result = await patient.run(language="sh", script="echo through")
    assert result.runs[0].stdout == "through\n"
    assert time.monotonic() - started >= 1


def test_an_api_key_opens_a_server_that_requires_one(tmp_path: Path) -> None:
    """With --require-api-key: without a key the SDK gets RequestRejected 401; with
    `api_key` its job runs and its event stream opens; `bg-compiler run` takes the key
    from BGC_API_KEY and exits 0."""
    data = tmp_path / "store"
    key = create_key(data, "ci")
    server = launch(tmp_path, *TEST_FLAGS, "--require-api-key", "--data-dir", str(data))
    try:
        with Client(server.url) as anonymous, pytest.raises(RequestRejected) as refused:
            anonymous.languages()
        assert refused.value.status == 401
        with Client(server.url, api_key=key) as client:
            job = client.submit(language="sh", script="echo keyed")
            assert [event.kind for event in job.events()][-1] == "done"
            assert job.document.result is not None
            assert job.document.result.runs[0].stdout == "keyed\n"
        (tmp_path / "hi.sh").write_text("echo hi\n")
        env = {**os.environ, "BGC_SERVER": server.url, "BGC_API_KEY": key}
        done = subprocess.run(
            [sys.executable, "-m", "bgcompiler", "run", "hi.sh"],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        assert server.stop() == 0
