"""Measuring a run from inside its container: the bgc-run helper and the record it leaves.

The helper (helper/bgc-run.c, a static binary mounted read-only into every container) runs
the program as its child and appends one record to stderr when the child has been reaped:
wall time from just before fork to reaping, the child's CPU time and peak resident memory
from wait4's rusage, its wait status, and whether it hit the time limit. Start-up of the
container, unpacking of the files and our own round-trips are therefore not in the numbers.

The record starts with a nonce the program cannot know (see the C source), so a program
printing a fake record is not believed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bgcompiler.errors import StartupError

HELPER_IN_CONTAINER = "/.bgc-run"
NONCE_NAME = ".bgc-nonce"
RECORD_START = b"\x1e"
_SOURCE = "bgc-run.c"


def new_nonce() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class Measurement:
    """What the helper measured about the program (not the container) of one run."""

    wall_ns: int
    user_us: int
    sys_us: int
    maxrss_kb: int
    wait_status: int
    timed_out: bool

    @property
    def wall_ms(self) -> float:
        return round(self.wall_ns / 1e6, 3)

    @property
    def cpu_ms(self) -> float:
        return round((self.user_us + self.sys_us) / 1e3, 3)

    @property
    def exit_code(self) -> int:
        """The exit status as a shell reports it: 128 + the signal's number when killed."""
        if os.WIFSIGNALED(self.wait_status):
            return 128 + os.WTERMSIG(self.wait_status)
        return os.WEXITSTATUS(self.wait_status)

    @property
    def signal(self) -> str | None:
        """The signal that ended the program, by name; None when it exited by itself."""
        if os.WIFSIGNALED(self.wait_status):
            number = os.WTERMSIG(self.wait_status)
            try:
                return signal.Signals(number).name
            except ValueError:
                return f"SIG{number}"
        return None


def end_mark(nonce: str) -> bytes:
    """What the helper writes on stdout once the program has ended."""
    return RECORD_START + nonce.encode("ascii") + b"\n"


def record_mark(nonce: str) -> bytes:
    """How the helper's record on stderr begins."""
    return RECORD_START + nonce.encode("ascii") + b" "


def parse_record(figures: bytes) -> Measurement | None:
    """The measurement in a record's figures (what follows its mark), or None if malformed."""
    try:
        wall, user, system, rss, status, timed_out = (int(f) for f in figures.split())
    except ValueError:
        return None
    return Measurement(wall, user, system, rss, status, bool(timed_out))


def ensure_helper(configured: str | None, cache_dir: Path) -> Path:
    """The helper binary: `configured` if given, else built once from our C source.

    The build is content-addressed (the file name holds the source's hash), so a changed
    source is rebuilt and an unchanged one is reused across restarts.
    """
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise StartupError(f"--helper {configured} does not exist")
        return path
    source = resources.files("bgcompiler.sandbox.helper").joinpath(_SOURCE).read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = cache_dir / f"bgc-run-{digest}"
    if target.is_file():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise StartupError("a C compiler is needed once to build the bgc-run helper (`make setup`)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    source_path = cache_dir / f"bgc-run-{digest}.c"
    source_path.write_bytes(source)
    partial = target.with_suffix(".partial")
    built = subprocess.run(
        [compiler, "-static", "-O2", "-s", "-o", str(partial), str(source_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    source_path.unlink()
    if built.returncode != 0:
        raise StartupError(f"cannot build the bgc-run helper: {built.stderr.strip()}")
    partial.chmod(0o755)
    partial.replace(target)  # atomic: a concurrent start sees the old state or the whole file
    return target
