"""`bg-compiler compare A B ...`: each file is an entry, run as its own job on the same input
(stdin or tests, count, warm-up), one entry after another so that they do not share the
machine while measured; then the entries side by side, their wall-time distributions as a
terminal chart, and with `--plot` an image. Exit statuses as `run`'s: 0 every entry done and
accepted, 1 otherwise, 4 no answer or a refused request (2: bad usage, or --plot without
matplotlib)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bgcompiler.api.jobs_schemas import JobRequest
from bgcompiler.client.cli_run import EXIT_FAILED, EXIT_NO_ANSWER, EXIT_OK, explain, follow
from bgcompiler.client.compare_report import Entry, show_comparison
from bgcompiler.client.errors import ClientError
from bgcompiler.client.inputs import (
    InputError,
    guess_language,
    read_tests,
    source_files,
    stdin_fields,
)
from bgcompiler.client.report import passed
from bgcompiler.client.sync import Client

EXIT_USAGE = 2


@dataclass(frozen=True, slots=True)
class CompareOptions:
    files: list[Path]
    languages: list[str]  # none: guessed per file; one: for every file; else one per file
    stdin: Path | None
    tests: Path | None
    count: int
    warmup: int
    server: str
    api_key: str | None
    as_json: bool
    plot: Path | None


def compare_files(options: CompareOptions) -> int:
    """The whole command; returns the exit status. Progress and errors go to stderr; stdout
    is the comparison (or, with --json, only the entries and their job documents)."""
    err = Console(stderr=True)
    if options.plot is not None:
        from bgcompiler.client.compare_plot import plotting_missing

        missing = plotting_missing()
        if missing:
            err.print(f"error: {missing}", style="red", markup=False, soft_wrap=True)
            return EXIT_USAGE
    try:
        entries = _run_entries(options, err)
    except (InputError, ClientError) as exc:
        err.print(f"error: {explain(exc)}", style="red", markup=False, soft_wrap=True)
        return EXIT_NO_ANSWER
    if options.as_json:
        _print_json(entries)
    else:
        show_comparison(Console(), entries)
    if options.plot is not None:
        from bgcompiler.client.compare_plot import write_plot

        write_plot(entries, options.plot)
        err.print(f"plot written to {options.plot}", markup=False, soft_wrap=True)
    return EXIT_OK if all(passed(entry.job) for entry in entries) else EXIT_FAILED


def _languages(options: CompareOptions, client: Client) -> list[str]:
    given = options.languages
    if len(given) == len(options.files) or (len(given) == 1 and len(options.files) > 1):
        return given * len(options.files) if len(given) == 1 else given
    if given:
        raise InputError(
            f"{len(given)} --language for {len(options.files)} files: give one for all, "
            "or one per file in order"
        )
    registry = client.languages()
    return [guess_language(path, registry) for path in options.files]


def _run_entries(options: CompareOptions, err: Console) -> list[Entry]:
    shared: dict[str, object] = {"count": options.count, "warmup": options.warmup}
    if options.stdin is not None:
        shared.update(stdin_fields(options.stdin))
    if options.tests is not None:
        shared["tests"] = read_tests(options.tests)
    entries = []
    with Client(options.server, api_key=options.api_key) as client:
        languages = _languages(options, client)
        # Every request is checked before the first is sent: a typo in the last entry
        # should not cost the runs of the others.
        requests = [
            _request(path, language, shared)
            for path, language in zip(options.files, languages, strict=True)
        ]
        for path, language, request in zip(options.files, languages, requests, strict=True):
            job = client.submit(request)
            document = follow(job, err, label=path.name)
            size = len(path.read_bytes())
            entries.append(Entry(path.name, language, size, document))
    return entries


def _request(path: Path, language: str, shared: dict[str, object]) -> JobRequest:
    fields = {"language": language, "files": source_files([path]), **shared}
    try:
        return JobRequest.model_validate(fields)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def _print_json(entries: list[Entry]) -> None:
    listed = [
        {
            "file": entry.name,
            "language": entry.language,
            "bytes": entry.size,
            "passed": passed(entry.job),
            "job": entry.job.model_dump(mode="json"),
        }
        for entry in entries
    ]
    sys.stdout.write(json.dumps({"entries": listed}, indent=2) + "\n")
