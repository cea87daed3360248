"""Every container gets the whole hardening checklist (docs/security.md)."""

from __future__ import annotations

from bgcompiler.models import Limits, RunSpec
from bgcompiler.sandbox.hardening import container_config

LIMITS = Limits(
    timeout_s=5, memory_mb=256, cpu_shares=512, cpus=0.5, output_bytes=1024, pids=32, disk_mb=16
)


def config(runtime: str | None = None) -> dict:  # type: ignore[type-arg]
    spec = RunSpec("img", "python3 main.py", (), b"", LIMITS, runtime)
    return container_config(spec, {"io.bg-compiler.instance": "abc"}, "/opt/bgc-run")


def test_checklist_fields() -> None:
    """No network, no root, no capabilities, no swap, capped pids/cpu/files, read-only root."""
    c = config()
    h = c["HostConfig"]
    assert c["NetworkDisabled"] is True
    assert h["NetworkMode"] == "none"
    assert c["User"] == "65534:65534"
    assert h["CapDrop"] == ["ALL"]
    assert h["SecurityOpt"] == ["no-new-privileges:true"]
    assert h["Memory"] == h["MemorySwap"] == 256 * 1024 * 1024
    assert h["CpuShares"] == 512
    assert h["NanoCpus"] == 500_000_000
    assert h["PidsLimit"] == 32
    assert h["ReadonlyRootfs"] is True
    assert set(h["Tmpfs"]) == {"/bg", "/tmp"}
    assert all("size=16m" in options and "uid=65534" in options for options in h["Tmpfs"].values())
    limits = {u["Name"]: u["Hard"] for u in h["Ulimits"]}
    assert limits["core"] == 0
    assert limits["fsize"] == 16 * 1024 * 1024
    assert limits["nofile"] > 0
    assert h["Init"] is True
    assert h["LogConfig"]["Type"] == "none"
    assert h["IpcMode"] == "private"
    assert h["ShmSize"] > 0
    assert h["OomScoreAdj"] == 1000
    assert h["RestartPolicy"] == {"Name": "no"}
    assert "Privileged" not in h
    assert c["Labels"] == {"io.bg-compiler.instance": "abc"}
    assert c["Env"] == ["HOME=/tmp", "TMPDIR=/tmp"]
    assert c["WorkingDir"] == "/bg"
    assert c["OpenStdin"]
    assert c["StdinOnce"]
    assert not c["Tty"]


def test_runtime_is_set_only_when_asked() -> None:
    """runc is the engine's default; --gvisor asks for runsc explicitly."""
    assert "Runtime" not in config()["HostConfig"]
    assert config("runsc")["HostConfig"]["Runtime"] == "runsc"


def test_processes_are_bounded_by_the_mechanism_each_runtime_counts_right() -> None:
    """runc: the pids cgroup, no nproc (host-wide per uid). runsc: nproc, cgroup as backstop."""
    runc = config()["HostConfig"]
    assert runc["PidsLimit"] == 32
    assert "nproc" not in {u["Name"] for u in runc["Ulimits"]}
    runsc = config("runsc")["HostConfig"]
    assert {u["Name"]: u["Hard"] for u in runsc["Ulimits"]}["nproc"] == 32
    assert runsc["PidsLimit"] > 32 * 9  # room for gVisor's own host threads
