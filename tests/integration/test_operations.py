"""Running it for others, end to end: the API docs in a browser cut off from the outside,
readiness following the engine and the store, CORS, request ids and JSON logs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSYBOX, TEST_FLAGS, Server, free_port, launch, wait_until
from tests.integration.browser import Page, offline_page
from tests.integration.engine_proxy import EngineProxy
from tests.postgres import postgres_cluster

pytestmark = pytest.mark.integration

# The shared service under runc: nothing here depends on the runtime.
runc_only = pytest.mark.parametrize("shared_server", ["runc"], indirect=True)

SWAGGER_SHOWS_COMPILE = """[...document.querySelectorAll('.opblock-post .opblock-summary-path')]
    .some(e => e.getAttribute('data-path') === '/compile')"""
REDOC_SHOWS_COMPILE = """[...document.querySelectorAll('[data-section-id^="operation/"]')]
    .some(e => e.textContent.includes('/compile'))"""
FASTAPI_CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with offline_page() as opened:
        yield opened


def outside(page: Page, server: Server) -> list[str]:
    """What the page asked of the network anywhere but the service itself (data: and blob:
    URLs are the page's own)."""
    network = [url for url in page.requested if url.startswith(("http", "ws", "ftp"))]
    return [url for url in network if not url.startswith(f"{server.url}/")]


@runc_only
def test_docs_show_the_operations_with_no_internet(server: Server, page: Page) -> None:
    """/docs renders Swagger UI's list of operations, POST /compile among them, in a browser
    that reaches nothing but loopback (the CDN FastAPI would use is unreachable there),
    and the page asks for nothing from anywhere else."""
    reached = page.evaluate(f"fetch({FASTAPI_CDN!r}).then(() => 'reached', () => 'blocked')")
    assert reached == "blocked"
    page.open(f"{server.url}/docs")
    assert page.wait_for(SWAGGER_SHOWS_COMPILE), page.evaluate("document.body.innerText")
    assert outside(page, server) == []


@runc_only
def test_redoc_shows_the_operations_with_no_internet(server: Server, page: Page) -> None:
    """/redoc renders ReDoc's operation sections, POST /compile's among them, offline, and
    asks nothing of anywhere else (no web fonts either)."""
    page.open(f"{server.url}/redoc")
    assert page.wait_for(REDOC_SHOWS_COMPILE), page.evaluate("document.body.innerText")
    assert outside(page, server) == []


@runc_only
def test_health_live_and_ready_on_a_healthy_service(server: Server) -> None:
    """Both answer 200 with JSON; readiness lists the engine, the store and the queue as ok.
    GET / keeps its own answer."""
    assert server.client.get("/health/live").json() == {"status": "ok"}
    ready = server.client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"engine": "ok", "store": "ok", "queue": "ok"}
    assert server.client.get("/").json() == {"status": "ok"}


@runc_only
def test_no_cors_headers_without_the_flag(server: Server) -> None:
    """Off by default: a page's Origin gets no Access-Control header back, preflight neither."""
    answer = server.client.get("/health/live", headers={"Origin": "https://app.example"})
    assert not [name for name in answer.headers if name.startswith("access-control-")]
    preflight = server.client.options(
        "/compile",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def log_lines(server: Server) -> list[dict[str, Any]]:
    """The service's log, every line parsed as JSON (it fails on a line that is not)."""
    return [json.loads(line) for line in server.log().splitlines() if line.strip()]


def test_cors_request_ids_and_json_logs(tmp_path: Path) -> None:
    """With --cors-origin (twice) and --log-format json: the origins given are allowed and
    no other; the client's X-Request-ID comes back, and each run of the request has a JSON
    log line with that id, the job's id, its status and figures; a request without an id
    gets one made. Every line of the log, uvicorn's included, is JSON."""
    server = launch(
        tmp_path,
        *TEST_FLAGS,
        *("--cors-origin", "https://a.example", "--cors-origin", "https://b.example"),
        *("--log-format", "json"),
    )
    try:
        for origin in ("https://a.example", "https://b.example"):
            allowed = server.client.get("/health/live", headers={"Origin": origin})
            assert allowed.headers["access-control-allow-origin"] == origin
        other = server.client.get("/health/live", headers={"Origin": "https://c.example"})
        assert "access-control-allow-origin" not in other.headers

        answer = server.client.post(
            "/compile",
            json={"script": "echo hi", "image": BUSYBOX, "cmd": "sh", "count": 2},
            headers={"X-Request-ID": "trace-7f3a"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == "trace-7f3a"
        made = server.client.get("/health/live").headers["x-request-id"]
        assert made not in ("", "trace-7f3a")

        def runs() -> list[dict[str, Any]]:
            return [
                line
                for line in log_lines(server)
                if line.get("event") == "run finished" and line.get("request_id") == "trace-7f3a"
            ]

        assert wait_until(lambda: len(runs()) == 2, timeout=10), server.log()
        for line in runs():
            assert line["status"] == "ok"
            assert line["exit_code"] == 0
            assert line["memory_kb"] > 0
            assert len(line["job"]) == 32
        assert len({line["job"] for line in runs()}) == 1
    finally:
        assert server.stop() == 0
    lines = log_lines(server)
    assert any(line["event"].startswith("Uvicorn running") for line in lines)


def test_readiness_follows_the_engine_and_the_store(tmp_path: Path) -> None:
    """The engine cut: 503 naming the engine (store and queue ok), liveness still 200; back,
    200. The store (PostgreSQL) stopped: 503 naming the store; started, 200. The engine
    hung: 503 within the deadline (--engine-timeout 1), not a hang."""
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    with postgres_cluster(free_port()) as database:
        server = launch(
            tmp_path,
            *("--docker-host", proxy.url, "--engine-timeout", "1"),
            *("--database-url", database.url, "--workers", "1", "--pool", "0"),
        )
        try:

            def ready() -> bool:
                return server.client.get("/health/ready").status_code == 200

            assert ready()
            proxy.cut()
            down = server.client.get("/health/ready")
            assert down.status_code == 503
            body = down.json()
            assert body["error"] == "not_ready"
            assert body["checks"]["engine"] != "ok"
            assert (body["checks"]["store"], body["checks"]["queue"]) == ("ok", "ok")
            assert body["message"].startswith("engine: ")
            assert server.client.get("/health/live").status_code == 200
            proxy.restore()
            assert wait_until(ready, timeout=15)

            database.stop()
            down = server.client.get("/health/ready")
            assert down.status_code == 503
            assert down.json()["checks"]["engine"] == "ok"
            assert down.json()["checks"]["store"] != "ok"
            database.start()
            assert wait_until(ready, timeout=15)

            proxy.freeze()
            started = time.monotonic()
            hung = server.client.get("/health/ready")
            assert time.monotonic() - started < 1 + 3  # the deadline, and a margin
            assert hung.status_code == 503
            assert hung.json()["checks"]["engine"] != "ok"
            proxy.restore()
            assert wait_until(ready, timeout=15)
        finally:
            proxy.restore()
            assert server.stop() == 0
            proxy.stop()
