"""A Piston v2 execute body as a plan: checked in Piston's own order, refused with Piston's
own messages (engineer-man/piston, api/src/api/v2.js and job.js), then resolved against the
language registry and clamped to the server's limits.

Where Piston answers something no client can use (`{}` for a `null` file, an empty 500 for
a file name that leaves the directory), the answer here is a 400 whose message names the
problem; docs/compatibility.md lists every such difference.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nodesemver import satisfies

from bgcompiler.core.plan import Plan
from bgcompiler.errors import InvalidRequest
from bgcompiler.languages import Language, PistonName
from bgcompiler.models import Limits, RunSpec, SandboxFile
from bgcompiler.sandbox.payload import check_file_name
from bgcompiler.services import Services

# Piston's configured defaults (api/src/config.js): ms of wall time and of CPU time, bytes
# of memory (-1: none). Ours are these, clamped to the server's own maximums.
PISTON_DEFAULTS: dict[str, float] = {
    "compile_timeout": 10000,
    "run_timeout": 3000,
    "compile_cpu_time": 10000,
    "run_cpu_time": 3000,
    "compile_memory_limit": -1,
    "run_memory_limit": -1,
}
# The order Piston checks them in.
LIMIT_NAMES = (
    "compile_memory_limit",
    "run_memory_limit",
    "compile_timeout",
    "run_timeout",
    "compile_cpu_time",
    "run_cpu_time",
)
ENCODINGS = ("utf8", "base64", "hex")
MIN_MEMORY_MB = 6  # the engine refuses less


@dataclass(frozen=True, slots=True)
class PistonRuntime:
    """A language as Piston's API shows it."""

    language: Language
    name: PistonName


def runtimes(languages: Sequence[Language]) -> list[PistonRuntime]:
    """The languages with a Piston name, in registry order."""
    return [PistonRuntime(lang, lang.piston) for lang in languages if lang.piston is not None]


@dataclass(frozen=True, slots=True)
class CheckedBody:
    """An execute body that passed Piston's checks, and its runtime."""

    body: dict[str, Any]
    runtime: PistonRuntime


def matching_runtimes(
    known: Sequence[PistonRuntime], language: str, version: str
) -> list[PistonRuntime]:
    """Piston's lookup: by name or alias, the versions that satisfy the range, highest
    first (Piston runs the highest)."""
    matching = [
        runtime
        for runtime in known
        if language in (runtime.name.language, *runtime.name.aliases)
        and _satisfies(runtime.name.version, version)
    ]
    return sorted(matching, key=lambda runtime: _version_key(runtime.name.version), reverse=True)


def find_runtime(known: Sequence[PistonRuntime], language: str, version: str) -> PistonRuntime:
    """The runtime Piston would run among `known`, or its refusal."""
    matching = matching_runtimes(known, language, version)
    if not matching:
        raise InvalidRequest(f"{language}-{version} runtime is unknown", "version")
    return matching[0]


async def check_body(
    svc: Services, body: Any, present: Callable[[PistonRuntime], Awaitable[bool]]
) -> CheckedBody:
    """Checks the body as Piston does, against the runtimes that are `present` (only the
    candidates the range selects are asked about); the plan is built from what it returns
    by `build_plan`."""
    if not isinstance(body, dict):
        body = {}
    language, version, files = body.get("language"), body.get("version"), body.get("files")
    if not language or not isinstance(language, str):
        raise InvalidRequest("language is required as a string", "language")
    if not version or not isinstance(version, str):
        raise InvalidRequest("version is required as a string", "version")
    if not isinstance(files, list):
        raise InvalidRequest("files is required as an array", "files")
    for index, file in enumerate(files):
        if not isinstance(file, dict):
            if file is None:
                raise InvalidRequest(f"files[{index}] is required as an object", "files")
            raise InvalidRequest(f"files[{index}].content is required as a string", "files")
        if not isinstance(file.get("content"), str):
            raise InvalidRequest(f"files[{index}].content is required as a string", "files")
    known = runtimes(list(svc.languages.values()))
    runtime = None
    for candidate in matching_runtimes(known, language, version):
        if await present(candidate):
            runtime = candidate
            break
    if runtime is None:
        raise InvalidRequest(f"{language}-{version} runtime is unknown", "version")
    if not any(not file.get("encoding") or file.get("encoding") == "utf8" for file in files):
        raise InvalidRequest("files must include at least one utf8 encoded file", "files")
    # Checked against Piston's own limits, as Piston checks; values within them are then
    # clamped to the server's maximums (`_limits`), not refused: Piston's clients send its
    # defaults (compile 10000 ms) whatever the server's --timeout.
    for name in LIMIT_NAMES:
        value = body.get(name)
        if not value:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"If specified, {name} must be a number", name)
        limit = PISTON_DEFAULTS[name]
        if limit <= 0:
            continue
        if value > limit:
            raise InvalidRequest(
                f"{name} cannot exceed the configured limit of {_js_number(limit)}", name
            )
        if value < 0:
            raise InvalidRequest(f"{name} must be non-negative", name)
    stdin = body.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise InvalidRequest("stdin must be a string", "stdin")
    args = body.get("args")
    if args is not None and (
        not isinstance(args, list) or not all(isinstance(arg, str) for arg in args)
    ):
        raise InvalidRequest("args must be an array of strings", "args")
    return CheckedBody(body, runtime)


