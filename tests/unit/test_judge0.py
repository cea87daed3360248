"""Judge0 translation without an engine: its checks and messages, its encodings and field
order, and the status, message and figures of each kind of run."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import pytest

from bgcompiler.api.judge0_plan import (
    Judge0Invalid,
    Submission,
    build_plan,
    check_submission,
    config_of,
    judge0_languages,
)
from bgcompiler.api.judge0_render import judged, rendered
from bgcompiler.api.judge0_wire import (
    FIELDS,
    FieldsError,
    decimal_string,
    parse_fields,
    ruby_base64,
    ruby_unbase64,
    stripped,
    timestamp,
)
from bgcompiler.core.outcome import Outcome, RunRecord, Summary
from bgcompiler.languages import load_languages
from bgcompiler.models import STDOUT, RunResult, Status
from bgcompiler.sandbox.fake import FakeSandbox
from bgcompiler.scheduler import Scheduler
from bgcompiler.services import Services
from bgcompiler.settings import Settings

LANGUAGES = judge0_languages(load_languages())


def services() -> Services:
    sandbox = FakeSandbox()
    return Services(
        Settings(timeout=10, memory=256),
        sandbox,
        Scheduler(sandbox, workers=1, backlog=1),
        load_languages(),
    )


def checked(body: dict[str, Any], *, base64_encoded: bool = False) -> Submission:
    config = config_of(services(), callbacks=False)
    return check_submission(body, base64_encoded=base64_encoded, config=config, known=LANGUAGES)


def errors_of(body: Any) -> dict[str, list[str]]:
    with pytest.raises(Judge0Invalid) as refused:
        checked(body)
    return refused.value.errors


def test_the_ids_clients_hard_code_are_our_languages() -> None:
    """46 Bash, 50/54 GCC, 60 Go, 62 Java, 63 Node, 71 Python 3, 72 Ruby, 73 Rust."""
    expected = {46: "bash", 50: "c", 54: "cpp", 60: "go", 62: "java", 63: "javascript"}
    expected |= {71: "python", 72: "ruby", 73: "rust", 48: "c", 52: "cpp"}
    assert {i: LANGUAGES[i].name for i in expected} == expected
    assert 70 not in LANGUAGES  # Python 2 is not our Python 3
    assert LANGUAGES[71].judge0 is not None
    assert LANGUAGES[71].judge0.name == "Python (3.11.2)"


def test_validation_messages_and_their_order_are_judge0s() -> None:
    """Blank source and language (two messages, the double space of a nil id), limits past
    the maximum with the bound printed as configured, `is not a number`, and the rest."""
    assert errors_of({}) == {
        "source_code": ["can't be blank"],
        "language_id": ["can't be blank", "language with id  doesn't exist"],
    }
    assert errors_of(
        {
            "source_code": "x",
            "language_id": 71,
            "number_of_runs": 21,
            "cpu_time_limit": 100,
            "wall_time_limit": 0.5,
            "memory_limit": "abc",
            "max_processes_and_or_threads": 0,
            "enable_network": True,
        }
    ) == {
        "number_of_runs": ["must be less than or equal to 20"],
        "cpu_time_limit": ["must be less than or equal to 10.0"],
        "wall_time_limit": ["must be greater than or equal to 1"],
        "memory_limit": ["is not a number"],
        "max_processes_and_or_threads": ["must be greater than 0"],
        "enable_network": ["enabling network is not allowed"],
    }
    assert errors_of({"source_code": "x", "language_id": 1234}) == {
        "language_id": ["language with id 1234 doesn't exist"]
    }
    assert errors_of({"source_code": "x", "language_id": 71, "compiler_options": "-O3"}) == {
        "compiler_options": ["setting compiler options is only allowed for compiled languages"]
    }
    assert errors_of({"source_code": "x", "language_id": 71, "callback_url": "http://a/"}) == {
        "callback_url": ["setting callback is not allowed"]
    }


def test_defaults_casts_and_lenient_base64_input() -> None:
    """Judge0's defaults (at most our maximums), string numbers cast, base64 decoded as
    Ruby does (newlines and junk skipped), arrays dropped as if absent."""
    submission = checked(
        {
            "source_code": base64.b64encode(b"print(1)").decode() + "\n!!",
            "language_id": "71",
            "stdin": ruby_base64(b"x" * 100),
            "memory_limit": "65536",
            "command_line_arguments": ["dropped"],
        },
        base64_encoded=True,
    )
    assert submission.source_code == b"print(1)"
    assert submission.stdin == b"x" * 100
    assert (submission.language_id, submission.memory_limit) == (71, 65536)
    assert submission.command_line_arguments is None
    assert (submission.cpu_time_limit, submission.wall_time_limit) == (5.0, 10.0)
    assert Submission.from_json(submission.to_json()) == submission


def test_the_plan_compiles_with_the_options_and_runs_with_the_arguments() -> None:
    """Options go before the source (shell metacharacters deleted, as Judge0 does), the
    arguments after the program, stderr joined to stdout when asked; limits as asked."""
    submission = checked(
        {
            "source_code": "int main(){}",
            "language_id": 50,
            "compiler_options": "-O0 -DX=1; rm -rf /",
            "command_line_arguments": "a b $HOME",
            "redirect_stderr_to_stdout": True,
            "wall_time_limit": 2,
            "memory_limit": 32768,
            "number_of_runs": 3,
        }
    )
    plan = build_plan(services(), submission, LANGUAGES[50])
    assert plan.compile is not None
    assert plan.compile.command == "gcc -O2 -std=c17 -o main -O0 -DX=1 rm -rf / main.c -lm"
    assert plan.run.command == "exec ./main a b HOME 2>&1"
    assert (plan.run.limits.timeout_s, plan.run.limits.memory_mb) == (2.0, 32)
    assert plan.count == 3


def zipped(entries: dict[str, bytes], *, link: str | None = None) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, "/etc/passwd")
    return base64.b64encode(buffer.getvalue()).decode()


def test_additional_files_are_unpacked_safely() -> None:
    """The zip's files go along (the source is never replaced); a path out of the work
    directory or a link is refused with a 422 naming additional_files."""
    body = {"source_code": "print(1)", "language_id": 71}
    files = zipped({"data/in.txt": b"42", "main.py": b"replaced?"})
    plan = build_plan(services(), checked({**body, "additional_files": files}), LANGUAGES[71])
    assert [(f.name, f.content) for f in plan.run.files] == [
        ("main.py", b"print(1)"),
        ("data/in.txt", b"42"),
    ]
    for bad in (zipped({"../escape": b"x"}), zipped({}, link="passwd")):
        with pytest.raises(Judge0Invalid) as refused:
            build_plan(services(), checked({**body, "additional_files": bad}), LANGUAGES[71])
        assert list(refused.value.errors) == ["additional_files"]


def test_wire_formats_are_judge0s() -> None:
    """Ruby's base64 lines, decimals as strings, times with milliseconds, fields in
    Judge0's order whatever order they are asked in, bad fields named."""
    assert ruby_base64(b"a" * 46) == base64.b64encode(b"a" * 45).decode() + "\nYQ==\n"
    assert ruby_unbase64("aGVs\nbG8=junk") == b"hello"
    assert [decimal_string(v) for v in (0.002, 0.29, 5, 0)] == ["0.002", "0.29", "5.0", "0.0"]
    assert timestamp(0.5) == "1970-01-01T00:00:00.500Z"
    assert parse_fields("token,stdout,time") == ("stdout", "time", "token")
    assert parse_fields("*") == FIELDS
    assert len(FIELDS) == 35
    with pytest.raises(FieldsError, match=r"^invalid fields: \[bogus,  stdout\]$"):
        parse_fields("token,bogus, stdout")
    assert stripped(b"a \t\nb\r\n\n") == stripped(b"a\nb") == b"a\nb"
    assert stripped(b" 3") != stripped(b"3")


