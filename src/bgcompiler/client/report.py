"""How `bg-compiler run` shows a finished job: a table of runs, then the summary, and
whether it passed (the exit status)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from bgcompiler.api.jobs_schemas import JobOut
from bgcompiler.api.v1_schemas import RunResponse
from bgcompiler.stats import Stats


def passed(job: JobOut) -> bool:
    """Done, compiled, every run ok and every verdict accepted: what CI may rely on."""
    result = job.result
    if job.status != "done" or result is None:
        return False
    if result.compile is not None and result.compile.status != "ok":
        return False
    return all(run.status == "ok" and run.verdict in (None, "accepted") for run in result.runs)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def runs_table(result: RunResponse) -> Table:
    table = Table(title=f"runs of job {result.id}")
    for column in ("test", "repeat", "status", "verdict", "exit"):
        table.add_column(column)
    for column in ("wall ms", "cpu ms", "memory KB"):
        table.add_column(column, justify="right")
    for run in result.runs:
        status_style = "green" if run.status == "ok" else "red"
        verdict_style = "green" if run.verdict in (None, "accepted") else "red"
        table.add_row(
            "-" if run.test is None else str(run.test),
            str(run.repeat),
            f"[{status_style}]{run.status}[/]",
            f"[{verdict_style}]{run.verdict or '-'}[/]",
            "-" if run.exit_code is None else str(run.exit_code),
            _ms(run.wall_ms),
            _ms(run.cpu_ms),
            "-" if run.memory_kb is None else str(run.memory_kb),
        )
    return table


def summary_table(result: RunResponse) -> Table:
    summary = result.summary
    table = Table(title="summary")
    table.add_column("figure")
    for column in ("min", "median", "p95", "stdev"):
        table.add_column(column, justify="right")
    figures: tuple[tuple[str, Stats | None], ...] = (
        ("wall ms", summary.wall_ms),
        ("cpu ms", summary.cpu_ms),
        ("memory KB", summary.memory_kb),
    )
    for name, stats in figures:
        if stats is not None:
            table.add_row(name, _ms(stats.min), _ms(stats.median), _ms(stats.p95), _ms(stats.stdev))
    return table


def show(console: Console, job: JobOut) -> None:
    result = job.result
    if result is None:
        console.print(f"job {job.id} {job.status}: {job.error or 'no result'}", style="red")
        return
    if result.compile is not None and result.compile.status != "ok":
        console.print(f"compile {result.compile.status}:", style="red")
        console.print(result.compile.stderr or result.compile.stdout, markup=False)
    console.print(runs_table(result))
    console.print(summary_table(result))
    summary = result.summary
    statuses = ", ".join(f"{count} {status}" for status, count in summary.statuses.items())
    console.print(f"runs: {summary.runs} ({statuses or 'none'})")
    if summary.tests:
        console.print(f"tests accepted: {summary.accepted}/{summary.tests}")
    console.print(f"identical outputs: {'yes' if summary.identical_outputs else 'no'}")
    verdict = "[green]passed[/]" if passed(job) else "[red]failed[/]"
    console.print(f"job {job.id} {job.status}: {verdict}")
