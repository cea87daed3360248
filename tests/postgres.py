"""A real PostgreSQL server for tests: its own cluster in a temporary directory, on a free
loopback port, removed after. (initdb and postgres refuse to run as root: they run as the
postgres user.)"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True)


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster; `stop()` and `start()` make an outage of it."""

    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/bgc"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = self.root / "server.log"
        _as_postgres(self._pg_ctl, "-D", self._data, "-l", str(log), "-o", options, "-w", "start")

    def stop(self) -> None:
        _as_postgres(self._pg_ctl, "-D", self._data, "-m", "fast", "-w", "stop")

    @property
    def _pg_ctl(self) -> str:
        return str(BIN / "pg_ctl")

    @property
    def _data(self) -> str:
        return str(self.root / "data")


@contextmanager
def postgres_cluster(port: int) -> Iterator[PostgresCluster]:
    """Starts a cluster on 127.0.0.1:`port` with an empty database `bgc`."""
    root = Path(tempfile.mkdtemp(prefix="bgc-pg-"))
    shutil.chown(root, "postgres", "postgres")
    cluster = PostgresCluster(root, port)
    try:
        _as_postgres(str(BIN / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres")
        cluster.start()
        try:
            _as_postgres(str(BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "bgc")
            yield cluster
        finally:
            stop = [cluster._pg_ctl, "-D", cluster._data, "-m", "fast", "-w", "stop"]
            # Whether or not a test left it stopped.
            subprocess.run(["runuser", "-u", "postgres", "--", *stop], check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server(port: int) -> Iterator[str]:
    """Starts a cluster on 127.0.0.1:`port`; yields a URL of an empty database."""
    with postgres_cluster(port) as cluster:
        yield cluster.url