def outcome(*results: RunResult, compile: RunResult | None = None) -> Outcome:
    runs = tuple(RunRecord(i, None, i, None, r) for i, r in enumerate(results))
    summary = Summary(len(runs), {}, 0, 0, True, 1, None, None, None)
    return Outcome(compile, runs, summary, "sha256:x", None)


SUBMISSION = checked({"source_code": "x", "language_id": 71, "cpu_time_limit": 1})


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (RunResult(Status.OK, stdout=b"1\n", exit_code=0, cpu_ms=2), (3, None, None, 0)),
        (
            RunResult(Status.RUNTIME_ERROR, exit_code=3, cpu_ms=2),
            (11, "Exited with error status 3", None, 3),
        ),
        (
            RunResult(Status.RUNTIME_ERROR, exit_code=139, signal="SIGSEGV"),
            (7, "Caught fatal signal 11", 11, None),
        ),
        (
            RunResult(Status.RUNTIME_ERROR, exit_code=136, signal="SIGFPE"),
            (9, "Caught fatal signal 8", 8, None),
        ),
        (
            RunResult(Status.RUNTIME_ERROR, exit_code=143, signal="SIGTERM"),
            (12, "Caught fatal signal 15", 15, None),
        ),
        (
            RunResult(Status.TIMEOUT, timed_out=True, signal="SIGKILL"),
            (5, "Time limit exceeded (wall clock)", None, None),
        ),
        (
            RunResult(Status.OK, exit_code=0, cpu_ms=1500),
            (5, "Time limit exceeded", None, 0),
        ),
        (
            RunResult(Status.MEMORY_LIMIT, exit_code=137, oom_killed=True),
            (12, "Memory limit exceeded", 9, None),
        ),
        (
            RunResult(Status.OUTPUT_LIMIT, output_truncated=True, over_stream=STDOUT),
            (8, "Output limit exceeded", None, None),
        ),
        (RunResult.internal("engine gone"), (13, "engine gone", None, None)),
    ],
)
def test_each_kind_of_run_has_judge0s_status(result: RunResult, expected: tuple[Any, ...]) -> None:
    """Status id, isolate's message, exit_signal for a signal, exit_code for an exit;
    CPU time past cpu_time_limit is a time limit even when the program ended."""
    got = judged(outcome(result), SUBMISSION)
    assert (got.status_id, got.message, got.exit_signal, got.exit_code) == expected


