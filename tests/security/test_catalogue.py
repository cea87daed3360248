"""The adversarial catalogue (docs/security.md), on both engines, with runc and with runsc.

Each case asserts its exact status, then what every case must leave true (see
`assert_contained`): a bounded answer, a benign run right after that succeeds, and no
container of ours left on the engine.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import PYTHON, Server, network_probe, settled_after, timed
from tests.security.conftest import assert_contained

pytestmark = pytest.mark.integration

CAP = 30 * 1024  # --output 30
PIDS = 64  # the default --pids
DISK = 16 * 1024 * 1024  # --disk 16
# An answer may come this long after its limit (the helper's kill, and the engine's).
TIMEOUT_MARGIN_S = 3
KILLED_AT_ONCE_S = 6  # see tests/integration/test_compile.py


@pytest.fixture
def server(shared_engine_server: Server) -> Iterator[Server]:
    """Every case holds on both engines (Docker, OCI), each under runc and runsc."""
    yield shared_engine_server
    settled_after(shared_engine_server)


@pytest.fixture
def patient_server(shared_engine_patient_server: Server) -> Iterator[Server]:
    """PATIENT_FLAGS, on both engines under both runtimes."""
    yield shared_engine_patient_server
    settled_after(shared_engine_patient_server)


def py(server: Server, script: str, **body: Any) -> dict[str, Any]:
    return server.run(script, image=PYTHON, cmd="python3", extension="py", **body)


def test_fork_bomb_is_capped(server: Server) -> None:
    """A fork bomb hits the process cap (its forks fail with "can't fork"), never more than
    --pids processes exist, and the run ends at its timeout.

    The bomb runs in a process group of its own, which is stopped (one `kill -STOP`, which
    no fork can slip past) before its processes are counted: a listing of /proc while it
    churns counts processes that exited and those forked after them alike, so it can count
    more than ever existed at once (71 against a cap of 64, seen once)."""
    result = server.run(
        # Waits (builtins only: at the cap, nothing else can fork) until a fork was refused.
        "setsid sh -c 'f(){ f|f& }; f' 2>/tmp/bomb & bomb=$!;"
        " until [ -s /tmp/bomb ]; do :; done;"
        ' read -r first < /tmp/bomb; echo "first: $first"; kill -STOP -$bomb;'
        " set -- /proc/[0-9]*; echo procs=$#; while :; do :; done"
    )
    assert result["status"] == "timeout"
    procs = int(result["stdout"].split("procs=")[1].split()[0])
    assert 1 <= procs <= PIDS + 2
    assert "can't fork" in result["stdout"].split("first: ")[1].splitlines()[0], result
    assert_contained(server, result)


def test_memory_bomb_is_a_memory_limit(server: Server) -> None:
    """Allocating without end is killed by the kernel: memory_limit, never ok."""
    result = py(server, "chunks = []\nwhile True:\n    chunks.append(b'x' * (8 << 20))\n")
    assert result["status"] == "memory_limit"
    assert result["oom_killed"] is True
    assert_contained(server, result)


def test_disk_fill_fails_inside_and_leaves_the_host_disk_alone(server: Server) -> None:
    """Writing without end to /bg, /tmp and / fails in the run; the host's disk is untouched."""
    before = shutil.disk_usage("/var/lib/docker").used
    result = server.run(
        'for d in /bg /tmp /; do cat /dev/zero > $d/fill 2>/dev/null; echo "$d=$?"; done;'
        " wc -c /bg/fill /tmp/fill"
    )
    after = shutil.disk_usage("/var/lib/docker").used
    assert result["status"] == "ok"
    codes = dict(line.split("=") for line in result["stdout"].splitlines() if "=" in line)
    assert all(code != "0" for code in codes.values()), codes  # every write failed
    sizes = [int(line.split()[0]) for line in result["stdout"].splitlines() if "fill" in line]
    assert all(size <= DISK for size in sizes)
    assert after - before < 8 * 1024 * 1024  # memory-backed: nothing reached the host disk
    assert_contained(server, result)


@pytest.mark.parametrize(
    ("script", "stream"),
    [
        ("yes", "stdout"),
        ("yes >&2", "stderr"),
        ("head -c 100000000 /dev/zero | tr '\\0' a", "stdout"),  # one line, no newline
        ("head -c 100000000 /dev/zero | tr '\\0' a >&2", "stderr"),
    ],
    ids=["stdout-lines", "stderr-lines", "stdout-one-line", "stderr-one-line"],
)
def test_output_floods_are_cut_at_the_cap_and_killed(
    patient_server: Server, script: str, stream: str
) -> None:
    """A flood is cut at exactly the cap and killed at once: output_limit, never a timeout.
    The time limit is 60 s: the answer, timed here, must come long before."""
    result, waited = timed(lambda: patient_server.run(script + "; sleep 60"))
    assert result["status"] == "output_limit"
    assert len(result[stream].encode()) == CAP
    assert result["timed_out"] is False
    assert waited < KILLED_AT_ONCE_S
    assert_contained(patient_server, result)


