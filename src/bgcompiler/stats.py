"""Summary statistics of a batch of runs, and output comparison for test-case verdicts."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stats:
    """The statistics of one figure over a job's runs (p95: linear interpolation between
    closest ranks; stdev: the sample's; cv: stdev / mean)."""

    min: float
    median: float
    mean: float
    p95: float
    max: float
    stdev: float
    cv: float  # stdev / mean


def describe(values: Sequence[float]) -> Stats | None:
    """min, median, mean, p95, max, stdev and cv of the values; None when there are none.

    p95 interpolates linearly between closest ranks (the "inclusive" method, as numpy's
    default); stdev is the sample standard deviation (0 for a single value); cv = stdev/mean.
    """
    if not values:
        return None
    data = sorted(float(v) for v in values)
    mean = statistics.fmean(data)
    stdev = statistics.stdev(data) if len(data) > 1 else 0.0
    p95 = statistics.quantiles(data, n=20, method="inclusive")[18] if len(data) > 1 else data[0]
    return Stats(
        min=data[0],
        median=round(statistics.median(data), 6),
        mean=round(mean, 6),
        p95=round(p95, 6),
        max=data[-1],
        stdev=round(stdev, 6),
        cv=round(stdev / mean, 6) if mean else 0.0,
    )


def trimmed(text: bytes) -> list[bytes]:
    """Lines without trailing whitespace, without trailing blank lines."""
    lines = [line.rstrip() for line in text.split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_match(actual: bytes, expected: bytes, mode: str) -> bool:
    """`exact`: byte for byte. `trim`: ignoring trailing whitespace and trailing blank lines."""
    if mode == "exact":
        return actual == expected
    return trimmed(actual) == trimmed(expected)
