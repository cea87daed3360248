"""Metrics over the fake sandbox: bounded labels, one registry per app, what is counted."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from bgcompiler.languages import load_languages
from bgcompiler.metrics import OTHER, Metrics, PoolCount, reason_label, runtime_label
from bgcompiler.sandbox.fake import FakeSandbox
from bgcompiler.scheduler import Scheduler
from tests.scrape import Samples, parse, value
from tests.unit.conftest import spec
from tests.unit.test_pool import make_pool

BODY = {"script": "print(1)", "image": "fake/image", "cmd": "echo hi;"}


def metrics() -> Metrics:
    return Metrics(load_languages())


def samples_of(found: Metrics) -> Samples:
    return parse(generate_latest(found.registry).decode())


async def scrape(client: Any) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return parse(response.text)


def test_registry_languages_and_images_keep_their_names_and_others_do_not() -> None:
    """A registry language or image is its own label; anything a request named is `other`;
    no runtime named is runc; an unknown refusal code is `other`."""
    found = metrics()
    assert found.language_label("python") == "python"
    assert found.language_label(None) == OTHER
    assert found.language_label("my-own-language") == OTHER
    assert found.image_label("bgc/python:3") == "bgc/python:3"
    assert found.image_label("attacker/image:tag-1234") == OTHER
    assert runtime_label(None) == "runc"
    assert runtime_label("runsc") == "runsc"
    assert reason_label("busy") == "busy"
    assert reason_label("unavailable") == OTHER


def test_webhook_attempts_are_classed_by_answer() -> None:
    """A 2xx is ok, any other status error_status, no answer no_answer; a delivery ends
    delivered or failed."""
    found = metrics()
    for status in (200, 204, 500, 404, None):
        found.webhook_attempt(status)
    found.webhook_ended(delivered=True)
    samples = samples_of(found)
    assert value(samples, "bgc_webhook_attempts_total", outcome="ok") == 2
    assert value(samples, "bgc_webhook_attempts_total", outcome="error_status") == 2
    assert value(samples, "bgc_webhook_attempts_total", outcome="no_answer") == 1
    assert value(samples, "bgc_webhook_deliveries_total", outcome="delivered") == 1


def test_pool_keys_are_summed_under_bounded_labels() -> None:
    """Keys that differ in limits or CPU share one series; user images share `other`."""
    found = metrics()
    found.watch_pool(
        lambda: [
            PoolCount("bgc/python:3", None, False, ready=2, starting=0),
            PoolCount("bgc/python:3", None, False, ready=1, starting=1),
            PoolCount("bgc/gcc:12", "runsc", True, ready=0, starting=1),
            PoolCount("mine/a:1", None, False, ready=1, starting=0),
            PoolCount("mine/b:2", None, False, ready=3, starting=0),
        ]
    )
    samples = samples_of(found)
    python = {"image": "bgc/python:3", "runtime": "runc", "stage": "run"}
    assert value(samples, "bgc_pool_ready", **python) == 3
    assert value(samples, "bgc_pool_starting", **python) == 1
    gcc = {"image": "bgc/gcc:12", "runtime": "runsc", "stage": "compile"}
    assert value(samples, "bgc_pool_starting", **gcc) == 1
    assert value(samples, "bgc_pool_ready", image=OTHER, runtime="runc", stage="run") == 4
    images = {dict(labels)["image"] for name, labels in samples if name == "bgc_pool_ready"}
    assert images == {"bgc/python:3", "bgc/gcc:12", OTHER}


async def test_the_warm_pool_reports_each_key_ready_and_starting() -> None:
    """Right after a take the key's refills are starting; once settled they are ready."""
    pool, _, _ = make_pool(budget=4)
    assert pool.take(spec()) is None
    starting = pool.counts()
    assert [(c.image, c.ready, c.starting) for c in starting] == [("fake/image", 0, 3)]
    await pool.settle()
    assert [(c.image, c.ready, c.starting) for c in pool.counts()] == [("fake/image", 3, 0)]
    await pool.close()


async def test_each_app_has_its_own_registry(api: Callable[..., Any]) -> None:
    """Two apps in one process: runs on one are not counted on the other, and nothing is
    registered in prometheus_client's global registry."""
    first, second = await api(), await api()
    assert (await first.post("/compile", json={**BODY, "count": 3})).status_code == 200
    ran = {"status": "ok", "runtime": "runc", "language": OTHER, "stage": "run"}
    assert value(await scrape(first), "bgc_runs_total", **ran) == 3
    assert value(await scrape(second), "bgc_runs_total", **ran) == 0
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("bgc_")]


