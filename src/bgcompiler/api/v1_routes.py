"""The v1 API: `POST /api/v1/runs` (compile, tests, repeats, statistics) and the registry."""

from __future__ import annotations

import shlex
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bgcompiler.api.routes import _ERRORS, run_job, run_jobs, services
from bgcompiler.api.schemas import render_output
from bgcompiler.api.v1_schemas import LanguageOut, LimitsIn, RunRequest, RunResponse
from bgcompiler.errors import ImageNotFound, InvalidRequest
from bgcompiler.judge import Compiled, Plan, Test, compile_and_warm_up, run_all, summarize, verdict
from bgcompiler.languages import Language
from bgcompiler.models import Limits, RunResult, SandboxFile
from bgcompiler.scheduler import Job, RunOnce
from bgcompiler.services import Services

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
        "runtime": svc.settings.runtime_name or "runc",
        "sandbox": svc.sandbox.status(),
    }


@router.post(
    "/runs",
    summary="Compile once, run each test `count` times, judge and summarize",
    response_model=RunResponse,
    responses=_ERRORS,
)
async def create_run(body: RunRequest, request: Request) -> JSONResponse:
    svc = services(request)
    language = _language(svc, body.language)
    plan = _plan(svc, body, language)
    if plan.total_runs > svc.settings.max_count:
        raise InvalidRequest(
            f"this request needs {plan.total_runs} runs (compile + warmup + count x tests); "
            f"at most {svc.settings.max_count} (--max-count)",
            "count",
        )
    svc.scheduler.check_room(plan.total_runs)
    image_id = await svc.sandbox.check_image(plan.image)

    if body.sequential:

        async def everything(run: RunOnce) -> tuple[Compiled, list[RunResult]]:
            return await run_all(plan, run)

        job = Job(plan.total_runs, everything)
        compiled, results = await run_job(request, svc.scheduler, job)
        cpuset = job.cpuset
    else:
        compiled, results, cpuset = await _spread(request, svc, plan)

    runs = [
        _run_out(plan, test, repeat, result)
        for (test, repeat, _), result in zip(plan.measured(), results, strict=False)
    ]
    response = {
        "id": uuid.uuid4().hex,
        "compile": _compile_out(compiled.result) if compiled.result is not None else None,
        "runs": runs,
        "summary": summarize(plan, results),
        "environment": {
            "image": plan.image,
            "image_id": image_id,
            "runtime": svc.settings.runtime_name or "runc",
            "language": language.name if language else None,
            "limits": {
                "time_ms": round(plan.limits.timeout_s * 1000),
                "memory_mb": plan.limits.memory_mb,
                "output_kb": plan.limits.output_bytes // 1024,
                "pids": plan.limits.pids,
                "cpus": plan.limits.cpus,
                "disk_mb": plan.limits.disk_mb,
            },
            "cpuset": cpuset,
            "sequential": body.sequential,
        },
    }
    return JSONResponse(response)


async def _spread(
    request: Request, svc: Services, plan: Plan
) -> tuple[Compiled, list[RunResult], str | None]:
    """sequential=false: compile and warm up on one worker, then one job per run."""
    first_runs = plan.total_runs - plan.measured_runs

    async def prepare(run: RunOnce) -> Compiled:
        return await compile_and_warm_up(plan, run)

    compiled = (
        await run_job(request, svc.scheduler, Job(first_runs, prepare))
        if first_runs
        else Compiled(None, plan.files)
    )
    files = compiled.files
    if files is None:
        return compiled, [], None

    def one(stdin: bytes) -> Job[RunResult]:
        async def single(run: RunOnce) -> RunResult:
            assert files is not None
            return await run(plan.run_spec(files, stdin, quiet=False))

        return Job(1, single)

    results = await run_jobs(
        request, svc.scheduler, [one(stdin) for _, _, stdin in plan.measured()]
    )
    return compiled, results, None


def _language(svc: Services, name: str | None) -> Language | None:
    if name is None:
        return None
    found = svc.languages.get(name)
    if found is None:
        known = ", ".join(sorted(svc.languages))
        raise InvalidRequest(f"unknown language {name!r}; known: {known}", "language")
    return found


