"""Piston v2 translation without an engine: which runtime a name and range pick, how files,
stdin, args and limits become the plan, and the stage documents of each status."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bgcompiler.api.piston_plan import (
    PistonRuntime,
    _lenient_base64,
    _lenient_hex,
    build_plan,
    check_body,
    find_runtime,
)
from bgcompiler.api.piston_plan import runtimes as piston_runtimes
from bgcompiler.api.piston_render import stage
from bgcompiler.core.plan import Plan
from bgcompiler.errors import InvalidRequest
from bgcompiler.languages import Language, PistonName, load_languages
from bgcompiler.models import STDERR, STDOUT, RunResult, Status
from bgcompiler.sandbox.fake import FakeSandbox
from bgcompiler.scheduler import Scheduler
from bgcompiler.services import Services
from bgcompiler.settings import Settings


def services(**settings: Any) -> Services:
    sandbox = FakeSandbox()
    return Services(
        Settings(**{"timeout": 10, "memory": 256, **settings}),
        sandbox,
        Scheduler(sandbox, workers=1, backlog=1),
        load_languages(),
    )


def language(name: str, version: str, aliases: tuple[str, ...] = ()) -> Language:
    piston = PistonName(name, version, aliases)
    return Language(name, version, f"img/{name}:{version}", "main", "run {file}", piston=piston)


def test_a_name_or_alias_and_a_range_pick_the_highest_version_that_satisfies_it() -> None:
    """Piston's lookup: exact name or alias, npm ranges, highest first; unknown otherwise."""
    installed = piston_runtimes(
        [
            language("python", "3.9.4", ("py",)),
            language("python", "3.11.2", ("py",)),
            language("python", "2.7.18", ("py",)),
        ]
    )
    assert find_runtime(installed, "py", "3.x").name.version == "3.11.2"
    assert find_runtime(installed, "python", "*").name.version == "3.11.2"
    assert find_runtime(installed, "python", "~3.9").name.version == "3.9.4"
    assert find_runtime(installed, "python", ">=2 <3").name.version == "2.7.18"
    for name, wanted in (("Python", "3"), ("python", "latest"), ("python", "4")):
        with pytest.raises(InvalidRequest) as refused:
            find_runtime(installed, name, wanted)
        assert refused.value.message == f"{name}-{wanted} runtime is unknown"


def test_files_decode_as_nodes_buffer_does() -> None:
    """base64: characters outside the alphabet skipped, padding optional, URL-safe read;
    hex: pairs up to the first that is not hex."""
    data = b"\x00\xffbytes\n"
    encoded = base64.b64encode(data).decode()
    assert _lenient_base64(encoded) == data
    assert _lenient_base64(encoded.rstrip("=")) == data
    assert _lenient_base64(" \n".join(encoded)) == data
    assert _lenient_base64(base64.urlsafe_b64encode(data).decode()) == data
    assert _lenient_hex("00ff41zz42") == b"\x00\xffA"
    assert _lenient_hex("4") == b""


def test_the_plan_is_pistons_job() -> None:
    """The first utf8 file is the program (others go along, decoded); a missing name is
    `file<i>.code`; stdin gets a final newline; args are quoted; run_timeout and memory
    become the run's limits, 0 meaning the server's maximum."""
    svc = services()
    body = {
        "language": "py",
        "version": "3",
        "files": [
            {
                "name": "data.bin",
                "content": base64.b64encode(b"\x00\x01").decode(),
                "encoding": "base64",
            },
            {"content": "print(1)"},
        ],
        "stdin": "x",
        "args": ["a b", "$(id)"],
        "run_timeout": 1500,
        "run_memory_limit": 64 * 2**20,
        "compile_timeout": 0,
    }
    plan = planned(svc, body)
    run = plan.run
    assert [(f.name, f.content) for f in run.files] == [
        ("data.bin", b"\x00\x01"),
        ("file1.code", b"print(1)"),
    ]
    assert run.command == "python3 file1.code 'a b' '$(id)'"
    assert run.stdin == b"x\n"
    assert (run.limits.timeout_s, run.limits.memory_mb) == (1.5, 64)
    assert plan.compile is None
    python = {"language": "python", "version": "*"}
    defaults = planned(svc, {**python, "files": [{"content": "1"}]}).run
    assert (defaults.limits.timeout_s, defaults.limits.memory_mb, defaults.stdin) == (
        3.0,
        256,
        b"\n",
    )
    unlimited = planned(svc, {**python, "files": [{"content": "1"}], "run_timeout": 0})
    assert unlimited.run.limits.timeout_s == 10


