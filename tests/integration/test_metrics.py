"""GET /metrics on the real engine: counts after known runs, refusals, bounded labels.

The service is started for this module alone, so every count in it is ours: one worker and
no backlog (a second request while a run goes on is refused), and runs time out after 1 s.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import TEST_FLAGS, Server, launch, wait_until
from tests.integration.conftest import Receiver
from tests.scrape import Samples, label_values, parse, value

pytestmark = pytest.mark.integration

RUNS = "/api/v1/runs"


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    flags = (*TEST_FLAGS, "--timeout", "1", "--workers", "1", "--backlog", "0")
    flags += ("--webhook-secret", "s3cret", "--webhook-retries", "1", "--webhook-allow-private")
    service = launch(tmp_path_factory.mktemp("metrics"), *flags)
    yield service
    assert service.stop() == 0, service.log()


def scrape(server: Server) -> Samples:
    response = server.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def runs(samples: Samples, status: str, language: str) -> float:
    labels = {"status": status, "runtime": "runc", "language": language, "stage": "run"}
    return value(samples, "bgc_runs_total", **labels)


def test_known_runs_and_a_busy_refusal_are_counted_exactly(metered: Server) -> None:
    """3 ok runs and 1 timeout add exactly 3 and 1 to the runs counter by status, 4 to the
    run and queue-wait histograms' counts; a request refused while the only worker is busy
    adds 1 to the busy rejections and is timed as a 503 of the route's template."""
    before = scrape(metered)
    for _ in range(3):
        assert metered.v1(language="sh", script="echo hi")["runs"][0]["status"] == "ok"
    slow: list[dict[str, Any]] = []
    sleeper = threading.Thread(
        target=lambda: slow.append(metered.v1(language="sh", script="sleep 30"))
    )
    sleeper.start()
    try:
        assert wait_until(metered.busy, timeout=30)
        refused = metered.client.post(RUNS, json={"language": "sh", "script": "echo no"})
        assert refused.status_code == 503
        assert refused.json()["error"] == "busy"
    finally:
        sleeper.join(timeout=60)
    assert slow[0]["runs"][0]["status"] == "timeout"
    after = scrape(metered)

    def added(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert runs(after, "ok", "sh") - runs(before, "ok", "sh") == 3
    assert runs(after, "timeout", "sh") - runs(before, "timeout", "sh") == 1
    assert added("bgc_run_duration_seconds_count", stage="run") == 4
    assert added("bgc_queue_wait_seconds_count") == 4
    assert added("bgc_rejections_total", code="503", reason="busy") == 1
    timed = {"method": "POST", "route": RUNS}
    assert added("bgc_request_duration_seconds_count", **timed, code="200") == 4
    assert added("bgc_request_duration_seconds_count", **timed, code="503") == 1
    # Every run took a container, warm or started for it; each one started is timed.
    taken = added("bgc_pool_takes_total", result="warm") + added(
        "bgc_pool_takes_total", result="cold"
    )
    assert taken == 4
    assert added("bgc_container_start_seconds_count") >= added(
        "bgc_pool_takes_total", result="cold"
    )
    # The timed-out run's wall time is past the 1 s limit: at least one sample above 1 s.
    above_1s = added("bgc_run_duration_seconds_count", stage="run") - added(
        "bgc_run_duration_seconds_bucket", stage="run", le="1.0"
    )
    assert above_1s >= 1


def test_state_gauges_show_the_configuration_and_the_engine(metered: Server) -> None:
    """Workers, backlog, the engine's answer and the warm pool per registry image."""
    assert metered.v1(language="sh", script="true")["runs"][0]["status"] == "ok"
    samples = scrape(metered)
    assert value(samples, "bgc_workers") == 1
    assert value(samples, "bgc_queue_backlog") == 0
    assert value(samples, "bgc_queue_waiting_runs") == 0
    assert value(samples, "bgc_engine_up") == 1
    pool = {"image": "bgc/busybox:latest", "runtime": "runc", "stage": "run"}
    assert ("bgc_pool_ready", frozenset(pool.items())) in samples
    warm = value(samples, "bgc_pool_ready", **pool) + value(samples, "bgc_pool_starting", **pool)
    assert warm >= 1, "the pool refills the key a run took from"


def test_labels_stay_bounded_whatever_requests_name(metered: Server) -> None:
    """A run named by image is language `other`; a job id in a path is its route template;
    an unknown path is `unmatched`; no label anywhere holds an id."""
    before = scrape(metered)
    files = [{"name": "a.sh", "content": "echo x"}]
    named = metered.v1(image="bgc/busybox:latest", files=files, run="sh a.sh")
    assert named["runs"][0]["status"] == "ok"
    job_id = uuid.uuid4().hex
    assert metered.client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert metered.client.get(f"/no/such/{job_id}").status_code == 404
    after = scrape(metered)
    assert runs(after, "ok", "other") - runs(before, "ok", "other") == 1
    routes = label_values(after, "bgc_request_duration_seconds", "route")
    assert "/api/v1/jobs/{job_id}" in routes
    assert "unmatched" in routes
    languages = label_values(after, "bgc_runs", "language")
    assert languages <= {"sh", "other"}
    every_value = {v for _, labels in after for _, v in labels}
    assert not any(job_id in v for v in every_value)
    assert not any(len(v) >= 32 and v.isalnum() for v in every_value), "an id in a label"


def test_webhook_deliveries_are_counted_by_outcome(
    metered: Server, receiver: tuple[str, type[Receiver]]
) -> None:
    """With one retry: a receiver that fails once gets a delivery (one error_status attempt,
    one ok); one that always fails gets a failed delivery after two error_status attempts."""
    url, handler = receiver
    before = scrape(metered)
    handler.fail = 1
    job = {"language": "sh", "script": "true", "callback_url": url}
    assert metered.client.post("/api/v1/jobs", json=job).status_code == 202
    assert wait_until(lambda: len(handler.calls) == 2, timeout=30)
    handler.fail = 100
    assert metered.client.post("/api/v1/jobs", json=job).status_code == 202
    assert wait_until(lambda: len(handler.calls) == 4, timeout=30)

    def ended() -> bool:
        return value(scrape(metered), "bgc_webhook_deliveries_total", outcome="failed") > value(
            before, "bgc_webhook_deliveries_total", outcome="failed"
        )

    assert wait_until(ended, timeout=10)
    after = scrape(metered)

    def added(name: str, outcome: str) -> float:
        return value(after, name, outcome=outcome) - value(before, name, outcome=outcome)

    assert added("bgc_webhook_deliveries_total", "delivered") == 1
    assert added("bgc_webhook_deliveries_total", "failed") == 1
    assert added("bgc_webhook_attempts_total", "ok") == 1
    assert added("bgc_webhook_attempts_total", "error_status") == 3
    assert added("bgc_webhook_attempts_total", "no_answer") == 0
