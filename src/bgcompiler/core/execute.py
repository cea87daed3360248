"""Executing a plan: compile once, warm up, run each test `count` times, judge, summarize.

Nothing here knows of HTTP, of a store, or of which API asked: it is given a `Runner` (what
the node that executes the job lends it) and yields typed events as things happen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from bgcompiler.core.events import CompileFinished, Event, JobFinished, JobStarted, RunFinished
from bgcompiler.core.outcome import Outcome, RunRecord, judge, summarize
from bgcompiler.core.plan import Plan
from bgcompiler.errors import SandboxError
from bgcompiler.models import RunResult, RunSpec, SandboxFile, Status
from bgcompiler.sandbox.payload import files_from_tar


class Runner(Protocol):
    """What a node lends a job while it executes it."""

    @property
    def cpuset(self) -> str | None:
        """The CPU this job's own runs are pinned to, if any."""

    async def check_image(self, image: str) -> str:
        """The image's id; raises ImageNotFound when it is gone."""

    async def run(self, spec: RunSpec) -> RunResult:
        """One run, on this job's worker."""

    def spread(self, specs: Sequence[RunSpec]) -> AsyncIterator[tuple[int, RunResult]]:
        """The runs spread over the node's workers: (index, result) as each finishes."""


async def execute(plan: Plan, runner: Runner) -> AsyncIterator[Event]:
    """Runs the plan; yields JobStarted, CompileFinished, a RunFinished per measured run (in
    the order they finish), then JobFinished with the outcome."""
    image_id = await runner.check_image(plan.run.image)
    yield JobStarted(image_id)
    compiled: RunResult | None = None
    files: tuple[SandboxFile, ...] | None = plan.run.files
    if plan.compile is not None:
        compiled, files = _handed_on(await runner.run(plan.compile))
        yield CompileFinished(compiled)
    records: dict[int, RunRecord] = {}
    if files is not None:
        for _ in range(plan.warmup):
            await runner.run(plan.run_spec(files, plan.warmup_stdin))
        planned = plan.measured()
        specs = [plan.run_spec(files, p.stdin) for p in planned]
        results = _sequentially(runner, specs) if plan.sequential else runner.spread(specs)
        async for index, result in results:
            where = planned[index]
            verdict = judge(plan, where.test, result)
            record = RunRecord(where.index, where.test, where.repeat, verdict, result)
            records[index] = record
            yield RunFinished(record)
    runs = tuple(records[index] for index in sorted(records))
    cpuset = runner.cpuset if plan.sequential else None
    yield JobFinished(Outcome(compiled, runs, summarize(plan, runs), image_id, cpuset))


async def _sequentially(
    runner: Runner, specs: Sequence[RunSpec]
) -> AsyncIterator[tuple[int, RunResult]]:
    for index, spec in enumerate(specs):
        yield index, await runner.run(spec)


def _handed_on(result: RunResult) -> tuple[RunResult, tuple[SandboxFile, ...] | None]:
    """The compile stage's reported result, and the files its runs get (None: no runs)."""
    reported = dataclasses.replace(result, artifacts=None)
    if result.status is not Status.OK or result.artifacts is None:
        return reported, None
    try:
        return reported, files_from_tar(result.artifacts)
    except SandboxError as exc:
        failed = RunResult.internal(exc.message, stdout=result.stdout, stderr=result.stderr)
        return failed, None
