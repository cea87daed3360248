"""What a request handler needs, built once per process by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from bgcompiler.errors import ImageNotFound
from bgcompiler.executor import Executor
from bgcompiler.languages import Language
from bgcompiler.models import Limits
from bgcompiler.sandbox.base import Sandbox
from bgcompiler.settings import Settings


async def present_images(sandbox: Sandbox, languages: dict[str, Language]) -> tuple[str, ...]:
    """The registry's images the sandbox's engine has, sorted, each once."""
    present = set()
    for language in languages.values():
        try:
            await sandbox.check_image(language.image)
        except ImageNotFound:
            continue
        present.add(language.image)
    return tuple(sorted(present))


def limits_from(settings: Settings) -> Limits:
    """The limits every run gets unless a request asks for less."""
    return Limits(
        timeout_s=settings.timeout,
        memory_mb=settings.memory,
        cpu_shares=settings.cpu,
        cpus=settings.cpus,
        output_bytes=settings.output_bytes,
        pids=settings.pids,
        disk_mb=settings.disk,
    )


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    sandbox: Sandbox
    scheduler: Executor
    languages: dict[str, Language]

    @property
    def default_limits(self) -> Limits:
        return limits_from(self.settings)

    async def can_run(self, language: Language) -> bool:
        """Whether the language's image is present (the engine's answers are cached);
        EngineUnavailable when the engine does not answer."""
        try:
            await self.sandbox.check_image(language.image)
        except ImageNotFound:
            return False
        return True

    @property
    def runtime(self) -> str:
        """The runtime runs use, by name."""
        return self.settings.runtime_name or "runc"