def test_infinite_loop_times_out_at_the_limit(server: Server) -> None:
    """A busy loop is killed at --timeout (3 s): never before it, and answered within a
    bounded margin after it."""
    result, waited = timed(lambda: server.run("while :; do :; done"))
    assert result["status"] == "timeout"
    assert result["wall_ms"] >= 3000
    assert 3 <= waited < 3 + TIMEOUT_MARGIN_S
    assert_contained(server, result)


def test_sleep_times_out_on_the_wall_clock(server: Server) -> None:
    """A sleeping program uses no CPU but is still killed at --timeout."""
    result, waited = timed(lambda: server.run("sleep 3600"))
    assert result["status"] == "timeout"
    assert result["wall_ms"] >= 3000
    assert 3 <= waited < 3 + TIMEOUT_MARGIN_S
    assert_contained(server, result)


def test_an_orphaned_busy_child_dies_with_its_container(server: Server) -> None:
    """A busy child in its own session outliving its parent ends when the run ends: no host
    process of the run is left. Under runc the orphan itself is a host process (found by its
    command line); under gVisor the sandbox's host processes carry the container's id. Each
    is seen while the run goes on (the positive control), and is gone after it."""
    marker = "orphan-marker-7c1f"
    pattern = marker if server.runtime == "runc" else "runsc-sandbox"
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
            seen.extend(found.stdout.splitlines())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = server.run(
            f"hostname; setsid sh -c 'while :; do :; done # {marker}' & sleep 1; echo parent-exits"
        )
    finally:
        done.set()
        watcher.join()
    assert result["status"] == "ok"
    hostname, said = result["stdout"].split()
    assert said == "parent-exits"
    mine = marker if server.runtime == "runc" else hostname
    assert any(mine in line for line in seen), "the run's processes were never seen"
    assert_contained(server, result)
    found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    assert mine not in found.stdout, f"the orphan survived its container: {found.stdout}"


def test_closed_stdout_still_times_out_and_keeps_earlier_output(server: Server) -> None:
    """Closing fds 1 and 2 does not end the run early, and what was printed is kept."""
    result = server.run("echo early; exec 1>&- 2>&-; while :; do :; done")
    assert result["status"] == "timeout"
    assert result["stdout"] == "early\n"
    assert_contained(server, result)


def test_dev_shm_is_small_and_private(server: Server) -> None:
    """Writing 1 GB to /dev/shm fails early; the next run's /dev/shm is empty."""
    result = server.run(
        "dd if=/dev/zero of=/dev/shm/big bs=1M count=1024 2>/dev/null; echo rc=$?;"
        " wc -c < /dev/shm/big"
    )
    assert result["status"] == "ok"
    assert "rc=0" not in result["stdout"]
    assert int(result["stdout"].split()[-1]) <= DISK
    assert_contained(server, result)
    assert server.run("ls -A /dev/shm")["stdout"] == ""


def test_no_network_reaches_anywhere(server: Server) -> None:
    """Only `lo` exists and no route leads anywhere: a connection to the metadata address,
    the bridge gateway, a public resolver or the configured name server fails at once with
    ENETUNREACH (EHOSTUNREACH under gVisor): no packet leaves, there is no route. No name
    resolves. Loopback inside the run works, the positive control."""
    targets = ("169.254.169.254:80", "172.17.0.1:53", "8.8.8.8:53")
    result = py(server, network_probe(*targets))
    lines = result["stdout"].splitlines()
    assert lines[0] == "loopback: loop", result
    tried = lines[1:-1]
    assert len(tried) >= len(targets), lines  # and the configured name server, if any
    for line in tried:
        assert line.split()[1] in ("ENETUNREACH", "EHOSTUNREACH"), line
    assert lines[-1] == "dns: failed"
    assert_contained(server, result)


def test_the_host_is_invisible(server: Server) -> None:
    """Only the allow-listed environment, no engine socket, no capabilities at all."""
    result = server.run(
        "env; echo SOCK; ls /var/run/docker.sock /run/docker.sock 2>&1; echo CAPS;"
        " grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status"
    )
    env_part, rest = result["stdout"].split("SOCK")
    names = {line.split("=")[0] for line in env_part.splitlines() if "=" in line}
    assert names <= {"HOSTNAME", "SHLVL", "HOME", "OLDPWD", "TMPDIR", "PATH", "PWD"}
    socks, caps = rest.split("CAPS")
    assert "No such file" in socks
    assert "srw" not in socks
    for line in caps.strip().splitlines():
        assert line.split()[1] == "0000000000000000", line
    assert_contained(server, result)


SECCOMP_PROBE = r"""
import ctypes, errno
print(next(line for line in open('/proc/self/status') if line.startswith('Seccomp:')).strip())
libc = ctypes.CDLL(None, use_errno=True)
for name, call in (('unshare', lambda: libc.unshare(0x10000000)),  # CLONE_NEWUSER
                   ('keyctl', lambda: libc.syscall(250, 0, 0, 0, 0, 0))):  # keyctl(2)
    refused = call() == -1 and ctypes.get_errno() == errno.EPERM
    print(name, 'refused' if refused else 'allowed')
"""


