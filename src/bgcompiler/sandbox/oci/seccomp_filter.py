"""Docker's seccomp profile as runc installs it, taken once from runc itself.

runc compiles the profile (356 system calls in 11 rules, three architectures) with
libseccomp at every container start: about 12 ms of CPU and of latency per run measured
here, the largest part of what the hardening adds to a bare `runc run`. The filter it makes
is the same every time (same runc, same profile), so the engine takes it once: it starts one
container of its own under runc with the profile, reads the installed filter back from the
kernel (ptrace's PTRACE_SECCOMP_GET_FILTER, which needs root), and from then on each run's
container has the helper install exactly those bytes in front of the init (`bgc-run
--seccomp`). It is therefore byte for byte what runc would have installed, made by runc's
own compiler, its -ENOSYS stub for system calls newer than the profile included
(tests/integration/test_oci_engine.py compares it with the filter of a container dockerd
started).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bgcompiler.errors import SandboxError
from bgcompiler.sandbox.hardening import SANDBOX_UID
from bgcompiler.sandbox.oci.child import Child
from bgcompiler.sandbox.oci.config import DEFAULT_PATH, OCI_VERSION, docker_seccomp_profile
from bgcompiler.sandbox.oci.runtime import LOG_NAME, Runtime, logged_error

_PTRACE_ATTACH = 16
_PTRACE_DETACH = 17
_PTRACE_SECCOMP_GET_FILTER = 0x420C
_WALL = 0x40000000
_INSTRUCTION_BYTES = 8  # struct sock_filter
_HELPER_IN_ROOT = "/bgc-run"
# How long the holding container may take to be up with its filter.
_READY_S = 10.0
_POLL_S = 0.005


def installed_filter(pid: int) -> bytes:
    """The one seccomp filter of process `pid`, as the kernel holds it (its BPF program).

    Blocking: the process is stopped (ptrace attach) while it is read, then let go; every
    ptrace call is made from the calling thread, as ptrace requires. Raises SandboxError
    when it cannot be read or the process has no filter or more than one."""
    libc = ctypes.CDLL(None, use_errno=True)
    ptrace = libc.ptrace
    ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    ptrace.restype = ctypes.c_long

    def failed(what: str) -> SandboxError:
        code = ctypes.get_errno()
        return SandboxError(f"cannot read the seccomp filter of {pid}: {what}: {os.strerror(code)}")

    if ptrace(_PTRACE_ATTACH, pid, None, None) != 0:
        raise failed("attach")
    try:
        os.waitpid(pid, _WALL)
        count = ptrace(_PTRACE_SECCOMP_GET_FILTER, pid, 0, None)
        if count <= 0:
            raise failed("no filter")
        program = ctypes.create_string_buffer(count * _INSTRUCTION_BYTES)
        if ptrace(_PTRACE_SECCOMP_GET_FILTER, pid, 0, program) != count:
            raise failed("read")
        if ptrace(_PTRACE_SECCOMP_GET_FILTER, pid, 1, None) >= 0:
            raise SandboxError(f"process {pid} has more than one seccomp filter")
        if ctypes.get_errno() != errno.ENOENT:
            raise failed("count")
        return program.raw
    finally:
        ptrace(_PTRACE_DETACH, pid, None, None)


def _holding_config(cgroups_path: str) -> dict[str, Any]:
    """A container that only waits for the end of its input, under Docker's profile, with
    the runs' user and no_new_privs (runc then installs the filter just before the exec)."""
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_UID},
            "args": [_HELPER_IN_ROOT, "--hold"],
            "env": [DEFAULT_PATH],
            "cwd": "/",
            "capabilities": {},
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        # runc needs /proc in the container (it closes inherited descriptors through it).
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {
            "cgroupsPath": cgroups_path,
            "namespaces": [{"type": kind} for kind in ("mount", "network", "uts", "pid", "ipc")],
            "seccomp": docker_seccomp_profile(),
        },
    }


def _seccomp_mode(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Seccomp:"):
                return line.split(":", 1)[1].strip()
    return None


async def runc_filter(
    runtime: Runtime, helper: str, bundle: Path, container_id: str, cgroups_path: str
) -> bytes:
    """The filter `runtime` (runc) installs for Docker's profile, read from a container of
    its own made in `bundle` (removed after). Raises SandboxError."""
    (bundle / "rootfs" / "proc").mkdir(parents=True)
    shutil.copy(helper, bundle / "rootfs" / _HELPER_IN_ROOT.lstrip("/"))
    (bundle / "config.json").write_text(json.dumps(_holding_config(cgroups_path)))
    pid_file = bundle / "pid"
    hold_read, hold_write = os.pipe()
    try:
        process = Child.spawn(
            runtime.command(
                "run",
                "--pid-file",
                str(pid_file),
                "--bundle",
                str(bundle),
                container_id,
                log_file=bundle / LOG_NAME,
            ),
            stdin=hold_read,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"PATH": DEFAULT_PATH.removeprefix("PATH=")},
            cwd=bundle,
        )
    finally:
        os.close(hold_read)
    try:
        pid = await _filtered_pid(process, pid_file, bundle)
        return await asyncio.to_thread(installed_filter, pid)
    finally:
        os.close(hold_write)  # the helper's input ends: it exits, and `runc run` with it
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_READY_S):
                await process.wait()
        process.kill()
        await process.wait()
        await runtime.delete(container_id)
        shutil.rmtree(bundle, ignore_errors=True)


async def _filtered_pid(process: Child, pid_file: Path, bundle: Path) -> int:
    """The holding container's process, once its filter is installed."""
    async with asyncio.timeout(_READY_S):
        while True:
            if process.poll() is not None:
                error = logged_error(bundle) or "it exited"
                raise SandboxError(f"runc could not start a container to read its filter: {error}")
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text())  # noqa: ASYNC240  (a few bytes, local)
                if _seccomp_mode(pid) == "2":
                    return pid
            await asyncio.sleep(_POLL_S)