def planned(svc: Services, body: dict[str, Any]) -> Plan:
    """The plan of a body that passes the checks, every image taken as present."""

    async def present(runtime: PistonRuntime) -> bool:
        return True

    return build_plan(svc, asyncio.run(check_body(svc, body, present)))


def test_only_the_runtimes_the_range_selects_are_looked_for_the_highest_present_first() -> None:
    """No image but the candidates' is checked; a candidate whose image is missing is
    passed over, and with none present the runtime is unknown (Piston's message)."""
    svc = services()
    asked: list[str] = []

    def present_except(missing: set[str]) -> Callable[[PistonRuntime], Awaitable[bool]]:
        async def present(runtime: PistonRuntime) -> bool:
            asked.append(runtime.name.language)
            return runtime.name.language not in missing

        return present

    body = {"language": "cpp", "version": "*", "files": [{"content": "int main(){}"}]}
    checked = asyncio.run(check_body(svc, body, present_except(set())))
    assert (checked.runtime.name.language, asked) == ("c++", ["c++"])
    asked.clear()
    with pytest.raises(InvalidRequest, match=r"^cpp-\* runtime is unknown$"):
        asyncio.run(check_body(svc, body, present_except({"c++"})))
    assert asked == ["c++"]


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (RunResult(Status.OK, exit_code=0), (None, None, 0, None)),
        (
            RunResult(Status.RUNTIME_ERROR, exit_code=2),
            ("RE", "Exited with error status 2", 2, None),
        ),
        (
            RunResult(Status.RUNTIME_ERROR, exit_code=139, signal="SIGSEGV"),
            ("SG", "Caught fatal signal 11", None, "SIGSEGV"),
        ),
        (
            RunResult(Status.TIMEOUT, exit_code=137, timed_out=True, signal="SIGKILL"),
            ("TO", "Time limit exceeded (wall clock)", None, "SIGKILL"),
        ),
        (
            RunResult(Status.MEMORY_LIMIT, exit_code=137, oom_killed=True),
            ("SG", "Caught fatal signal 9", None, "SIGKILL"),
        ),
        (
            RunResult(
                Status.OUTPUT_LIMIT,
                stdout=b"y" * 8,
                stderr=b"e" * 9,
                output_truncated=True,
                over_stream=STDOUT,
            ),
            ("OL", "stdout length exceeded", None, "SIGKILL"),
        ),
        (
            RunResult(
                Status.OUTPUT_LIMIT,
                stdout=b"o" * 8,
                stderr=b"y" * 8,
                output_truncated=True,
                over_stream=STDERR,
            ),
            ("EL", "stderr length exceeded", None, "SIGKILL"),
        ),
        (RunResult.internal("the engine went away"), ("XX", "the engine went away", None, None)),
    ],
)
def test_each_status_is_pistons(result: RunResult, expected: tuple[Any, ...]) -> None:
    """Status letters, isolate's messages, `code` only for a program that exited, and
    SIGKILL for what was killed for a limit."""
    document = stage(result)
    assert (
        document["status"],
        document["message"],
        document["code"],
        document["signal"],
    ) == expected


def test_pistons_default_limits_are_clamped_to_a_lower_server_maximum_not_refused() -> None:
    """Piston's clients send compile_timeout 10000 and run_timeout 3000 whatever the server:
    on a server with --timeout 2 both run with 2 s; past Piston's own limit is refused."""
    svc = services(timeout=2)
    body = {
        "language": "c",
        "version": "*",
        "files": [{"content": "int main(void) { return 0; }"}],
        "compile_timeout": 10000,
        "run_timeout": 3000,
    }
    plan = planned(svc, body)
    assert plan.compile is not None
    assert (plan.compile.limits.timeout_s, plan.run.limits.timeout_s) == (2.0, 2.0)
    with pytest.raises(
        InvalidRequest, match=r"^compile_timeout cannot exceed the configured limit of 10000$"
    ):
        planned(svc, {**body, "compile_timeout": 10001})
