"""A job taken by the Judge0 API, as Judge0 answers for a submission: its status (1-14), its
figures in Judge0's units, the request's own fields, filtered and encoded as asked."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bgcompiler.api.judge0_plan import Submission
from bgcompiler.api.judge0_wire import (
    ACCEPTED,
    BYTE_FIELDS,
    COMPILATION_ERROR,
    DECIMAL_FIELDS,
    DEFAULT_FIELDS,
    FIELDS,
    IN_QUEUE,
    INTERNAL_ERROR,
    NZEC,
    OTHER,
    PROCESSING,
    SIGNAL_STATUSES,
    SIGXFSZ_STATUS,
    STATUSES,
    TIME_LIMIT,
    WRONG_ANSWER,
    average_seconds,
    decimal_string,
    ruby_base64,
    stripped,
    timestamp,
)
from bgcompiler.core.outcome import Outcome, outcome_from_json
from bgcompiler.jobs.webhooks import Callback
from bgcompiler.languages import Language
from bgcompiler.models import RunResult, Status
from bgcompiler.store.jobs import CANCELLED, FAILED, QUEUED, RUNNING, JobRow

JUDGE0 = "judge0"  # the `api` of the jobs this API took
CONVERSION_ERROR = (
    "some attributes for {what} cannot be converted to UTF-8,"
    " use base64_encoded=true query parameter"
)


class NotAscii(Exception):
    """A requested byte field is not ASCII: Judge0 answers it only in base64."""


@dataclass(frozen=True, slots=True)
class Result:
    """The result fields of a submission (None where Judge0 has null)."""

    status_id: int
    stdout: bytes | None = None
    stderr: bytes | None = None
    compile_output: bytes | None = None
    time: float | None = None
    wall_time: float | None = None
    memory: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    message: str | None = None


def token_of(job_id: str) -> str:
    return str(uuid.UUID(hex=job_id))


def job_id_of(token: str) -> str | None:
    """The job behind a token (None: not a token this service could have given)."""
    try:
        parsed = uuid.UUID(token)
    except ValueError:
        return None
    return parsed.hex if str(parsed) == token else None


def result_of(row: JobRow, submission: Submission) -> Result:
    if row.status == QUEUED:
        return Result(IN_QUEUE)
    if row.status == RUNNING:
        return Result(PROCESSING)
    if row.status == FAILED or row.outcome is None:
        return Result(INTERNAL_ERROR, message=row.error or "the job could not be run")
    if row.status == CANCELLED:
        return Result(INTERNAL_ERROR, message="the submission was cancelled")
    return judged(outcome_from_json(row.outcome), submission)


def judged(outcome: Outcome, submission: Submission) -> Result:
    """Judge0's result of a finished job. The runs count up to the first that is not
    accepted (Judge0 stops there): `time` and `memory` are their averages, the rest the
    last one's."""
    compile_output = _compile_output(outcome.compile)
    if outcome.compile is not None and outcome.compile.status is not Status.OK:
        if outcome.compile.status is Status.TIMEOUT:
            compile_output = b"Compilation time limit exceeded."
        elif outcome.compile.status is Status.INTERNAL_ERROR:
            return Result(INTERNAL_ERROR, message=outcome.compile.error)
        return Result(COMPILATION_ERROR, compile_output=compile_output)
    counted: list[tuple[int, RunResult]] = []
    for record in outcome.runs:
        status = _status(record.result, submission)
        counted.append((status, record.result))
        if status != ACCEPTED:
            break
    if not counted:
        return Result(INTERNAL_ERROR, compile_output=compile_output, message="no run took place")
    status, last = counted[-1]
    times = [result.cpu_ms / 1000 for _, result in counted if result.cpu_ms is not None]
    memories = [result.memory_kb for _, result in counted if result.memory_kb is not None]
    signal_number = _signal_number(last)
    return Result(
        status_id=status,
        stdout=last.stdout or None,
        stderr=last.stderr or None,
        compile_output=compile_output,
        time=average_seconds(times) if times else None,
        wall_time=last.wall_ms / 1000 if last.wall_ms is not None else None,
        memory=sum(memories) // len(memories) if memories else None,
        exit_code=last.exit_code if signal_number is None else None,
        exit_signal=signal_number,
        message=_message(status, last, submission),
    )


def _status(result: RunResult, submission: Submission) -> int:
    cpu_over = result.cpu_ms is not None and result.cpu_ms > submission.cpu_time_limit * 1000
    match result.status:
        case Status.OK if cpu_over:
            return TIME_LIMIT
        case Status.OK:
            if submission.expected_output is None:
                return ACCEPTED
            same = stripped(submission.expected_output) == stripped(result.stdout)
            return ACCEPTED if same else WRONG_ANSWER
        case Status.TIMEOUT:
            return TIME_LIMIT
        case Status.OUTPUT_LIMIT:
            return SIGXFSZ_STATUS  # Judge0's output is a file: past its size, SIGXFSZ
        case Status.MEMORY_LIMIT:
            return OTHER
        case Status.RUNTIME_ERROR if cpu_over:
            return TIME_LIMIT
        case Status.RUNTIME_ERROR:
            number = _signal_number(result)
            return NZEC if number is None else SIGNAL_STATUSES.get(number, OTHER)
        case _:
            return INTERNAL_ERROR


