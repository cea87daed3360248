"""The v1 API: `POST /api/v1/runs` (compile, tests, repeats, statistics), the registry and
the node's status. A translator: wire to plan (v1_plan), outcome to wire (v1_render)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bgcompiler.api.admission import admit
from bgcompiler.api.auth import caller_of
from bgcompiler.api.docs import ERROR_RESPONSES
from bgcompiler.api.jobs_schemas import MAX_METADATA_BYTES
from bgcompiler.api.routes import services
from bgcompiler.api.running import outcome_of
from bgcompiler.api.v1_plan import v1_plan
from bgcompiler.api.v1_render import v1_document
from bgcompiler.api.v1_schemas import (
    MIN_MEMORY_MB,
    MIN_PIDS,
    LanguageOut,
    LimitsOut,
    RunRequest,
    RunResponse,
)
from bgcompiler.cluster.api_node import Cluster
from bgcompiler.errors import ImageNotFound
from bgcompiler.scheduler import Job

router = APIRouter(prefix="/api/v1", tags=["v1"])


@router.get("/languages", summary="The language registry", response_model=list[LanguageOut])
async def languages(request: Request) -> list[dict[str, Any]]:
    svc = services(request)
    listed = []
    for language in svc.languages.values():
        try:
            await svc.sandbox.check_image(language.image)
            present = True
        except ImageNotFound:
            present = False
        listed.append(
            {
                "name": language.name,
                "version": language.version,
                "image": language.image,
                "file": language.file,
                "compile": language.compile,
                "run": language.run,
                "image_present": present,
            }
        )
    return listed


@router.get("/limits", summary="The largest limits and run count this caller may ask for")
async def limits(request: Request) -> LimitsOut:
    # Clients (the playground's inputs, say) bound what they offer with these, so that a
    # request is not refused for asking more than the server (or the caller's key) allows.
    svc = services(request)
    server = svc.default_limits
    runs, time_ms, memory_mb = (
        svc.settings.max_count,
        round(server.timeout_s * 1000),
        server.memory_mb,
    )
    caller = caller_of(request)
    if caller is not None:
        key = caller.key
        caps = (key.max_count, key.burst, key.runs_per_day)
        runs = min([runs, *(cap for cap in caps if cap is not None)])
        time_ms = min(time_ms, key.max_time_ms or time_ms)
        memory_mb = min(memory_mb, key.max_memory_mb or memory_mb)
    return LimitsOut(
        max_runs=runs,
        time_ms=time_ms,
        memory_mb=memory_mb,
        min_memory_mb=MIN_MEMORY_MB,
        output_kb=server.output_bytes // 1024,
        pids=server.pids,
        min_pids=MIN_PIDS,
        cpus=server.cpus,
        max_body_kb=svc.settings.max_body,
        max_metadata_bytes=MAX_METADATA_BYTES,
    )


@router.get("/status", summary="Workers, queue and warm pool, right now")
async def status(request: Request) -> dict[str, Any]:
    svc = services(request)
    cluster: Cluster | None = getattr(request.app.state, "cluster", None)
    if cluster is not None:  # distributed mode: the figures are the cluster's
        await cluster.refresh(force=True)
    return {
        "workers": svc.scheduler.workers,
        "busy_workers": svc.scheduler.busy_workers,
        "waiting_runs": svc.scheduler.waiting_runs,
        "backlog": svc.settings.backlog,
        "runtime": svc.runtime,
        "sandbox": svc.sandbox.status(),
    }


@router.post(
    "/runs",
    summary="Compile once, run each test `count` times, judge and summarize",
    response_model=RunResponse,
    responses=ERROR_RESPONSES,
)
async def create_run(body: RunRequest, request: Request) -> JSONResponse:
    svc = services(request)
    plan = await admit(request, svc, v1_plan(svc, body))
    await svc.sandbox.check_image(plan.run.image)
    job = Job(uuid.uuid4().hex, plan)
    outcome = await outcome_of(request, svc.scheduler, job)
    return JSONResponse(v1_document(job.id, plan, outcome))
