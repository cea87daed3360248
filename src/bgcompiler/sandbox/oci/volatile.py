"""Where the OCI engine keeps what lives only as long as a run: on a tmpfs.

Each run has a bundle (config.json, its hostname file, the runtime's log) and the runtime
keeps its state (state.json); both are removed when the run ends. On a disk filesystem
(ext4 here) making and removing them is journal work: 1.3 ms of the service's CPU per run,
a fifth of it (measured in benchmarks/results/engines.md). So they live in /dev/shm, the
tmpfs of every Linux host, in a directory of this state directory's own (named by a hash of
its path, so that services with different state directories never meet), made by us with
mode 0700. Anything else found under that name (another user's directory, a link) is
refused: /dev/shm is writable by everyone. Where there is no /dev/shm, the state directory
itself serves.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

from bgcompiler.errors import StartupError

SHM = Path("/dev/shm")


def volatile_dir(state_dir: Path, shm: Path = SHM) -> Path:
    """The directory for `state_dir`'s bundles and runtime state (not made here)."""
    if not shm.is_dir():
        return state_dir / "oci"
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
    return shm / f"bg-compiler-{digest}"


def make_volatile_dir(path: Path) -> None:
    """Makes `path` (mode 0700), or checks that the one there is ours. Raises StartupError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    found = path.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
        raise StartupError(
            f"{path} is not a directory of ours: remove it, or choose another --state-dir"
        )
    if stat.S_IMODE(found.st_mode) & 0o077:
        raise StartupError(f"{path} is open to other users (mode {stat.S_IMODE(found.st_mode):o})")


def remove_if_empty(path: Path) -> None:
    """Removes `path` and its directories if no file is left in them (other instances may
    still use it)."""
    for directory in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()
