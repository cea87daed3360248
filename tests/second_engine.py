"""A second Docker engine beside the machine's first one, so that tests of several worker
nodes give each node an engine of its own.

It is a `dockerd` with its own data root, exec root, pid file and unix socket under one
temporary directory, `--iptables=false --ip-masq=false` (the first engine owns the NAT
rules), and a bridge of its own created before it starts. Never `--bridge=none`: that makes
dockerd delete the first engine's `docker0`, after which the first engine's image builds fail.
`--config-file /etc/docker/daemon.json` gives it the same runtimes (runsc) as the first.

It starts with no image and can pull none: `load_images()` copies the project's images from
the first engine (`docker save | docker load`). Teardown removes every container of it (all
are the tests'), stops the daemon and its containerd, unmounts what they left, deletes the
bridge and the directory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.redis_server import process_alive

DAEMON_CONFIG = Path("/etc/docker/daemon.json")
# The private range the bridges of second engines take their /24 from (the first engine's
# docker0 is 172.17.0.0/16).
_BRIDGE_RANGE = ipaddress.IPv4Network("172.31.0.0/16")


def _ping(socket_path: Path) -> bool:
    """The Engine API's GET /_ping over the unix socket: OK once the daemon serves."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(socket_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
    except OSError:
        return False
    return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-j", "-4", "addr"], check=True, capture_output=True, text=True
    ).stdout
    return [
        ipaddress.IPv4Interface(f"{address['local']}/{address['prefixlen']}").network
        for link in json.loads(out)
        for address in link.get("addr_info", [])
    ]


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 172.31.0.0/16 that no interface of this machine uses (picked at random, so
    that two test sessions starting engines at once rarely even try the same one)."""
    used = _used_networks()
    candidates = list(_BRIDGE_RANGE.subnets(new_prefix=24))[1:-1]
    for _ in range(64):
        subnet = candidates[secrets.randbelow(len(candidates))]
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise RuntimeError("no free /24 in 172.31.0.0/16 for a second engine's bridge")


@dataclass(frozen=True)
class SecondEngine:
    """A running second dockerd: its socket, its bridge, its files."""

    root: Path
    bridge: str
    subnet: ipaddress.IPv4Network

    @property
    def socket_path(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        """What `--docker-host` and `DOCKER_HOST` take."""
        return f"unix://{self.socket_path}"

    @property
    def pidfile(self) -> Path:
        return self.root / "docker.pid"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def exec_root(self) -> Path:
        return self.root / "exec"

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this engine."""
        return subprocess.run(
            ["docker", "-H", self.host, *args], check=check, capture_output=True, text=True
        )

    def containers(self) -> list[str]:
        """Every container of this engine, running or not (all of them are the tests')."""
        return self.docker("ps", "-aq", "--no-trunc").stdout.split()

    def images(self) -> list[str]:
        out = self.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        return out.split()

    def load_images(self, tags: Sequence[str]) -> None:
        """Copies images from the first engine (`docker save | docker load`), those it does
        not hold yet; never pulls."""
        have = set(self.images())
        missing = [tag for tag in tags if tag not in have]
        if not missing:
            return
        save = subprocess.Popen(["docker", "save", *missing], stdout=subprocess.PIPE)
        assert save.stdout is not None
        try:
            subprocess.run(
                ["docker", "-H", self.host, "load", "-q"],
                stdin=save.stdout,
                check=True,
                capture_output=True,
            )
        finally:
            save.stdout.close()
            if save.wait() != 0:
                raise RuntimeError(f"docker save {' '.join(missing)} failed on the first engine")

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None


def _create_bridge(name: str, subnet: ipaddress.IPv4Network) -> None:
    gateway = f"{next(subnet.hosts())}/{subnet.prefixlen}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True, capture_output=True)
    subprocess.run(["ip", "addr", "add", gateway, "dev", name], check=True, capture_output=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True, capture_output=True)


def _delete_bridge(name: str) -> None:
    subprocess.run(["ip", "link", "delete", name], check=False, capture_output=True)


def _processes_under(root: Path) -> list[int]:
    """Processes whose command line names a path in `root` (the daemon's containerd and
    shims): ours only, since the directory is ours alone."""
    marker = str(root).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _unmount_under(root: Path) -> None:
    """Lazily unmounts whatever a daemon that died left mounted in `root` (overlays, network
    namespaces), deepest first."""
    prefix = f"{root}/"
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _signal_all(pids: Sequence[int], signum: signal.Signals) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signum)


def _wait_gone(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(process_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _stop(engine: SecondEngine, daemon: subprocess.Popen[bytes]) -> None:
    """Removes every container, stops the daemon (SIGTERM, then SIGKILL after a while) and
    anything of it still running, and unmounts what it left."""
    if _ping(engine.socket_path) and (ids := engine.containers()):
        engine.docker("rm", "-f", "-v", *ids, check=False)
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    leftovers = _processes_under(engine.root)
    _signal_all(leftovers, signal.SIGTERM)
    if not _wait_gone(leftovers, timeout=10):
        _signal_all(leftovers, signal.SIGKILL)
        _wait_gone(leftovers, timeout=10)
    _unmount_under(engine.root)


@contextmanager
def second_engine(
    images: Sequence[str] = (), *, start_timeout: float = 60.0
) -> Iterator[SecondEngine]:
    """Starts a second dockerd with `images` loaded from the first; removes everything of it
    after."""
    # Short: a unix socket's path is limited to 107 bytes and containerd's lies in exec-root.
    root = Path(tempfile.mkdtemp(prefix="bgcd-", dir="/tmp"))
    engine = SecondEngine(root, f"bgcd{secrets.token_hex(3)}", _free_subnet())
    daemon: subprocess.Popen[bytes] | None = None
    try:
        _create_bridge(engine.bridge, engine.subnet)
        command = [
            "dockerd",
            "--host", engine.host,
            "--data-root", str(engine.data_root),
            "--exec-root", str(engine.exec_root),
            "--pidfile", str(engine.pidfile),
            "--bridge", engine.bridge,
            "--iptables=false",
            "--ip-masq=false",
        ]  # fmt: skip
        if DAEMON_CONFIG.exists():
            command += ["--config-file", str(DAEMON_CONFIG)]
        with engine.log_path.open("ab") as log:
            # Its own session: a Ctrl-C in the terminal of the tests does not reach it first.
            daemon = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + start_timeout
        while not _ping(engine.socket_path):
            if daemon.poll() is not None or time.monotonic() > deadline:
                log_text = engine.log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"the second dockerd did not come up:\n{log_text}")
            time.sleep(0.05)
        engine.load_images(images)
        yield engine
    finally:
        if daemon is not None:
            _stop(engine, daemon)
        _delete_bridge(engine.bridge)
        shutil.rmtree(root, ignore_errors=True)
