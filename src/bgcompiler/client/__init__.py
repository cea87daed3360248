"""The Python SDK of bg-compiler: `Client` (blocking) and `AsyncClient` (asyncio) over httpx.

Results are the server's own wire models (bgcompiler.api.v1_schemas, jobs_schemas), so a
field the server adds is a field the client reads. Errors: see bgcompiler.client.errors.

    with Client("http://127.0.0.1:8080") as client:
        result = client.run(language="python", script="print(input()[::-1])", stdin="abc")
        print(result.runs[0].stdout, result.summary.wall_ms)
"""

from bgcompiler.api.jobs_schemas import JobEventOut, JobOut, JobRequest
from bgcompiler.api.v1_schemas import (
    FileIn,
    LanguageOut,
    LimitsOut,
    RunRequest,
    RunResponse,
    TestCase,
)
from bgcompiler.client._wire import DEFAULT_SERVER, Event
from bgcompiler.client.aio import AsyncClient, AsyncJob
from bgcompiler.client.errors import (
    ApiError,
    ClientError,
    NotFound,
    RequestRejected,
    ServiceUnavailable,
    StreamBroken,
    TimedOut,
    Unreachable,
)
from bgcompiler.client.sync import Client, Job

__all__ = [
    "DEFAULT_SERVER",
    "ApiError",
    "AsyncClient",
    "AsyncJob",
    "Client",
    "ClientError",
    "Event",
    "FileIn",
    "Job",
    "JobEventOut",
    "JobOut",
    "JobRequest",
    "LanguageOut",
    "LimitsOut",
    "NotFound",
    "RequestRejected",
    "RunRequest",
    "RunResponse",
    "ServiceUnavailable",
    "StreamBroken",
    "TestCase",
    "TimedOut",
    "Unreachable",
]
