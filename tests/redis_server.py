"""A real Redis server for tests: Debian's `redis-server` (installed when missing), on a free
loopback port, with no persistence, its pid file and log in a temporary directory removed
after. `stop()` and `start()` make an outage of it on the same port (a restart loses every
key: nothing is saved, as after a crash of a server without persistence)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REDIS_SERVER = "/usr/bin/redis-server"
# apt and dpkg take a lock: another installer on this machine makes us wait, not fail.
_APT_WAIT = ("-o", "DPkg::Lock::Timeout=300")


def ensure_redis_server() -> str:
    """Debian's redis-server, installed with apt when it is not there yet (installing it
    starts nothing here: there is no init system)."""
    if not Path(REDIS_SERVER).exists():
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, env=env)
        install = ["apt-get", *_APT_WAIT, "install", "-y", "-q", "redis-server"]
        subprocess.run(install, check=True, capture_output=True, env=env)
    return REDIS_SERVER


def _ping(port: int) -> bool:
    """A raw PING: no client library, so the fixture does not depend on one."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    """Whether the process runs; a zombie counts as gone (a daemon is re-parented to pid 1,
    which may be slow to reap it or never do it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state follows the command name in parentheses, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


@dataclass(frozen=True)
class RedisServer:
    """A running server; `stop()` and `start()` make an outage of it."""

    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.root / "redis.pid"

    def ping(self) -> bool:
        return _ping(self.port)

    def start(self, timeout: float = 10.0) -> None:
        """Starts it on its port and waits until it answers PING."""
        command = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "yes",
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.root / "redis.log"),
            "--dir", str(self.root),
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if time.monotonic() > deadline:
                log = (self.root / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server on port {self.port} did not answer:\n{log}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Stops it (SIGTERM by its pid file) and waits until the process is gone; a server
        already stopped is left as it is."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while process_alive(pid):
            if time.monotonic() > deadline:
                # A server that ignores SIGTERM this long will not answer it.
                os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def redis_server(port: int) -> Iterator[RedisServer]:
    """Starts a server on 127.0.0.1:`port`; stops it and removes its files after, whether or
    not a test left it stopped."""
    ensure_redis_server()
    root = Path(tempfile.mkdtemp(prefix="bgc-redis-"))
    server = RedisServer(root, port)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
