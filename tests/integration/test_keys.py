"""API keys end to end: keys made by the CLI in the store a real service uses, runs on the
real engine charged to them, another key's jobs out of reach, Piston's WebSocket opened
only with a key in its upgrade request, and the bucket held across two stores at once on
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bgcompiler.keys import ApiKey, new_secret
from bgcompiler.store.database import database_url, open_database
from bgcompiler.store.keys import KeyStore
from tests.conftest import TEST_FLAGS, launch

pytestmark = pytest.mark.integration


def create_key(data_dir: Path, name: str, *flags: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bgcompiler",
            "keys",
            "create",
            "--name",
            name,
            *flags,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_keys_made_by_the_cli_open_a_real_service_and_keep_jobs_apart(tmp_path: Path) -> None:
    """With --require-api-key: a run on the engine with a key made by the CLI, its runs
    charged (count=2 costs 2) as the headers say; another key's job is a 404; a request
    without a key and Piston's WebSocket upgrade without one are 401, with one it runs;
    a key revoked by the CLI is refused at once."""
    data = tmp_path / "store"
    alice = create_key(data, "alice", "--burst", "10", "--rate", "1/h")
    bob = create_key(data, "bob")
    server = launch(tmp_path, *TEST_FLAGS, "--require-api-key", "--data-dir", str(data))
    body = {"language": "sh", "script": "echo hi", "count": 2}
    assert httpx.post(f"{server.url}/api/v1/runs", json=body).status_code == 401
    ran = httpx.post(
        f"{server.url}/api/v1/runs", json=body, headers={"X-API-Key": alice}, timeout=60
    )
    assert ran.status_code == 200, ran.text
    assert [run["stdout"] for run in ran.json()["runs"]] == ["hi\n", "hi\n"]
    assert ran.headers["ratelimit-remaining"] == "8"
    job = httpx.post(
        f"{server.url}/api/v1/jobs", json=body, headers={"Authorization": f"Bearer {alice}"}
    ).json()["id"]
    theirs = httpx.get(f"{server.url}/api/v1/jobs/{job}", headers={"X-API-Key": bob})
    assert theirs.status_code == 404
    own = httpx.get(f"{server.url}/api/v1/jobs/{job}?wait=30", headers={"X-API-Key": alice})
    assert own.json()["status"] == "done"
    # Waiting on another key's job is a 404 at once, not once the job has ended (which
    # would tell when it ends): the job is still running after the answer.
    slow = {**body, "script": "sleep 2; echo late", "count": 1}
    running = httpx.post(f"{server.url}/api/v1/jobs", json=slow, headers={"X-API-Key": alice})
    slow_job = running.json()["id"]
    waited = httpx.get(
        f"{server.url}/api/v1/jobs/{slow_job}?wait=30", headers={"X-API-Key": bob}, timeout=60
    )
    assert waited.status_code == 404
    still = httpx.get(f"{server.url}/api/v1/jobs/{slow_job}", headers={"X-API-Key": alice})
    assert still.json()["status"] in ("queued", "running")

    url = f"ws://127.0.0.1:{server.port}/api/v2/connect"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=30).close()
    assert refused.value.response.status_code == 401
    with connect(url, open_timeout=30, additional_headers={"X-API-Key": bob}) as ws:
        init = {"type": "init", "language": "sh", "version": "*", "files": [{"content": "echo ws"}]}
        ws.send(json.dumps(init))
        seen = [json.loads(ws.recv(timeout=60)) for _ in range(4)]
    assert {"type": "data", "stream": "stdout", "data": "ws\n"} in seen

    subprocess.run(
        [sys.executable, "-m", "bgcompiler", "keys", "revoke", "alice", "--data-dir", str(data)],
        check=True,
    )
    gone = httpx.get(f"{server.url}/api/v1/status", headers={"X-API-Key": alice})
    assert gone.status_code == 401


def test_two_processes_share_one_bucket_on_postgresql(postgres_url: str) -> None:
    """Two stores (two engines, as two processes have) charge one key at once from 16
    threads each on PostgreSQL: exactly the bucket's 6 runs are admitted, and the day
    counts them."""
    url = database_url(postgres_url, "unused")
    stores = [KeyStore(asyncio.run(open_database(url, "unused"))) for _ in range(2)]
    key = ApiKey(name="shared", rate=1 / 3600, burst=6, runs_per_day=100)
    stores[0].create(key, new_secret())
    admitted: list[bool] = []

    def charge(store: KeyStore) -> None:
        admitted.append(store._charge(key, 1, time.time()).refusal is None)

    threads = [threading.Thread(target=charge, args=(s,)) for s in stores for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 6
    assert {k.name: used for k, used in stores[1].list()}["shared"] == 6
