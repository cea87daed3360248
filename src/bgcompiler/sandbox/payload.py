"""How a run's files and stdin reach the container: one tar stream on the container's stdin.

The host never writes a file for a run, and never reads or writes a path inside a
container: the files travel as bytes on the attach connection and are unpacked *inside*
the sandbox, by the sandboxed user, into its own tmpfs. There is no host path that
sandboxed code could turn into a symlink (the Judge0 escapes). Standard input travels in
the same archive and is handed to the program as an already-unlinked file, so a program
reading to end of input always sees the end.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterable

from bgcompiler.errors import InvalidRequest
from bgcompiler.models import SandboxFile

WORKDIR = "/bg"
STDIN_NAME = ".bgc-stdin"
MAX_NAME_BYTES = 255
UNPACK_FAILED_EXIT = 125

# $1 is the user's command line. The unpack step runs as the sandbox user, inside the
# container; its failure (an image without tar) is reported on stderr with exit 125.
BOOTSTRAP = (
    f"cd {WORKDIR} && tar -xmf -"
    f' || {{ echo "bg-compiler: cannot unpack the files into {WORKDIR}'
    ' (the image needs /bin/sh and tar)" >&2;'
    f" exit {UNPACK_FAILED_EXIT}; }}\n"
    f'exec 0<{STDIN_NAME} && rm -f {STDIN_NAME} && exec /bin/sh -c "$1"'
)


def bootstrap_command(command: str) -> list[str]:
    """The container's Cmd: unpack stdin's archive, then run `command` under /bin/sh -c."""
    return ["/bin/sh", "-c", BOOTSTRAP, "bg-compiler", command]


def check_file_name(name: str, field: str = "files") -> None:
    """Rejects names that could leave the work directory or collide with ours."""
    if not name or "\0" in name or name.startswith("/") or name.endswith("/"):
        raise InvalidRequest(f"file name {name!r} must be a relative path to a file", field)
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidRequest(f"file name is longer than {MAX_NAME_BYTES} bytes", field)
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidRequest(f"file name {name!r} must not contain '.', '..' or '//'", field)
    if name == STDIN_NAME:
        raise InvalidRequest(f"file name {STDIN_NAME!r} is reserved", field)


def build_payload(files: Iterable[SandboxFile], stdin: bytes) -> bytes:
    """A ustar archive of the files (plus parent directories) and stdin."""
    now = int(time.time())
    buffer = io.BytesIO()
    seen_dirs: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for file in files:
            parts = file.name.split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in seen_dirs:
                    seen_dirs.add(directory)
                    _add(archive, directory, None, 0o755, now)
            _add(archive, file.name, file.content, 0o755 if file.executable else 0o644, now)
        _add(archive, STDIN_NAME, stdin, 0o400, now)
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, content: bytes | None, mode: int, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = mtime
    if content is None:
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    else:
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
