"""Running it for others: health, request ids, CORS and log settings, on the fake sandbox."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from bgcompiler import cli
from bgcompiler.api.health import Readiness
from bgcompiler.api.request_id import request_id_of
from bgcompiler.sandbox.fake import FakeSandbox
from bgcompiler.scheduler import Scheduler
from bgcompiler.settings import Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("BGC_"):
            monkeypatch.delenv(key)


async def test_ready_names_the_engine_when_it_is_down(
    api: Callable[..., Any], fake: FakeSandbox
) -> None:
    """Readiness is 200 with every part ok; with the engine down it is 503 naming the engine
    (and only it), while liveness stays 200; back up, 200 again."""
    client = await api()
    up = await client.get("/health/ready")
    assert up.status_code == 200
    assert up.json() == {"status": "ok", "checks": {"engine": "ok", "store": "ok", "queue": "ok"}}
    fake.engine_up = False
    down = await client.get("/health/ready")
    assert down.status_code == 503
    body = down.json()
    assert body["error"] == "not_ready"
    assert body["checks"]["engine"] == "the fake engine is down"
    assert (body["checks"]["store"], body["checks"]["queue"]) == ("ok", "ok")
    assert body["message"] == "engine: the fake engine is down"
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    fake.engine_up = True
    assert (await client.get("/health/ready")).status_code == 200


async def test_a_hung_part_fails_readiness_at_the_deadline() -> None:
    """A check that never answers is reported at the deadline, not waited for."""

    async def hangs() -> None:
        await asyncio.sleep(60)

    async def fine() -> None:
        return None

    started = time.monotonic()
    checks = await Readiness({"store": hangs, "queue": fine}, deadline_s=0.2).check()
    assert time.monotonic() - started < 2
    assert checks == {"store": "no answer within 0.2 s", "queue": "ok"}


async def test_probes_at_once_share_one_round_of_checks() -> None:
    """Ten probes arriving together ask the part once; a later probe asks again."""
    asked = 0

    async def counted() -> None:
        nonlocal asked
        asked += 1
        await asyncio.sleep(0.05)

    readiness = Readiness({"engine": counted}, deadline_s=1)
    answers = await asyncio.gather(*(readiness.check() for _ in range(10)))
    assert answers == [{"engine": "ok"}] * 10
    assert asked == 1
    await readiness.check()
    assert asked == 2


async def test_the_queue_stops_accepting_when_it_shuts_down(fake: FakeSandbox) -> None:
    """The scheduler accepts once started, and not once its shutdown has begun."""
    scheduler = Scheduler(fake, workers=2, backlog=4)
    assert not scheduler.accepting  # no workers yet
    scheduler.start()
    assert scheduler.accepting
    await scheduler.shutdown(0)
    assert not scheduler.accepting


async def test_request_id_is_echoed_or_made(api: Callable[..., Any]) -> None:
    """A client's X-Request-ID comes back as sent; without one (or with one unfit to log)
    each answer carries a fresh id of its own."""
    client = await api()
    given = await client.get("/health/live", headers={"X-Request-ID": "req-42.a:b"})
    assert given.headers["x-request-id"] == "req-42.a:b"
    made = [(await client.get("/health/live")).headers["x-request-id"] for _ in range(2)]
    assert made[0] != made[1]
    assert all(len(rid) == 32 for rid in made)
    too_long = await client.get("/health/live", headers={"X-Request-ID": "a" * 129})
    assert too_long.headers["x-request-id"] != "a" * 129


def test_request_ids_fit_to_log_are_kept_others_replaced() -> None:
    """Printable ASCII without spaces, up to 128 characters, is kept; anything else is not."""

    def of(value: bytes) -> str:
        return request_id_of({"headers": [(b"x-request-id", value)]})

    assert of(b"x" * 128) == "x" * 128
    for unfit in (b"", b"a b", b"x" * 129, "é".encode(), b"a\x00b"):
        assert of(unfit) != unfit.decode("latin-1")


async def test_no_cors_headers_unless_an_origin_is_configured(api: Callable[..., Any]) -> None:
    """Off by default: no Access-Control header, and a preflight is not answered as one."""
    client = await api()
    plain = await client.get("/health/live", headers={"Origin": "https://app.example"})
    assert not [h for h in plain.headers if h.startswith("access-control-")]
    preflight = await client.options(
        "/compile",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_answers_only_the_configured_origins(api: Callable[..., Any]) -> None:
    """With origins configured, each of them is allowed (preflight included, X-Request-ID
    readable by the page); any other origin gets no CORS header."""
    client = await api(cors_origin=("https://a.example", "http://b.example:8000"))
    for origin in ("https://a.example", "http://b.example:8000"):
        answer = await client.get("/health/live", headers={"Origin": origin})
        assert answer.headers["access-control-allow-origin"] == origin
        assert "X-Request-ID" in answer.headers["access-control-expose-headers"]
    preflight = await client.options(
        "/compile",
        headers={"Origin": "https://a.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://a.example"
    other = await client.get("/health/live", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("origin", ["https://a.example/", "a.example", "https://a.example/x"])
def test_an_origin_that_could_never_match_is_refused(origin: str) -> None:
    """An origin with a path, a final slash or no scheme would silently never match."""
    with pytest.raises(ValueError, match="is not an origin"):
        Settings(cors_origin=(origin,))


@pytest.mark.usefixtures("clean_env")
def test_cors_origins_come_from_repeated_flags_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--cors-origin repeats; BGC_CORS_ORIGIN (a JSON list) fills in when no flag is given."""
    options = {"cors_origin": ("https://a.example", "https://b.example")}
    assert cli._settings_from(options).cors_origin == ("https://a.example", "https://b.example")
    monkeypatch.setenv("BGC_CORS_ORIGIN", '["https://env.example"]')
    assert cli._settings_from({"cors_origin": ()}).cors_origin == ("https://env.example",)
    assert Settings().cors_origin == ("https://env.example",)


@pytest.mark.usefixtures("clean_env")
def test_log_format_flag_wins_over_bgc_log_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text by default; BGC_LOG_JSON=1 means JSON; --log-format, when given, wins."""
    assert not Settings().json_logs
    assert Settings(log_format="json").json_logs
    monkeypatch.setenv("BGC_LOG_JSON", "1")
    assert Settings().json_logs
    assert not Settings(log_format="console").json_logs
    monkeypatch.setenv("BGC_LOG_FORMAT", "console")
    assert not Settings().json_logs


def test_start_offers_the_operations_flags() -> None:
    """`start --help` lists --cors-origin and --log-format."""
    text = CliRunner().invoke(cli.main, ["start", "--help"]).output
    assert "--cors-origin" in text
    assert "--log-format [console|json]" in text
