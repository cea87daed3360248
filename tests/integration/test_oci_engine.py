"""The OCI engine (--engine oci) against the real runc and runsc of this machine.

The adversarial catalogue and the measurement suite run on it too (they are parametrised
over both engines); here: its config against dockerd's own, what a program sees from
inside on each engine, every language and API through it, and nothing left behind.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bgcompiler.app import docker_sandbox, oci_sandbox
from bgcompiler.metrics import Metrics
from bgcompiler.models import RunSpec
from bgcompiler.sandbox.engine import Engine
from bgcompiler.sandbox.hardening import container_config
from bgcompiler.sandbox.measure import HELPER_IN_CONTAINER, ensure_helper
from bgcompiler.sandbox.oci.config import bundle_config, docker_seccomp_profile
from bgcompiler.sandbox.oci.runtime import Runtime
from bgcompiler.sandbox.oci.seccomp_filter import installed_filter, runc_filter
from bgcompiler.services import limits_from
from bgcompiler.settings import Settings
from tests.conftest import (
    BUSYBOX,
    TEST_FLAGS,
    Server,
    launch,
    oci_leftovers,
    timed,
    wait_until,
)
from tests.integration.seccomp_bpf import verdicts
from tests.integration.test_piston_ws import (
    test_a_compiled_language_compiles_then_runs_with_live_input as live_compile_and_run,
)

pytestmark = pytest.mark.integration

OCI = pytest.mark.parametrize(
    "shared_engine_server",
    [
        pytest.param(("oci", "runc"), id="oci-runc"),
        pytest.param(("oci", "runsc"), id="oci-runsc", marks=pytest.mark.gvisor),
    ],
    indirect=True,
)
BOTH_RUNTIMES = pytest.mark.parametrize(
    "runtime", ["runc", pytest.param("runsc", marks=pytest.mark.gvisor)]
)
# Where dockerd (through containerd) writes the bundle of a container it starts.
DOCKERD_BUNDLES = "/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby"


def settings(tmp_path: Path, runtime: str) -> Settings:
    return Settings(
        state_dir=str(tmp_path / "state"),
        gvisor=runtime == "runsc",
        pool=0,
        memory=256,
        disk=16,
        timeout=10,
    )


@BOTH_RUNTIMES
async def test_the_bundle_is_what_dockerd_gives_the_runtime(tmp_path: Path, runtime: str) -> None:
    """For the same run, our config.json is the one dockerd writes for the Docker path's
    container, field by field: only the root's path, the cgroup, the hostname file and the
    init's path (a link resolved) are ours, and dockerd's empty hooks and unset block-I/O
    weight are absent. The seccomp profile is replaced by the helper installing the filter
    runc made of it once, under runsc too: dockerd's profile is the one runc compiled, and
    under runc the filter answers every system call (three architectures, the arguments the
    profile tests) as the filter the kernel holds for the Docker path's container does
    (under runsc the Docker path's filter is in gVisor's kernel, out of the host's reach)."""
    config = settings(tmp_path, runtime)
    spec = RunSpec(BUSYBOX, "true", (), b"", limits_from(config), config.runtime_name)
    helper = str(ensure_helper(None, Path(config.cache_dir)))
    engine = Engine(None, 5)
    await engine.negotiate()
    labels = {"io.bg-compiler.test": "oci-config"}
    container = await engine.create(container_config(spec, labels, helper))
    try:
        await engine.start(container)  # the helper waits for its archive: it stays up
        (path,) = glob.glob(f"{DOCKERD_BUNDLES}/{container}/config.json")
        with open(path) as bundle:  # noqa: ASYNC230  (one small local file)
            dockerd: dict[str, Any] = json.load(bundle)
        if runtime == "runc":
            pid = (await engine.inspect(container))["State"]["Pid"]
            dockerd_filter = await asyncio.to_thread(installed_filter, pid)
    finally:
        await engine.remove(container)
        await engine.close()
    hostname_file = next(m for m in dockerd["mounts"] if m["destination"] == "/etc/hostname")
    runc = Runtime.find("runc", tmp_path / "runc-state")
    made = await runc_filter(
        runc, helper, tmp_path / "bundle", "bgc-test-seccomp", "/bgc-test/seccomp"
    )
    ours = bundle_config(
        spec,
        rootfs=Path(dockerd["root"]["path"]),
        image_env=[],  # the busybox image has none: dockerd's default PATH
        helper=helper,
        init="/usr/bin/docker-init",
        hostname=dockerd["hostname"],
        hostname_file=Path(hostname_file["source"]),
        cgroups_path=dockerd["linux"]["cgroupsPath"],
        seccomp_filter=made,
    )
    assert len(made) > 8 * 500  # Docker's profile: hundreds of instructions
    answers = verdicts(made)
    assert len(set(answers)) >= 3  # allow, errno and kill-process verdicts all occur
    if runtime == "runc":
        # runc lays the same rules out differently from one start to another: the filters
        # must answer the same, whatever their bytes.
        assert answers == verdicts(dockerd_filter)
    assert dockerd["linux"]["seccomp"] == docker_seccomp_profile()  # what runc compiled
    loader = ours["process"]["args"][:4]
    assert loader == [HELPER_IN_CONTAINER, "--seccomp", made.hex(), "--"]
    del ours["process"]["args"][:4]
    ours["linux"]["seccomp"] = dockerd["linux"]["seccomp"]
    assert dockerd.pop("hooks", {}) == {}
    assert dockerd["linux"]["resources"].pop("blockIO", {}) == {"weight": 0}
    # dockerd orders its mounts with an unstable sort by depth: mounts that do not contain
    # one another come in any order from one container to the next (seen: 1 run in 5 here).
    # Their order does not matter; they are compared by destination.
    for made_config in (ours, dockerd):
        made_config["mounts"] = sorted(
            made_config["mounts"], key=lambda mount: mount["destination"]
        )
    assert ours == dockerd


# What a program can see of its own confinement: limits, identity, capabilities, seccomp,
# mounts (type and options), devices, network interfaces, masked and read-only /proc.
PROBE = r"""
cat /proc/self/limits
grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status
echo MOUNTS
awk '$2 != "/" {print $2, $3, $4}' /proc/mounts | sort
echo DEV; ls /dev | sort
echo NET; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort
echo MASKED; wc -c < /proc/kcore; ls /proc/acpi 2>&1 | head -1
echo RO; echo 1 > /proc/sys/kernel/panic || echo refused
echo x > /proc/sysrq-trigger || echo refused
echo ROOT; touch /rootfile 2>/dev/null && echo written || echo refused
echo CGROUP; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max 2>&1
echo ENV; env | cut -d= -f1 | sort
echo ULIMIT; ulimit -a
"""


@BOTH_RUNTIMES
async def test_a_program_sees_the_same_confinement_on_both_engines(
    tmp_path: Path, runtime: str
) -> None:
    """The same probe, run on the Docker engine and on the OCI engine with the same limits,
    prints the same: rlimits, user, capabilities, no_new_privs, seccomp, every mount with
    its options, devices, interfaces (only lo), masked and read-only /proc entries, the
    read-only root, the cgroup limits and the environment's names."""
    config = settings(tmp_path, runtime)
    spec = RunSpec(BUSYBOX, PROBE, (), b"", limits_from(config), config.runtime_name)
    outputs = []
    for make in (docker_sandbox, oci_sandbox):
        box = make(config, Metrics({}))
        await box.open()
        try:
            result = await box.run(spec)
        finally:
            await box.close()
        assert result.status.value == "ok", (make.__name__, result)
        outputs.append(result.stdout.decode() + result.stderr.decode())
    docker, oci = outputs
    assert "NET\nlo\nMASKED" in docker  # the positive control: only loopback
    assert "ROOT\nrefused\n" in docker
    assert oci == docker


@OCI
def test_every_present_language_runs_through_every_api(shared_engine_server: Server) -> None:
    """Each language whose image is present answers a program on /api/v1/runs; /compile,
    Judge0's /submissions and Piston's /execute and its live WebSocket (a compile stage,
    then a run with input typed while it runs) all work through the OCI engine."""
    server = shared_engine_server
    languages = server.client.get("/api/v1/languages").json()
    present = [language["name"] for language in languages if language["image_present"]]
    assert {"sh", "python", "c"} <= set(present)
    programs = {
        "sh": "echo hi",
        "bash": "echo hi",
        "python": "print('hi')",
        "c": '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }',
        "cpp": '#include <cstdio>\nint main() { std::puts("hi"); }',
    }
    for name in present:
        if name in programs:
            run = server.v1(language=name, script=programs[name])["runs"][0]
            assert (run["status"], run["stdout"]) == ("ok", "hi\n"), (name, run)
    assert server.run("echo legacy")["stdout"] == "legacy\n"
    judged = server.client.post(
        "/submissions",
        params={"wait": "true"},
        json={"source_code": "print(input()[::-1])", "language_id": 71, "stdin": "abc"},
    ).json()
    assert (judged["status"]["id"], judged["stdout"]) == (3, "cba\n"), judged
    executed = server.post_ok(
        "/api/v2/execute",
        language="python",
        version="3",
        files=[{"content": "print(input() * 2)"}],
        stdin="ab",
    )
    assert executed["run"]["stdout"] == "abab\n", executed
    live_compile_and_run(server)


@BOTH_RUNTIMES
def test_nothing_is_left_after_runs_errors_a_crash_and_a_stop(tmp_path: Path, runtime: str) -> None:
    """After good runs, a timeout, an output flood, a run of an absent image and a client
    that hangs up mid-run: no container, bundle, cgroup or runtime process of the instance
    is left (checked after each step). A SIGKILLed instance's running container is
    reaped by the next instance on the host (its lease is dead); a stopped one leaves
    nothing at all."""
    crashed = launch(tmp_path / "a", *TEST_FLAGS, runtime=runtime, engine="oci")
    assert crashed.run("echo ok")["stdout"] == "ok\n"
    assert crashed.settled()
    hung_up = subprocess.Popen(
        ["curl", "-s", "-m", "1", "-XPOST", f"{crashed.url}/compile", "-H",
         "content-type: application/json", "-d",
         json.dumps({"script": "sleep 30", "image": BUSYBOX, "cmd": "sh", "count": 1})],
    )  # fmt: skip
    hung_up.wait()
    assert wait_until(lambda: not crashed.busy(), timeout=30)
    assert crashed.settled(), crashed.containers()
    started = crashed.client.post(
        "/api/v1/jobs", json={"script": "sleep 30", "language": "sh"}
    )  # a run in flight when the instance dies
    assert started.status_code == 202, started.text
    assert wait_until(lambda: len(crashed.containers()) > 0, timeout=30)
    dead = crashed.instance
    assert dead is not None
    crashed.kill()
    assert oci_leftovers(crashed.state_dir or tmp_path, dead)  # the positive control

    server = launch(tmp_path / "b", *TEST_FLAGS, runtime=runtime, engine="oci")
    assert oci_leftovers(server.state_dir or tmp_path, dead) == []  # reaped at start-up
    for script, status in (
        ("echo ok", "ok"),
        ("while :; do :; done", "timeout"),
        ("yes", "output_limit"),
    ):
        assert server.run(script)["status"] == status
        assert server.settled(), server.containers()
    absent = server.compile(script="echo x", image="bgc/absent:1", cmd="sh")
    assert absent.status_code == 422, absent.text
    assert server.settled(), server.containers()
    assert server.stop() == 0  # and nothing of the instance remains (Server.stop checks)


# A runsc whose `wait` answers 30 s late (the real one answers only once the host's init has
# reaped the sandbox, 1.5-2 s after its end here): whatever waits for it shows in the answer.
SLOW_WAIT_RUNSC = """#!/bin/sh
for arg; do [ "$arg" = wait ] && sleep 30 && break; done
exec /usr/bin/runsc "$@"
"""


@pytest.mark.gvisor
def test_a_runsc_run_s_end_and_exit_code_come_without_runsc_wait(tmp_path: Path) -> None:
    """Under runsc, a program that exits 3 or times out is answered from the helper's record,
    and one that killed its own helper (`kill -9 -1`, no record) gets the container's exit
    code, 137, from the helper adopting the sandbox: neither waits for `runsc wait`. Timed
    against the run's own duration: the answer comes less than 2 s after it, where waiting
    for the runtime took the whole patience (3 s), and the killed helper's run then had no
    exit code at all (internal_error)."""
    wrapped = tmp_path / "bin"
    wrapped.mkdir()
    (wrapped / "runsc").write_text(SLOW_WAIT_RUNSC)
    (wrapped / "runsc").chmod(0o755)
    server = launch(
        tmp_path,
        *TEST_FLAGS,
        runtime="runsc",
        engine="oci",
        env={"PATH": f"{wrapped}:{os.environ['PATH']}"},
    )
    try:
        for script, status, exit_code in (
            ("echo out; exit 3", "runtime_error", 3),
            ("sleep 30", "timeout", 137),
            ("sleep 0.3; kill -9 -1; sleep 1", "runtime_error", 137),
        ):
            result, waited = timed(lambda script=script: server.run(script))
            assert (result["status"], result["exit_code"]) == (status, exit_code), result
            assert waited - result["duration_ms"] / 1000 < 2.0, (waited, result)
        assert server.settled(timeout=90), server.containers()
    finally:
        assert server.stop() == 0


def docker_cli(*args: str, stdin: str = "") -> str:
    return subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout.strip()


async def test_the_root_of_an_image_the_engine_no_longer_has_is_removed(tmp_path: Path) -> None:
    """An image run once on the OCI engine is unpacked in the cache; once the engine no
    longer has that image (removed, or rebuilt under its name), the next start removes its
    root, and keeps the roots of images still there."""
    tag = f"bgc-test/stale-root:{tmp_path.name.lower()[-12:]}"
    dockerfile = f"FROM {BUSYBOX}\nLABEL io.bg-compiler.test={tmp_path.name}\n"
    image_id = await asyncio.to_thread(docker_cli, "build", "-q", "-t", tag, "-", stdin=dockerfile)
    key = image_id.rsplit(":", 1)[-1]
    roots = tmp_path / "cache" / "oci-rootfs"
    config = Settings(state_dir=str(tmp_path / "state"), cache_dir=str(tmp_path / "cache"), pool=0)
    try:
        box = oci_sandbox(config, Metrics({}))
        await box.open()
        try:
            spec = RunSpec(tag, "echo hi", (), b"", limits_from(config), None)
            assert (await box.run(spec)).stdout == b"hi\n"
        finally:
            await box.close()
        busybox_keys = {entry.name for entry in roots.iterdir()} - {key}
        assert (roots / key / "rootfs").is_dir()
        assert busybox_keys  # the start-up check's image, still in the engine
    finally:
        await asyncio.to_thread(docker_cli, "rmi", "-f", tag)
    again = oci_sandbox(config, Metrics({}))
    await again.open()
    await again.close()
    assert {entry.name for entry in roots.iterdir()} == busybox_keys