async def test_engine_up_follows_the_engines_answer(
    api: Callable[..., Any], fake: FakeSandbox
) -> None:
    """bgc_engine_up is 1 while the engine answers a ping and 0 when it does not."""
    client = await api()
    assert value(await scrape(client), "bgc_engine_up") == 1
    fake.engine_up = False
    assert value(await scrape(client), "bgc_engine_up") == 0
    fake.engine_up = True
    assert value(await scrape(client), "bgc_engine_up") == 1


async def test_refusals_are_counted_by_reason(api: Callable[..., Any], fake: FakeSandbox) -> None:
    """A request that does not fit the backlog counts one busy 503; an engine that does not
    answer counts one engine_unavailable 503; each is timed under its route's template."""
    client = await api(workers=1, backlog=0)
    busy = await client.post("/compile", json={**BODY, "count": 2})  # one of them would wait
    assert busy.status_code == 503
    assert busy.json()["error"] == "busy"
    fake.engine_up = False
    down = await client.post("/compile", json=BODY)
    assert down.status_code == 503
    assert down.json()["error"] == "engine_unavailable"
    fake.engine_up = True
    assert (await client.post("/compile", json=BODY)).status_code == 200
    samples = await scrape(client)
    assert value(samples, "bgc_rejections_total", code="503", reason="busy") == 1
    assert value(samples, "bgc_rejections_total", code="503", reason="engine_unavailable") == 1
    timed = {"method": "POST", "route": "/compile"}
    assert value(samples, "bgc_request_duration_seconds_count", **timed, code="503") == 2
    assert value(samples, "bgc_request_duration_seconds_count", **timed, code="200") == 1
    assert value(samples, "bgc_queue_wait_seconds_count") == 1
    assert value(samples, "bgc_workers") == 1
    assert value(samples, "bgc_queue_backlog") == 0


async def test_paths_are_labelled_by_route_template(api: Callable[..., Any]) -> None:
    """A job id in a path becomes the route's template; an unknown path and an unknown
    method each become one fixed label."""
    client = await api()
    assert (await client.get("/api/v1/jobs/0123456789abcdef")).status_code == 404
    assert (await client.get("/no/such/path/42")).status_code == 404
    await client.request("BREW", "/compile")
    samples = await scrape(client)
    routes = {dict(labels).get("route") for name, labels in samples}
    assert "/api/v1/jobs/{job_id}" in routes
    assert "unmatched" in routes
    assert not any(route and "0123456789abcdef" in route for route in routes)
    methods = {dict(labels).get("method") for name, labels in samples} - {None}
    assert methods <= {"GET", "POST", OTHER}
    assert OTHER in methods


def test_the_docs_and_the_dashboard_name_only_metrics_that_exist() -> None:
    """docs/operations.md lists every bgc_ metric; the Grafana dashboard is valid JSON and
    each of its queries names only metrics the service exports."""
    found = metrics()
    found.watch_queue(Scheduler(FakeSandbox(), workers=1, backlog=1))
    found.watch_pool(list)
    families = {family.name for family in found.registry.collect()}
    ours = {name for name in families if name.startswith("bgc_")}
    assert len(ours) == 16
    docs = Path(__file__).parents[2] / "docs"
    operations = (docs / "operations.md").read_text()
    suffixed = {f"{name}_total" if f"{name}_total" in operations else name for name in ours}
    listed = set(re.findall(r"^\| `(bgc_\w+)`", operations, re.MULTILINE))
    assert listed == suffixed
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text())
    exposed = {sample.name for family in found.registry.collect() for sample in family.samples}
    exposed |= {f"{name}_bucket" for name in families} | {f"{name}_count" for name in families}
    exposed |= families | {f"{name}_total" for name in families}
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(bgc_\w+)", target["expr"])
    }
    assert queried, "the dashboard queries nothing"
    assert queried <= exposed, queried - exposed


async def test_the_compatibility_apis_count_their_refusals_too(
    api: Callable[..., Any], fake: FakeSandbox
) -> None:
    """Judge0's and Piston's routes answer an engine that does not answer in their own
    shapes, and each such 503 is counted by reason as ours are."""
    client = await api()
    fake.engine_up = False
    judge0 = await client.get("/languages")
    piston = await client.get("/api/v2/runtimes")
    fake.engine_up = True
    assert (judge0.status_code, piston.status_code) == (503, 503)
    assert "error" in judge0.json()
    assert "message" in piston.json()
    samples = await scrape(client)
    assert value(samples, "bgc_rejections_total", code="503", reason="engine_unavailable") == 2