def test_docker_s_seccomp_profile_is_in_force(server: Server) -> None:
    """The run is under a seccomp filter (`Seccomp: 2`), and calls Docker's default profile
    refuses a container without capabilities are refused with EPERM: a new user namespace
    (which the kernel itself allows without privilege) and the kernel keyring. gVisor, too,
    applies the profile only when told to (`--oci-seccomp`)."""
    result = py(server, SECCOMP_PROBE)
    assert result["status"] == "ok", result
    assert result["stdout"].splitlines() == [
        "Seccomp:\t2",
        "unshare refused",
        "keyctl refused",
    ], result
    assert_contained(server, result)


def test_a_run_cannot_read_what_an_earlier_run_left(server: Server) -> None:
    """Files written by run A in /bg, /tmp and /dev/shm are not there for run B."""
    server.run("for d in /bg /tmp /dev/shm; do echo secret > $d/secret; done")
    result = server.run("cat /bg/secret /tmp/secret /dev/shm/secret 2>&1; true")
    assert "secret\n" not in result["stdout"]
    assert result["stdout"].count("No such file") == 3
    assert_contained(server, result)


def test_kill_everything_only_affects_its_own_run(server: Server) -> None:
    """`kill -9 -1` in one run leaves a run executing at the same time unharmed. In its own
    container it also kills the measuring helper, so that run ends unmeasured with 137."""
    neighbour: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: neighbour.update(server.run("sleep 1; echo alive")))
    thread.start()
    result = server.run("sleep 0.3; kill -9 -1; sleep 1; echo after")
    thread.join()
    assert result["status"] == "runtime_error"
    assert result["exit_code"] == 137
    assert result["cpu_ms"] is None  # its helper is gone: no figures rather than wrong ones
    assert "after" not in result["stdout"]
    assert neighbour["status"] == "ok"
    assert neighbour["stdout"] == "alive\n"
    assert_contained(server, result)


def test_fd_exhaustion_fails_inside_the_run(server: Server) -> None:
    """Opening files without end hits the nofile limit (EMFILE) inside the run only."""
    result = py(
        server,
        "fs = []\ntry:\n    while True:\n        fs.append(open('/dev/null'))\n"
        "except OSError as e:\n    print(len(fs), e.errno)\n",
    )
    assert result["status"] == "ok"
    count, errno = map(int, result["stdout"].split())
    assert errno == 24  # EMFILE
    assert count < 1024
    assert_contained(server, result)


def test_invalid_utf8_comes_back_as_valid_json_with_exact_bytes(server: Server) -> None:
    """Bytes that are not UTF-8: readable text with U+FFFD, and the exact bytes in base64."""
    result = server.run("printf 'ok\\377\\376\\n'; printf 'e\\300' >&2")
    assert result["status"] == "ok"
    assert result["stdout"] == "ok\ufffd\ufffd\n"
    assert base64.b64decode(result["stdout_base64"]) == b"ok\xff\xfe\n"
    assert base64.b64decode(result["stderr_base64"]) == b"e\xc0"
    assert_contained(server, result)


def test_a_multibyte_character_cut_by_the_cap_keeps_every_byte(server: Server) -> None:
    """The cap falls inside a 2-byte character: the exact CAP bytes still come back."""
    result = server.run("printf a; yes 'é' | tr -d '\\n'")
    assert result["status"] == "output_limit"
    expected = (b"a" + "é".encode() * CAP)[:CAP]
    assert base64.b64decode(result["stdout_base64"]) == expected
    assert result["stdout"] == expected.decode("utf-8", errors="replace")
    assert_contained(server, result)


def test_symlinks_made_by_a_run_are_never_followed_by_the_host(server: Server) -> None:
    """A run that turns its files into links to host paths changes nothing outside itself:
    the host never reads or writes a path inside a container."""
    before = open("/etc/hostname", "rb").read()  # noqa: SIM115  (one small read)
    result = server.run(
        "ln -sf /etc/hostname /bg/main.ext; ln -sf /var/run/docker.sock /bg/input.txt;"
        " ln -s /etc /tmp/etc; mkdir -p /bg/x; ln -s ../../.. /bg/x/up; echo linked",
        input="data",
    )
    assert result["status"] == "ok"
    assert open("/etc/hostname", "rb").read() == before  # noqa: SIM115
    assert_contained(server, result)


@pytest.mark.parametrize("extension", ["../x", "/abs", "a/../b", "a\u0000b", "x" * 17, "py x"])
def test_path_tricks_in_names_are_refused(server: Server, extension: str) -> None:
    """File names that could leave the work directory are a 422; nothing runs."""
    response = server.compile(script="x", image="bgc/busybox:latest", cmd="sh", extension=extension)
    assert response.status_code == 422
    assert response.json()["field"] == "extension"
