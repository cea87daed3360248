"""A stored job as the jobs API shows it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bgcompiler.api.v1_render import compile_out, run_out, v1_document
from bgcompiler.core.events import CompileFinished, RunFinished, event_from_json
from bgcompiler.core.outcome import outcome_from_json
from bgcompiler.core.plan import Plan
from bgcompiler.store.jobs import Delivery, JobRow, StoredEvent


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def job_document(
    row: JobRow, deliveries: list[Delivery] | None, *, with_result: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row.id,
        "status": row.status,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "attempts": row.attempts,
        "runs_done": row.runs_done,
        "runs_total": row.runs_total,
        "metadata": json.loads(row.metadata) if row.metadata is not None else None,
    }
    if row.callback_url is not None:
        body["callback_url"] = row.callback_url
        attempts = [
            {"attempt": d.attempt, "at": iso(d.at), "status_code": d.status_code, "error": d.error}
            for d in deliveries or []
        ]
        delivered = any(
            d.status_code is not None and 200 <= d.status_code < 300 for d in deliveries or []
        )
        body["webhook"] = {"delivered": delivered, "attempts": attempts}
    if row.error is not None:
        body["error"] = row.error
    if with_result:
        body["result"] = None
        if row.outcome is not None:
            plan = Plan.from_json(row.plan)
            body["result"] = v1_document(row.id, plan, outcome_from_json(row.outcome))
    return body


def event_payload(event: StoredEvent) -> dict[str, Any]:
    """What an SSE event carries: `started` its attempt, `compile` the compile stage's
    result, `run` one run (with its index in the plan)."""
    body: dict[str, Any] = {"attempt": event.attempt}
    if event.kind in ("compile", "run"):
        decoded = event_from_json(event.data)
        if isinstance(decoded, CompileFinished):
            body["compile"] = compile_out(decoded.result)
        elif isinstance(decoded, RunFinished):
            body["index"] = decoded.record.index
            body["run"] = run_out(decoded.record)
    return body
