"""`bg-compiler run`: submit the files as a job, show its progress from the event stream,
then its runs and summary. Exit status: 0 all ran ok and were accepted, 1 otherwise, 4 the
server could not be reached or refused the request (2 is click's, for bad usage)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bgcompiler.api.jobs_schemas import JobEventOut, JobOut, JobRequest
from bgcompiler.client.errors import ApiError, ClientError, ServiceUnavailable
from bgcompiler.client.inputs import (
    InputError,
    guess_language,
    read_tests,
    source_files,
    stdin_fields,
)
from bgcompiler.client.report import passed, show
from bgcompiler.client.sync import Client, Job

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NO_ANSWER = 4


@dataclass(frozen=True, slots=True)
class RunOptions:
    files: list[Path]
    language: str | None
    stdin: Path | None
    tests: Path | None
    count: int
    warmup: int
    server: str
    api_key: str | None
    as_json: bool


def run_files(options: RunOptions) -> int:
    """The whole command; returns the exit status. Progress and errors go to stderr, so
    that stdout is the report (or, with --json, only the job document)."""
    err = Console(stderr=True)
    try:
        with Client(options.server, api_key=options.api_key) as client:
            job = client.submit(_request(client, options))
            document = follow(job, err)
    except (InputError, ClientError) as exc:
        err.print(f"error: {explain(exc)}", style="red", markup=False, soft_wrap=True)
        return EXIT_NO_ANSWER
    if options.as_json:
        sys.stdout.write(document.model_dump_json(indent=2) + "\n")
    else:
        show(Console(), document)
    return EXIT_OK if passed(document) else EXIT_FAILED


def explain(exc: InputError | ClientError) -> str:
    """What went wrong, for a person: the server's refusal with its code and field, a busy
    server's last Retry-After, or the client's own message."""
    if isinstance(exc, ServiceUnavailable):
        return (
            f"the server is busy ({exc.code}: {exc.message}); it asked to retry after "
            f"{exc.retry_after:g} s, and the retries are spent"
        )
    if isinstance(exc, ApiError):
        field = f" (field {exc.field})" if exc.field else ""
        return f"the server refused the request: {exc.status} {exc.code}{field}: {exc.message}"
    return str(exc)


def _request(client: Client, options: RunOptions) -> JobRequest:
    language = options.language or guess_language(options.files[0], client.languages())
    fields: dict[str, object] = {
        "language": language,
        "files": source_files(options.files),
        "count": options.count,
        "warmup": options.warmup,
    }
    if options.stdin is not None:
        fields.update(stdin_fields(options.stdin))
    if options.tests is not None:
        fields["tests"] = read_tests(options.tests)
    try:
        return JobRequest.model_validate(fields)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def follow(job: Job, err: Console, label: str | None = None) -> JobOut:
    """A bar fed by the job's events; off a terminal (a CI log), a line per finished run
    instead of a bar redrawn in place. `label` names the job in both (its id otherwise)."""
    name = label or f"job {job.id}"
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    total = job.document.runs_total
    with Progress(*columns, console=err, transient=err.is_terminal) as progress:
        task = progress.add_task(f"{name} queued", total=total)
        for event in job.events():
            if isinstance(event.data, JobOut):
                break
            progress.update(task, description=_describe(name, event.kind, event.data))
            if event.kind == "run" and event.data.run is not None:
                progress.advance(task)
                if not err.is_terminal:
                    run = event.data.run
                    done = int(progress.tasks[0].completed)
                    progress.print(
                        f"{'' if label is None else label + ' '}run {done}/{total}: {run.status}"
                        f"{' ' + run.verdict if run.verdict else ''} {run.wall_ms or 0:.1f} ms",
                        markup=False,
                    )
    return job.document if job.document.status in ("done", "cancelled", "failed") else job.wait()


def _describe(name: str, kind: str, data: JobEventOut) -> str:
    if kind == "compile" and data.compile is not None:
        return f"{name} compiled: {data.compile.status}"
    return f"{name} running"
