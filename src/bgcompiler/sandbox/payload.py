"""How a run's files and stdin reach the container: one tar stream on the container's stdin.

The host never writes a file for a run, and never reads or writes a path inside a
container: the files travel as bytes on the attach connection and are unpacked *inside*
the sandbox, by the sandboxed user, into its own tmpfs. There is no host path that
sandboxed code could turn into a symlink (the Judge0 escapes). Standard input travels in
the same archive and is handed to the program as an already-unlinked file, so a program
reading to end of input always sees the end.

An interactive run's archive has no stdin file: it carries `.bgc-live` instead, and its
standard input then follows the archive as frames (`stdin_frame`, `eof_frame`,
`signal_frame`), which the helper passes on to the program (helper/bgc-run.c).
"""

from __future__ import annotations

import io
import struct
import tarfile
import time
from collections.abc import Iterable

from bgcompiler.errors import InvalidRequest, SandboxError
from bgcompiler.models import SandboxFile
from bgcompiler.sandbox.measure import HELPER_IN_CONTAINER, NONCE_NAME

WORKDIR = "/bg"
STDIN_NAME = ".bgc-stdin"
COMMAND_NAME = ".bgc-cmd"
LIVE_NAME = ".bgc-live"
RESERVED_NAMES = (STDIN_NAME, NONCE_NAME, COMMAND_NAME, LIVE_NAME)
# The helper reads an interactive run's archive up to a whole number of these records, as
# tarfile pads it (RECORD_BYTES in the helper): what follows is frames.
RECORD_BYTES = tarfile.RECORDSIZE
_LENGTH = struct.Struct(">L")
MAX_NAME_BYTES = 255
UNPACK_FAILED_EXIT = 125
ARTIFACTS_MARK = b"\x1d"

# A run's container starts the helper directly: it unpacks the archive arriving on stdin
# into /bg, takes the command, the nonce and the stdin file out of it (unlinking them)
# and runs the command. The command travels in the archive, not on the container's command
# line, so that a container can be created and started before its run is known (the warm
# pool). No shell and no tar: each process costs ~10 ms under gVisor.
# A compile stage needs its work directory back as a tar stream, so a small script unpacks
# with tar, runs the helper, then writes the tar after the nonce mark.
_COMPILE = (
    f"cd {WORKDIR} && tar -xmf -"
    f' || {{ echo "bg-compiler: cannot unpack the files into {WORKDIR}'
    ' (a compile image needs /bin/sh and tar)" >&2;'
    f" exit {UNPACK_FAILED_EXIT}; }}\n"
    f"read -r mark < {NONCE_NAME}\n"
    "{helper}\ncode=$?\n"
    # Orphans of the compile command must not write into the archive that follows.
    "kill -9 -1 2>/dev/null\n"
    "[ $code -eq 0 ] && printf '\\035%s' \"$mark\" && tar -cf - .\nexit $code"
)
# An interactive compile stage: tar would read its standard input to the end (GNU tar drains
# a pipe), swallowing the frames that follow the archive; the helper reads exactly the
# archive, and a second helper, the compile command's, takes the frames.
_COMPILE_LIVE = _COMPILE.replace("tar -xmf -", f"{HELPER_IN_CONTAINER} 0 --unpack-only", 1).replace(
    "(a compile image needs /bin/sh and tar)", "(a compile image needs /bin/sh)", 1
)


def bootstrap_command(timeout_ms: int, *, artifacts: bool = False, live: bool = False) -> list[str]:
    """The container's Cmd: the helper, which unpacks stdin's archive and runs its command.

    With `artifacts` (a compile stage), once the command succeeded, the whole work
    directory follows on stdout as a tar stream, after a mark made of the nonce. `live`
    matters only then: an interactive compile's archive is followed by frames.
    """
    if not artifacts:
        return [HELPER_IN_CONTAINER, str(timeout_ms)]
    helper = f"{HELPER_IN_CONTAINER} {timeout_ms} --unpacked"
    script = _COMPILE_LIVE if live else _COMPILE
    return ["/bin/sh", "-c", script.replace("{helper}", helper)]


