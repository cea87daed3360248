"""The language registry: a TOML file mapping a language to image, entry file and commands."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bgcompiler.errors import StartupError


@dataclass(frozen=True, slots=True)
class PistonName:
    """How the Piston v2 API names a language (see languages.toml)."""

    language: str
    version: str  # exact semver
    aliases: tuple[str, ...] = ()
    runtime: str | None = None  # the package, when it provides several languages


@dataclass(frozen=True, slots=True)
class Judge0Name:
    """How the Judge0 API lists a language (see languages.toml)."""

    ids: tuple[int, ...]  # the first is the one it is listed under first
    name: str


@dataclass(frozen=True, slots=True)
class Language:
    name: str
    version: str
    image: str
    file: str
    run: str
    compile: str | None = None
    piston: PistonName | None = None
    judge0: Judge0Name | None = None


def load_languages(path: str | None = None) -> dict[str, Language]:
    """The registry from `path`, or the one shipped with the package."""
    try:
        if path:
            text = Path(path).read_text()
        else:
            text = resources.files("bgcompiler").joinpath("languages.toml").read_text()
        table = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StartupError(f"cannot read the language registry: {exc}") from exc
    languages: dict[str, Language] = {}
    for name, entry in table.items():
        try:
            languages[name] = Language(
                name=name,
                version=str(entry["version"]),
                image=str(entry["image"]),
                file=str(entry["file"]),
                run=str(entry["run"]),
                compile=str(entry["compile"]) if "compile" in entry else None,
                piston=_piston(entry["piston"]) if "piston" in entry else None,
                judge0=_judge0(entry["judge0"]) if "judge0" in entry else None,
            )
        except (KeyError, TypeError) as exc:
            raise StartupError(f"language {name!r} in the registry lacks {exc}") from exc
    return languages


def _piston(entry: dict[str, object]) -> PistonName:
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list):
        raise TypeError("piston.aliases as a list")
    runtime = entry.get("runtime")
    return PistonName(
        language=str(entry["language"]),
        version=str(entry["version"]),
        aliases=tuple(str(alias) for alias in aliases),
        runtime=str(runtime) if runtime is not None else None,
    )


def _judge0(entry: dict[str, object]) -> Judge0Name:
    ids = entry["ids"]
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise TypeError("judge0.ids as a list of integers")
    return Judge0Name(ids=tuple(ids), name=str(entry["name"]))
