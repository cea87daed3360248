"""A sandbox that runs nothing, for unit tests of the scheduler and the API only.

The command is a tiny script of `;`-separated steps, so tests can state what a "run" does:
`sleep 0.2`, `echo text`, `stdin` (echo stdin back), `files` (list the files), `exit 3`,
`fail` (internal error). A compile stage that ends with exit 0 hands on its files, plus
`made` (`make` adds it).
"""

from __future__ import annotations

import asyncio
import io
import tarfile

from bgcompiler.errors import EngineUnavailable, ImageNotFound
from bgcompiler.models import STDOUT, RunResult, RunSpec, SandboxFile, classify
from bgcompiler.sandbox.live import Live


class FakeSandbox:
    """Behaves like a sandbox without containers; records what it was asked to do."""

    def __init__(self, images: tuple[str, ...] = ("fake/image",)) -> None:
        self.images = set(images)
        self.engine_up = True
        self.started: list[RunSpec] = []
        self.running = 0
        self.max_running = 0
        self.cancelled = 0
        self.opened = False
        self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.closed = True

    def status(self) -> dict[str, int | str]:
        return {"instance": "fake", "pool_ready": 0, "pool_starting": 0, "removing": 0}

    async def ping(self) -> None:
        if not self.engine_up:
            raise EngineUnavailable("the fake engine is down")

    async def check_image(self, image: str) -> str:
        await self.ping()
        if image not in self.images:
            raise ImageNotFound(image)
        return f"sha256:fake-{image}"

    async def run(self, spec: RunSpec) -> RunResult:
        self.started.append(spec)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        stdout = bytearray()
        exit_code = 0
        made: list[SandboxFile] = []
        try:
            for step in filter(None, (s.strip() for s in spec.command.split(";"))):
                verb, _, arg = step.partition(" ")
                if verb == "sleep":
                    await asyncio.sleep(float(arg))
                elif verb == "echo":
                    stdout += arg.encode() + b"\n"
                elif verb == "stdin":
                    stdout += spec.stdin
                elif verb == "files":
                    stdout += " ".join(f.name for f in spec.files).encode() + b"\n"
                elif verb == "make":
                    made.append(SandboxFile("made", arg.encode()))
                elif verb == "exit":
                    exit_code = int(arg)
                elif verb == "fail":
                    return RunResult.internal("the fake sandbox was told to fail")
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        truncated = len(stdout) > spec.limits.output_bytes
        artifacts = None
        if spec.artifacts and exit_code == 0:
            artifacts = _tar((*spec.files, *made))
        return RunResult(
            status=classify(
                exit_code=exit_code, timed_out=False, oom_killed=False, output_truncated=truncated
            ),
            stdout=bytes(stdout[: spec.limits.output_bytes]),
            exit_code=exit_code,
            output_truncated=truncated,
            duration_ms=1,
            artifacts=artifacts,
        )

    async def run_live(self, spec: RunSpec, live: Live) -> RunResult:
        """As `run`; its output goes to `live` at the end, in one piece (no input)."""
        live.begin()
        try:
            result = await self.run(spec)
        finally:
            live.end()
        if result.stdout:
            live.output(STDOUT, result.stdout)
        return result


def _tar(files: tuple[SandboxFile, ...]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for file in files:
            info = tarfile.TarInfo(file.name)
            info.size = len(file.content)
            archive.addfile(info, io.BytesIO(file.content))
    return buffer.getvalue()
