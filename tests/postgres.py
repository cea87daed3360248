"""A real PostgreSQL server for tests: its own cluster in a temporary directory, on a free
loopback port, removed after. (initdb and postgres refuse to run as root: they run as the
postgres user.)"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True)


@contextmanager
def postgres_server(port: int) -> Iterator[str]:
    """Starts a cluster on 127.0.0.1:`port`; yields a URL of an empty database."""
    root = Path(tempfile.mkdtemp(prefix="bgc-pg-"))
    shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    try:
        _as_postgres(str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = root / "server.log"
        pg_ctl = str(BIN / "pg_ctl")
        _as_postgres(pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            _as_postgres(str(BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "bgc")
            yield f"postgresql://postgres@127.0.0.1:{port}/bgc"
        finally:
            _as_postgres(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
