"""A Judge0 submission: checked as Judge0 CE 1.13.1 checks it (its order, its messages, its
casts), stored as it was asked, and turned into the core's plan.

Judge0's limits are its configuration's, here at most this server's: `config_of` is what
GET /config_info shows and what the checks compare with.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import stat
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from bgcompiler.api.judge0_wire import ruby_unbase64, sanitized
from bgcompiler.core.plan import EXACT_JSON, Plan
from bgcompiler.errors import InvalidRequest
from bgcompiler.languages import Language
from bgcompiler.models import Limits, RunSpec, SandboxFile
from bgcompiler.sandbox.payload import check_file_name
from bgcompiler.services import Services

MIN_MEMORY_MB = 6  # the engine refuses less
MAX_ZIP_FILES = 1000  # additional_files: at most this many entries
MAX_EXTRACT_KB = 10240  # ... and this much unpacked (Judge0's max_extract_size)


class Judge0Invalid(Exception):
    """Judge0's 422: `{attribute: [message, ...]}` in the order the checks ran."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Judge0Config:
    """Judge0's configuration as this server has it (its defaults, at most our maximums)."""

    cpu_time_limit: float
    max_cpu_time_limit: float
    wall_time_limit: float
    max_wall_time_limit: float
    memory_limit: int
    max_memory_limit: int
    max_processes_and_or_threads: int
    max_max_processes_and_or_threads: int
    max_queue_size: int
    enable_callbacks: bool
    cpu_extra_time: float = 1.0
    max_cpu_extra_time: float = 5.0
    stack_limit: int = 64000
    max_stack_limit: int = 128000
    max_file_size: int = 1024
    max_max_file_size: int = 4096
    number_of_runs: int = 1
    max_number_of_runs: int = 20
    max_extract_size: int = MAX_EXTRACT_KB
    max_submission_batch_size: int = 20

    def info(self) -> dict[str, Any]:
        """GET /config_info: every key Judge0 has, in its order, with our values."""
        return {
            "maintenance_mode": False,
            "enable_wait_result": True,
            "enable_compiler_options": True,
            "allowed_languages_for_compile_options": [],
            "enable_command_line_arguments": True,
            "enable_submission_delete": False,
            "enable_callbacks": self.enable_callbacks,
            "callbacks_max_tries": 3,
            "callbacks_timeout": 5.0,
            "enable_additional_files": True,
            "max_queue_size": self.max_queue_size,
            "cpu_time_limit": self.cpu_time_limit,
            "max_cpu_time_limit": self.max_cpu_time_limit,
            "cpu_extra_time": self.cpu_extra_time,
            "max_cpu_extra_time": self.max_cpu_extra_time,
            "wall_time_limit": self.wall_time_limit,
            "max_wall_time_limit": self.max_wall_time_limit,
            "memory_limit": self.memory_limit,
            "max_memory_limit": self.max_memory_limit,
            "stack_limit": self.stack_limit,
            "max_stack_limit": self.max_stack_limit,
            "max_processes_and_or_threads": self.max_processes_and_or_threads,
            "max_max_processes_and_or_threads": self.max_max_processes_and_or_threads,
            "enable_per_process_and_thread_time_limit": False,
            "allow_enable_per_process_and_thread_time_limit": False,
            "enable_per_process_and_thread_memory_limit": False,
            "allow_enable_per_process_and_thread_memory_limit": False,
            "max_file_size": self.max_file_size,
            "max_max_file_size": self.max_max_file_size,
            "number_of_runs": self.number_of_runs,
            "max_number_of_runs": self.max_number_of_runs,
            "redirect_stderr_to_stdout": False,
            "max_extract_size": self.max_extract_size,
            "enable_batched_submissions": True,
            "max_submission_batch_size": self.max_submission_batch_size,
            "submission_cache_duration": 0.0,
            "use_docs_as_homepage": False,
            "allow_enable_network": False,
            "enable_network": False,
        }