def build_plan(svc: Services, checked: CheckedBody) -> Plan:
    """The plan of a body `check_body` accepted: one compile (if the language has one) and
    one run, as Piston does them."""
    body, runtime = checked.body, checked.runtime
    files = tuple(_file(index, file) for index, file in enumerate(body["files"]))
    # The first utf8 file is the program (Piston: code_files[0]); others go along.
    entry_index = next(
        index for index, file in enumerate(body["files"]) if _encoding(file) == "utf8"
    )
    entry = files[entry_index].name
    language = runtime.language
    server = svc.default_limits
    run_command = language.run.replace("{file}", shlex.quote(entry))
    for arg in body.get("args") or []:
        run_command += " " + shlex.quote(arg)
    stdin = body.get("stdin") or ""
    if not stdin.endswith("\n"):
        stdin += "\n"  # as Piston does: "" becomes "\n"
    run = RunSpec(
        image=language.image,
        command=run_command,
        files=files,
        stdin=stdin.encode("utf-8"),
        limits=_limits(body, "run", server),
        runtime=svc.settings.runtime_name,
        quiet=True,
    )
    compile_spec = None
    if language.compile:
        compile_spec = dataclasses.replace(
            run,
            command=language.compile.replace("{file}", shlex.quote(entry)),
            stdin=b"",
            limits=_limits(body, "compile", server),
            artifacts=True,
            quiet=False,
        )
    return Plan(run=run, compile=compile_spec, language=language.name)


def _limits(body: dict[str, Any], stage: str, server: Limits) -> Limits:
    """A stage's limits: Piston's values where given (0: none, so the server's maximum),
    otherwise its defaults, all at most the server's. CPU time is not limited apart from
    the wall time (docs/compatibility.md)."""
    asked = body.get(f"{stage}_timeout")
    if asked is None:
        timeout_ms = PISTON_DEFAULTS[f"{stage}_timeout"]
    else:  # 0 (any falsy value, which Piston does not check) is no limit: the server's
        timeout_ms = float(asked) if asked else server.timeout_s * 1000
    memory = body.get(f"{stage}_memory_limit")
    memory_mb = server.memory_mb
    if isinstance(memory, int | float) and not isinstance(memory, bool) and memory > 0:
        memory_mb = min(server.memory_mb, max(MIN_MEMORY_MB, math.ceil(memory / 2**20)))
    return dataclasses.replace(
        server,
        timeout_s=min(server.timeout_s, float(timeout_ms) / 1000),
        memory_mb=memory_mb,
    )


def _encoding(file: dict[str, Any]) -> str:
    encoding = file.get("encoding")
    return encoding if encoding in ENCODINGS else "utf8"  # anything else: utf8, as Piston


def _file(index: int, file: dict[str, Any]) -> SandboxFile:
    name = file.get("name") or f"file{index}.code"
    if not isinstance(name, str):
        raise InvalidRequest(f"files[{index}].name must be a string", "files")
    check_file_name(name, f"files[{index}].name")
    content: str = file["content"]
    encoding = _encoding(file)
    if encoding == "base64":
        data = _lenient_base64(content)
    elif encoding == "hex":
        data = _lenient_hex(content)
    else:
        data = content.encode("utf-8", errors="surrogatepass")
    return SandboxFile(name, data)


def _lenient_base64(text: str) -> bytes:
    """As Node's Buffer.from(text, 'base64'): characters outside the alphabet are skipped,
    padding is optional, URL-safe letters are read too."""
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    kept = "".join(c for c in text.replace("-", "+").replace("_", "/") if c in alphabet)
    if len(kept) % 4 == 1:  # a lone last character carries no whole byte
        kept = kept[:-1]
    try:
        return base64.b64decode(kept + "=" * (-len(kept) % 4))
    except (binascii.Error, ValueError):
        return b""


def _lenient_hex(text: str) -> bytes:
    """As Node's Buffer.from(text, 'hex'): pairs up to the first that is not hex."""
    out = bytearray()
    for at in range(0, len(text) - 1, 2):
        try:
            out.append(int(text[at : at + 2], 16))
        except ValueError:
            break
    return bytes(out)


def _satisfies(version: str, wanted: str) -> bool:
    try:
        return bool(satisfies(version, wanted))
    except (ValueError, TypeError):  # a range it cannot read satisfies nothing
        return False


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def _js_number(value: float) -> str:
    """A number as JavaScript prints it (3000, not 3000.0)."""
    return str(int(value)) if float(value).is_integer() else repr(value)