def _plan(svc: Services, body: RunRequest, language: Language | None) -> Plan:
    if body.files is not None:
        files = tuple(SandboxFile(f.name, f.data(), f.executable) for f in body.files)
    else:
        assert body.script is not None
        name = language.file if language else "main"
        files = (SandboxFile(name, body.script.encode("utf-8")),)
    entry = files[0].name
    if language is not None:
        image, run_template = language.image, language.run
        compile_template = language.compile if body.compile is None else body.compile
    else:
        assert body.image is not None
        assert body.run is not None
        image, run_template = body.image, body.run
        compile_template = body.compile if isinstance(body.compile, str) else None
    if compile_template is True:
        raise InvalidRequest("`compile: true` needs a language with a compile command", "compile")
    run_command = _with_file(run_template, entry)
    if body.args:
        run_command += " " + " ".join(shlex.quote(arg) for arg in body.args)
    compile_command = _with_file(compile_template, entry) if compile_template else None
    defaults = svc.default_limits
    return Plan(
        image=image,
        run_command=run_command,
        files=files,
        stdin=body.stdin_bytes(),
        limits=_limits(body.limits, defaults),
        compile_limits=defaults,
        runtime=svc.settings.runtime_name,
        compile_command=compile_command,
        tests=tuple(
            Test(t.stdin.encode("utf-8"), t.expected_output.encode("utf-8"))
            for t in body.tests or []
        ),
        compare=body.compare,
        count=body.count,
        warmup=body.warmup,
    )


def _with_file(template: str, entry: str) -> str:
    return template.replace("{file}", shlex.quote(entry))


def _limits(asked: LimitsIn, server: Limits) -> Limits:
    """The request's limits, each at most the server's (422 naming the field otherwise)."""

    def at_most(field: str, value: float | None, maximum: float, unit: str) -> None:
        if value is not None and value > maximum:
            raise InvalidRequest(
                f"limits.{field} must be at most {maximum:g} {unit} (the server's maximum)",
                f"limits.{field}",
            )

    server_time_ms = server.timeout_s * 1000
    at_most("time_ms", asked.time_ms, server_time_ms, "ms")
    at_most("memory_mb", asked.memory_mb, server.memory_mb, "MB")
    at_most("output_kb", asked.output_kb, server.output_bytes // 1024, "KB")
    at_most("pids", asked.pids, server.pids, "")
    at_most("cpus", asked.cpus, server.cpus, "CPUs")
    return Limits(
        timeout_s=asked.time_ms / 1000 if asked.time_ms else server.timeout_s,
        memory_mb=asked.memory_mb or server.memory_mb,
        cpu_shares=server.cpu_shares,
        cpus=float(asked.cpus) if asked.cpus else server.cpus,
        output_bytes=asked.output_kb * 1024 if asked.output_kb else server.output_bytes,
        pids=asked.pids or server.pids,
        disk_mb=server.disk_mb,
    )


def _figures(result: RunResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": result.status.value,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "wall_ms": result.wall_ms,
        "cpu_ms": result.cpu_ms,
        "memory_kb": result.memory_kb,
        "timed_out": result.timed_out,
    }
    return body


def _with_output(body: dict[str, Any], result: RunResult) -> dict[str, Any]:
    render_output(result.stdout, "stdout", body)
    render_output(result.stderr, "stderr", body)
    if result.error is not None:
        body["error"] = result.error
    return body


def _run_out(plan: Plan, test: int | None, repeat: int, result: RunResult) -> dict[str, Any]:
    body = {"test": test, "repeat": repeat, "verdict": verdict(plan, test, result)}
    body.update(_figures(result))
    body.update(oom_killed=result.oom_killed, output_truncated=result.output_truncated)
    return _with_output(body, result)


def _compile_out(result: RunResult) -> dict[str, Any]:
    body = _figures(result)
    body["output_truncated"] = result.output_truncated
    return _with_output(body, result)
