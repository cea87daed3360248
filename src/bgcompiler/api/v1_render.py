"""An outcome as the v1 document (the answer of `POST /api/v1/runs`, and a job's result)."""

from __future__ import annotations

import dataclasses
from typing import Any

from bgcompiler.api.schemas import render_output
from bgcompiler.core.outcome import Outcome, RunRecord
from bgcompiler.core.plan import Plan
from bgcompiler.models import RunResult


def v1_document(job_id: str, plan: Plan, outcome: Outcome) -> dict[str, Any]:
    limits = plan.run.limits
    summary = dataclasses.asdict(outcome.summary)
    return {
        "id": job_id,
        "compile": compile_out(outcome.compile) if outcome.compile is not None else None,
        "runs": [run_out(record) for record in outcome.runs],
        "summary": summary,
        "environment": {
            "image": plan.run.image,
            "image_id": outcome.image_id,
            "runtime": plan.run.runtime or "runc",
            "language": plan.language,
            "limits": {
                "time_ms": round(limits.timeout_s * 1000),
                "memory_mb": limits.memory_mb,
                "output_kb": limits.output_bytes // 1024,
                "pids": limits.pids,
                "cpus": limits.cpus,
                "disk_mb": limits.disk_mb,
            },
            "cpuset": outcome.cpuset,
            "sequential": plan.sequential,
        },
    }


def _figures(result: RunResult) -> dict[str, Any]:
    return {
        "status": result.status.value,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "wall_ms": result.wall_ms,
        "cpu_ms": result.cpu_ms,
        "memory_kb": result.memory_kb,
        "timed_out": result.timed_out,
    }


def _with_output(body: dict[str, Any], result: RunResult) -> dict[str, Any]:
    render_output(result.stdout, "stdout", body)
    render_output(result.stderr, "stderr", body)
    if result.error is not None:
        body["error"] = result.error
    return body


def run_out(record: RunRecord) -> dict[str, Any]:
    result = record.result
    body: dict[str, Any] = {
        "test": record.test,
        "repeat": record.repeat,
        "verdict": record.verdict.value if record.verdict else None,
    }
    body.update(_figures(result))
    body.update(oom_killed=result.oom_killed, output_truncated=result.output_truncated)
    return _with_output(body, result)


def compile_out(result: RunResult) -> dict[str, Any]:
    body = _figures(result)
    body["output_truncated"] = result.output_truncated
    return _with_output(body, result)
