"""The container configuration of every run, in one place: docs/security.md explains each line."""

from __future__ import annotations

from typing import Any

from bgcompiler.models import RunSpec
from bgcompiler.sandbox.measure import HELPER_IN_CONTAINER
from bgcompiler.sandbox.payload import WORKDIR, bootstrap_command

SANDBOX_UID = 65534  # nobody/nogroup; numeric because minimal images have no /etc/passwd
NOFILE = 1024
SHM_BYTES = 16 * 1024 * 1024
INODES_PER_MB = 256
# Under gVisor (ptrace platform) the container's pids cgroup counts the sandbox's own host
# threads: ~38 when idle, ~9 more per sleeping sandboxed process, and up to ~1850 during a
# fork bomb held at 64 sandboxed processes (all measured here). A cgroup limit of --pids
# kills the whole sandbox (exit 2, output lost) long before the program's 4th process.
# So under gVisor the program's processes are bounded by RLIMIT_NPROC, which the gVisor
# kernel enforces per sandbox (fork fails with EAGAIN, as under runc's pids cgroup), and the
# cgroup only bounds host threads, as a backstop sized above that worst case.
RUNSC_HOST_THREADS_BASE = 128
RUNSC_HOST_THREADS_PER_PROCESS = 48
# The environment is the image's own plus these; nothing from the host or the request.
SANDBOX_ENV = ("HOME=/tmp", "TMPDIR=/tmp")


def tmpfs_options(size_mb: int) -> str:
    """The mount options of the writable /bg and /tmp (each)."""
    return (
        f"rw,exec,nosuid,nodev,size={size_mb}m,nr_inodes={size_mb * INODES_PER_MB},"
        f"uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0700"
    )


def rlimits(spec: RunSpec) -> list[tuple[str, int]]:
    """The resource limits of a run's processes, by their ulimit names (soft = hard)."""
    limits = [
        ("nofile", NOFILE),
        ("fsize", spec.limits.disk_mb * 1024 * 1024),
        ("core", 0),
    ]
    if spec.runtime:  # gVisor: see RUNSC_HOST_THREADS_BASE
        # Under runc, RLIMIT_NPROC would count this uid's processes across the whole host,
        # so it is only set where the gVisor kernel counts per sandbox.
        limits.append(("nproc", spec.limits.pids))
    return limits


def pids_cgroup_limit(spec: RunSpec) -> int:
    """The pids cgroup's limit: the run's processes under runc, a backstop under gVisor."""
    if spec.runtime:  # gVisor: see RUNSC_HOST_THREADS_BASE
        return RUNSC_HOST_THREADS_BASE + RUNSC_HOST_THREADS_PER_PROCESS * spec.limits.pids
    return spec.limits.pids


def container_config(
    spec: RunSpec, labels: dict[str, str], helper: str, *, live: bool = False
) -> dict[str, Any]:
    """The Engine API body of `POST /containers/create` for one run of `spec`.

    `helper` is the host path of the bgc-run binary, mounted read-only: it is ours, not
    something a run could have made or changed. `live`: an interactive run (its input
    follows the archive), which changes the command of a compile stage only.
    """
    limits = spec.limits
    memory = limits.memory_mb * 1024 * 1024
    ulimits = [{"Name": name, "Soft": value, "Hard": value} for name, value in rlimits(spec)]
    host_config: dict[str, Any] = {
        "NetworkMode": "none",
        "Memory": memory,
        "MemorySwap": memory,  # equal to Memory: no swap at all
        "CpuShares": limits.cpu_shares,
        "NanoCpus": int(limits.cpus * 1e9),
        "PidsLimit": pids_cgroup_limit(spec),
        "ReadonlyRootfs": True,
        "Tmpfs": {WORKDIR: tmpfs_options(limits.disk_mb), "/tmp": tmpfs_options(limits.disk_mb)},
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges:true"],
        "Ulimits": ulimits,
        "Init": True,
        "LogConfig": {"Type": "none", "Config": {}},
        "IpcMode": "private",
        "ShmSize": SHM_BYTES,
        "OomScoreAdj": 1000,
        "RestartPolicy": {"Name": "no"},
        "AutoRemove": False,
        "Mounts": [
            {"Type": "bind", "Source": helper, "Target": HELPER_IN_CONTAINER, "ReadOnly": True}
        ],
    }
    if spec.cpuset is not None:
        host_config["CpusetCpus"] = spec.cpuset
    if spec.runtime:
        host_config["Runtime"] = spec.runtime
    return {
        "Image": spec.image,
        "Cmd": bootstrap_command(
            round(limits.timeout_s * 1000), artifacts=spec.artifacts, live=live
        ),
        "Entrypoint": [],
        "WorkingDir": WORKDIR,
        "User": f"{SANDBOX_UID}:{SANDBOX_UID}",
        "Env": list(SANDBOX_ENV),
        "Labels": labels,
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "OpenStdin": True,
        "StdinOnce": True,
        "Tty": False,
        "NetworkDisabled": True,
        "HostConfig": host_config,
    }
