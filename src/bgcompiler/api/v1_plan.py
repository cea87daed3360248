"""A v1 request as a plan: resolved against the language registry and the server's limits."""

from __future__ import annotations

import dataclasses
import shlex

from bgcompiler.api.v1_schemas import LimitsIn, RunRequest
from bgcompiler.core.plan import Compare, Plan, TestCase
from bgcompiler.errors import InvalidRequest
from bgcompiler.languages import Language
from bgcompiler.models import Limits, RunSpec, SandboxFile
from bgcompiler.services import Services


def v1_plan(svc: Services, body: RunRequest) -> Plan:
    """The plan of a v1 body; 422 naming the field for what the server cannot do."""
    language = _language(svc, body.language)
    if body.files is not None:
        files = tuple(SandboxFile(f.name, f.data(), f.executable) for f in body.files)
    else:
        assert body.script is not None
        name = language.file if language else "main"
        files = (SandboxFile(name, body.script.encode("utf-8")),)
    entry = files[0].name
    if language is not None:
        image, run_template = language.image, language.run
        compile_template = language.compile if body.compile is None else body.compile
    else:
        assert body.image is not None
        assert body.run is not None
        image, run_template = body.image, body.run
        compile_template = body.compile if isinstance(body.compile, str) else None
    if compile_template is True:
        raise InvalidRequest("`compile: true` needs a language with a compile command", "compile")
    run_command = _with_file(run_template, entry)
    if body.args:
        run_command += " " + " ".join(shlex.quote(arg) for arg in body.args)
    run = RunSpec(
        image=image,
        command=run_command,
        files=files,
        stdin=body.stdin_bytes(),
        limits=_limits(body.limits, svc.default_limits),
        runtime=svc.settings.runtime_name,
        # Sequential runs are for comparing timings: each waits for our background engine
        # work to finish first. Spread runs are for throughput: they do not wait.
        quiet=body.sequential,
    )
    compile_spec = None
    if compile_template:
        compile_spec = dataclasses.replace(
            run,
            command=_with_file(compile_template, entry),
            stdin=b"",
            limits=svc.default_limits,
            artifacts=True,
            quiet=False,
        )
    plan = Plan(
        run=run,
        compile=compile_spec,
        tests=tuple(
            TestCase(t.stdin.encode("utf-8"), t.expected_output.encode("utf-8"))
            for t in body.tests or []
        ),
        compare=Compare(body.compare),
        count=body.count,
        warmup=body.warmup,
        sequential=body.sequential,
        language=language.name if language else None,
    )
    if plan.total_runs > svc.settings.max_count:
        raise InvalidRequest(
            f"this request needs {plan.total_runs} runs (compile + warmup + count x tests); "
            f"at most {svc.settings.max_count} (--max-count)",
            "count",
        )
    return plan


def _language(svc: Services, name: str | None) -> Language | None:
    if name is None:
        return None
    found = svc.languages.get(name)
    if found is None:
        known = ", ".join(sorted(svc.languages))
        raise InvalidRequest(f"unknown language {name!r}; known: {known}", "language")
    return found


def _with_file(template: str, entry: str) -> str:
    """A registry command with `{file}` replaced by the (shell-quoted) entry file."""
    return template.replace("{file}", shlex.quote(entry))


def _limits(asked: LimitsIn, server: Limits) -> Limits:
    """The request's limits, each at most the server's (422 naming the field otherwise)."""

    def at_most(field: str, value: float | None, maximum: float, unit: str) -> None:
        if value is not None and value > maximum:
            raise InvalidRequest(
                f"limits.{field} must be at most {maximum:g} {unit} (the server's maximum)",
                f"limits.{field}",
            )

    server_time_ms = server.timeout_s * 1000
    at_most("time_ms", asked.time_ms, server_time_ms, "ms")
    at_most("memory_mb", asked.memory_mb, server.memory_mb, "MB")
    at_most("output_kb", asked.output_kb, server.output_bytes // 1024, "KB")
    at_most("pids", asked.pids, server.pids, "")
    at_most("cpus", asked.cpus, server.cpus, "CPUs")
    return Limits(
        timeout_s=asked.time_ms / 1000 if asked.time_ms else server.timeout_s,
        memory_mb=asked.memory_mb or server.memory_mb,
        cpu_shares=server.cpu_shares,
        cpus=float(asked.cpus) if asked.cpus else server.cpus,
        output_bytes=asked.output_kb * 1024 if asked.output_kb else server.output_bytes,
        pids=asked.pids or server.pids,
        disk_mb=server.disk_mb,
    )
