"""Core models every layer speaks: what to run, under which limits, and what happened."""

from __future__ import annotations

import enum
from dataclasses import dataclass

# A program's two output streams, numbered as the engine's attach protocol numbers them.
STDOUT = 1
STDERR = 2


class Status(enum.StrEnum):
    """How a run ended, from most to least specific cause."""

    OK = "ok"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one run. Already clamped to the server's maximums."""

    timeout_s: float
    memory_mb: int
    cpu_shares: int
    cpus: float
    output_bytes: int
    pids: int
    disk_mb: int


@dataclass(frozen=True, slots=True)
class SandboxFile:
    """A file placed in the run's working directory before the command starts."""

    name: str
    content: bytes
    executable: bool = False


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything one container run needs. The same spec is used for each repeat."""

    image: str
    command: str
    files: tuple[SandboxFile, ...]
    stdin: bytes
    limits: Limits
    runtime: str | None = None
    artifacts: bool = False  # a compile stage: return the work directory after success
    cpuset: str | None = None  # CPUs to pin the run to, e.g. "1"
    # Wait until the engine work this service started in the background (removals, warm
    # containers starting) is done before the program starts, so it does not share the CPUs
    # with it: the runs of a timing comparison pay a little latency for clean figures.
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run did. Output is raw bytes; the API decides how to render them."""

    status: Status
    stdout: bytes = b""
    stderr: bytes = b""
    duration_ms: int = 0
    exit_code: int | None = None
    timed_out: bool = False
    oom_killed: bool = False
    output_truncated: bool = False
    error: str | None = None
    # Measured inside the container by the helper (None when it could not report, e.g. the
    # run was killed from outside for its output): the program's own figures.
    wall_ms: float | None = None
    cpu_ms: float | None = None
    memory_kb: int | None = None
    signal: str | None = None
    artifacts: bytes | None = None  # tar of the work directory, for a successful compile
    # The order stdout's and stderr's bytes arrived in: (STDOUT | STDERR, count).
    interleaving: tuple[tuple[int, int], ...] = ()
    over_stream: int | None = None  # which stream passed its cap (STDOUT | STDERR)

    def output(self) -> bytes:
        """stdout and stderr as one, in the order their bytes arrived (stdout first, then
        stderr, when the order is not known)."""
        if not self.interleaving:
            return self.stdout + self.stderr
        taken = {STDOUT: 0, STDERR: 0}
        streams = {STDOUT: self.stdout, STDERR: self.stderr}
        parts = []
        for kind, count in self.interleaving:
            parts.append(streams[kind][taken[kind] : taken[kind] + count])
            taken[kind] += count
        return b"".join(parts)

    @staticmethod
    def internal(message: str, *, stdout: bytes = b"", stderr: bytes = b"") -> RunResult:
        """A run the service could not carry out; never reported as ok."""
        return RunResult(status=Status.INTERNAL_ERROR, error=message, stdout=stdout, stderr=stderr)


def classify(
    *,
    exit_code: int | None,
    timed_out: bool,
    oom_killed: bool,
    output_truncated: bool,
) -> Status:
    """The status of a finished run; the first cause that applies wins."""
    if output_truncated:
        return Status.OUTPUT_LIMIT
    if timed_out:
        return Status.TIMEOUT
    if oom_killed:
        return Status.MEMORY_LIMIT
    if exit_code is None:
        return Status.INTERNAL_ERROR
    if exit_code != 0:
        return Status.RUNTIME_ERROR
    return Status.OK
