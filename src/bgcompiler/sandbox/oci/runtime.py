"""Driving runc or runsc straight from a bundle: one runtime process per run, no daemon.

runc runs each container in the foreground (`runc run --keep`): the runc process is the
container's parent, hands it its own stdin/stdout/stderr (our pipes) and exits with its
exit code; `--keep` leaves the stopped container (and its cgroup, whose OOM counter is read
after) until we delete it. runsc cannot keep a container after a foreground run, so it is
started detached (`runsc run --detach`, the sandbox keeps our pipes) under the helper's
`--adopt`, a child subreaper that becomes the sandbox's parent once runsc has exited and
exits with the sandbox's status: the container's end and exit code come from a process
of ours, as under runc. (`runsc wait`, the other way, is a Go process per run, and it
returns only once the sandbox, nobody's child any more, has been reaped by the host's
pid 1: 1.5-2 s after its end here.) Once a container has stopped, nothing of it runs any
more: its cgroups and state files are removed in-process, as `delete` would; `delete
--force` is for what is still up or busy.

A runtime's own error output before the container starts goes to a log file in the
bundle, never into the program's stderr: a run whose runtime logged an error is a failure
of the service, with that message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import structlog

from bgcompiler.errors import SandboxError, StartupError
from bgcompiler.sandbox.oci.child import Child
from bgcompiler.sandbox.oci.pipes import PipeStream

log = structlog.get_logger(__name__)

LOG_NAME = "runtime.log"
SANDBOX_PID_NAME = "sandbox.pid"  # runsc's --pid-file: the sandbox's pid, for --adopt
CGROUP_ROOT = Path("/sys/fs/cgroup")
# How long one runtime command (kill, delete, list) may take.
# A gVisor sandbox killing a fork bomb under CPU contention took seconds here.
COMMAND_S = 30.0
# How long a removal waits for a finished run's runtime process (runc, or the helper
# adopting a runsc sandbox) to exit by itself.
STOP_WAIT_S = 2.0
# The runtime processes need no environment of ours.
_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


@dataclass(frozen=True, slots=True)
class Runtime:
    """One OCI runtime binary with its state root and its global flags."""

    name: str  # "runc" or "runsc"
    binary: str
    root: Path
    flags: tuple[str, ...] = ()

    @classmethod
    def find(cls, name: str, root: Path) -> Runtime:
        """runc (the default) or runsc (--gvisor), found on PATH. Raises StartupError."""
        binary = shutil.which(name)
        if binary is None:
            raise StartupError(
                f"the oci engine needs the {name!r} binary on PATH (`make setup` installs it)"
            )
        gvisor = name.endswith("runsc")
        # runsc: no network stack at all (only loopback, as runc's new network namespace),
        # which is also the only way it runs here (docs/architecture.md).
        flags = ("--network=none",) if gvisor else ()
        return cls(name, binary, root, flags)

    @property
    def gvisor(self) -> bool:
        return self.name.endswith("runsc")

    def command(self, *args: str, log_file: Path | None = None) -> list[str]:
        logging = ["--log", str(log_file), "--log-format", "json"] if log_file else []
        return [self.binary, "--root", str(self.root), *logging, *self.flags, *args]

    async def call(self, *args: str, within_s: float = COMMAND_S) -> tuple[int, bytes]:
        """Runs one runtime command; its exit code and output (stderr folded in)."""
        child = Child.spawn(
            self.command(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_ENV,
        )
        try:
            async with asyncio.timeout(within_s):
                code = await child.wait()
        except BaseException:
            child.kill()
            await asyncio.shield(child.wait())
            child.output()
            raise
        return code, child.output()

    async def containers(self) -> list[str]:
        """The ids of every container in this runtime's state root."""
        if not self.root.is_dir():
            return []
        code, output = await self.call("list", "--quiet")
        if code != 0:
            raise SandboxError(f"{self.name} list failed: {output.decode(errors='replace')}")
        return output.decode().split()

    async def kill(self, container_id: str) -> None:
        """SIGKILL to the container's init (and so to all of it); a container already
        stopped or gone is not an error."""
        with contextlib.suppress(TimeoutError):
            await self.call("kill", container_id, "KILL")

    async def delete(self, container_id: str) -> bool:
        """Kills what is left and removes the container's state and cgroups. True once it
        is gone (or was never made)."""
        try:
            code, output = await self.call("delete", "--force", container_id)
        except TimeoutError:
            return False
        if code != 0 and b"does not exist" not in output and b"not exist" not in output:
            log.warning(
                "container removal failed",
                container=container_id,
                error=output.decode(errors="replace").strip(),
            )
            return False
        return True


