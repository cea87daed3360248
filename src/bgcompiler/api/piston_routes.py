"""The Piston v2 API under /api/v2, so that Piston's clients work unchanged: a translator
onto the same core as every other API (body -> plan, outcome -> Piston's document).

Refusals are Piston's: 400 `{"message": ...}` with its texts. The body is read as JSON
whatever its Content-Type (a widely used client sends text/plain, which Piston refuses
with 415): the one deliberate difference, in docs/compatibility.md.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bgcompiler.api.admission import admit
from bgcompiler.api.errors import count_rejection
from bgcompiler.api.piston_plan import PistonRuntime, build_plan, check_body, runtimes
from bgcompiler.api.piston_render import piston_document
from bgcompiler.api.routes import services
from bgcompiler.api.running import outcome_of
from bgcompiler.errors import BgcError, ClientError, Forbidden, RateLimited, Unavailable
from bgcompiler.scheduler import Job
from bgcompiler.services import Services

router = APIRouter(prefix="/api/v2", tags=["piston"])

_MESSAGE = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"message": {"type": "string"}},
                "required": ["message"],
            }
        }
    }
}
REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Piston's refusal: the first check that failed", **_MESSAGE},
    503: {"description": "busy, or the engine or store is unavailable", **_MESSAGE},
}
_FILE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "content": {"type": "string"},
        "encoding": {"type": "string", "enum": ["utf8", "base64", "hex"]},
    },
    "required": ["content"],
}
EXECUTE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "language": {"type": "string"},
                        "version": {"type": "string", "description": "an npm semver range"},
                        "files": {"type": "array", "items": _FILE},
                        "stdin": {"type": "string"},
                        "args": {"type": "array", "items": {"type": "string"}},
                        **{
                            name: {"type": "number"}
                            for name in (
                                "compile_timeout",
                                "run_timeout",
                                "compile_cpu_time",
                                "run_cpu_time",
                                "compile_memory_limit",
                                "run_memory_limit",
                            )
                        },
                    },
                    "required": ["language", "version", "files"],
                }
            }
        },
    }
}


@router.get(
    "/runtimes",
    summary="Piston v2: the languages whose image is present",
    responses={503: REFUSALS[503]},
)
@router.get("/runtimes/", include_in_schema=False)
async def piston_runtimes(request: Request) -> JSONResponse:
    try:
        installed = await _installed(services(request))
    except BgcError as exc:
        return _refusal(request, exc)
    listed = []
    for runtime in installed:
        entry: dict[str, Any] = {
            "language": runtime.name.language,
            "version": runtime.name.version,
            "aliases": list(runtime.name.aliases),
        }
        if runtime.name.runtime is not None:
            entry["runtime"] = runtime.name.runtime
        listed.append(entry)
    return JSONResponse(listed)


@router.post(
    "/execute",
    summary="Piston v2: compile (if the language does) and run once",
    responses=REFUSALS,
    openapi_extra=EXECUTE_BODY,
)
@router.post("/execute/", include_in_schema=False)
async def piston_execute(request: Request) -> JSONResponse:
    svc = services(request)
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        return JSONResponse({"message": f"the body is not JSON: {exc}"}, status_code=400)
    try:
        checked = await check_body(svc, body, lambda runtime: svc.can_run(runtime.language))
        plan = await admit(request, svc, build_plan(svc, checked))
        outcome = await outcome_of(request, svc.scheduler, Job(uuid.uuid4().hex, plan))
    except BgcError as exc:
        return _refusal(request, exc)
    return JSONResponse(piston_document(checked.runtime, outcome))


async def _installed(svc: Services) -> list[PistonRuntime]:
    """The runtimes whose image is present (the engine remembers; checks are cached)."""
    return [
        runtime
        for runtime in runtimes(list(svc.languages.values()))
        if await svc.can_run(runtime.language)
    ]


def _refusal(request: Request, exc: BgcError) -> JSONResponse:
    """Our errors in Piston's shape: a message, 400 for the client's, 503 when busy or
    when a dependency is down (Piston has no such answer; its clients read `message`)."""
    count_rejection(request, exc)
    if isinstance(exc, RateLimited):
        wait = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"message": exc.message}, status_code=429, headers=wait)
    if isinstance(exc, Forbidden):
        return JSONResponse({"message": exc.message}, status_code=403)
    if isinstance(exc, ClientError):
        return JSONResponse({"message": exc.message}, status_code=400)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Unavailable) else None
    status = 503 if isinstance(exc, Unavailable) else 500
    return JSONResponse({"message": exc.message}, status_code=status, headers=headers)
