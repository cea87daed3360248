"""What the blocking and the asyncio clients share: request bodies, the answer-to-error
mapping, the 503 retry policy and event decoding. No I/O here."""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from bgcompiler.api.jobs_schemas import JobEventOut, JobOut
from bgcompiler.client.errors import (
    ApiError,
    ClientError,
    NotFound,
    RequestRejected,
    ServiceUnavailable,
)
from bgcompiler.client.sse import RawEvent

DEFAULT_SERVER = "http://127.0.0.1:8080"
# A run may take minutes (POST /api/v1/runs answers when the batch is over): reads wait long,
# connecting does not.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, read=600.0)
WAIT_STEP_S = 30.0  # each GET ?wait= asks for at most this (the server allows up to 60)
FINAL = frozenset({"done", "cancelled", "failed"})
Kind = Literal["started", "compile", "run", "done"]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a job's stream: `data` is a JobEventOut, or for `done` the job (JobOut)."""

    id: int
    kind: str
    data: JobEventOut | JobOut


def body_of(model: type[M], given: M | None, fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON body: a ready model, or keyword fields checked by the server's own model
    (so a bad request fails here, naming the field, before anything is sent)."""
    if given is not None and fields:
        raise TypeError("give a request model or keyword fields, not both")
    request = given if given is not None else model.model_validate(fields)
    dumped: dict[str, Any] = request.model_dump(mode="json", exclude_unset=True)
    return dumped


def headers_of(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def retry_after(response: httpx.Response) -> float:
    """The seconds the server asked us to wait (delta or HTTP date); 1 without a hint."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    return 1.0


def retry_delay(
    response: httpx.Response, attempt: int, retries: int, max_wait: float
) -> float | None:
    """How long to sleep before retrying a 503; None: do not retry (not a 503, the retries
    are spent, or the server asks for a longer wait than `max_wait`, which would stall us)."""
    if response.status_code != 503 or attempt >= retries:
        return None
    wait = retry_after(response)
    return wait if wait <= max_wait else None


def raise_for_answer(response: httpx.Response) -> None:
    """Raises the ApiError of an error answer, named by the server's `error` code."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error") or f"http_{response.status_code}")
    message = str(body.get("message") or response.reason_phrase or "no message")
    field = body.get("field") if isinstance(body.get("field"), str) else None
    status = response.status_code
    if status == 503:
        raise ServiceUnavailable(status, code, message, retry_after=retry_after(response))
    if status == 404:
        raise NotFound(status, code, message, field=field)
    if 400 <= status < 500:
        raise RequestRejected(status, code, message, field=field)
    raise ApiError(status, code, message, field=field)


def parsed(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise ClientError(f"the server's answer is not a {model.__name__}: {exc}") from exc


def decode_event(raw: RawEvent) -> Event:
    if raw.id is None or not raw.id.isdigit():
        raise ClientError(f"an event without a numeric id: {raw!r}")
    data: JobEventOut | JobOut
    try:
        if raw.event == "done":
            data = JobOut.model_validate_json(raw.data)
        else:
            data = JobEventOut.model_validate_json(raw.data)
    except ValidationError as exc:
        raise ClientError(f"a {raw.event!r} event the client cannot read: {exc}") from exc
    return Event(int(raw.id), raw.event, data)
