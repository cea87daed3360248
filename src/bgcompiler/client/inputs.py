"""What `bg-compiler run` sends, from the user's files: the language guessed from the
entry file's extension, the source files, the stdin, and `--tests DIR`'s pairs."""

from __future__ import annotations

import base64
from pathlib import Path, PurePosixPath

from bgcompiler.api.v1_schemas import FileIn, LanguageOut, TestCase


class InputError(Exception):
    """A file the command cannot use; the message says which and why."""


def guess_language(entry: Path, languages: list[LanguageOut]) -> str:
    """The language whose registry `file` has the entry file's extension. Several may share
    one (`.sh`: sh and bash): those whose image is present come first, then registry order."""
    suffix = entry.suffix.lower()
    if not suffix:
        raise InputError(f"{entry}: no extension to guess the language from; give --language")
    matching = [lang for lang in languages if PurePosixPath(lang.file).suffix.lower() == suffix]
    if not matching:
        known = ", ".join(sorted({PurePosixPath(lang.file).suffix for lang in languages}))
        raise InputError(f"no language of this server has {suffix} files (known: {known})")
    matching.sort(key=lambda lang: not lang.image_present)  # stable: registry order kept
    return matching[0].name


def source_files(paths: list[Path]) -> list[FileIn]:
    """The files, by their base names; the first is the entry point. Text is sent as UTF-8,
    anything else as base64."""
    files = []
    for path in paths:
        data = _read(path)
        try:
            files.append(FileIn(name=path.name, content=data.decode("utf-8")))
        except UnicodeDecodeError:
            encoded = base64.b64encode(data).decode("ascii")
            files.append(FileIn(name=path.name, content=encoded, encoding="base64"))
    return files


def stdin_fields(path: Path) -> dict[str, str]:
    """The request fields of a standard input file: `stdin` for UTF-8 text, else
    `stdin_base64` (delivered byte-exact either way)."""
    data = _read(path)
    try:
        return {"stdin": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"stdin_base64": base64.b64encode(data).decode("ascii")}


def read_tests(directory: Path) -> list[TestCase]:
    """`NAME.in` / `NAME.out` pairs of the directory, in name order; an `.in` without its
    `.out` is an error (a test that cannot fail is worse than none)."""
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory")
    inputs = sorted(directory.glob("*.in"))
    if not inputs:
        raise InputError(f"{directory}: no *.in files")
    cases = []
    for stdin in inputs:
        expected = stdin.with_suffix(".out")
        if not expected.is_file():
            raise InputError(f"{stdin}: no {expected.name} beside it")
        cases.append(TestCase(stdin=_text(stdin), expected_output=_text(expected)))
    return cases


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from exc


def _text(path: Path) -> str:
    try:
        return _read(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text") from exc
