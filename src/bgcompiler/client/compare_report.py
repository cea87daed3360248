"""How `bg-compiler compare` shows its entries: a table side by side (times, source size,
verdicts), then their wall-time distributions as a terminal chart drawn with rich: one
row of bars per entry over a shared axis, so that shapes and shifts compare at a glance."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bgcompiler.api.jobs_schemas import JobOut
from bgcompiler.client.report import passed

COLOURS = ("blue", "magenta", "green", "dark_orange", "cyan", "red")
# Eighths of a cell, so that a bin's height shows within one text row.
BLOCKS = " ▁▂▃▄▅▆▇█"
MEDIAN_BAR = 24  # cells of the longest median bar


@dataclass(frozen=True, slots=True)
class Entry:
    """One compared program: its file name, language, source size and finished job."""

    name: str
    language: str
    size: int
    job: JobOut

    @property
    def walls(self) -> list[float]:
        runs = self.job.result.runs if self.job.result else []
        return [run.wall_ms for run in runs if run.wall_ms is not None]


def verdicts(job: JobOut) -> str:
    """How the runs ended: `4 accepted`, `1 accepted, 1 wrong_answer`, `3 ok`, or why none
    ran (`compile error`, the job's status)."""
    result = job.result
    if result is None:
        return job.status
    if result.compile is not None and result.compile.status != "ok":
        return f"compile {result.compile.status}"
    counted = Counter(
        run.verdict if run.status == "ok" and run.verdict else run.status for run in result.runs
    )
    return ", ".join(f"{count} {name}" for name, count in counted.items()) or "no runs"


def _ms(value: float | None) -> str:
    # Two decimals below 10 ms: short programs differ by tenths, which one decimal hides.
    if value is None:
        return "-"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def comparison_table(entries: list[Entry]) -> Table:
    table = Table(title="entries side by side (wall ms unless said)")
    table.add_column("entry")
    table.add_column("lang")
    for column in ("bytes", "runs", "min", "median", "p95", "stdev", "cpu med"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdicts", no_wrap=True)
    table.add_column("result", no_wrap=True)
    for index, entry in enumerate(entries):
        summary = entry.job.result.summary if entry.job.result else None
        wall = summary.wall_ms if summary else None
        cpu = summary.cpu_ms if summary else None
        ok = passed(entry.job)
        table.add_row(
            Text(entry.name, style=COLOURS[index % len(COLOURS)]),
            entry.language,
            str(entry.size),
            str(summary.runs if summary else 0),
            _ms(wall.min if wall else None),
            _ms(wall.median if wall else None),
            _ms(wall.p95 if wall else None),
            _ms(wall.stdev if wall else None),
            _ms(cpu.median if cpu else None),
            verdicts(entry.job),
            Text("passed" if ok else "failed", style="green" if ok else "red"),
        )
    return table


def histogram(values: list[float], low: float, high: float, bins: int) -> list[int]:
    """Counts of `values` in `bins` equal bins from `low` to `high` (the last bin closed)."""
    counts = [0] * bins
    span = high - low
    for value in values:
        slot = 0 if span <= 0 else int((value - low) / span * bins)
        counts[min(max(slot, 0), bins - 1)] += 1
    return counts


def bars(counts: list[int], tallest: int) -> str:
    """One character per bin, its height in eighths of the tallest bin of the chart."""
    return "".join(
        BLOCKS[0 if count == 0 else max(1, round(count / tallest * 8))] for count in counts
    )


def distribution_chart(entries: list[Entry], width: int) -> Table | None:
    """The entries' wall times over one shared axis, and a bar per median; None when no
    entry has a timed run."""
    every = [value for entry in entries for value in entry.walls]
    if not every:
        return None
    low, high = min(every), max(every)
    # About three bins per square root of the runs (few runs, few bins), within the width.
    bins = max(10, min(48, width - 60, 3 * round(len(every) ** 0.5)))
    counted = [histogram(entry.walls, low, high, bins) for entry in entries]
    tallest = max(max(counts) for counts in counted)
    medians = [entry.job.result.summary.wall_ms for entry in entries if entry.job.result]
    longest = max((stats.median for stats in medians if stats is not None), default=0.0)
    chart = Table(title="wall time distributions (ms)", box=None, pad_edge=False)
    chart.add_column("entry")
    chart.add_column(f"{bins} bins, shared axis", no_wrap=True)
    chart.add_column("median", no_wrap=True)
    for index, (entry, counts) in enumerate(zip(entries, counted, strict=True)):
        colour = COLOURS[index % len(COLOURS)]
        stats = entry.job.result.summary.wall_ms if entry.job.result else None
        median = Text("-")
        if stats is not None and longest > 0:
            cells = max(1, round(stats.median / longest * MEDIAN_BAR))
            median = Text("█" * cells, style=colour) + Text(f" {_ms(stats.median)}")
        chart.add_row(
            Text(entry.name, style=colour), Text(bars(counts, tallest), style=colour), median
        )
    left, right = _ms(low), _ms(high)
    chart.add_row("", left + " " * max(1, bins - len(left) - len(right)) + right, "")
    return chart


def show_comparison(console: Console, entries: list[Entry]) -> None:
    console.print(comparison_table(entries))
    chart = distribution_chart(entries, console.width)
    if chart is not None:
        console.print(chart)
    for entry in entries:
        verdict = "[green]passed[/]" if passed(entry.job) else "[red]failed[/]"
        console.print(f"{entry.name}: job {entry.job.id} {entry.job.status}, {verdict}")
