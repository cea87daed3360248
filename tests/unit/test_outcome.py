"""From collected bytes, the helper's record and the engine's state to a run's result."""

from __future__ import annotations

from bgcompiler.models import Status
from bgcompiler.sandbox.attach import STDERR, STDOUT
from bgcompiler.sandbox.capture import Capture, Collected
from bgcompiler.sandbox.measure import end_mark, record_mark
from bgcompiler.sandbox.outcome import Ending, EngineState, build_result

NONCE = "00112233445566778899aabbccddeeff"
CAP = 64
NOT_ASKED = EngineState(exit_code=0, oom_killed=False)


def collected(stdout: bytes, stderr: bytes, record: str | None) -> Collected:
    capture = Capture(CAP, NONCE)
    capture.feed(STDOUT, stdout + (end_mark(NONCE) if record else b""))
    capture.feed(STDERR, stderr + (record_mark(NONCE) + record.encode() if record else b""))
    return capture.collected()


def test_a_clean_exit_is_ok_with_the_helpers_figures() -> None:
    """Exit 0 seen by the helper: ok, its wall/CPU/memory, no signal."""
    result = build_result(
        collected(b"hi\n", b"", "2000000 1000 500 3000 0 0\n"),
        ending=Ending.ENDED,
        outside_ms=40.0,
        engine=NOT_ASKED,
        artifact_mb=64,
    )
    assert result.status is Status.OK
    assert (result.stdout, result.exit_code, result.signal) == (b"hi\n", 0, None)
    assert (result.wall_ms, result.cpu_ms, result.memory_kb) == (2.0, 1.5, 3000)
    assert result.duration_ms == 40


def test_an_exit_code_comes_from_the_record() -> None:
    """Exit status 3 in the record (wait status 3 << 8): runtime_error, exit_code 3."""
    result = build_result(
        collected(b"", b"boom\n", f"1 1 1 1 {3 << 8} 0\n"),
        ending=Ending.ENDED,
        outside_ms=5.0,
        engine=EngineState(exit_code=3, oom_killed=False),
        artifact_mb=64,
    )
    assert result.status is Status.RUNTIME_ERROR
    assert result.exit_code == 3
    assert result.stderr == b"boom\n"


def test_a_kill_for_output_has_no_figures_and_is_output_limit() -> None:
    """Killed from outside at the cap: output_limit, not timed out, SIGKILL, CPU unknown."""
    result = build_result(
        collected(b"y\n" * 40, b"", None),
        ending=Ending.OVER,
        outside_ms=12.5,
        engine=EngineState(exit_code=137, oom_killed=False),
        artifact_mb=64,
    )
    assert result.status is Status.OUTPUT_LIMIT
    assert result.output_truncated
    assert not result.timed_out
    assert len(result.stdout) == CAP
    assert (result.exit_code, result.signal, result.cpu_ms, result.wall_ms) == (
        137,
        "SIGKILL",
        None,
        12.5,
    )


def test_the_helpers_time_limit_is_a_timeout_with_figures() -> None:
    """The helper killed the program at the limit: timeout, SIGKILL, figures kept."""
    result = build_result(
        collected(b"", b"", "3000000000 2900000 10000 900 9 1\n"),
        ending=Ending.ENDED,
        outside_ms=3010.0,
        engine=EngineState(exit_code=137, oom_killed=False),
        artifact_mb=64,
    )
    assert result.status is Status.TIMEOUT
    assert result.timed_out
    assert result.signal == "SIGKILL"
    assert result.cpu_ms == 2910.0


def test_the_backstop_deadline_is_a_timeout_measured_from_outside() -> None:
    """No record by the backstop deadline: timeout, outside wall time, exit from the engine."""
    result = build_result(
        collected(b"partial", b"", None),
        ending=Ending.TIMEOUT,
        outside_ms=4000.0,
        engine=EngineState(exit_code=137, oom_killed=False),
        artifact_mb=64,
    )
    assert result.status is Status.TIMEOUT
    assert result.wall_ms == 4000.0
    assert result.stdout == b"partial"


def test_an_oom_kill_reported_by_the_engine_is_a_memory_limit() -> None:
    """The helper saw SIGKILL; the engine says OOM: memory_limit."""
    result = build_result(
        collected(b"", b"", "1 1 1 262144 9 0\n"),
        ending=Ending.ENDED,
        outside_ms=100.0,
        engine=EngineState(exit_code=137, oom_killed=True),
        artifact_mb=64,
    )
    assert result.status is Status.MEMORY_LIMIT
    assert result.oom_killed


def test_no_record_and_no_exit_code_is_an_internal_error() -> None:
    """Nothing from the helper and no exit code from the engine: never ok."""
    result = build_result(
        collected(b"", b"", None),
        ending=Ending.ENDED,
        outside_ms=1.0,
        engine=EngineState(exit_code=None, oom_killed=False),
        artifact_mb=64,
    )
    assert result.status is Status.INTERNAL_ERROR
