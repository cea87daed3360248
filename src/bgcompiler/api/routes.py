"""Routes: liveness and the seed-compatible `POST /compile`. No Docker calls here."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bgcompiler.api.schemas import CompileRequest, CompileResult, ErrorBody, compile_result
from bgcompiler.errors import InvalidRequest, Unavailable
from bgcompiler.models import RunResult, RunSpec, SandboxFile
from bgcompiler.scheduler import Job, RunOnce, Scheduler
from bgcompiler.services import Services

T = TypeVar("T")

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body is not JSON"},
    413: {"model": ErrorBody, "description": "the body is larger than the cap"},
    422: {"model": ErrorBody, "description": "a field is invalid, or the image is absent"},
    503: {"model": ErrorBody, "description": "backlog full, engine down, or shutting down"},
}


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


@router.get("/", summary="Liveness: 200 while the service can run code", responses=_ERRORS)
async def alive(request: Request) -> dict[str, str]:
    await services(request).sandbox.ping()
    return {"status": "ok"}


@router.post(
    "/compile",
    summary="Run a script `count` times (the seed's API)",
    response_model=list[CompileResult],
    responses=_ERRORS,
)
async def compile_script(body: CompileRequest, request: Request) -> JSONResponse:
    svc = services(request)
    settings = svc.settings
    if body.count > settings.max_count:
        raise InvalidRequest(
            f"count must be between 1 and {settings.max_count} (--max-count)", "count"
        )
    svc.scheduler.check_room(body.count)
    await svc.sandbox.check_image(body.image)
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
        runtime=settings.runtime_name,
    )
    count = body.count

    async def work(run: RunOnce) -> list[RunResult]:
        return [await run(spec) for _ in range(count)]

    results = await run_job(request, svc.scheduler, Job(count, work))
    return JSONResponse([compile_result(result) for result in results])


async def run_job(request: Request, scheduler: Scheduler, job: Job[T]) -> T:
    """Submits the job and waits for it; a client that goes away cancels it."""
    [result] = await run_jobs(request, scheduler, [job])
    return result


async def run_jobs(request: Request, scheduler: Scheduler, jobs: list[Job[T]]) -> list[T]:
    """Submits all the jobs (or none) and waits for all; a client that goes away cancels them."""
    scheduler.submit_all(jobs)
    watcher = asyncio.create_task(_disconnected(request))
    everything = asyncio.gather(*(job.result for job in jobs))
    # Cancelled with the request, it is never awaited: take its outcome so none is "lost".
    everything.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        waiters: set[asyncio.Future[object]] = {everything, watcher}  # type: ignore[arg-type]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not everything.done():
            for job in jobs:
                scheduler.cancel(job)
            everything.cancel()
            raise Unavailable("the client disconnected")
        return list(everything.result())
    except asyncio.CancelledError:
        for job in jobs:
            scheduler.cancel(job)
        raise
    finally:
        watcher.cancel()


async def _disconnected(request: Request) -> None:
    """Returns when the client closes its connection (the body was already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
