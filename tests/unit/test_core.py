"""The core: plans as exact data, execution as typed events, the typed outcome."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

import pytest

from bgcompiler.core.events import (
    CompileFinished,
    Event,
    JobFinished,
    JobStarted,
    RunFinished,
    event_from_json,
    event_to_json,
)
from bgcompiler.core.execute import execute
from bgcompiler.core.outcome import Verdict
from bgcompiler.core.plan import Compare, Plan
from bgcompiler.core.plan import TestCase as Case  # not a pytest class
from bgcompiler.models import RunResult, RunSpec, SandboxFile, Status
from bgcompiler.sandbox.fake import FakeSandbox
from tests.unit.conftest import spec

EVERY_BYTE = bytes(range(256))


class FakeRunner:
    """A node's loan to a job, over the fake sandbox: runs in order, spread in reverse."""

    cpuset = "1"

    def __init__(self, sandbox: FakeSandbox) -> None:
        self.sandbox = sandbox

    async def check_image(self, image: str) -> str:
        return await self.sandbox.check_image(image)

    async def run(self, spec: RunSpec) -> RunResult:
        return await self.sandbox.run(spec)

    async def spread(self, specs: Sequence[RunSpec]) -> AsyncIterator[tuple[int, RunResult]]:
        for index in reversed(range(len(specs))):  # finishing out of order
            yield index, await self.sandbox.run(specs[index])


async def events_of(plan: Plan, sandbox: FakeSandbox | None = None) -> list[Event]:
    runner = FakeRunner(sandbox or FakeSandbox())
    return [event async for event in execute(plan, runner)]


def test_a_plan_round_trips_through_json_exactly() -> None:
    """Every field, bytes included (invalid UTF-8, NUL), comes back equal."""
    run = dataclasses.replace(
        spec("stdin"),
        files=(SandboxFile("a.bin", EVERY_BYTE, executable=True), SandboxFile("d/b", b"")),
        stdin=b"\x00\xff\xfe",
        cpuset=None,
        quiet=True,
    )
    plan = Plan(
        run=run,
        compile=dataclasses.replace(run, command="make", artifacts=True, stdin=b""),
        tests=(Case(b"1 2\n", b"3\xff"), Case(b"", b"")),
        compare=Compare.EXACT,
        count=3,
        warmup=2,
        sequential=False,
        language="c",
    )
    assert Plan.from_json(plan.to_json()) == plan
    assert Plan.from_json(plan.to_json().decode()) == plan


async def test_execution_emits_compile_each_run_then_done() -> None:
    """Compile once (its files go to every run), warm-ups unreported, each test `count`
    times with a verdict, then the outcome: in this order."""
    plan = Plan(
        run=spec("files; stdin"),
        compile=dataclasses.replace(spec("make built"), artifacts=True),
        tests=(Case(b"1", b"main.c made\n1"), Case(b"2", b"wrong")),
        count=2,
        warmup=1,
    )
    plan = dataclasses.replace(
        plan, run=dataclasses.replace(plan.run, files=(SandboxFile("main.c", b"int"),))
    )
    plan = dataclasses.replace(
        plan, compile=dataclasses.replace(plan.compile, files=plan.run.files)
    )  # type: ignore[arg-type]
    fake = FakeSandbox()
    events = await events_of(plan, fake)
    assert [type(e) for e in events] == [JobStarted, CompileFinished] + [RunFinished] * 4 + [
        JobFinished
    ]
    assert len(fake.started) == 1 + 1 + 4  # compile, warm-up, measured
    runs = [e.record for e in events if isinstance(e, RunFinished)]
    assert [(r.test, r.repeat) for r in runs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert runs[0].result.stdout == b"main.c made\n1"
    assert [r.verdict for r in runs] == [Verdict.ACCEPTED] * 2 + [Verdict.WRONG_ANSWER] * 2
    done = events[-1]
    assert isinstance(done, JobFinished)
    outcome = done.outcome
    assert outcome.compile is not None
    assert outcome.compile.artifacts is None  # handed on, never reported
    assert outcome.summary.runs == 4
    assert outcome.summary.accepted == 1
    assert outcome.summary.statuses == {"ok": 4}
    assert outcome.image_id == "sha256:fake-fake/image"
    assert outcome.cpuset == "1"


async def test_a_failed_compile_ends_the_job_without_runs() -> None:
    """A compile that fails: its result, no runs, an outcome with an empty summary."""
    plan = Plan(run=spec("echo never"), compile=dataclasses.replace(spec("exit 2"), artifacts=True))
    events = await events_of(plan)
    assert [type(e) for e in events] == [JobStarted, CompileFinished, JobFinished]
    done = events[-1]
    assert isinstance(done, JobFinished)
    assert done.outcome.compile is not None
    assert done.outcome.compile.status is Status.RUNTIME_ERROR
    assert done.outcome.runs == ()
    assert done.outcome.summary.runs == 0


async def test_spread_runs_are_reported_as_they_finish_and_the_outcome_is_in_order() -> None:
    """Spread: RunFinished events in finishing order; the outcome's runs in plan order."""
    plan = Plan(run=spec("stdin"), tests=(Case(b"a", b"a"), Case(b"b", b"b")), count=2)
    plan = dataclasses.replace(plan, sequential=False)
    events = await events_of(plan)
    finished = [e.record.index for e in events if isinstance(e, RunFinished)]
    assert finished == [3, 2, 1, 0]
    done = events[-1]
    assert isinstance(done, JobFinished)
    assert [r.index for r in done.outcome.runs] == [0, 1, 2, 3]
    assert done.outcome.cpuset is None


async def test_events_round_trip_through_json_exactly() -> None:
    """Each event, its bytes (invalid UTF-8 output) included, survives JSON."""
    plan = Plan(run=dataclasses.replace(spec("stdin"), stdin=b"\xff\x00out"), count=2)
    plan = dataclasses.replace(plan, compile=dataclasses.replace(spec("echo ok"), artifacts=True))
    for event in await events_of(plan):
        assert event_from_json(event_to_json(event)) == event


async def test_a_vanished_image_fails_the_execution() -> None:
    """The image is checked when the job starts: gone, the job fails before any run."""
    from bgcompiler.errors import ImageNotFound

    plan = Plan(run=dataclasses.replace(spec("echo"), image="gone/image"))
    fake = FakeSandbox()
    with pytest.raises(ImageNotFound):
        await events_of(plan, fake)
    assert fake.started == []
