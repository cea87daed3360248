"""The jobs API: submit a v1 request as a durable job, then poll, wait, stream, cancel, list.

A translator like the others: the body becomes the same plan as `POST /api/v1/runs`, and a
finished job's `result` is the same document."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from bgcompiler.api.admission import admit
from bgcompiler.api.auth import caller_of, may_see, owner_of
from bgcompiler.api.docs import ERROR_RESPONSES
from bgcompiler.api.jobs_render import event_payload, job_document
from bgcompiler.api.jobs_schemas import JobOut, JobPage, JobRequest, JobStatus
from bgcompiler.api.routes import services
from bgcompiler.api.v1_plan import v1_plan
from bgcompiler.errors import InvalidRequest, NotFound
from bgcompiler.jobs.service import JobService
from bgcompiler.store.jobs import FINAL, Delivery, JobRow

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: ERROR_RESPONSES[422] | {"description": "no such job"}
}


def jobs(request: Request) -> JobService:
    found: JobService = request.app.state.jobs
    return found


async def visible_job(request: Request, job_id: str) -> JobRow:
    """The job, if this request's key may see it; another key's job is NotFound, as one
    that does not exist (a 403 would tell that the id is in use)."""
    row = await jobs(request).get(job_id)
    if not may_see(request, row.owner):
        raise NotFound(f"no job {job_id!r}")
    return row


async def document(
    service: JobService, job_id: str, *, with_result: bool = True, row: JobRow | None = None
) -> dict[str, Any]:
    """The job's document; from `row` when the caller has just read it."""
    row = row if row is not None else await service.get(job_id)
    deliveries = await service.store.deliveries(job_id) if row.callback_url else None
    return job_document(row, deliveries, with_result=with_result)


WAIT = Query(gt=0, le=60, description="seconds, at most 60")


@router.post(
    "",
    status_code=202,
    summary="Submit a job: the body of POST /api/v1/runs, plus callback_url and metadata; "
    "with ?wait=S, answered 201 with the ended job if it ends within S seconds",
    response_model=JobOut,
    responses=ERROR_RESPONSES | {201: {"description": "ended within ?wait", "model": JobOut}},
)
async def submit(
    body: JobRequest, request: Request, wait: Annotated[float | None, WAIT] = None
) -> JSONResponse:
    svc = services(request)
    service = jobs(request)
    plan = await admit(request, svc, v1_plan(svc, body))
    await svc.sandbox.check_image(plan.run.image)
    if body.callback_url is not None:
        webhooks = request.app.state.webhooks
        if not webhooks.enabled:
            raise InvalidRequest(
                "this server calls no one back: it was started without --webhook-secret",
                "callback_url",
            )
        await webhooks.check(body.callback_url)
    job_id = uuid.uuid4().hex
    metadata = json.dumps(body.metadata) if body.metadata is not None else None
    owner = owner_of(request)

    def submitted() -> Awaitable[JobRow]:
        return service.submit(
            job_id, plan, metadata=metadata, callback_url=body.callback_url, owner=owner
        )

    location = {"Location": f"/api/v1/jobs/{job_id}"}
    if wait is None:
        row = await submitted()
    else:
        # Submit and wait in one request (as Judge0's ?wait=true): 201 once it has ended,
        # and if it has not ended in time, 202 as without the wait.
        row = await service.submit_and_wait(job_id, wait, submitted)
        if row.status in FINAL:
            return JSONResponse(await document(service, job_id, row=row), 201, location)
    deliveries: list[Delivery] | None = [] if row.callback_url else None
    return JSONResponse(job_document(row, deliveries), status_code=202, headers=location)