def _message(status: int, result: RunResult, submission: Submission) -> str | None:
    """isolate's messages, as Judge0 passes them on."""
    number = _signal_number(result)
    if status == TIME_LIMIT:
        if result.status is Status.TIMEOUT:
            return "Time limit exceeded (wall clock)"
        return "Time limit exceeded"
    if status == SIGXFSZ_STATUS:
        return "Output limit exceeded"
    if result.status is Status.MEMORY_LIMIT:
        return "Memory limit exceeded"
    if status == INTERNAL_ERROR:
        return result.error
    if number is not None:
        return f"Caught fatal signal {number}"
    if result.exit_code:
        return f"Exited with error status {result.exit_code}"
    return None


def _signal_number(result: RunResult) -> int | None:
    if result.status is Status.MEMORY_LIMIT:
        return int(signal.SIGKILL)
    if result.signal is None or result.status is not Status.RUNTIME_ERROR:
        return None
    try:
        return int(signal.Signals[result.signal])
    except KeyError:
        return None


def _compile_output(compiled: RunResult | None) -> bytes | None:
    """The compiler's stdout and stderr as one, as Judge0 merges them (None when empty)."""
    if compiled is None:
        return None
    return compiled.output() or None


def submission_fields(
    row: JobRow, submission: Submission, languages: Mapping[int, Language]
) -> dict[str, Any]:
    """Every field of the submission (raw: bytes are bytes, decimals floats)."""
    result = result_of(row, submission)
    language = languages.get(submission.language_id)
    language_name = language.judge0.name if language and language.judge0 else None
    return {
        "source_code": submission.source_code,
        "language_id": submission.language_id,
        "stdin": submission.stdin,
        "expected_output": submission.expected_output,
        "stdout": result.stdout,
        "status_id": result.status_id,
        "created_at": timestamp(row.created_at),
        "finished_at": timestamp(row.finished_at) if result.status_id > PROCESSING else None,
        "time": result.time,
        "memory": result.memory,
        "stderr": result.stderr,
        "token": token_of(row.id),
        "number_of_runs": submission.number_of_runs,
        "cpu_time_limit": submission.cpu_time_limit,
        "cpu_extra_time": submission.cpu_extra_time,
        "wall_time_limit": submission.wall_time_limit,
        "memory_limit": submission.memory_limit,
        "stack_limit": submission.stack_limit,
        "max_processes_and_or_threads": submission.max_processes_and_or_threads,
        "enable_per_process_and_thread_time_limit": (
            submission.enable_per_process_and_thread_time_limit
        ),
        "enable_per_process_and_thread_memory_limit": (
            submission.enable_per_process_and_thread_memory_limit
        ),
        "max_file_size": submission.max_file_size,
        "compile_output": result.compile_output,
        "exit_code": result.exit_code,
        "exit_signal": result.exit_signal,
        "message": result.message,
        "wall_time": result.wall_time,
        "compiler_options": submission.compiler_options,
        "command_line_arguments": submission.command_line_arguments,
        "redirect_stderr_to_stdout": submission.redirect_stderr_to_stdout,
        "callback_url": submission.callback_url,
        "additional_files": submission.additional_files,
        "enable_network": submission.enable_network,
        "status": {"id": result.status_id, "description": STATUSES[result.status_id]},
        "language": {"id": submission.language_id, "name": language_name},
    }


def rendered(
    raw: dict[str, Any], fields: tuple[str, ...], *, base64_encoded: bool
) -> dict[str, Any]:
    """The fields asked for, in Judge0's order, encoded as Judge0 encodes them. NotAscii
    when a byte field asked for is not ASCII and base64 was not asked for."""
    document: dict[str, Any] = {}
    for name in FIELDS:
        if name not in fields:
            continue
        value = raw[name]
        if name in BYTE_FIELDS and value is not None:
            if base64_encoded:
                value = ruby_base64(value)
            elif not value.isascii():
                raise NotAscii(name)
            else:
                value = value.decode("ascii")
        elif name == "additional_files" and value is not None:
            value = ruby_base64(value)
        elif name == "message" and value is not None and base64_encoded:
            value = ruby_base64(value.encode("utf-8"))
        elif name in DECIMAL_FIELDS:
            value = decimal_string(value)
        document[name] = value
    return document


def judge0_callback(row: JobRow, languages: Mapping[int, Language]) -> Callback:
    """What Judge0 sends to a submission's callback_url when it ends: a PUT of the
    submission's default fields, base64-encoded."""
    assert row.request is not None
    submission = Submission.from_json(row.request)
    document = rendered(
        submission_fields(row, submission, languages),
        tuple(field for field in FIELDS if field in DEFAULT_FIELDS),
        base64_encoded=True,
    )
    return Callback(json.dumps(document).encode(), method="PUT")
