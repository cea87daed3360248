"""Request and response bodies of the seed-compatible `POST /compile`."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from bgcompiler.models import RunResult, Status

EXTENSION_PATTERN = r"^[A-Za-z0-9_+-]{1,16}$"
# A Docker image reference, by the engine's own grammar: [domain/]path[:tag][@digest].
# Checked here so that no odd name reaches (and confuses) the engine's router.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_PATTERN = (
    rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$"
)
# A command line travels as a process argument, which cannot hold a NUL byte.
NO_NUL_PATTERN = r"^[^\x00]*$"


def _encodable(value: str) -> str:
    """JSON can carry lone UTF-16 surrogates, which no program can be given as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


Text = Annotated[StrictStr, AfterValidator(_encodable)]


class CompileRequest(BaseModel):
    """The seed's body, field for field. Unknown fields are ignored, as the seed did."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "script": "print('hello, world!')",
                    "image": "bgc/python:3",
                    "count": 1,
                    "cmd": "python3",
                    "extension": "py",
                }
            ]
        },
    )

    script: Text = Field(description="the program, written to /bg/main.<extension>")
    image: Text = Field(
        max_length=255, pattern=IMAGE_PATTERN, description="a Docker image present on the engine"
    )
    count: StrictInt = Field(
        1, ge=1, description="how many times to run it (at most the server's --max-count)"
    )
    cmd: Text = Field(
        min_length=1,
        pattern=NO_NUL_PATTERN,
        description='runs as `/bin/sh -c "<cmd> main.<extension>"` in /bg',
    )
    extension: Text = Field(
        "ext", pattern=EXTENSION_PATTERN, description="file extension of the script"
    )
    input: Text | None = Field(None, description="written to /bg/input.txt")
    stdIn: Text | None = Field(  # the seed's wire name
        None, description="standard input; a trailing newline is added when missing"
    )


class CompileResult(BaseModel):
    """One run. The seed's four fields first; ours after them."""

    stdout: str = Field(description="standard output, at most --output KB, as UTF-8 text")
    stderr: str = Field(description="standard error, same rules as stdout")
    duration_ms: int = Field(description="milliseconds from container start to exit or kill")
    timed_out: bool
    exit_code: int | None = Field(description="the program's exit status; null if unknown")
    oom_killed: bool
    output_truncated: bool = Field(description="stdout or stderr passed the cap and was cut")
    status: Status
    wall_ms: float | None = Field(
        description="the program's own wall time, without container start-up (µs precision)"
    )
    cpu_ms: float | None = Field(
        description="user + system CPU time of the program and the children it waited for; "
        "null when the run was killed from outside (output limit)"
    )
    memory_kb: int | None = Field(
        description="peak resident memory of the program (its largest process), KB"
    )
    signal: str | None = Field(description="the signal that ended the program, e.g. SIGKILL")
    stdout_base64: str | None = Field(
        None, description="present only when stdout is not valid UTF-8: its exact bytes"
    )
    stderr_base64: str | None = Field(None, description="same for stderr")
    error: str | None = Field(None, description="present only for internal_error: what failed")


def render_output(data: bytes, name: str, into: dict[str, Any]) -> None:
    """Sets `name` to readable text, and `name_base64` to the exact bytes when not UTF-8."""
    try:
        into[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        into[name] = data.decode("utf-8", errors="replace")
        into[f"{name}_base64"] = base64.b64encode(data).decode("ascii")


def compile_result(result: RunResult) -> dict[str, Any]:
    """A RunResult as the seed-compatible JSON object (optional fields only when they apply)."""
    body: dict[str, Any] = {}
    render_output(result.stdout, "stdout", body)
    render_output(result.stderr, "stderr", body)
    body.update(
        duration_ms=result.duration_ms,
        timed_out=result.timed_out,
        exit_code=result.exit_code,
        oom_killed=result.oom_killed,
        output_truncated=result.output_truncated,
        status=result.status.value,
        wall_ms=result.wall_ms,
        cpu_ms=result.cpu_ms,
        memory_kb=result.memory_kb,
        signal=result.signal,
    )
    if result.error is not None:
        body["error"] = result.error
    # The seed's field order: stdout, stderr, duration_ms, timed_out, then ours.
    order = list(CompileResult.model_fields)
    return {key: body[key] for key in order if key in body}


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer has this body."""

    error: str = Field(description="a stable code, e.g. invalid_request, busy, image_not_found")
    message: str = Field(description="what went wrong, for people")
    field: str | None = Field(None, description="the request field at fault, when there is one")
    details: list[dict[str, Any]] | None = None
