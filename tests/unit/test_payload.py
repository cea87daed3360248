"""How files and stdin are packed for the container, and which file names are refused."""

from __future__ import annotations

import io
import tarfile

import pytest

from bgcompiler.errors import InvalidRequest
from bgcompiler.models import SandboxFile
from bgcompiler.sandbox.measure import NONCE_NAME
from bgcompiler.sandbox.payload import (
    COMMAND_NAME,
    STDIN_NAME,
    bootstrap_command,
    build_payload,
    check_file_name,
    files_from_tar,
)


def test_payload_holds_each_file_its_parents_and_stdin() -> None:
    """Files keep their bytes and modes; parent directories come first; stdin is last."""
    files = [
        SandboxFile("main.c", b"int main(){}"),
        SandboxFile("lib/util/x.h", b"\x00\xff binary"),
        SandboxFile("run", b"#!/bin/sh", executable=True),
    ]
    payload = build_payload(files, b"in\x00put", "n0nce", "run it")
    archive = tarfile.open(fileobj=io.BytesIO(payload))  # noqa: SIM115  (in memory)
    members = {m.name: m for m in archive.getmembers()}
    assert list(members) == [
        "main.c",
        "lib",
        "lib/util",
        "lib/util/x.h",
        "run",
        STDIN_NAME,
        NONCE_NAME,
        COMMAND_NAME,
    ]
    assert members["lib"].isdir()
    assert members["run"].mode == 0o755
    assert members["main.c"].mode == 0o644

    def read(name: str) -> bytes:
        extracted = archive.extractfile(members[name])
        assert extracted is not None
        return extracted.read()

    assert read("lib/util/x.h") == b"\x00\xff binary"
    assert read(STDIN_NAME) == b"in\x00put"
    assert read(NONCE_NAME) == b"n0nce"
    assert read(COMMAND_NAME) == b"run it"


def reference_archive(members: list[tuple[str, bytes | None, int]], mtime: int) -> bytes:
    """What tarfile itself writes for these members (None: a directory)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, content, mode in members:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, mtime
            if content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.mark.parametrize("stdin", [b"", b"x" * 511, b"y" * 512, b"z" * 20_000, None])
def test_the_archive_is_byte_for_byte_what_tarfile_writes(
    stdin: bytes | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers, padding to blocks, the end blocks and the padding to a whole record (which
    the helper reads exactly in an interactive run) are tarfile's own, for any sizes."""
    monkeypatch.setattr("time.time", lambda: 1_700_000_000.5)
    files = [SandboxFile("a/b/ünï.py", b"print(1)\n"), SandboxFile("x", b"", executable=True)]
    ours = build_payload(files, stdin, "n0nce", "python3 a/b/ünï.py")
    last = (STDIN_NAME, stdin, 0o400) if stdin is not None else (".bgc-live", b"", 0o400)
    expected = reference_archive(
        [
            ("a", None, 0o755),
            ("a/b", None, 0o755),
            ("a/b/ünï.py", b"print(1)\n", 0o644),
            ("x", b"", 0o755),
            last,
            (NONCE_NAME, b"n0nce", 0o400),
            (COMMAND_NAME, "python3 a/b/ünï.py".encode(), 0o400),
        ],
        1_700_000_000,
    )
    assert ours == expected
    assert len(ours) % tarfile.RECORDSIZE == 0


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc/passwd",
        "../x",
        "a/../../b",
        "a//b",
        "./a",
        "dir/",
        "a\0b",
        "x" * 300,
        STDIN_NAME,
        NONCE_NAME,
        COMMAND_NAME,
    ],
)
def test_unsafe_or_reserved_names_are_refused(name: str) -> None:
    """Absolute, parent-escaping, empty, NUL, over-long and reserved names raise InvalidRequest."""
    with pytest.raises(InvalidRequest):
        check_file_name(name)


@pytest.mark.parametrize("name", ["main.py", "src/main.rs", ".hidden", "a-b_c.d", "é.txt"])
def test_ordinary_names_are_accepted(name: str) -> None:
    """Relative names, subdirectories, dotfiles and non-ASCII names are fine."""
    check_file_name(name)


def test_the_container_command_does_not_depend_on_the_run() -> None:
    """The user's command travels in the archive: the Cmd is the same for every run with the
    same limits, so a container can be started before its run is known."""
    assert bootstrap_command(5000) == ["/.bgc-run", "5000"]  # no shell, no tar: the helper
    assert bootstrap_command(5000) != bootstrap_command(6000)
    assert bootstrap_command(5000, artifacts=True)[:2] == ["/bin/sh", "-c"]


def test_only_safe_regular_files_are_taken_from_a_compile_archive() -> None:
    """Links, devices, directories and names leaving the work directory are dropped."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:

        def add(name: str, kind: bytes = tarfile.REGTYPE, content: bytes = b"x") -> None:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
            else:
                info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
                archive.addfile(info)

        add("./main", content=b"\x7fELF")
        add("./lib/util.o")
        add("../escape")
        add("/abs")
        add("a/../../b")
        add("./sym", tarfile.SYMTYPE)
        add("./hard", tarfile.LNKTYPE)
        add("./dev", tarfile.CHRTYPE)
        add("./dir", tarfile.DIRTYPE)
    files = files_from_tar(buffer.getvalue())
    assert [(f.name, f.content) for f in files] == [("main", b"\x7fELF"), ("lib/util.o", b"x")]
