"""The asyncio client: `AsyncClient` and its `AsyncJob`s, the twin of sync.py line for line
(kept so: a change to one is made to the other)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import httpx

from bgcompiler.api.jobs_schemas import JobOut, JobRequest
from bgcompiler.api.v1_schemas import LanguageOut, LimitsOut, RunRequest, RunResponse
from bgcompiler.client._wire import (
    DEFAULT_SERVER,
    DEFAULT_TIMEOUT,
    FINAL,
    WAIT_STEP_S,
    Event,
    body_of,
    decode_event,
    headers_of,
    parsed,
    raise_for_answer,
    retry_delay,
)
from bgcompiler.client.errors import StreamBroken, TimedOut, Unreachable
from bgcompiler.client.sse import SseParser


class AsyncClient:
    """A connection to one bg-compiler server. Use it as an async context
    manager, or `await aclose()` it.

    `retries` 503 answers are retried after the server's `Retry-After` (if it asks for at
    most `max_retry_wait` seconds); `timeout` is httpx's (seconds, or an httpx.Timeout)."""

    def __init__(
        self,
        base_url: str = DEFAULT_SERVER,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 3,
        max_retry_wait: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers_of(api_key), timeout=timeout
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        """One call, with 503s retried; an error answer raised as an ApiError."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, **options)
            except httpx.TimeoutException as exc:
                raise TimedOut(f"{self.base_url} did not answer {method} {path} in time") from exc
            except httpx.TransportError as exc:
                raise Unreachable(f"cannot reach {self.base_url}: {exc}") from exc
            delay = retry_delay(response, attempt, self.retries, self.max_retry_wait)
            if delay is None:
                raise_for_answer(response)
                return response
            attempt += 1
            await asyncio.sleep(delay)

    async def languages(self) -> list[LanguageOut]:
        """The server's language registry (GET /api/v1/languages)."""
        answer = await self.request("GET", "/api/v1/languages")
        return [LanguageOut.model_validate(entry) for entry in answer.json()]

    async def limits(self) -> LimitsOut:
        """What this client may ask for: each limit's maximum and the most runs a request
        may need (GET /api/v1/limits; an API key's caps included)."""
        return parsed(LimitsOut, await self.request("GET", "/api/v1/limits"))

    async def run(self, request: RunRequest | None = None, /, **fields: Any) -> RunResponse:
        """Runs and waits for the whole batch (POST /api/v1/runs). Give a RunRequest or
        its fields: `run(language="python", script="print(1)", count=3)`."""
        body = body_of(RunRequest, request, fields)
        return parsed(RunResponse, await self.request("POST", "/api/v1/runs", json=body))

    async def submit(
        self, request: JobRequest | None = None, /, *, wait: float | None = None, **fields: Any
    ) -> AsyncJob:
        """Submits a durable job (POST /api/v1/jobs) and returns at once; with `wait`
        (seconds, at most 30), once it has ended or that time has passed,
        whichever comes first: one request where submit and `wait()` take two."""
        body = body_of(JobRequest, request, fields)
        params = {"wait": min(wait, WAIT_STEP_S)} if wait is not None else None
        answer = await self.request("POST", "/api/v1/jobs", json=body, params=params)
        document = parsed(JobOut, answer)
        return AsyncJob(self, document)

    async def job(self, job_id: str) -> AsyncJob:
        """A job submitted earlier (by this client or another)."""
        return AsyncJob(self, parsed(JobOut, await self.request("GET", f"/api/v1/jobs/{job_id}")))


class AsyncJob:
    """A submitted job. `document` is the last state seen of it."""

    def __init__(self, client: AsyncClient, document: JobOut) -> None:
        self.client = client
        self.document = document

    @property
    def id(self) -> str:
        return self.document.id

    async def refresh(self) -> JobOut:
        answer = await self.client.request("GET", f"/api/v1/jobs/{self.id}")
        self.document = parsed(JobOut, answer)
        return self.document

    # The server does the waiting (GET ?wait=), in steps: a deadline the steps respect
    # ends cleanly between requests, where asyncio.timeout would cut one off.
    async def wait(self, timeout: float | None = None) -> JobOut:  # noqa: ASYNC109
        """Waits until the job has ended (or `timeout` seconds passed: TimedOut)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.document.status not in FINAL:
            step = WAIT_STEP_S
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
                if step <= 0:
                    raise TimedOut(f"job {self.id} still {self.document.status}")
            answer = await self.client.request(
                "GET", f"/api/v1/jobs/{self.id}", params={"wait": max(step, 0.01)}
            )
            self.document = parsed(JobOut, answer)
        return self.document

    async def cancel(self) -> JobOut:
        """Cancels a queued or running job (RequestRejected 409 if it has already ended)."""
        answer = await self.client.request("DELETE", f"/api/v1/jobs/{self.id}")
        self.document = parsed(JobOut, answer)
        return self.document

    async def events(self, after: int = 0) -> AsyncIterator[Event]:
        """The job's events after event id `after`, ending with `done`. A dropped stream is
        reopened with `Last-Event-ID`: no event is missed or repeated. Up to the client's
        `retries` reopenings in a row that bring nothing new, then StreamBroken."""
        fruitless = 0
        while True:
            headers = {"Last-Event-ID": str(after)} if after else {}
            parser = SseParser()
            progressed = False
            try:
                async with self.client._http.stream(
                    "GET", f"/api/v1/jobs/{self.id}/events", headers=headers
                ) as stream:
                    if stream.status_code >= 400:
                        await stream.aread()
                        raise_for_answer(stream)
                    async for line in stream.aiter_lines():
                        raw = parser.feed(line)
                        if raw is None:
                            continue
                        event = decode_event(raw)
                        after, progressed = event.id, True
                        if isinstance(event.data, JobOut):
                            self.document = event.data
                        yield event
                        if event.kind == "done":
                            return
            except httpx.TransportError as exc:
                reason: BaseException | None = exc
            else:
                reason = None  # closed by the server before `done` (it restarted, say)
            fruitless = 0 if progressed else fruitless + 1
            if fruitless > self.client.retries:
                raise StreamBroken(
                    f"the event stream of job {self.id} dropped {fruitless} times in a row"
                ) from reason
            if not progressed:
                await asyncio.sleep(min(2.0**fruitless / 4, 5.0))
