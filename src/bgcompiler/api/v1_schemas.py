"""Request and response bodies of the v1 API (`/api/v1/...`)."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

from bgcompiler.api.schemas import IMAGE_PATTERN, NO_NUL_PATTERN, Text
from bgcompiler.models import Status
from bgcompiler.sandbox.payload import check_file_name
from bgcompiler.stats import Stats

MAX_FILES = 100
# The smallest limits a request may ask for (below these nothing starts).
MIN_MEMORY_MB = 6
MIN_PIDS = 8


class FileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(description="relative path under /bg, e.g. `main.c` or `src/lib.rs`")
    content: Text = Field(description="the file's content, in `encoding`")
    encoding: Literal["utf8", "base64"] = "utf8"
    executable: StrictBool = False

    def data(self) -> bytes:
        if self.encoding == "utf8":
            return self.content.encode("utf-8")
        try:
            return base64.b64decode(self.content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"{self.name}: content is not valid base64") from exc


class TestCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stdin: Text = Field("", description="standard input of this test, delivered byte-exact")
    expected_output: Text = Field(description="what stdout must be for the verdict `accepted`")


class LimitsIn(BaseModel):
    """Per-request limits; each at most the server's own (422 naming the field otherwise)."""

    model_config = ConfigDict(extra="forbid")

    time_ms: StrictInt | None = Field(None, ge=1, description="wall-clock limit of each run")
    memory_mb: StrictInt | None = Field(
        None, ge=MIN_MEMORY_MB, description="memory (no swap) of each run"
    )
    output_kb: StrictInt | None = Field(None, ge=1, description="cap of stdout and of stderr")
    pids: StrictInt | None = Field(None, ge=MIN_PIDS, description="processes and threads")
    cpus: StrictFloat | StrictInt | None = Field(None, gt=0, description="hard CPU cap")


class RunRequest(BaseModel):
    """What to run, how often, against which tests, under which limits."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"language": "python", "script": "print(input()[::-1])", "stdin": "hello"},
                {
                    "language": "c",
                    "files": [
                        {
                            "name": "main.c",
                            "content": "#include <stdio.h>\nint main(){int a,b;"
                            'scanf("%d %d",&a,&b);printf("%d\\n",a+b);}',
                        }
                    ],
                    "tests": [
                        {"stdin": "1 2", "expected_output": "3\n"},
                        {"stdin": "40 2", "expected_output": "42"},
                    ],
                    "compare": "trim",
                    "count": 5,
                    "warmup": 1,
                    "limits": {"time_ms": 2000, "memory_mb": 128},
                },
                {
                    "image": "bgc/busybox:latest",
                    "run": "sh main",
                    "script": "echo $1",
                    "args": ["hi"],
                },
            ]
        },
    )

    language: Text | None = Field(None, description="a name from GET /api/v1/languages")
    image: Text | None = Field(
        None, max_length=255, pattern=IMAGE_PATTERN, description="with `run`: any local image"
    )
    run: Text | None = Field(
        None, min_length=1, pattern=NO_NUL_PATTERN, description="with `image`: a shell command line"
    )
    files: list[FileIn] | None = Field(
        None, min_length=1, max_length=MAX_FILES, description="the first file is the entry point"
    )
    script: Text | None = Field(None, description="shorthand for one file (the language's file)")
    args: list[Text] = Field(default_factory=list, description="appended to the run command")
    stdin: Text | None = Field(None, description="standard input, byte-exact (no newline added)")
    stdin_base64: str | None = Field(None, description="standard input as base64, for binary data")
    compile: Text | StrictBool | None = Field(
        None,
        description="a compile command run once before the runs; null: the language's own; "
        "false: none",
    )
    tests: list[TestCase] | None = Field(None, min_length=1, description="test cases")
    compare: Literal["exact", "trim"] = Field(
        "trim", description="trim: ignore trailing whitespace of lines and trailing blank lines"
    )
    count: StrictInt = Field(1, ge=1, description="repetitions of each test (or of the run)")
    warmup: StrictInt = Field(0, ge=0, description="runs executed first and not reported")
    limits: LimitsIn = Field(default_factory=lambda: LimitsIn())
    sequential: StrictBool = Field(
        True, description="runs one after another (true) or spread over the workers (false)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RunRequest:
        if (self.language is None) == (self.image is None and self.run is None):
            raise ValueError("give either `language`, or `image` and `run`")
        if self.language is None and (self.image is None or self.run is None):
            raise ValueError("`image` and `run` go together")
        if (self.files is None) == (self.script is None):
            raise ValueError("give either `files` or `script`")
        if self.stdin is not None and self.stdin_base64 is not None:
            raise ValueError("give `stdin` or `stdin_base64`, not both")
        seen: set[str] = set()
        for index, file in enumerate(self.files or []):
            check_file_name(file.name, f"files.{index}.name")
            if file.name in seen:
                raise ValueError(f"file {file.name!r} is given twice")
            seen.add(file.name)
            file.data()  # raises for bad base64
        if self.stdin_base64 is not None:
            try:
                base64.b64decode(self.stdin_base64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError("stdin_base64 is not valid base64") from exc
        return self

    def stdin_bytes(self) -> bytes:
        if self.stdin_base64 is not None:
            return base64.b64decode(self.stdin_base64)
        return (self.stdin or "").encode("utf-8")


class CompileOut(BaseModel):
    """The compile stage's result (and the part every run shares with it)."""

    status: Status
    exit_code: int | None
    signal: str | None
    wall_ms: float | None
    cpu_ms: float | None
    memory_kb: int | None
    timed_out: bool
    output_truncated: bool
    stdout: str
    stderr: str
    stdout_base64: str | None = None
    stderr_base64: str | None = None
    error: str | None = None