@router.get(
    "",
    summary="Jobs, newest first (without their results), a page at a time",
    response_model=JobPage,
    responses=ERROR_RESPONSES,
)
async def list_jobs(
    request: Request,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONResponse:
    service = jobs(request)
    caller = caller_of(request)
    owner = caller.key.name if caller is not None and not caller.key.admin else None
    rows, following = await service.store.page(
        status=status, limit=limit, cursor=cursor, owner=owner
    )
    listed = []
    for row in rows:
        deliveries = await service.store.deliveries(row.id) if row.callback_url else None
        listed.append(job_document(row, deliveries, with_result=False))
    return JSONResponse({"jobs": listed, "next_cursor": following})


@router.get(
    "/{job_id}",
    summary="A job; with ?wait=S, answered as soon as it ends or after S seconds",
    response_model=JobOut,
    responses=ERROR_RESPONSES | NOT_FOUND,
)
async def get_job(
    job_id: str,
    request: Request,
    wait: Annotated[float | None, WAIT] = None,
) -> JSONResponse:
    service = jobs(request)
    if wait is None:
        row = await visible_job(request, job_id)
    else:  # checked by the wait, on the row it starts from (an API node may not read one)
        row = await service.wait(job_id, wait, allowed=lambda row: may_see(request, row.owner))
    # Answered as rendered (not re-serialized through the schema): `result` is then exactly
    # the document POST /api/v1/runs answers, absent fields absent rather than null.
    return JSONResponse(await document(service, job_id, row=row))


@router.delete(
    "/{job_id}",
    summary="Cancel a queued or running job (409 once it has ended; again: 200)",
    response_model=JobOut,
    responses=ERROR_RESPONSES | NOT_FOUND | {409: ERROR_RESPONSES[422] | {"description": "ended"}},
)
async def cancel_job(job_id: str, request: Request) -> JSONResponse:
    service = jobs(request)
    await visible_job(request, job_id)
    await service.cancel(job_id)
    return JSONResponse(await document(service, job_id))


async def existing_job(job_id: str, request: Request) -> str:
    """The job's id, once it is known to exist (a 404 before any stream starts)."""
    await visible_job(request, job_id)
    return job_id


def last_seen(last_event_id: Annotated[str | None, Header()] = None) -> int:
    """The id of the last event the client saw (its Last-Event-ID header), 0 for none."""
    if last_event_id is None or last_event_id == "":
        return 0
    if not last_event_id.isdigit():
        raise InvalidRequest("Last-Event-ID must be an event id this service sent", "Last-Event-ID")
    return int(last_event_id)


@router.get(
    "/{job_id}/events",
    summary="Server-Sent Events: started, compile, run (one per run), then done",
    response_class=EventSourceResponse,
    # Errors come before the stream, as JSON (the route's own media type is the stream's).
    responses={
        status: {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        for status, description in ((404, "no such job"), (422, "a bad Last-Event-ID"))
    },
)
async def job_events(
    request: Request,
    job_id: Annotated[str, Depends(existing_job)],
    after: Annotated[int, Depends(last_seen)],
) -> AsyncIterator[ServerSentEvent]:
    keepalive = request.app.state.services.settings.keepalive
    async for event in _stream(jobs(request), job_id, after, keepalive):
        yield event


async def _stream(
    service: JobService, job_id: str, after: int, keepalive: float
) -> AsyncIterator[ServerSentEvent]:
    ended = False
    while True:
        change = service.store.change_of(job_id)
        for event in await service.store.events_after(job_id, after):
            after = event.id
            if event.kind == "done":
                payload = await document(service, job_id)
            else:
                payload = event_payload(event)
            yield ServerSentEvent(id=str(event.id), event=event.kind, raw_data=json.dumps(payload))
            if event.kind == "done":
                return
        if ended:  # read again after seeing it end: its `done` was before `after`
            return
        # An ended job's `done` event is committed with its status: one more read finds it.
        ended = (await service.get(job_id)).status in FINAL
        while not ended and not change.is_set():
            try:
                async with asyncio.timeout(keepalive):
                    await change.wait()
            except TimeoutError:  # idle: a comment, so that proxies keep the stream open
                yield ServerSentEvent(comment="ping")
