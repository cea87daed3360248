"""The v1 API: `POST /api/v1/runs` (compile, tests, repeats, statistics), the registry and
the node's status. A translator: wire to plan (v1_plan), outcome to wire (v1_render)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bgcompiler.api.admission import admit
from bgcompiler.api.docs import ERROR_RESPONSES
from bgcompiler.api.routes import services
from bgcompiler.api.running import outcome_of
from bgcompiler.api.v1_plan import v1_plan
from bgcompiler.api.v1_render import v1_document
from bgcompiler.api.v1_schemas import LanguageOut, RunRequest, RunResponse
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


@router.get("/status", summary="Workers, queue and warm pool, right now")
async def status(request: Request) -> dict[str, Any]:
    svc = services(request)
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
