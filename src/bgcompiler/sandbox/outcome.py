"""From what a run left behind to its result: a pure function of bytes and engine state.

No I/O here, so every combination (a clean exit, a kill for output or time, a record the
helper never wrote, an OOM kill) is unit-tested on bytes alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bgcompiler.models import RunResult, Status, classify
from bgcompiler.sandbox.capture import Collected


class Ending(enum.Enum):
    """How reading a run's output stopped."""

    ENDED = "ended"  # the output ended, or the helper's marks said the program has
    OVER = "over"  # the program passed an output cap: killed at once
    TIMEOUT = "timeout"  # the backstop deadline after the helper's own time limit


@dataclass(frozen=True, slots=True)
class EngineState:
    """What the engine said about the container, when it was asked (None: not asked)."""

    exit_code: int | None
    oom_killed: bool


def build_result(
    collected: Collected,
    *,
    ending: Ending,
    outside_ms: float,
    engine: EngineState,
    artifact_mb: int,
) -> RunResult:
    """The run's result. The helper's record, when there is one, is the program's own
    account (its exit status, figures and signal); without it the run was ended from
    outside, and only the engine's exit code and the outside wall time are known."""
    measured = collected.measurement
    killed = ending is not Ending.ENDED
    timed_out = ending is Ending.TIMEOUT or (measured is not None and measured.timed_out)
    exit_code = measured.exit_code if measured is not None else engine.exit_code
    status = classify(
        exit_code=exit_code,
        timed_out=timed_out,
        oom_killed=engine.oom_killed,
        output_truncated=collected.truncated,
    )
    error = None
    if collected.artifacts_over and status is not Status.OUTPUT_LIMIT:
        status = Status.OUTPUT_LIMIT
        error = f"the compile stage left more than {artifact_mb} MB of files in /bg (--artifacts)"
    return RunResult(
        status=status,
        stdout=collected.stdout,
        stderr=collected.stderr,
        duration_ms=round(outside_ms),
        exit_code=exit_code,
        timed_out=timed_out,
        oom_killed=engine.oom_killed,
        output_truncated=collected.truncated,
        error=error,
        wall_ms=measured.wall_ms if measured else round(outside_ms, 3),
        cpu_ms=measured.cpu_ms if measured else None,
        memory_kb=measured.maxrss_kb if measured else None,
        signal=measured.signal if measured else ("SIGKILL" if killed else None),
        artifacts=collected.artifacts if status is Status.OK else None,
        interleaving=collected.interleaving,
        over_stream=collected.over_stream,
    )
