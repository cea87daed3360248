"""What a job came to: each run's result and verdict, and a summary of them all."""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from dataclasses import dataclass

from pydantic import TypeAdapter

from bgcompiler.core.plan import EXACT_JSON, Plan
from bgcompiler.models import RunResult, Status
from bgcompiler.stats import Stats, describe, outputs_match


class Verdict(enum.StrEnum):
    ACCEPTED = "accepted"
    WRONG_ANSWER = "wrong_answer"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One measured run: where it stands in the plan, its verdict, and its result."""

    index: int
    test: int | None
    repeat: int
    verdict: Verdict | None  # only for a run of a test that finished ok
    result: RunResult


@dataclass(frozen=True, slots=True)
class Summary:
    runs: int
    statuses: dict[str, int]
    tests: int
    accepted: int  # tests all of whose runs were accepted
    identical_outputs: bool  # every run of the same test printed the same stdout
    distinct_outputs: int  # distinct stdouts per test, summed over tests
    wall_ms: Stats | None
    cpu_ms: Stats | None
    memory_kb: Stats | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished job. `runs` are in plan order; a job that ended early (a failed compile,
    a cancel) has fewer of them than it planned."""

    __pydantic_config__ = EXACT_JSON

    compile: RunResult | None
    runs: tuple[RunRecord, ...]
    summary: Summary
    image_id: str
    cpuset: str | None  # the CPU a sequential job's runs were pinned to, if any


def judge(plan: Plan, test: int | None, result: RunResult) -> Verdict | None:
    """accepted / wrong_answer for a run of a test that finished ok; None otherwise."""
    if test is None or result.status is not Status.OK:
        return None
    match = outputs_match(result.stdout, plan.tests[test].expected, plan.compare)
    return Verdict.ACCEPTED if match else Verdict.WRONG_ANSWER


def summarize(plan: Plan, runs: tuple[RunRecord, ...]) -> Summary:
    """Counts per status, tests passed, output agreement and the figures' statistics."""
    outputs: dict[int | None, set[bytes]] = defaultdict(set)
    verdicts: dict[int, list[Verdict | None]] = defaultdict(list)
    for record in runs:
        outputs[record.test].add(record.result.stdout)
        if record.test is not None:
            verdicts[record.test].append(record.verdict)
    results = [record.result for record in runs]
    return Summary(
        runs=len(runs),
        statuses=dict(Counter(result.status.value for result in results)),
        tests=len(plan.tests),
        accepted=sum(
            1
            for test in range(len(plan.tests))
            if verdicts[test] and all(v is Verdict.ACCEPTED for v in verdicts[test])
        ),
        identical_outputs=all(len(seen) == 1 for seen in outputs.values()),
        distinct_outputs=sum(len(seen) for seen in outputs.values()),
        wall_ms=describe([r.wall_ms for r in results if r.wall_ms is not None]),
        cpu_ms=describe([r.cpu_ms for r in results if r.cpu_ms is not None]),
        memory_kb=describe([r.memory_kb for r in results if r.memory_kb is not None]),
    )


_OUTCOME = TypeAdapter(Outcome)


def outcome_to_json(outcome: Outcome) -> bytes:
    return _OUTCOME.dump_json(outcome)


def outcome_from_json(data: bytes | str) -> Outcome:
    return _OUTCOME.validate_json(data)
