"""The one exception tree of bg-compiler.

    BgcError                      anything this package raises on purpose
    ├── ClientError               the request is at fault: a 4xx
    │   ├── InvalidRequest        422: a field's value is not acceptable
    │   ├── ImageNotFound         422: the image is not present on the engine (we never pull)
    │   ├── NotFound              404: no such job (or another key's)
    │   ├── Conflict              409: the job is in a state that does not allow it
    │   ├── Unauthorized          401: no API key, or not a valid one
    │   ├── Forbidden             403: the key lacks the right (admin, or a request past its caps)
    │   └── RateLimited           429: the key's runs per second or per day are spent
    ├── Unavailable               503: try again later
    │   ├── Busy                  the backlog cannot hold all runs of the request
    │   ├── EngineUnavailable     the Docker engine does not answer, or answers with errors
    │   ├── StoreUnavailable      the job store does not answer
    │   ├── QueueUnavailable      distributed mode: the job queue (Redis) does not answer
    │   ├── NoWorker              distributed mode: no live worker can run what was asked
    │   └── ShuttingDown          the service is stopping
    └── SandboxError              a run failed for a reason inside the service or engine;
        │                         reported in the run's result as `internal_error`
        └── EngineError           the engine answered a call with an error status
                                  (a 503 when it happens outside a run)
    StartupError                  the service cannot start (bad engine or runtime); the CLI exits

Foreign errors are translated to these at one boundary each: the sandbox's engine client
(aiodocker, aiohttp, OSError), the store (SQLAlchemy) and the job queue (Redis).
"""

from __future__ import annotations


class BgcError(Exception):
    """Base of everything this package raises on purpose."""

    code = "error"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(BgcError):
    code = "bad_request"
    http_status = 400


class InvalidRequest(ClientError):
    code = "invalid_request"
    http_status = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ImageNotFound(ClientError):
    code = "image_not_found"
    http_status = 422

    def __init__(self, image: str) -> None:
        super().__init__(
            f"image {image!r} is not present on the engine; build it first "
            "(`bg-compiler images build`) — images are never pulled"
        )
        self.image = image


class NotFound(ClientError):
    code = "not_found"
    http_status = 404


class Conflict(ClientError):
    code = "conflict"
    http_status = 409


class Unauthorized(ClientError):
    code = "unauthorized"
    http_status = 401


class Forbidden(ClientError):
    code = "forbidden"
    http_status = 403


class RateLimited(ClientError):
    """`reason` is "rate_limited" (the bucket is short) or "quota" (the day's runs are spent)."""

    http_status = 429

    def __init__(self, message: str, *, reason: str, retry_after: int) -> None:
        super().__init__(message)
        self.code = reason
        self.retry_after = retry_after


class Unavailable(BgcError):
    code = "unavailable"
    http_status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Busy(Unavailable):
    code = "busy"


class EngineUnavailable(Unavailable):
    code = "engine_unavailable"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"


class QueueUnavailable(Unavailable):
    code = "queue_unavailable"


class NoWorker(Unavailable):
    code = "no_worker"


class ShuttingDown(Unavailable):
    code = "shutting_down"


class WorkerReplaced(Unavailable):
    """A newer process runs under this worker's name (--worker-id): this one takes no more
    jobs (a claim of its would look like the newer one's)."""

    code = "worker_replaced"


class SandboxError(BgcError):
    code = "internal_error"


class EngineError(SandboxError):
    """The engine refused a call; `status` is the HTTP status it answered with (0: none)."""

    code = "engine_error"
    http_status = 503

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class StartupError(BgcError):
    code = "startup_failed"