def config_of(svc: Services, *, callbacks: bool) -> Judge0Config:
    server = svc.default_limits
    max_memory_kb = min(512000, server.memory_mb * 1024)
    max_processes = min(120, server.pids)
    return Judge0Config(
        cpu_time_limit=min(5.0, server.timeout_s),
        max_cpu_time_limit=min(15.0, server.timeout_s),
        wall_time_limit=min(10.0, server.timeout_s),
        max_wall_time_limit=min(20.0, server.timeout_s),
        memory_limit=min(128000, max_memory_kb),
        max_memory_limit=max_memory_kb,
        max_processes_and_or_threads=min(60, max_processes),
        max_max_processes_and_or_threads=max_processes,
        max_queue_size=svc.settings.backlog,
        enable_callbacks=callbacks,
    )


@dataclass(frozen=True, slots=True)
class Submission:
    """A submission as it was asked (after Judge0's defaults): what its answers show."""

    __pydantic_config__ = EXACT_JSON

    language_id: int
    source_code: bytes | None
    stdin: bytes | None
    expected_output: bytes | None
    number_of_runs: int
    cpu_time_limit: float
    cpu_extra_time: float
    wall_time_limit: float
    memory_limit: int
    stack_limit: int
    max_processes_and_or_threads: int
    enable_per_process_and_thread_time_limit: bool
    enable_per_process_and_thread_memory_limit: bool
    max_file_size: int
    compiler_options: str | None
    command_line_arguments: str | None
    redirect_stderr_to_stdout: bool
    callback_url: str | None
    additional_files: bytes | None
    enable_network: bool

    def to_json(self) -> bytes:
        return _SUBMISSION.dump_json(self)

    @staticmethod
    def from_json(data: bytes) -> Submission:
        return _SUBMISSION.validate_json(data)


_SUBMISSION = TypeAdapter(Submission)

_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"\s*[+-]?([0-9][0-9_]*)?(\.[0-9]+)?([eE][+-]?[0-9]+)?\s*")
_FALSE = (False, 0, "0", "f", "F", "false", "FALSE", "off", "OFF")
_TEXTS = ("source_code", "stdin", "expected_output")


def judge0_languages(languages: Mapping[str, Language]) -> dict[int, Language]:
    """Judge0's ids of the registry's languages."""
    return {
        judge0_id: language
        for language in languages.values()
        if language.judge0 is not None
        for judge0_id in language.judge0.ids
    }


def requested_language(raw: Any, known: Mapping[int, Language]) -> Language | None:
    """The language a body asks for, read as `check_submission` reads it (None: none)."""
    language_id = _integer(raw.get("language_id")) if isinstance(raw, dict) else None
    return known.get(language_id) if language_id is not None else None


