"""Judge0 CE 1.13.1's wire formats, reproduced (not copied) from its behaviour: the statuses,
the submission's fields and their order, Ruby's base64, decimals as strings, times, and the
way it compares output. Pure functions; docs/compatibility.md has the whole mapping."""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from decimal import Decimal

VERSION = "1.13.1"

# id -> description, as GET /statuses lists them.
STATUSES = {
    1: "In Queue",
    2: "Processing",
    3: "Accepted",
    4: "Wrong Answer",
    5: "Time Limit Exceeded",
    6: "Compilation Error",
    7: "Runtime Error (SIGSEGV)",
    8: "Runtime Error (SIGXFSZ)",
    9: "Runtime Error (SIGFPE)",
    10: "Runtime Error (SIGABRT)",
    11: "Runtime Error (NZEC)",
    12: "Runtime Error (Other)",
    13: "Internal Error",
    14: "Exec Format Error",
}
IN_QUEUE, PROCESSING, ACCEPTED, WRONG_ANSWER, TIME_LIMIT, COMPILATION_ERROR = 1, 2, 3, 4, 5, 6
SIGXFSZ_STATUS, NZEC, OTHER, INTERNAL_ERROR = 8, 11, 12, 13
# A program killed by one of these signals has that status; by any other, 12 (Other).
SIGNAL_STATUSES = {11: 7, 25: 8, 8: 9, 6: 10}

# Every field a submission has, in the order Judge0 answers them (its table's columns, then
# `status` and `language`), whatever order `fields` names them in.
FIELDS = (
    "source_code",
    "language_id",
    "stdin",
    "expected_output",
    "stdout",
    "status_id",
    "created_at",
    "finished_at",
    "time",
    "memory",
    "stderr",
    "token",
    "number_of_runs",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "max_file_size",
    "compile_output",
    "exit_code",
    "exit_signal",
    "message",
    "wall_time",
    "compiler_options",
    "command_line_arguments",
    "redirect_stderr_to_stdout",
    "callback_url",
    "additional_files",
    "enable_network",
    "status",
    "language",
)
DEFAULT_FIELDS = frozenset(
    ("token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status")
)
# Byte fields: base64 with ?base64_encoded=true, otherwise text that must be ASCII.
BYTE_FIELDS = ("source_code", "stdin", "expected_output", "stdout", "stderr", "compile_output")
DECIMAL_FIELDS = frozenset(
    ("time", "wall_time", "cpu_time_limit", "cpu_extra_time", "wall_time_limit")
)


class FieldsError(ValueError):
    """`fields` names something a submission does not have."""

    def __init__(self, invalid: list[str]) -> None:
        super().__init__(f"invalid fields: [{', '.join(invalid)}]")


def parse_fields(fields: str | None) -> tuple[str, ...]:
    """The fields to answer with, in Judge0's order. Split on commas as Ruby does (trailing
    empty items dropped, others kept, nothing trimmed); `*` is every field."""
    items = (fields or "").split(",")
    while items and items[-1] == "":
        items.pop()
    invalid = [item for item in items if item != "*" and item not in FIELDS]
    if invalid:
        raise FieldsError(invalid)
    if "*" in items:
        return FIELDS
    wanted = set(items) or DEFAULT_FIELDS
    return tuple(field for field in FIELDS if field in wanted)


def ruby_base64(data: bytes) -> str:
    """Ruby's Base64.encode64: a newline after every 60 characters and at the end."""
    return "".join(
        base64.b64encode(data[at : at + 45]).decode() + "\n" for at in range(0, len(data), 45)
    )


_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")


def ruby_unbase64(text: str) -> bytes:
    """Ruby's lenient Base64.decode64: characters outside the alphabet are skipped, padding
    is optional, decoding stops at a `=` that ends a group; it never fails."""
    kept: list[str] = []
    for char in _NOT_BASE64.sub("", text):
        if char == "=":
            if len(kept) % 4 >= 2:  # padding where it can end a group: the end
                break
            continue  # where it cannot: skipped
        kept.append(char)
    usable = len(kept) - (len(kept) % 4 == 1)  # a lone last character carries no byte
    joined = "".join(kept[:usable])
    try:
        return base64.b64decode(joined + "=" * (-len(joined) % 4))
    except (binascii.Error, ValueError):
        return b""


def decimal_string(value: float | None) -> str | None:
    """A decimal as Judge0's JSON has it: a string in plain notation, trailing zeros
    dropped but one fractional digit kept (0.29 -> "0.29", 5 -> "5.0")."""
    if value is None:
        return None
    text = format(Decimal(repr(float(value))).normalize(), "f")
    return text if "." in text else text + ".0"


def average_seconds(values: list[float]) -> float:
    """An average of times as Judge0 computes it: rounded to 15 significant digits."""
    mean = sum(values) / len(values)
    return float(f"{mean:.15g}")


def timestamp(seconds: float | None) -> str | None:
    """A time as Judge0 writes it: UTC, milliseconds, `Z`."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def stripped(text: bytes | None) -> bytes | None:
    """Judge0's comparison form: each line's trailing whitespace removed, then the text's."""
    if text is None:
        return None
    whitespace = b" \t\n\v\f\r\0"
    return b"\n".join(line.rstrip(whitespace) for line in text.split(b"\n")).rstrip(whitespace)


def sanitized(options: str | None) -> str:
    """Compiler options and arguments as Judge0 passes them on: trimmed, with the shell's
    `$ & ; < > | backtick` characters deleted."""
    return re.sub(r"[$&;<>|`]", "", (options or "").strip())
