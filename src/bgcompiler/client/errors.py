"""The client's exceptions, one tree; httpx's own errors are mapped to these in one place
(`_wire.raise_for_answer` and the transports' `except httpx...` clauses).

    ClientError                 anything the client could not do
     ├── Unreachable            no connection to the server (refused, name unknown, reset)
     ├── TimedOut               the server did not answer in time
     ├── StreamBroken           an event stream kept dropping, with no progress, too often
     └── ApiError               the server answered with an error: `status`, `code`, `message`
          ├── RequestRejected   4xx: the request itself is wrong (`code` names the problem)
          │    └── NotFound     404: no such job (or another key's)
          └── ServiceUnavailable 503 still after the retries (`retry_after`: the last hint)
"""

from __future__ import annotations


class ClientError(Exception):
    """The base of every error the client raises."""


class Unreachable(ClientError):
    pass


class TimedOut(ClientError):
    pass


class StreamBroken(ClientError):
    pass


class ApiError(ClientError):
    """An error answer. `code` and `message` are the server's `{"error", "message"}` body
    (branch on `code` or on the class, never on `message`); `field` names the request field
    at fault, when the server said."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class RequestRejected(ApiError):
    pass


class NotFound(RequestRejected):
    pass


class ServiceUnavailable(ApiError):
    def __init__(self, status: int, code: str, message: str, *, retry_after: float) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after
