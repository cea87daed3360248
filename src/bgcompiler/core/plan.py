"""A job as data: what to run, how often, against which tests. Frozen, and exact through JSON."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from pydantic import ConfigDict, TypeAdapter

from bgcompiler.models import RunSpec, SandboxFile

# Bytes (files, stdin, expected output) travel as base64 in JSON: every byte survives.
EXACT_JSON = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")


class Compare(enum.StrEnum):
    """How a run's stdout is compared with a test's expected output."""

    EXACT = "exact"  # byte for byte
    TRIM = "trim"  # ignoring trailing whitespace of lines and trailing blank lines


@dataclass(frozen=True, slots=True)
class TestCase:
    stdin: bytes
    expected: bytes


@dataclass(frozen=True, slots=True)
class Planned:
    """One measured run of a plan: its place (index, test, repeat) and its standard input."""

    index: int
    test: int | None
    repeat: int
    stdin: bytes


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a job asks for, already resolved and clamped to the server's limits.

    `run` is the spec of every run (its stdin is the one used without tests); `compile`,
    when given, runs once first and its files replace `run.files` for every run.
    `sequential` runs everything on one worker, one after another; otherwise the measured
    runs are spread over the workers.
    """

    __pydantic_config__ = EXACT_JSON

    run: RunSpec
    compile: RunSpec | None = None
    tests: tuple[TestCase, ...] = ()
    compare: Compare = Compare.TRIM
    count: int = 1
    warmup: int = 0
    sequential: bool = True
    language: str | None = None  # provenance only

    @property
    def measured_runs(self) -> int:
        return self.count * max(1, len(self.tests))

    @property
    def total_runs(self) -> int:
        return self.measured_runs + self.warmup + (1 if self.compile is not None else 0)

    def measured(self) -> list[Planned]:
        """Every reported run, in order: test by test, repeat by repeat."""
        if not self.tests:
            return [Planned(k, None, k, self.run.stdin) for k in range(self.count)]
        return [
            Planned(t * self.count + k, t, k, test.stdin)
            for t, test in enumerate(self.tests)
            for k in range(self.count)
        ]

    @property
    def warmup_stdin(self) -> bytes:
        return self.tests[0].stdin if self.tests else self.run.stdin

    def run_spec(self, files: tuple[SandboxFile, ...], stdin: bytes) -> RunSpec:
        return dataclasses.replace(self.run, files=files, stdin=stdin)

    def to_json(self) -> bytes:
        return _PLAN.dump_json(self)

    @staticmethod
    def from_json(data: bytes | str) -> Plan:
        return _PLAN.validate_json(data)


_PLAN = TypeAdapter(Plan)
