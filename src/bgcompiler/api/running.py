"""Waiting for a job on behalf of an HTTP request: a client that goes away cancels it."""

from __future__ import annotations

import asyncio

from fastapi import Request

from bgcompiler.core.outcome import Outcome
from bgcompiler.errors import Unavailable
from bgcompiler.executor import Executor
from bgcompiler.scheduler import Job


async def outcome_of(request: Request, scheduler: Executor, job: Job) -> Outcome:
    """Submits the job (or raises Busy) and waits for its outcome; if the client closes its
    connection first, the job is cancelled: its queued runs dropped, its containers killed."""
    scheduler.submit(job)
    gone = asyncio.create_task(_disconnected(request))
    try:
        waiting: set[asyncio.Future[object]] = {job.outcome, gone}  # type: ignore[arg-type]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not job.outcome.done():
            scheduler.cancel(job)
            raise Unavailable("the client disconnected")
        return job.outcome.result()
    except asyncio.CancelledError:
        scheduler.cancel(job)
        raise
    finally:
        gone.cancel()


async def _disconnected(request: Request) -> None:
    """Returns when the client closes its connection (the body was already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
