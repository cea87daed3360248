"""API keys over the fake sandbox and a real SQLite store: the CLI, the door (401, 403, the
query string), isolation of jobs between keys, the token bucket and the day under
concurrent load, and a key's caps."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from bgcompiler.cli import main
from bgcompiler.keys import ApiKey, new_secret
from bgcompiler.sandbox.fake import FakeSandbox
from bgcompiler.store.database import database_url, open_database
from bgcompiler.store.keys import KeyStore

BODY = {"image": "fake/image", "run": "stdin", "script": "", "stdin": "in\n"}
# One language on the fake image, by v1's, Piston's and Judge0's names.
REGISTRY = """
[fake]
version = "1"
image = "fake/image"
file = "main.sh"
run = "echo ran {file}"
piston = { language = "fake", version = "1.0.0", aliases = [] }
judge0 = { ids = [71], name = "Fake (1)" }
"""
LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy")


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def keyed(api: Callable[..., Any], data_dir: Path, tmp_path: Path) -> Callable[..., Any]:
    """A client of an app with --require-api-key, and a maker of keys in its store."""
    registry = tmp_path / "languages.toml"
    registry.write_text(REGISTRY)
    client = await api(
        require_api_key=True, data_dir=str(data_dir), languages=str(registry), backlog=100
    )
    engine = await open_database(database_url(None, str(data_dir)), str(data_dir))
    store = KeyStore(engine)

    def make(name: str, **grants: Any) -> str:
        secret = new_secret()
        store.create(ApiKey(name=name, **{"rate": 100.0, "burst": 100, **grants}), secret)
        return secret

    return lambda: (client, make, store)


def test_the_cli_creates_lists_and_revokes_keys_keeping_only_a_hash(data_dir: Path) -> None:
    """`keys create` prints the secret once; the store holds its SHA-256, never the secret;
    `keys list` shows its prefix and limits; a name is not reused; `keys revoke` marks it."""
    runner = CliRunner()
    store = ["--data-dir", str(data_dir)]
    created = runner.invoke(
        main,
        ["keys", "create", "--name", "ci", "--rate", "600/m", "--burst", "7", *store],
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("bgc_")
    assert len(secret) == 47
    again = runner.invoke(main, ["keys", "create", "--name", "ci", *store])
    assert again.exit_code == 1
    assert "exists already" in again.output
    database = sqlite3.connect(data_dir / "jobs.db")
    (stored,) = database.execute("SELECT * FROM api_keys").fetchall()
    assert secret not in [str(value) for value in stored]
    listed = runner.invoke(main, ["keys", "list", *store])
    assert listed.exit_code == 0
    line = listed.stdout.splitlines()[1].split()
    assert line[0] == "ci"
    assert line[1] == secret[:12] + "…"
    assert line[3:5] == ["10", "7"]
    assert line[-1] == "active"
    assert secret not in listed.output
    revoked = runner.invoke(main, ["keys", "revoke", "ci", *store])
    assert revoked.exit_code == 0
    assert runner.invoke(main, ["keys", "list", *store]).stdout.split()[-1] == "revoked"
    assert runner.invoke(main, ["keys", "revoke", "ci", *store]).exit_code == 1


async def test_only_a_live_key_in_a_header_opens_the_api(keyed: Callable[..., Any]) -> None:
    """No key, a wrong one, a revoked one, or any key in the query string: 401 (JSON, ours;
    on Judge0's routes Judge0's empty one), before the body is read. Bearer and X-API-Key
    open every route; X-Auth-Token only Judge0's. Liveness, readiness and the docs stay
    open; /metrics needs an admin key (403)."""
    client, make, store = keyed()
    good, admin = make("alice"), make("ops", admin=True)
    revoked = make("gone")
    assert store.revoke("gone")
    for headers in ({}, bearer("bgc_wrong"), bearer(revoked), {"Authorization": good}):
        answer = await client.post("/api/v1/runs", content=b"{not json", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    for query in ({"api_key": good}, {"X-Auth-Token": good}, {"key": "x"}):
        answer = await client.get("/api/v1/status", params=query, headers=bearer(good))
        assert answer.status_code == 401
        assert "query string" in answer.json()["message"]
    assert (await client.get("/api/v1/status", params={"api_key": good})).status_code == 401
    assert (await client.get("/api/v1/status", headers=bearer(good))).status_code == 200
    assert (await client.get("/api/v1/status", headers={"X-API-Key": good})).status_code == 200
    assert (await client.get("/api/v1/status", headers={"X-Auth-Token": good})).status_code == 401
    assert (await client.get("/statuses", headers={"X-Auth-Token": good})).status_code == 200
    judge0 = await client.get("/submissions/abc")
    assert (judge0.status_code, judge0.content) == (401, b"")
    assert judge0.headers["content-type"].startswith("text/html")
    for path in ("/", "/health/live", "/health/ready", "/openapi.json", "/docs", "/redoc"):
        assert (await client.get(path)).status_code == 200, path
    assert (await client.get("/metrics", headers=bearer(good))).status_code == 403
    assert (await client.get("/metrics", headers=bearer(admin))).status_code == 200


async def test_a_key_sees_only_its_own_jobs_on_every_job_route(
    keyed: Callable[..., Any],
) -> None:
    """Another key's job id answers 404 (as an unknown one) to GET, ?wait, DELETE, /events
    and Judge0's GET /submissions/{token}; lists and Judge0's batch leave it out; an admin
    key sees and reaches all of them."""
    client, make, _ = keyed()
    alice, bob, admin = make("alice"), make("bob"), make("ops", admin=True)
    job = await client.post("/api/v1/jobs", json=BODY, headers=bearer(alice))
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    token = (
        await client.post(
            "/submissions", json={"source_code": "x", "language_id": 71}, headers=bearer(alice)
        )
    ).json()["token"]
    for method, path in (
        ("GET", f"/api/v1/jobs/{job_id}"),
        ("GET", f"/api/v1/jobs/{job_id}?wait=1"),
        ("GET", f"/api/v1/jobs/{job_id}/events"),
        ("DELETE", f"/api/v1/jobs/{job_id}"),
        ("GET", f"/submissions/{token}"),
    ):
        answer = await client.request(method, path, headers=bearer(bob))
        assert answer.status_code == 404, (method, path)
        assert (await client.request(method, path, headers=bearer(admin))).status_code in (
            200,
            409,  # the DELETE of a job that has ended
        ), (method, path)
    listed = (await client.get("/api/v1/jobs", headers=bearer(bob))).json()
    assert listed["jobs"] == []
    own_list = (await client.get("/api/v1/jobs", headers=bearer(alice))).json()["jobs"]
    assert job_id in [j["id"] for j in own_list]
    assert len(own_list) == 2
    everyone = (await client.get("/api/v1/jobs", headers=bearer(admin))).json()["jobs"]
    assert len(everyone) == 2
    batch = await client.get("/submissions/batch", params={"tokens": token}, headers=bearer(bob))
    assert batch.json() == {"submissions": [None]}
    own = await client.get(f"/api/v1/jobs/{job_id}", headers=bearer(alice))
    assert own.status_code == 200


async def test_the_bucket_admits_no_key_more_than_its_runs_under_concurrent_load(
    keyed: Callable[..., Any], fake: FakeSandbox
) -> None:
    """20 concurrent requests from each of two keys whose buckets hold 6 runs (and barely
    refill): each key gets exactly its 6 runs (count=2 costs 2), the others 429 with
    Retry-After; every answer carries the RateLimit header fields; nothing is a 5xx; the
    refusals are counted in /metrics."""
    client, make, _ = keyed()
    keys = {"a": make("a", rate=1 / 3600, burst=6), "b": make("b", rate=1 / 3600, burst=6)}
    admin = make("ops", admin=True)

    async def one(name: str) -> tuple[str, httpx.Response]:
        body = {**BODY, "count": 2}
        return name, await client.post("/api/v1/runs", json=body, headers=bearer(keys[name]))

    answers = await asyncio.gather(*(one(name) for name in "ab" for _ in range(20)))
    for name in "ab":
        mine = [answer for who, answer in answers if who == name]
        assert all(answer.status_code in (200, 429) for answer in mine)
        assert sum(answer.status_code == 200 for answer in mine) == 3  # 6 runs of 2
        for answer in mine:
            assert all(header in answer.headers for header in LIMIT_HEADERS)
            assert answer.headers["ratelimit-limit"] == "6"
            assert answer.headers["ratelimit-policy"] == "6;w=21600"
            if answer.status_code == 429:
                assert answer.json()["error"] == "rate_limited"
                assert int(answer.headers["retry-after"]) >= 3600
    assert len(fake.started) == 12
    metrics = (await client.get("/metrics", headers=bearer(admin))).text
    assert 'bgc_rejections_total{code="429",reason="rate_limited"} 34.0' in metrics


async def test_the_day_admits_its_runs_and_then_waits_for_midnight(
    keyed: Callable[..., Any],
) -> None:
    """A key of 4 runs a day: 3 then 1 are admitted, 2 in between is a 429 `quota` whose
    Retry-After is the time to the next UTC midnight; the headers tell the day once it is
    the nearer limit; a request that needs more than a day's runs is a 403."""
    client, make, _ = keyed()
    key = make("daily", runs_per_day=4, burst=10)

    async def run(count: int) -> httpx.Response:
        return await client.post("/api/v1/runs", json={**BODY, "count": count}, headers=bearer(key))

    first = await run(3)
    assert first.status_code == 200
    assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("4", "1")
    assert first.headers["ratelimit-policy"] == "10;w=1, 4;w=86400"
    refused = await run(2)
    assert refused.status_code == 429
    assert refused.json()["error"] == "quota"
    assert 0 < int(refused.headers["retry-after"]) <= 86400
    assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
    assert (await run(1)).headers["ratelimit-remaining"] == "0"
    assert (await run(5)).status_code == 403