def check_file_name(name: str, field: str = "files") -> None:
    """Rejects names that could leave the work directory or collide with ours."""
    if not name or "\0" in name or name.startswith("/") or name.endswith("/"):
        raise InvalidRequest(f"file name {name!r} must be a relative path to a file", field)
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidRequest(f"file name is longer than {MAX_NAME_BYTES} bytes", field)
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidRequest(f"file name {name!r} must not contain '.', '..' or '//'", field)
    if name in RESERVED_NAMES:
        raise InvalidRequest(f"file name {name!r} is reserved", field)


def build_payload(
    files: Iterable[SandboxFile], stdin: bytes | None, nonce: str, command: str
) -> bytes:
    """A ustar archive of the files (plus parent directories), stdin, nonce and command.
    `stdin=None` makes an interactive run's archive: its input follows as frames.

    Byte for byte what `tarfile.open(mode="w", format=USTAR_FORMAT)` writes for these
    members (the tests compare), with tarfile's own header encoding, but without its
    per-member copies and file objects: this is on every run's path."""
    now = int(time.time())
    blocks: list[bytes] = []
    seen_dirs: set[str] = set()
    for file in files:
        parts = file.name.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory not in seen_dirs:
                seen_dirs.add(directory)
                _add(blocks, directory, None, 0o755, now)
        _add(blocks, file.name, file.content, 0o755 if file.executable else 0o644, now)
    if stdin is None:
        _add(blocks, LIVE_NAME, b"", 0o400, now)
    else:
        _add(blocks, STDIN_NAME, stdin, 0o400, now)
    _add(blocks, NONCE_NAME, nonce.encode("ascii"), 0o400, now)
    _add(blocks, COMMAND_NAME, command.encode("utf-8"), 0o400, now)
    blocks.append(tarfile.NUL * (2 * tarfile.BLOCKSIZE))  # the end of the archive
    written = sum(map(len, blocks))
    blocks.append(tarfile.NUL * (-written % tarfile.RECORDSIZE))  # whole records, as tarfile
    return b"".join(blocks)


# Each frame carries the run's nonce: the program can write into the container's stdin too
# (through the init's fd 0), and the helper obeys no frame without it (helper/bgc-run.c).


def stdin_frame(nonce: str, data: bytes) -> bytes:
    """Bytes for an interactive program's standard input."""
    return _frame(b"d", nonce, data)


def eof_frame(nonce: str) -> bytes:
    """The end of an interactive program's standard input."""
    return _frame(b"e", nonce, b"")


def signal_frame(nonce: str, number: int) -> bytes:
    """A signal (by number, 1-64) for an interactive program's process group."""
    return _frame(b"s", nonce, bytes([number]))


def _frame(kind: bytes, nonce: str, body: bytes) -> bytes:
    return kind + nonce.encode("ascii") + _LENGTH.pack(len(body)) + body


def _add(blocks: list[bytes], name: str, content: bytes | None, mode: int, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = mtime
    if content is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(content)
    blocks.append(info.tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape"))
    if content:
        blocks.append(content)
        blocks.append(tarfile.NUL * (-len(content) % tarfile.BLOCKSIZE))


def files_from_tar(data: bytes) -> tuple[SandboxFile, ...]:
    """The regular files of a tar stream made inside a container (a compile's work dir).

    Parsed in memory, never extracted on the host. Links, devices and names that could leave
    the work directory are dropped: only plain files travel on to the runs.
    """
    files: list[SandboxFile] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                if not member.isfile() or not name:
                    continue
                try:
                    check_file_name(name)
                except InvalidRequest:
                    continue
                extracted = archive.extractfile(member)
                if extracted is None:
                    continue
                files.append(SandboxFile(name, extracted.read(), bool(member.mode & 0o111)))
    except tarfile.TarError as exc:
        raise SandboxError(f"the compile stage's files could not be read: {exc}") from exc
    return tuple(files)
