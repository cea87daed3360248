"""`GET /health/live` and `GET /health/ready`, for load balancers and orchestrators.

Liveness says only that the process answers: restarting it is the cure for nothing else.
Readiness asks each part a node needs to take work (the engine, the job store, the queue)
at once, each within one deadline, and answers 503 naming the parts that failed. Probes
that arrive while a round of checks runs share it: a flood of probes asks the engine and
the store one question at a time, and a hung store holds one reader thread, not one a probe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from bgcompiler.errors import ShuttingDown, Unavailable
from bgcompiler.executor import Executor
from bgcompiler.sandbox.base import Sandbox
from bgcompiler.store.jobs import JobStore

log = structlog.get_logger(__name__)

Check = Callable[[], Awaitable[None]]
OK = "ok"


class Readiness:
    """Named checks, run together, each given `deadline_s`."""

    def __init__(self, checks: Mapping[str, Check], deadline_s: float) -> None:
        self._checks = dict(checks)
        self._deadline_s = deadline_s
        self._round: asyncio.Task[dict[str, str]] | None = None

    async def check(self) -> dict[str, str]:
        """Each part's state: "ok", or why it is not ready."""
        if self._round is None or self._round.done():
            self._round = asyncio.create_task(self._check_all(), name="readiness")
        # Shielded: a probe that gives up does not cancel the round others wait on.
        return await asyncio.shield(self._round)

    async def _check_all(self) -> dict[str, str]:
        names = list(self._checks)
        states = await asyncio.gather(*(self._one(self._checks[name]) for name in names))
        found = dict(zip(names, states, strict=True))
        failing = {name: state for name, state in found.items() if state != OK}
        if failing:
            log.warning("not ready", **failing)
        return found

    async def _one(self, check: Check) -> str:
        try:
            async with asyncio.timeout(self._deadline_s):
                await check()
        except TimeoutError:
            return f"no answer within {self._deadline_s:g} s"
        except Unavailable as exc:
            return exc.message
        except Exception as exc:  # a check must say what failed, whatever it was
            return f"{type(exc).__name__}: {exc}"
        return OK


def readiness(
    sandbox: Sandbox, store: JobStore, scheduler: Executor, deadline_s: float
) -> Readiness:
    """The checks of a node: its engine answers a ping, its store a read, its queue admits."""

    async def queue() -> None:
        if not scheduler.accepting:
            raise ShuttingDown("the queue admits no jobs (the service is stopping)")

    return Readiness({"engine": sandbox.ping, "store": store.ping, "queue": queue}, deadline_s)


class Live(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ok"]
    checks: dict[str, str]


class NotReady(BaseModel):
    error: Literal["not_ready"]
    message: str
    checks: dict[str, str]


router = APIRouter(tags=["health"])


@router.get("/health/live", summary="Liveness: the process answers", response_model=Live)
async def live() -> dict[str, str]:
    return {"status": OK}


@router.get(
    "/health/ready",
    summary="Readiness: the engine, the job store and the queue answer in time",
    response_model=Ready,
    responses={503: {"model": NotReady, "description": "a part is not ready; `checks` says why"}},
)
async def ready(request: Request) -> JSONResponse:
    probe: Readiness = request.app.state.readiness
    checks = await probe.check()
    failing = [f"{name}: {state}" for name, state in checks.items() if state != OK]
    if failing:
        body = {"error": "not_ready", "message": "; ".join(failing), "checks": checks}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": OK, "checks": checks})
