"""The OCI runtime configuration (config.json) of one run: the Docker path's isolation, spelt
out as dockerd hands it to runc.

Every field below is what dockerd 20.10 writes into the bundle of a container made from
`hardening.container_config` (tests/integration/test_oci_engine.py compares the two, field
by field, on this machine); docs/security.md explains each line. Only what belongs to
dockerd's own bookkeeping differs: the root is our read-only copy of the image, the cgroup
is ours, and there is no libnetwork hook (there is no network to set up).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from bgcompiler.models import RunSpec
from bgcompiler.sandbox.hardening import (
    SANDBOX_ENV,
    SANDBOX_UID,
    SHM_BYTES,
    pids_cgroup_limit,
    rlimits,
    tmpfs_options,
)
from bgcompiler.sandbox.measure import HELPER_IN_CONTAINER
from bgcompiler.sandbox.payload import WORKDIR, bootstrap_command

OCI_VERSION = "1.0.2-dev"
INIT_IN_CONTAINER = "/sbin/docker-init"  # where dockerd mounts its init (tini)
HOSTNAME_FILE = "/etc/hostname"
# The mount points our mounts need. The root is read-only and shared by every run of an
# image, so they are made once, when the image is unpacked (rootfs.py), never by a run.
MOUNT_DIRS = ("proc", "dev", "sys", "bg", "tmp", "sbin", "etc")
MOUNT_FILES = (HELPER_IN_CONTAINER, INIT_IN_CONTAINER, HOSTNAME_FILE)
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD_US = 100_000
OOM_SCORE_ADJ = 1000
_NO_FLAGS = ["nosuid", "noexec", "nodev"]
# /proc and /sys entries dockerd hides (masked) or makes read-only in every container.
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# The devices cgroup: dockerd's default rules (null, zero, urandom, random, tty, console
# allowed; fuse denied; everything else denied).
_DEVICES = [
    {"allow": False, "access": "rwm"},
    *(
        {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
        for major, minor in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1))
    ),
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
]
_SYSCTL = {
    "net.ipv4.ip_unprivileged_port_start": "0",
    "net.ipv4.ping_group_range": "0 2147483647",
}


@cache
def docker_seccomp_profile() -> dict[str, Any]:
    """Docker's default seccomp profile as dockerd renders it for a container without any
    capability (the rules it keeps for CAP_SYS_ADMIN and others are not in it): taken from
    the bundle dockerd wrote for such a container on this machine."""
    text = resources.files("bgcompiler.sandbox.oci").joinpath("seccomp.json").read_text()
    profile: dict[str, Any] = json.loads(text)
    return profile


def run_env(image_env: list[str], hostname: str) -> list[str]:
    """The image's environment (dockerd's PATH when it has none), then HOSTNAME and ours."""
    env = list(image_env) if image_env else [DEFAULT_PATH]
    if not any(entry.startswith("PATH=") for entry in env):
        env.insert(0, DEFAULT_PATH)
    return [*env, f"HOSTNAME={hostname}", *SANDBOX_ENV]


def _tmpfs(destination: str, size_mb: int) -> dict[str, Any]:
    return {
        "destination": destination,
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["rprivate", *tmpfs_options(size_mb).split(",")],
    }


def _bind(destination: str, source: str, *, recursive: bool = True) -> dict[str, Any]:
    options = ["rbind", "ro", "rprivate"] if recursive else ["bind", "ro"]
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def bundle_config(
    spec: RunSpec,
    *,
    rootfs: Path,
    image_env: list[str],
    helper: str,
    init: str,
    hostname: str,
    hostname_file: Path,
    cgroups_path: str,
    seccomp_filter: bytes | None = None,
    live: bool = False,
) -> dict[str, Any]:
    """The config.json of one run of `spec` (see the module's docstring).

    `rootfs`: the image's unpacked root, mounted read-only. `helper` and `init`: host paths
    of the bgc-run helper and of dockerd's init, both mounted read-only. `hostname_file`:
    this run's /etc/hostname. `cgroups_path`: the run's own cgroup (under each controller).
    `seccomp_filter`: Docker's profile as runc compiles it (seccomp_filter.py), installed
    by the helper in front of the init instead of by the runtime (under runc and runsc
    alike); None: the profile is in the config, for the runtime to compile (runc does;
    runsc ignores it unless started with `--oci-seccomp`).
    """
    limits = spec.limits
    memory = limits.memory_mb * 1024 * 1024
    cpu: dict[str, Any] = {
        "shares": limits.cpu_shares,
        "quota": round(limits.cpus * CPU_PERIOD_US),
        "period": CPU_PERIOD_US,
    }
    if spec.cpuset is not None:
        cpu["cpus"] = spec.cpuset
    command = bootstrap_command(round(limits.timeout_s * 1000), artifacts=spec.artifacts, live=live)
    args = [INIT_IN_CONTAINER, "--", *command]
    seccomp: dict[str, Any] = {}
    if seccomp_filter is None:
        seccomp["seccomp"] = docker_seccomp_profile()
    else:
        args = [HELPER_IN_CONTAINER, "--seccomp", seccomp_filter.hex(), "--", *args]
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_UID, "additionalGids": [SANDBOX_UID]},
            "args": args,
            "env": run_env(image_env, hostname),
            "cwd": WORKDIR,
            "capabilities": {},
            "rlimits": [
                {"type": f"RLIMIT_{name.upper()}", "hard": value, "soft": value}
                for name, value in rlimits(spec)
            ],
            "noNewPrivileges": True,
            "oomScoreAdj": OOM_SCORE_ADJ,
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": _NO_FLAGS},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": [*_NO_FLAGS, "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["ro", *_NO_FLAGS],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": _NO_FLAGS,
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": [*_NO_FLAGS, "mode=1777", f"size={SHM_BYTES}"],
            },
            _bind(INIT_IN_CONTAINER, init, recursive=False),
            _bind(HELPER_IN_CONTAINER, helper),
            _tmpfs(WORKDIR, limits.disk_mb),
            _tmpfs("/tmp", limits.disk_mb),
            _bind(HOSTNAME_FILE, str(hostname_file)),
        ],
        "linux": {
            "sysctl": dict(_SYSCTL),
            "resources": {
                "devices": list(_DEVICES),
                "memory": {"limit": memory, "swap": memory, "disableOOMKiller": False},
                "cpu": cpu,
                "pids": {"limit": pids_cgroup_limit(spec)},
            },
            "cgroupsPath": cgroups_path,
            "namespaces": [{"type": kind} for kind in ("mount", "network", "uts", "pid", "ipc")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            **seccomp,
        },
    }
