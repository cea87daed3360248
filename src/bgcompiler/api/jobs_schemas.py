"""Bodies of the jobs API (`/api/v1/jobs`)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from bgcompiler.api.v1_schemas import CompileOut, RunOut, RunRequest, RunResponse

MAX_METADATA_BYTES = 4096
JobStatus = Literal["queued", "running", "done", "cancelled", "failed"]


class JobRequest(RunRequest):
    """The body of `POST /api/v1/runs`, plus where to call back and what to keep with it."""

    callback_url: str | None = Field(
        None,
        max_length=2048,
        description="POSTed the job document when the job ends (signed; see the README)",
    )
    metadata: dict[str, Any] | None = Field(
        None, description="any JSON object, at most 4 KB, returned as given"
    )

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            size = len(json.dumps(value, separators=(",", ":")).encode())
            if size > MAX_METADATA_BYTES:
                raise ValueError(f"metadata is {size} bytes; at most {MAX_METADATA_BYTES}")
        return value


class DeliveryOut(BaseModel):
    attempt: int
    at: str
    status_code: int | None
    error: str | None


class WebhookOut(BaseModel):
    delivered: bool
    attempts: list[DeliveryOut]


class JobOut(BaseModel):
    id: str
    status: JobStatus
    created_at: str = Field(description="ISO 8601, UTC")
    started_at: str | None
    finished_at: str | None
    attempts: int = Field(description="times the job began on a worker (a restart re-runs it)")
    runs_done: int
    runs_total: int
    metadata: dict[str, Any] | None
    callback_url: str | None = None
    webhook: WebhookOut | None = None
    error: str | None = Field(None, description="why a failed job could not run")
    result: RunResponse | None = Field(
        None,
        description="once ended: the document POST /api/v1/runs answers (partial if cancelled)",
    )


class JobPage(BaseModel):
    jobs: list[JobOut] = Field(description="newest first, without their results")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class JobEventOut(BaseModel):
    """The data of a `started`, `compile` or `run` event of `GET /api/v1/jobs/{id}/events`
    (a `done` event carries the job document, JobOut)."""

    attempt: int = Field(description="the attempt the event belongs to (a restart re-runs)")
    index: int | None = Field(None, description="`run`: the run's index in the plan")
    compile: CompileOut | None = Field(None, description="`compile`: the compile stage's result")
    run: RunOut | None = Field(None, description="`run`: the run's result")
