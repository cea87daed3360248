"""An outcome as Piston v2 answers it: `{compile?, run, language, version}`, each stage with
Piston's keys in Piston's order, its status letters and its message texts."""

from __future__ import annotations

import signal
from typing import Any

from bgcompiler.api.piston_plan import PistonRuntime
from bgcompiler.core.outcome import Outcome
from bgcompiler.models import STDERR, RunResult, Status


def piston_document(runtime: PistonRuntime, outcome: Outcome) -> dict[str, Any]:
    """The answer of POST /api/v2/execute. A compile that failed stands for the run too
    (Piston copies it), and then no run took place."""
    document: dict[str, Any] = {}
    if outcome.compile is not None:
        document["compile"] = stage(outcome.compile)
    if outcome.runs:
        document["run"] = stage(outcome.runs[0].result)
    elif "compile" in document:
        document["run"] = document["compile"]
    else:  # a plan always has its run unless its compile failed
        document["run"] = stage(RunResult.internal("the run did not take place"))
    document["language"] = runtime.name.language
    document["version"] = runtime.name.version
    return document


def stage(result: RunResult) -> dict[str, Any]:
    """One stage: `signal, stdout, stderr, code, output, memory, message, status, cpu_time,
    wall_time`, as Piston orders them."""
    status, message = _status(result)
    killed = status in ("TO", "OL", "EL") or result.status is Status.MEMORY_LIMIT
    signal_name = "SIGKILL" if killed else result.signal
    exited = result.signal is None and status in (None, "RE")
    return {
        "signal": signal_name,
        "stdout": _text(result.stdout),
        "stderr": _text(result.stderr),
        "code": result.exit_code if exited else None,
        "output": _text(result.output()),
        # Piston reports the cgroup's KiB times 1000; so do we, for its clients.
        "memory": result.memory_kb * 1000 if result.memory_kb is not None else None,
        "message": message,
        "status": status,
        "cpu_time": result.cpu_ms,
        "wall_time": result.wall_ms,
    }


def _status(result: RunResult) -> tuple[str | None, str | None]:
    """Piston's status letters and message texts (isolate's, and Piston's own for output)."""
    match result.status:
        case Status.OK:
            return None, None
        case Status.TIMEOUT:
            return "TO", "Time limit exceeded (wall clock)"
        case Status.OUTPUT_LIMIT:
            if result.over_stream == STDERR:
                return "EL", "stderr length exceeded"
            return "OL", "stdout length exceeded"
        case Status.MEMORY_LIMIT:
            return "SG", f"Caught fatal signal {signal.SIGKILL.value}"
        case Status.RUNTIME_ERROR:
            if result.signal is not None:
                return "SG", f"Caught fatal signal {signal.Signals[result.signal].value}"
            return "RE", f"Exited with error status {result.exit_code}"
        case _:
            return "XX", result.error or "internal error"


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
