"""The runtime processes' end, awaited on a pidfd: a child's exit status (a signal as a
negative one), and the end of any process, whoever reaps it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from bgcompiler.sandbox.oci.child import Child, ended

pytestmark = pytest.mark.asyncio


def orphan(pid_file: Path) -> int:
    """A `sleep` whose parent has exited (so it is not our child), its pid in `pid_file`."""
    subprocess.run(
        ["sh", "-c", f"sleep 30 </dev/null >/dev/null 2>&1 & echo $! > {pid_file}"], check=True
    )
    return int(pid_file.read_text())


async def test_the_end_of_a_process_that_is_not_ours_is_seen(tmp_path: Path) -> None:
    """Waiting goes on while it runs, and ends once it is killed."""
    pid_file = tmp_path / "sandbox.pid"
    pid = orphan(pid_file)
    pidfd = os.pidfd_open(pid)
    try:
        waiting = asyncio.ensure_future(ended(pidfd))
        done, _ = await asyncio.wait([waiting], timeout=0.3)
        assert not done  # still running
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(waiting, timeout=10)
    finally:
        os.close(pidfd)


async def test_a_child_s_exit_status_is_awaited(tmp_path: Path) -> None:
    """`Child.wait` (the same pidfd wait): the status, and the signal as a negative one."""
    env = {"PATH": "/usr/bin:/bin"}
    quiet = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
    }
    assert await Child.spawn(["sh", "-c", "exit 3"], env=env, **quiet).wait() == 3
    killed = Child.spawn(["sleep", "30"], env=env, **quiet)
    killed.kill()
    assert await killed.wait() == -signal.SIGKILL
