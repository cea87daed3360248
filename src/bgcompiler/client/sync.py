"""The blocking client: `Client` and its `Job`s (the asyncio twin is in aio.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
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


class Client:
    """A connection to one bg-compiler server. Use it as a context manager, or `close()` it.

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
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers_of(api_key), timeout=timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        """One call, with 503s retried; an error answer raised as an ApiError."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **options)
            except httpx.TimeoutException as exc:
                raise TimedOut(f"{self.base_url} did not answer {method} {path} in time") from exc
            except httpx.TransportError as exc:
                raise Unreachable(f"cannot reach {self.base_url}: {exc}") from exc
            delay = retry_delay(response, attempt, self.retries, self.max_retry_wait)
            if delay is None:
                raise_for_answer(response)
                return response
            attempt += 1
            time.sleep(delay)

    def languages(self) -> list[LanguageOut]:
        """The server's language registry (GET /api/v1/languages)."""
        answer = self.request("GET", "/api/v1/languages")
        return [LanguageOut.model_validate(entry) for entry in answer.json()]

    def limits(self) -> LimitsOut:
        """What this client may ask for: each limit's maximum and the most runs a request
        may need (GET /api/v1/limits; an API key's caps included)."""
        return parsed(LimitsOut, self.request("GET", "/api/v1/limits"))

    def run(self, request: RunRequest | None = None, /, **fields: Any) -> RunResponse:
        """Runs and waits for the whole batch (POST /api/v1/runs). Give a RunRequest or
        its fields: `run(language="python", script="print(1)", count=3)`."""
        body = body_of(RunRequest, request, fields)
        return parsed(RunResponse, self.request("POST", "/api/v1/runs", json=body))

    def submit(
        self, request: JobRequest | None = None, /, *, wait: float | None = None, **fields: Any
    ) -> Job:
        """Submits a durable job (POST /api/v1/jobs) and returns at once; with `wait`
        (seconds, at most 30), once it has ended or that time has passed,
        whichever comes first: one request where submit and `wait()` take two."""
        body = body_of(JobRequest, request, fields)
        params = {"wait": min(wait, WAIT_STEP_S)} if wait is not None else None
        answer = self.request("POST", "/api/v1/jobs", json=body, params=params)
        document = parsed(JobOut, answer)
        return Job(self, document)

    def job(self, job_id: str) -> Job:
        """A job submitted earlier (by this client or another)."""
        return Job(self, parsed(JobOut, self.request("GET", f"/api/v1/jobs/{job_id}")))


class Job:
    """A submitted job. `document` is the last state seen of it."""

    def __init__(self, client: Client, document: JobOut) -> None:
        self.client = client
        self.document = document

    @property
    def id(self) -> str:
        return self.document.id

    def refresh(self) -> JobOut:
        answer = self.client.request("GET", f"/api/v1/jobs/{self.id}")
        self.document = parsed(JobOut, answer)
        return self.document

    def wait(self, timeout: float | None = None) -> JobOut:
        """Waits until the job has ended (or `timeout` seconds passed: TimedOut)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.document.status not in FINAL:
            step = WAIT_STEP_S
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
                if step <= 0:
                    raise TimedOut(f"job {self.id} still {self.document.status}")
            answer = self.client.request(
                "GET", f"/api/v1/jobs/{self.id}", params={"wait": max(step, 0.01)}
            )
            self.document = parsed(JobOut, answer)
        return self.document

    def cancel(self) -> JobOut:
        """Cancels a queued or running job (RequestRejected 409 if it has already ended)."""
        answer = self.client.request("DELETE", f"/api/v1/jobs/{self.id}")
        self.document = parsed(JobOut, answer)
        return self.document

    def events(self, after: int = 0) -> Iterator[Event]:
        """The job's events after event id `after`, ending with `done`. A dropped stream is
        reopened with `Last-Event-ID`: no event is missed or repeated. Up to the client's
        `retries` reopenings in a row that bring nothing new, then StreamBroken."""
        fruitless = 0
        while True:
            headers = {"Last-Event-ID": str(after)} if after else {}
            parser = SseParser()
            progressed = False
            try:
                with self.client._http.stream(
                    "GET", f"/api/v1/jobs/{self.id}/events", headers=headers
                ) as stream:
                    if stream.status_code >= 400:
                        stream.read()
                        raise_for_answer(stream)
                    for line in stream.iter_lines():
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
                time.sleep(min(2.0**fruitless / 4, 5.0))
