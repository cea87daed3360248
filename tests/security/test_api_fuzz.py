"""Property-based fuzzing of the HTTP API from its own OpenAPI schema, against the real
service on the real engine: no 5xx, and every answer matches the schema.

Hypothesis is driven directly (schemathesis' pytest plugin does not work with pytest 9).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import TEST_FLAGS, Server, launch, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = 120  # the bounded budget per operation, so the suite stays well inside CI's time


def no_server_error_but_a_full_backlog(ctx: CheckContext, response: Any, case: Any) -> bool:
    """Every 5xx is a failure, but a 503 `busy` (documented, with Retry-After): the jobs
    API queues work that outlives its request, so a fuzzer fills the backlog on purpose
    (Judge0's API says it its own way: `queue is full`)."""
    if response.status_code == 503 and response.json().get("error") in ("busy", "queue is full"):
        assert "retry-after" in {k.lower() for k in response.headers}
        return True
    return bool(not_a_server_error(ctx, response, case) is not False)


CHECKS = [
    no_server_error_but_a_full_backlog,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # runc only: what is fuzzed is the API's handling of requests (no 5xx, answers as
    # documented), the same code whatever the runtime; what runs differ by runtime is the
    # catalogue's and the soak's, on both.
    service = launch(tmp_path_factory.mktemp("fuzz"), *TEST_FLAGS)
    yield service
    assert service.stop() == 0, service.log()


def test_no_server_errors_and_answers_match_the_schema(fuzzed: Server) -> None:
    """For every operation, whatever the generated request: no 5xx, answers as documented."""
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {
        ("GET", "/"),
        ("POST", "/compile"),
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=60)

        check()
    # Jobs it submitted run on (at most --backlog of them): let them end, then count.
    assert wait_until(lambda: not fuzzed.busy() and not fuzzed.status()["waiting_runs"], 180)
    assert fuzzed.settled(), fuzzed.containers()