def test_expected_output_runs_and_compile_are_judged_as_judge0_does() -> None:
    """Trailing whitespace ignored, leading not; runs stop at the first not accepted, time
    and memory averaged over the runs counted; a failed compile is status 6 with its
    output and no figures; a compile's warnings are shown with an accepted run."""
    expecting = checked({"source_code": "x", "language_id": 71, "expected_output": "3"})
    ok = RunResult(Status.OK, stdout=b"3 \n", exit_code=0, cpu_ms=10, memory_kb=100)
    assert judged(outcome(ok), expecting).status_id == 3
    wrong = RunResult(Status.OK, stdout=b" 3\n", exit_code=0, cpu_ms=30, memory_kb=301)
    got = judged(outcome(ok, wrong, ok), expecting)
    assert (got.status_id, got.time, got.memory, got.stdout) == (4, 0.02, 200, b" 3\n")
    failed = RunResult(Status.RUNTIME_ERROR, stdout=b"", stderr=b"error: x\n", exit_code=1)
    got = judged(outcome(compile=failed), expecting)
    assert (got.status_id, got.compile_output, got.time, got.stdout) == (
        6,
        b"error: x\n",
        None,
        None,
    )
    warned = RunResult(Status.OK, stderr=b"warning: y\n", exit_code=0)
    assert judged(outcome(ok, compile=warned), expecting).compile_output == b"warning: y\n"


def test_a_byte_field_that_is_not_ascii_needs_base64() -> None:
    """Judge0 answers non-ASCII output only in base64; a field not asked for is not checked."""
    from bgcompiler.api.judge0_render import NotAscii

    raw = dict.fromkeys(FIELDS) | {"stdout": "é".encode(), "token": "t"}
    with pytest.raises(NotAscii):
        rendered(raw, ("stdout", "token"), base64_encoded=False)
    assert rendered(raw, ("token",), base64_encoded=False) == {"token": "t"}
    assert rendered(raw, ("stdout",), base64_encoded=True) == {"stdout": "w6k=\n"}
