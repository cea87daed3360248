"""GET /api/v1/limits: what a caller may ask for, so that clients (the playground) can bound
their inputs; it must agree with what the v1 and jobs APIs really admit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.unit.test_keys import BODY, bearer, data_dir, keyed

__all__ = ["data_dir", "keyed"]  # fixtures used here


async def test_limits_are_the_servers_and_requests_at_them_are_admitted(
    api: Callable[..., Any],
) -> None:
    """The figures come from the settings; a job asking exactly the published maximums is
    accepted, one a unit above any of them is a 422 naming that field."""
    client = await api(max_count=7, timeout=3.5, memory=96, output=2, pids=32, cpus=0.5)
    limits = (await client.get("/api/v1/limits")).json()
    assert limits["max_runs"] == 7
    assert (limits["time_ms"], limits["memory_mb"], limits["output_kb"]) == (3500, 96, 2)
    assert (limits["pids"], limits["cpus"]) == (32, 0.5)
    at_max = {
        "time_ms": limits["time_ms"],
        "memory_mb": limits["memory_mb"],
        "output_kb": limits["output_kb"],
        "pids": limits["pids"],
    }
    body = {**BODY, "count": limits["max_runs"], "limits": at_max}
    accepted = await client.post("/api/v1/jobs", json=body)
    assert accepted.status_code == 202, accepted.text
    for field in at_max:
        over = {**body, "limits": {**at_max, field: at_max[field] + 1}}
        refused = await client.post("/api/v1/jobs", json=over)
        assert refused.status_code == 422, field
        assert refused.json()["field"] == f"limits.{field}"
    too_many = await client.post("/api/v1/jobs", json={**body, "count": limits["max_runs"] + 1})
    assert too_many.status_code == 422
    assert too_many.json()["field"] == "count"
    below = {**body, "limits": {"memory_mb": limits["min_memory_mb"] - 1}}
    assert (await client.post("/api/v1/jobs", json=below)).status_code == 422


async def test_a_keys_caps_lower_the_published_limits(keyed: Callable[..., Any]) -> None:
    """A key capped at 3 runs, 500 ms and 32 MB reads those figures; a key without caps
    reads the server's; without a key the route is a 401 like the rest of the API."""
    client, make, _ = keyed()
    small = make("small", max_memory_mb=32, max_time_ms=500, max_count=3)
    free = make("free")
    capped = (await client.get("/api/v1/limits", headers=bearer(small))).json()
    server = (await client.get("/api/v1/limits", headers=bearer(free))).json()
    assert (capped["max_runs"], capped["time_ms"], capped["memory_mb"]) == (3, 500, 32)
    assert server["max_runs"] > 3
    assert server["time_ms"] > 500
    assert server["memory_mb"] > 32
    assert (await client.get("/api/v1/limits")).status_code == 401