class RuntimeProcess:
    """One run's container, started: its pipes, and the process whose end is the
    container's (`runc run`, or the helper adopting a runsc sandbox)."""

    def __init__(
        self,
        runtime: Runtime,
        container_id: str,
        bundle: Path,
        process: Child,
        stream: PipeStream,
    ) -> None:
        self.runtime = runtime
        self.container_id = container_id
        self.bundle = bundle
        self._process = process
        self.stream = stream

    @classmethod
    def start(
        cls, runtime: Runtime, container_id: str, bundle: Path, helper: str
    ) -> RuntimeProcess:
        """Starts the bundle's container; its stdio are pipes to us. A runtime that cannot
        start it exits with the error logged (`exit_code` raises SandboxError then).

        runc runs in the foreground (`run --keep`) and exits with the container's exit code.
        runsc cannot keep a container after a foreground run, so it runs `--detach`, under
        the helper's `--adopt` (bgc-run.c), which becomes the parent of the sandbox once
        runsc has exited, and exits with its status once the sandbox and everything of it
        have ended: the same contract as runc's.

        The pipes are ours, not asyncio's process pipes: a process of the container may
        hold them after the runtime process has ended, and asyncio would wait for every
        pipe to close before reporting the process's exit."""
        container = ("--bundle", str(bundle), container_id)
        log_file = bundle / LOG_NAME
        if runtime.gvisor:
            pid_file = str(bundle / SANDBOX_PID_NAME)
            detached = ("run", "--detach", "--pid-file", pid_file, *container)
            argv = [
                helper,
                "--adopt",
                pid_file,
                "--",
                *runtime.command(*detached, log_file=log_file),
            ]
        else:
            argv = runtime.command("run", "--keep", *container, log_file=log_file)
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        ours = [stdin_write, stdout_read, stderr_read]
        try:
            try:
                process = Child.spawn(
                    argv,
                    stdin=stdin_read,
                    stdout=stdout_write,
                    stderr=stderr_write,
                    env=_ENV,
                    cwd=bundle,
                )
            finally:  # the runtime has its copies (or failed to start)
                for fd in (stdin_read, stdout_write, stderr_write):
                    os.close(fd)
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        return cls(runtime, container_id, bundle, process, PipeStream(*ours))

    def error(self) -> str | None:
        """What the runtime logged as an error, if it did."""
        return logged_error(self.bundle)

    async def exit_code(self) -> int:
        """The container's exit code once it has stopped. Raises SandboxError when the
        runtime failed rather than the program."""
        code = await self._process.wait()
        if (error := self.error()) is not None:
            raise SandboxError(f"{self.runtime.name}: {error}")
        return code if code >= 0 else 128 - code  # the runtime process killed: as a signal death

    async def kill(self) -> None:
        await self.runtime.kill(self.container_id)

    def oom_killed(self, cgroups_path: str) -> bool:
        """Whether the kernel killed a process of the run for memory (read from its memory
        cgroup, still there until the container is deleted)."""
        control = CGROUP_ROOT / "memory" / cgroups_path.lstrip("/") / "memory.oom_control"
        try:
            for line in control.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value) > 0
        except (OSError, ValueError):
            pass
        return False

    async def remove_stopped(self, cgroups_path: str) -> bool:
        """Removes a stopped container's state as `delete` would (its cgroups, then its
        state files), without a runtime process: once the container has stopped that is all
        there is (no process of it is left, under runc or runsc), and a process less per run
        is what the machine's saturation is made of. False when it cannot be done so (a
        container still up, or a cgroup still busy): then `delete --force` it."""
        try:
            async with asyncio.timeout(STOP_WAIT_S):
                await self._process.wait()
        except TimeoutError:
            return False
        if not remove_cgroup(cgroups_path):
            return False
        if self.runtime.gvisor:  # `<id>_sandbox:<id>.state` and its lock file
            for entry in self.runtime.root.glob(f"{self.container_id}_*"):
                entry.unlink(missing_ok=True)
        else:
            shutil.rmtree(self.runtime.root / self.container_id, ignore_errors=True)
        return True

    async def finish(self) -> None:
        """After the run: the runtime process has exited and the pipes are closed."""
        await self._process.wait()
        await self.stream.ended()


def logged_error(bundle: Path) -> str | None:
    """What a runtime run in `bundle` logged as an error (its log file), if it did."""
    try:
        lines = (bundle / LOG_NAME).read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = []
    for line in lines:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                errors.append(str(entry.get("msg", "")))
    return "; ".join(errors) or None


def remove_cgroup(cgroups_path: str) -> bool:
    """Removes one cgroup under every controller; False if one is still in use."""
    for controller in _controllers():
        try:
            os.rmdir(controller + cgroups_path)
        except FileNotFoundError:
            continue
        except OSError:
            return False  # a process still in it
    return True


@functools.cache
def _controllers() -> tuple[str, ...]:
    """Each mounted controller hierarchy once (cpu and cpuacct are links to one), as a
    path prefix: removing a run's cgroup is on every run's path."""
    if not CGROUP_ROOT.is_dir():
        return ()
    found = {os.path.realpath(entry) for entry in CGROUP_ROOT.iterdir() if entry.is_dir()}
    return tuple(sorted(found))