async def test_a_keys_caps_clamp_what_every_api_runs(
    keyed: Callable[..., Any], fake: FakeSandbox
) -> None:
    """A key capped at 32 MB and 500 ms runs v1, /compile and Piston requests with at most
    that, whatever they ask within the server's limits; more runs than its max count at
    once is a 403 (Piston: its own shape)."""
    client, make, _ = keyed()
    key = make("small", max_memory_mb=32, max_time_ms=500, max_count=3)
    limits = {"memory_mb": 48, "time_ms": 2000}
    v1 = await client.post(
        "/api/v1/runs", json={**BODY, "count": 2, "limits": limits}, headers=bearer(key)
    )
    assert v1.status_code == 200, v1.text
    seed = {"image": "fake/image", "cmd": "echo", "extension": "sh", "script": "", "count": 1}
    assert (await client.post("/compile", json=seed, headers=bearer(key))).status_code == 200
    piston = {"language": "fake", "version": "*", "files": [{"content": "x"}]}
    answer = await client.post("/api/v2/execute", json=piston, headers=bearer(key))
    assert answer.status_code == 200, answer.text
    assert len(fake.started) == 4
    assert {(s.limits.memory_mb, s.limits.timeout_s) for s in fake.started} == {(32, 0.5)}
    assert (
        await client.post("/api/v1/runs", json={**BODY, "count": 4}, headers=bearer(key))
    ).status_code == 403
    refused = await client.post(
        "/api/v2/execute", json={**piston, "run_timeout": 100}, headers=bearer(key)
    )
    assert refused.status_code == 200  # within the caps
    many = await client.post("/compile", json={**seed, "count": 4}, headers=bearer(key))
    assert many.status_code == 403
    assert many.json()["error"] == "forbidden"


async def test_the_schema_says_which_operations_need_a_key(
    keyed: Callable[..., Any], api: Callable[..., Any]
) -> None:
    """With keys on, the schema offers Bearer and X-API-Key and every operation but the
    open ones requires one (so /docs can take a key); with keys off it mentions none."""
    client, _, _ = keyed()
    schema = (await client.get("/openapi.json")).json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["paths"]["/api/v1/runs"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "security" not in schema["paths"]["/"]["get"]
    assert "security" not in schema["paths"]["/health/ready"]["get"]
    plain = (await (await api()).get("/openapi.json")).json()
    assert "securitySchemes" not in plain.get("components", {})
