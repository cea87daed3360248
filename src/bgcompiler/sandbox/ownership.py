"""Which containers are ours, and which of ours belong to an instance that has died.

Every container carries three labels: the service, this instance's id, and the host name.
A live instance holds an exclusive flock on `<state_dir>/<id>.lock` for as long as its
process lives; the kernel drops the lock when the process dies, even by SIGKILL, and the
file stays. A new instance removes the containers of every instance on this host whose
lock file it finds in its state dir and can lock. It never touches those of a live
instance, of an instance whose lock file it cannot see (another --state-dir), nor those
made from another host.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import uuid
from pathlib import Path

from bgcompiler.errors import StartupError

LABEL_SERVICE = "io.bg-compiler.service"
LABEL_INSTANCE = "io.bg-compiler.instance"
LABEL_HOST = "io.bg-compiler.host"
SERVICE = "bg-compiler"


class InstanceLease:
    """This process's claim to be alive, visible to other instances on the same host."""

    def __init__(self, state_dir: str) -> None:
        self.instance_id = uuid.uuid4().hex[:16]
        self.host = socket.gethostname()
        self._dir = Path(state_dir)
        self._fd: int | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_SERVICE: SERVICE, LABEL_INSTANCE: self.instance_id, LABEL_HOST: self.host}

    @property
    def host_labels(self) -> dict[str, str]:
        """The labels every container of ours made from this host carries."""
        return {LABEL_SERVICE: SERVICE, LABEL_HOST: self.host}

    def acquire(self) -> None:
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path(self.instance_id), os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise StartupError(f"cannot create the instance lock in {self._dir}: {exc}") from exc
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self._lock_path(self.instance_id).unlink()
        os.close(self._fd)
        self._fd = None

    def is_dead(self, instance_id: str) -> bool:
        """True when that instance's lock file is here and no live process holds it: it died
        (a crash or SIGKILL leaves the file; the kernel drops the lock), so its containers
        are orphans."""
        if instance_id == self.instance_id:
            return False
        path = self._lock_path(instance_id)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            # No lock file here: an instance with another --state-dir (alive or not), or one
            # that stopped cleanly and removed its containers itself. Cannot tell: leave them.
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def forget(self, instance_id: str) -> None:
        """Removes a dead instance's lock file, once its containers are gone."""
        with contextlib.suppress(OSError):
            self._lock_path(instance_id).unlink()

    def _lock_path(self, instance_id: str) -> Path:
        if not instance_id.isalnum():
            raise ValueError(f"not an instance id: {instance_id!r}")
        return self._dir / f"{instance_id}.lock"
