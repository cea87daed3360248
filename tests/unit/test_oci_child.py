"""A runtime process's end, awaited on a pidfd: its exit status, and the signal that killed
it as a negative one (the runtime process of a run under runsc is the helper adopting the
sandbox, whose status is the container's)."""

from __future__ import annotations

import signal
import subprocess

import pytest

from bgcompiler.sandbox.oci.child import Child

pytestmark = pytest.mark.asyncio

ENV = {"PATH": "/usr/bin:/bin"}
QUIET = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


async def test_a_child_s_exit_status_is_awaited() -> None:
    """The status, and a signal as a negative one."""
    assert await Child.spawn(["sh", "-c", "exit 3"], env=ENV, **QUIET).wait() == 3
    killed = Child.spawn(["sleep", "30"], env=ENV, **QUIET)
    killed.kill()
    assert await killed.wait() == -signal.SIGKILL