def check_submission(
    raw: Any, *, base64_encoded: bool, config: Judge0Config, known: Mapping[int, Language]
) -> Submission:
    """The submission, or Judge0Invalid with Judge0's messages in Judge0's order."""
    body: dict[str, Any] = raw if isinstance(raw, dict) else {}
    # Judge0 permits scalars only: an array or an object is as if absent.
    given = {
        key: value
        for key, value in body.items()
        if value is None or isinstance(value, str | int | float | bool)
    }
    errors: dict[str, list[str]] = {}

    def fail(attribute: str, message: str) -> None:
        errors.setdefault(attribute, []).append(message)

    texts = {name: _text(given.get(name)) for name in _TEXTS}
    if base64_encoded:
        texts = {name: _decoded(value) for name, value in texts.items()}
    source = texts["source_code"]
    if source is None or not source.strip():
        fail("source_code", "can't be blank")
    language_raw = given.get("language_id")
    language_id = _integer(language_raw)
    if language_id is None:
        fail("language_id", "can't be blank")

    def number(name: str, default: float, low: tuple[str, float], high: float) -> float:
        value = given.get(name)
        if value is None or value == "":
            return default
        parsed = _number(value)
        if parsed is None:
            fail(name, "is not a number")
            return default
        relation, bound = low
        if relation == ">" and not parsed > bound:
            fail(name, f"must be greater than {_count(bound)}")
        elif relation == ">=" and not parsed >= bound:
            fail(name, f"must be greater than or equal to {_count(bound)}")
        elif not parsed <= high:
            fail(name, f"must be less than or equal to {_count(high)}")
        return parsed

    runs = number("number_of_runs", config.number_of_runs, (">", 0), config.max_number_of_runs)
    cpu = number("cpu_time_limit", config.cpu_time_limit, (">=", 0), config.max_cpu_time_limit)
    extra = number("cpu_extra_time", config.cpu_extra_time, (">=", 0), config.max_cpu_extra_time)
    wall = number("wall_time_limit", config.wall_time_limit, (">=", 1), config.max_wall_time_limit)
    memory = number("memory_limit", config.memory_limit, (">=", 2048), config.max_memory_limit)
    stack = number("stack_limit", config.stack_limit, (">=", 0), config.max_stack_limit)
    processes = number(
        "max_processes_and_or_threads",
        config.max_processes_and_or_threads,
        (">", 0),
        config.max_max_processes_and_or_threads,
    )
    per_process_time = _boolean(given.get("enable_per_process_and_thread_time_limit"))
    if per_process_time:
        fail("enable_per_process_and_thread_time_limit", "this option cannot be enabled")
    per_process_memory = _boolean(given.get("enable_per_process_and_thread_memory_limit"))
    if per_process_memory:
        fail("enable_per_process_and_thread_memory_limit", "this option cannot be enabled")
    file_size = number("max_file_size", config.max_file_size, (">=", 0), config.max_max_file_size)
    options = _text_str(given.get("compiler_options"))
    arguments = _text_str(given.get("command_line_arguments"))
    for name, value in (("compiler_options", options), ("command_line_arguments", arguments)):
        if value is not None and len(value) > 512:
            fail(name, "is too long (maximum is 512 characters)")
    language = known.get(language_id) if language_id is not None else None
    if language is None:
        shown = "" if language_id is None else str(language_id)
        fail("language_id", f"language with id {shown} doesn't exist")
    if options and options.strip() and language is not None and language.compile is None:
        fail("compiler_options", "setting compiler options is only allowed for compiled languages")
    callback_url = _text_str(given.get("callback_url"))
    if callback_url and callback_url.strip() and not config.enable_callbacks:
        fail("callback_url", "setting callback is not allowed")
    additional = given.get("additional_files")
    additional_files = ruby_unbase64(str(additional)) if additional not in (None, "") else None
    network = _boolean(given.get("enable_network"))
    if network:
        fail("enable_network", "enabling network is not allowed")
    if errors:
        raise Judge0Invalid(errors)
    assert language_id is not None
    return Submission(
        language_id=language_id,
        source_code=source,
        stdin=texts["stdin"],
        expected_output=texts["expected_output"],
        number_of_runs=int(runs),
        cpu_time_limit=float(cpu),
        cpu_extra_time=float(extra),
        wall_time_limit=float(wall),
        memory_limit=int(memory),
        stack_limit=int(stack),
        max_processes_and_or_threads=int(processes),
        enable_per_process_and_thread_time_limit=bool(per_process_time),
        enable_per_process_and_thread_memory_limit=bool(per_process_memory),
        max_file_size=int(file_size),
        compiler_options=options,
        command_line_arguments=arguments,
        redirect_stderr_to_stdout=bool(_boolean(given.get("redirect_stderr_to_stdout"))),
        callback_url=callback_url,
        additional_files=additional_files,
        enable_network=False,
    )


def build_plan(svc: Services, submission: Submission, language: Language) -> Plan:
    """The plan: the source (plus the zip's files, which never replace it), compiled with
    the options at the server's limits, then run `number_of_runs` times one after another.
    Output is compared with `expected_output` as Judge0 compares it, when rendered."""
    source = SandboxFile(language.file, submission.source_code or b"")
    files = (source, *_unzipped(submission.additional_files, keep=source.name))
    options = sanitized(submission.compiler_options)
    arguments = sanitized(submission.command_line_arguments)
    run_command = language.run.replace("{file}", language.file)
    if arguments:
        run_command += " " + arguments
    if submission.redirect_stderr_to_stdout:
        run_command = f"exec {run_command} 2>&1"
    server = svc.default_limits
    run = RunSpec(
        image=language.image,
        command=run_command,
        files=files,
        stdin=submission.stdin or b"",
        limits=_limits(submission, server),
        runtime=svc.settings.runtime_name,
        quiet=True,
    )
    compile_spec = None
    if language.compile is not None:
        compiled = f"{options} {language.file}" if options else language.file
        compile_spec = dataclasses.replace(
            run,
            command=language.compile.replace("{file}", compiled),
            stdin=b"",
            limits=server,  # Judge0 compiles at its maximum limits
            artifacts=True,
            quiet=False,
        )
    return Plan(
        run=run,
        compile=compile_spec,
        count=submission.number_of_runs,
        sequential=True,
        language=language.name,
    )


