"""The OCI engine's config.json carries the whole hardening checklist (docs/security.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bgcompiler.models import Limits, RunSpec
from bgcompiler.sandbox.engine import Engine
from bgcompiler.sandbox.oci.config import MASKED_PATHS, READONLY_PATHS, bundle_config
from bgcompiler.sandbox.oci.rootfs import RootfsCache, resolve_inside
from bgcompiler.sandbox.oci.sandbox import container_owner

LIMITS = Limits(
    timeout_s=5, memory_mb=256, cpu_shares=512, cpus=0.5, output_bytes=1024, pids=32, disk_mb=16
)


def config(
    runtime: str | None = None, cpuset: str | None = None, seccomp_filter: bytes | None = None
) -> dict[str, Any]:
    spec = RunSpec("img", "python3 main.py", (), b"", LIMITS, runtime, cpuset=cpuset)
    return bundle_config(
        spec,
        rootfs=Path("/cache/abc/rootfs"),
        image_env=["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
        helper="/opt/bgc-run",
        init="/usr/bin/tini-static",
        hostname="0123456789ab",
        hostname_file=Path("/state/run/hostname"),
        cgroups_path="/bgc-oci/inst/run",
        seccomp_filter=seccomp_filter,
    )


def mounts(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {mount["destination"]: mount for mount in c["mounts"]}


def test_checklist_fields() -> None:
    """New namespaces (network included: loopback only), no root, no capabilities, no new
    privileges, no swap, capped CPU and pids, read-only root, the same rlimits as Docker."""
    c = config()
    process, linux = c["process"], c["linux"]
    kinds = {namespace["type"] for namespace in linux["namespaces"]}
    assert kinds == {"mount", "network", "uts", "pid", "ipc"}
    assert all("path" not in namespace for namespace in linux["namespaces"])  # all new
    assert process["user"] == {"uid": 65534, "gid": 65534, "additionalGids": [65534]}
    assert process["capabilities"] == {}
    assert process["noNewPrivileges"] is True
    assert process["oomScoreAdj"] == 1000
    resources = linux["resources"]
    assert resources["memory"]["limit"] == resources["memory"]["swap"] == 256 * 1024 * 1024
    assert resources["cpu"] == {"shares": 512, "quota": 50_000, "period": 100_000}
    assert resources["pids"] == {"limit": 32}
    assert resources["devices"][0] == {"allow": False, "access": "rwm"}  # deny all first
    assert c["root"] == {"path": "/cache/abc/rootfs", "readonly": True}
    rlimits = {limit["type"]: (limit["soft"], limit["hard"]) for limit in process["rlimits"]}
    assert rlimits == {
        "RLIMIT_NOFILE": (1024, 1024),
        "RLIMIT_FSIZE": (16 * 1024 * 1024, 16 * 1024 * 1024),
        "RLIMIT_CORE": (0, 0),
    }
    assert linux["cgroupsPath"] == "/bgc-oci/inst/run"
    assert "hooks" not in c


def test_seccomp_is_dockers_default_profile() -> None:
    """Everything not listed fails with an error; no rule depends on a capability we drop."""
    seccomp = config()["linux"]["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {
        name
        for rule in seccomp["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW"
        for name in rule["names"]
    }
    assert {"read", "write", "execve", "clone"} <= allowed
    # Docker grants these only with CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_SYS_BOOT, ...
    assert not {"mount", "umount2", "unshare", "setns", "init_module", "kexec_load"} & allowed
    assert not {"reboot", "bpf", "clone3"} & allowed
    # clone only without namespace flags (a masked comparison of its first argument)
    clone = [rule for rule in seccomp["syscalls"] if rule["names"] == ["clone"]]
    assert [arg["op"] for rule in clone for arg in rule["args"]] == ["SCMP_CMP_MASKED_EQ"]


def test_a_compiled_filter_is_installed_by_the_helper_before_the_init() -> None:
    """Given runc's filter, the container's first process is the helper installing it, then
    the init with the same command; the runtime is given no profile to compile again."""
    program = bytes(range(16))
    plain, filtered = config(), config(seccomp_filter=program)
    assert filtered["process"]["args"] == [
        "/.bgc-run",
        "--seccomp",
        program.hex(),
        "--",
        *plain["process"]["args"],
    ]
    assert "seccomp" not in filtered["linux"]
    assert filtered["process"]["noNewPrivileges"] is True
    del plain["linux"]["seccomp"], plain["process"]["args"], filtered["process"]["args"]
    assert filtered == plain


def test_proc_and_sys_are_masked_and_read_only_as_docker_does() -> None:
    """/proc/kcore, /proc/keys, ... hidden; /proc/sys, /proc/sysrq-trigger, ... read-only;
    sysfs and the cgroup tree read-only."""
    c = config()
    assert c["linux"]["maskedPaths"] == list(MASKED_PATHS)
    assert {"/proc/kcore", "/proc/keys", "/sys/firmware"} <= set(MASKED_PATHS)
    assert c["linux"]["readonlyPaths"] == list(READONLY_PATHS)
    assert {"/proc/sys", "/proc/sysrq-trigger"} <= set(READONLY_PATHS)
    found = mounts(c)
    assert "ro" in found["/sys"]["options"]
    assert "ro" in found["/sys/fs/cgroup"]["options"]


def test_only_bg_tmp_and_shm_are_writable_and_all_are_size_limited() -> None:
    """/bg and /tmp: tmpfs of --disk MB owned by the sandbox user; /dev/shm 16 MB, noexec;
    the helper, the init and the hostname file read-only binds; nothing else from the host."""
    found = mounts(config())
    for path in ("/bg", "/tmp"):
        options = found[path]["options"]
        assert found[path]["type"] == "tmpfs"
        assert {"size=16m", "uid=65534", "nosuid", "nodev"} <= set(options)
    assert {"noexec", "size=16777216"} <= set(found["/dev/shm"]["options"])
    binds = {path: mount for path, mount in found.items() if mount["type"] == "bind"}
    assert set(binds) == {"/.bgc-run", "/sbin/docker-init", "/etc/hostname"}
    assert all("ro" in mount["options"] for mount in binds.values())
    assert binds["/.bgc-run"]["source"] == "/opt/bgc-run"


def test_the_program_runs_through_init_and_the_helper_with_the_image_env() -> None:
    """pid 1 is dockerd's init, then the helper; the environment is the image's, HOSTNAME
    and ours, nothing from the host."""
    c = config()
    assert c["process"]["args"] == ["/sbin/docker-init", "--", "/.bgc-run", "5000"]
    assert c["process"]["cwd"] == "/bg"
    assert c["process"]["env"] == [
        "PATH=/usr/bin:/bin",
        "LANG=C.UTF-8",
        "HOSTNAME=0123456789ab",
        "HOME=/tmp",
        "TMPDIR=/tmp",
    ]
    assert c["hostname"] == "0123456789ab"


def test_processes_are_bounded_by_the_mechanism_each_runtime_counts_right() -> None:
    """runc: the pids cgroup, no nproc. runsc: nproc, and the cgroup as a backstop."""
    runsc = config("runsc")
    assert {limit["type"]: limit["hard"] for limit in runsc["process"]["rlimits"]}[
        "RLIMIT_NPROC"
    ] == 32
    assert runsc["linux"]["resources"]["pids"]["limit"] > 32 * 9


def test_a_pinned_run_gets_its_cpuset() -> None:
    assert config(cpuset="1")["linux"]["resources"]["cpu"]["cpus"] == "1"
    assert "cpus" not in config()["linux"]["resources"]["cpu"]


@pytest.mark.parametrize(
    ("link", "name", "expected"),
    [
        ("/", "etc/hostname", "hostname"),  # an absolute link starts again at the root
        ("../../..", "etc/hostname", "hostname"),  # `..` never climbs above it
        ("usr/sbin", "sbin/docker-init", "usr/sbin/docker-init"),  # merged /usr
    ],
)
def test_mount_points_are_made_inside_the_image_whatever_its_links(
    tmp_path: Path, link: str, name: str, expected: str
) -> None:
    """An image's symbolic link never sends an unpack's mount point onto the host."""
    root = tmp_path / "rootfs"
    root.mkdir()
    first = name.split("/")[0]
    os.symlink(link, root / first)
    assert resolve_inside(root, name) == root / expected


def test_container_ids_name_their_instance() -> None:
    assert container_owner("bgc-0123abcd-89ab") == "0123abcd"
    assert container_owner("other-0123") is None
    assert container_owner("bgc-../x-1") is None


def test_only_dead_instances_unpacks_in_progress_are_removed(tmp_path: Path) -> None:
    """A `.partial` unpack is named after its instance: at start-up, those of dead
    instances (and unnamed ones) go; a live instance sharing the cache keeps its own."""
    cache = RootfsCache(Engine(None, 5), tmp_path, {}, "self0")
    for name in ("ab12.dead1.0000.partial", "ab12.live1.1111.partial", "ab12.2222.partial"):
        (tmp_path / name / "rootfs").mkdir(parents=True)
    (tmp_path / "ab12" / "rootfs").mkdir(parents=True)  # a whole root stays
    cache.remove_partial(lambda instance: instance == "dead1")
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [
        "ab12",
        "ab12.live1.1111.partial",
    ]
