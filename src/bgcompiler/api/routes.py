"""Liveness and the seed-compatible `POST /compile`: wire to plan, outcome to wire."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bgcompiler.api.admission import admit
from bgcompiler.api.docs import ERROR_RESPONSES
from bgcompiler.api.running import outcome_of
from bgcompiler.api.schemas import CompileRequest, CompileResult, compile_result
from bgcompiler.core.plan import Plan
from bgcompiler.errors import InvalidRequest
from bgcompiler.models import RunSpec, SandboxFile
from bgcompiler.scheduler import Job
from bgcompiler.services import Services

router = APIRouter()


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


@router.get("/", summary="Liveness: 200 while the service can run code", responses=ERROR_RESPONSES)
async def alive(request: Request) -> dict[str, str]:
    await services(request).sandbox.ping()
    return {"status": "ok"}


@router.post(
    "/compile",
    summary="Run a script `count` times (the seed's API)",
    response_model=list[CompileResult],
    responses=ERROR_RESPONSES,
)
async def compile_script(body: CompileRequest, request: Request) -> JSONResponse:
    svc = services(request)
    if body.count > svc.settings.max_count:
        raise InvalidRequest(
            f"count must be between 1 and {svc.settings.max_count} (--max-count)", "count"
        )
    plan = await admit(request, svc, compile_plan(body, svc))
    await svc.sandbox.check_image(body.image)
    outcome = await outcome_of(request, svc.scheduler, Job(uuid.uuid4().hex, plan))
    return JSONResponse([compile_result(record.result) for record in outcome.runs])


def compile_plan(body: CompileRequest, svc: Services) -> Plan:
    """The seed's body as a plan: the script at /bg/main.<extension>, `count` runs."""
    files = [SandboxFile(f"main.{body.extension}", body.script.encode())]
    if body.input is not None:
        files.append(SandboxFile("input.txt", body.input.encode()))
    stdin = body.stdIn or ""
    if stdin and not stdin.endswith("\n"):
        stdin += "\n"  # the seed appends a newline; kept for compatibility
    spec = RunSpec(
        image=body.image,
        command=f"{body.cmd} main.{body.extension}",
        files=tuple(files),
        stdin=stdin.encode(),
        limits=svc.default_limits,
        runtime=svc.settings.runtime_name,
    )
    return Plan(run=spec, count=body.count)
