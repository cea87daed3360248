"""The Sandbox protocol: what the scheduler and the API need from a place that runs code."""

from __future__ import annotations

from typing import Protocol

from bgcompiler.errors import StartupError
from bgcompiler.models import Limits, RunResult, RunSpec
from bgcompiler.sandbox.live import Live


class Sandbox(Protocol):
    """Runs one RunSpec in a fresh, isolated environment.

    `run` never raises for anything the submitted program does; a failure of the
    service or the engine during a run is reported as an `internal_error` result.
    """

    async def open(self) -> None:
        """Connects and performs start-up checks. Raises StartupError."""

    async def close(self) -> None:
        """Removes everything this sandbox created and disconnects."""

    async def ping(self) -> None:
        """Returns when the engine answers. Raises EngineUnavailable."""

    async def check_image(self, image: str) -> str:
        """The image's id. Raises ImageNotFound when it is absent, EngineUnavailable when the
        engine is."""

    def status(self) -> dict[str, int | str]:
        """Counts for GET /api/v1/status: warm containers, containers being removed, ..."""

    async def run(self, spec: RunSpec) -> RunResult:
        """Runs the spec once, in a container nobody else has used and nobody will reuse."""

    async def run_live(self, spec: RunSpec, live: Live) -> RunResult:
        """Runs the spec once as `run` does, its input and signals coming from `live` and
        its output going to it as it arrives (all of it before this returns)."""


# Prints "ok" only under a seccomp filter (mode 2). A runtime that ignores the profile
# (runsc registered without --oci-seccomp) must not serve runs: the service refuses to
# start rather than run programs without the filter the documentation promises.
PROOF_COMMAND = (
    'while read -r key value; do [ "$key" = Seccomp: ] && mode=$value; done < /proc/self/status;'
    ' if [ "$mode" = 2 ]; then echo ok; else'
    ' echo "no seccomp filter in force (Seccomp: ${mode:-none}); runsc applies one only when'
    ' started with --oci-seccomp" >&2; exit 1; fi'
)


def proof_spec(image: str, limits: Limits, runtime: str | None) -> RunSpec:
    """The run a sandbox makes at start-up to prove that its runtime runs containers, under
    Docker's seccomp profile."""
    return RunSpec(
        image=image, command=PROOF_COMMAND, files=(), stdin=b"", limits=limits, runtime=runtime
    )


def check_proof(result: RunResult, failure: str) -> None:
    """Raises StartupError (`failure`, then why) unless the proof run printed "ok"."""
    if result.stdout != b"ok\n" or result.exit_code != 0:
        reason = result.error or result.stderr.decode(errors="replace")
        raise StartupError(f"{failure}: status {result.status.value}, {reason}")