def _limits(submission: Submission, server: Limits) -> Limits:
    """Wall time and memory as asked (memory at least what the engine takes), processes
    at most those asked; CPU time is judged on the measured figure (see docs)."""
    memory_mb = max(MIN_MEMORY_MB, math.ceil(submission.memory_limit / 1024))
    return dataclasses.replace(
        server,
        timeout_s=min(server.timeout_s, submission.wall_time_limit),
        memory_mb=min(server.memory_mb, memory_mb),
        pids=min(server.pids, submission.max_processes_and_or_threads),
    )


def _unzipped(archive: bytes | None, *, keep: str) -> list[SandboxFile]:
    """additional_files: a zip's regular files, checked (no absolute path, no `..`, no
    link, at most MAX_ZIP_FILES entries and max_extract_size KB in all); a file named as
    the source is left out, as Judge0's `unzip -n` leaves the source in place."""
    if not archive:
        return []
    limit = MAX_EXTRACT_KB * 1024
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            entries = opened.infolist()
            if len(entries) > MAX_ZIP_FILES:
                raise _zip_refused(f"has more than {MAX_ZIP_FILES} entries")
            files: list[SandboxFile] = []
            total = 0
            for entry in entries:
                if entry.is_dir():
                    continue
                mode = entry.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise _zip_refused(f"holds a link: {entry.filename}")
                name = entry.filename
                try:
                    check_file_name(name, "additional_files")
                except InvalidRequest as exc:
                    raise _zip_refused(f"holds a name that cannot be used: {exc.message}") from exc
                if name == keep:
                    continue
                with opened.open(entry) as member:
                    content = member.read(limit - total + 1)
                total += len(content)
                if total > limit:
                    raise _zip_refused(f"unpacks to more than {MAX_EXTRACT_KB} KB")
                files.append(SandboxFile(name, content, executable=bool(mode & 0o111)))
            return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise _zip_refused(f"is not a zip archive that can be read: {exc}") from exc
    except RuntimeError as exc:  # an encrypted entry
        raise _zip_refused(f"cannot be read: {exc}") from exc


def _zip_refused(why: str) -> Judge0Invalid:
    return Judge0Invalid({"additional_files": [f"the zip archive {why}"]})


def _text(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return str(value).encode("utf-8", errors="surrogatepass")


def _text_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _decoded(value: bytes | None) -> bytes | None:
    return None if value is None else ruby_unbase64(value.decode("utf-8", errors="replace"))


def _integer(value: Any) -> int | None:
    """An integer column's cast: numbers truncated, strings by their leading digits."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return int(value) if math.isfinite(value) else None
    found = re.match(r"\s*[+-]?[0-9]{1,18}", str(value))  # a column holds no more
    return int(found.group()) if found else 0


def _number(value: Any) -> float | None:
    """The raw value as a number, as Judge0's numericality check reads it (None: not one)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    text = str(value)
    has_digit = any(c in "0123456789" for c in text)
    if _INTEGER.fullmatch(text) or (_FLOAT.fullmatch(text) and has_digit):
        try:
            return float(text.replace("_", ""))
        except ValueError:
            return None
    return None


def _boolean(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    return value not in _FALSE


def _count(bound: float) -> str:
    """A bound in a message as Judge0 prints it: a float setting with `.0`."""
    return str(bound) if isinstance(bound, float) else str(int(bound))
