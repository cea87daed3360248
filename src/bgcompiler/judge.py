"""A v1 request as work for the scheduler: compile once, warm up, run each test `count`
times, then judge and summarize. No HTTP and no Docker here: only RunSpecs in, results out."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from bgcompiler.models import Limits, RunResult, RunSpec, SandboxFile, Status
from bgcompiler.sandbox.payload import files_from_tar
from bgcompiler.scheduler import RunOnce
from bgcompiler.stats import describe, outputs_match


@dataclass(frozen=True, slots=True)
class Test:
    stdin: bytes
    expected: bytes


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a v1 request asks for, resolved against the registry and the limits."""

    image: str
    run_command: str
    files: tuple[SandboxFile, ...]
    stdin: bytes
    limits: Limits
    compile_limits: Limits
    runtime: str | None
    compile_command: str | None = None
    tests: tuple[Test, ...] = ()
    compare: str = "trim"
    count: int = 1
    warmup: int = 0

    @property
    def measured_runs(self) -> int:
        return self.count * max(1, len(self.tests))

    @property
    def total_runs(self) -> int:
        return self.measured_runs + self.warmup + (1 if self.compile_command else 0)

    def run_spec(
        self, files: tuple[SandboxFile, ...], stdin: bytes, *, quiet: bool = True
    ) -> RunSpec:
        return RunSpec(
            self.image, self.run_command, files, stdin, self.limits, self.runtime, quiet=quiet
        )

    def compile_spec(self) -> RunSpec:
        assert self.compile_command is not None
        return RunSpec(
            self.image,
            self.compile_command,
            self.files,
            b"",
            self.compile_limits,
            self.runtime,
            artifacts=True,
        )

    def measured(self) -> list[tuple[int | None, int, bytes]]:
        """(test index, repeat index, stdin) of every reported run, in order."""
        if not self.tests:
            return [(None, k, self.stdin) for k in range(self.count)]
        return [(t, k, test.stdin) for t, test in enumerate(self.tests) for k in range(self.count)]

    @property
    def warmup_stdin(self) -> bytes:
        return self.tests[0].stdin if self.tests else self.stdin


@dataclass(frozen=True, slots=True)
class Compiled:
    """The compile stage's result, and the files the runs get (None: compile failed)."""

    result: RunResult | None
    files: tuple[SandboxFile, ...] | None


async def compile_and_warm_up(plan: Plan, run: RunOnce) -> Compiled:
    """The compile stage (if any), then the warm-up runs (if the compile succeeded)."""
    compiled = Compiled(None, plan.files)
    if plan.compile_command:
        result = await run(plan.compile_spec())
        files = None
        if result.status is Status.OK and result.artifacts is not None:
            files = files_from_tar(result.artifacts)
        compiled = Compiled(dataclasses.replace(result, artifacts=None), files)
    if compiled.files is not None:
        for _ in range(plan.warmup):
            await run(plan.run_spec(compiled.files, plan.warmup_stdin))
    return compiled


async def run_all(plan: Plan, run: RunOnce) -> tuple[Compiled, list[RunResult]]:
    """The whole request on one worker, one run after another."""
    compiled = await compile_and_warm_up(plan, run)
    if compiled.files is None:
        return compiled, []
    results = [await run(plan.run_spec(compiled.files, stdin)) for _, _, stdin in plan.measured()]
    return compiled, results


def verdict(plan: Plan, test: int | None, result: RunResult) -> str | None:
    """accepted / wrong_answer for a run of a test that finished ok; None otherwise."""
    if test is None or result.status is not Status.OK:
        return None
    match = outputs_match(result.stdout, plan.tests[test].expected, plan.compare)
    return "accepted" if match else "wrong_answer"


def summarize(plan: Plan, results: list[RunResult]) -> dict[str, Any]:
    """Counts per status, tests passed, output agreement and the figures' statistics."""
    order = plan.measured()[: len(results)]
    outputs: dict[int | None, set[bytes]] = defaultdict(set)
    verdicts: dict[int, list[str | None]] = defaultdict(list)
    for (test, _, _), result in zip(order, results, strict=True):
        outputs[test].add(result.stdout)
        if test is not None:
            verdicts[test].append(verdict(plan, test, result))
    return {
        "runs": len(results),
        "statuses": dict(Counter(result.status.value for result in results)),
        "tests": len(plan.tests),
        "accepted": sum(
            1
            for test in range(len(plan.tests))
            if verdicts[test] and all(v == "accepted" for v in verdicts[test])
        ),
        "identical_outputs": all(len(seen) == 1 for seen in outputs.values()),
        "distinct_outputs": sum(len(seen) for seen in outputs.values()),
        "wall_ms": describe([r.wall_ms for r in results if r.wall_ms is not None]),
        "cpu_ms": describe([r.cpu_ms for r in results if r.cpu_ms is not None]),
        "memory_kb": describe([r.memory_kb for r in results if r.memory_kb is not None]),
    }