class RunOut(CompileOut):
    test: int | None = Field(description="index of the test case; null without tests")
    repeat: int
    verdict: Literal["accepted", "wrong_answer"] | None = Field(
        description="only for runs that finished ok and have a test"
    )
    oom_killed: bool


class Summary(BaseModel):
    runs: int
    statuses: dict[str, int] = Field(description="count of runs per status")
    tests: int = Field(description="number of test cases (0 without tests)")
    accepted: int = Field(description="test cases all of whose runs were accepted")
    identical_outputs: bool = Field(description="every run of the same test printed the same")
    distinct_outputs: int = Field(description="distinct stdouts per test, summed over tests")
    wall_ms: Stats | None
    cpu_ms: Stats | None
    memory_kb: Stats | None


class Environment(BaseModel):
    image: str
    image_id: str
    runtime: str
    language: str | None
    limits: dict[str, Any]
    cpuset: str | None = Field(description="the CPU the runs were pinned to, if any")
    sequential: bool


class RunResponse(BaseModel):
    id: str
    compile: CompileOut | None
    runs: list[RunOut]
    summary: Summary
    environment: Environment


class LanguageOut(BaseModel):
    name: str
    version: str
    image: str
    file: str
    compile: str | None
    run: str
    image_present: bool


class LimitsOut(BaseModel):
    """What this caller may ask for: each limit's largest value (also the one a request
    that gives none gets) and smallest, and the most runs one request may need. An API key
    with caps of its own lowers these."""

    max_runs: int = Field(description="compile + warmup + count x tests, at most")
    time_ms: int = Field(description="wall-clock limit of each run, at most (and default)")
    memory_mb: int = Field(description="memory of each run, at most (and default)")
    min_memory_mb: int
    output_kb: int = Field(description="cap of stdout and of stderr, at most (and default)")
    pids: int = Field(description="processes and threads, at most (and default)")
    min_pids: int
    cpus: float = Field(description="hard CPU cap, at most (and default)")
    max_body_kb: int = Field(description="largest request body")
    max_metadata_bytes: int = Field(description="a job's metadata, as compact JSON")
