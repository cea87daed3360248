"""The Docker Engine API client we use, and the one place its errors become ours.

Every call has a deadline (a hung engine must not hang a worker), and every foreign
error (aiodocker, aiohttp, OSError, timeouts) is translated here:
no answer -> EngineUnavailable, an error status -> EngineError(status).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiodocker
import aiohttp

from bgcompiler.errors import EngineError, EngineUnavailable, ImageNotFound, StartupError
from bgcompiler.sandbox.attach import AttachedStream

T = TypeVar("T")
DEFAULT_SOCKET = "/var/run/docker.sock"
# aiodocker reports a failed connection as a DockerError with this pseudo-status.
_AIODOCKER_CONNECT_FAILED = 900


def socket_path(docker_host: str | None) -> str:
    """The engine's unix socket path from an address like `unix:///var/run/docker.sock`."""
    host = docker_host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    if not host.startswith("unix://"):
        raise StartupError(f"only unix-socket engines are supported, not {host!r}")
    return host.removeprefix("unix://")


class Engine:
    """A thin, typed, deadline-bound wrapper over the Engine API calls a run needs."""

    def __init__(self, docker_host: str | None, call_timeout: float) -> None:
        self._socket = socket_path(docker_host)
        self._timeout = call_timeout
        self._docker: aiodocker.Docker | None = None
        self._api_version = "v1.41"

    @property
    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(url=f"unix://{self._socket}")
        return self._docker

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    @asynccontextmanager
    async def _translated(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except aiodocker.DockerError as exc:
            if exc.status == _AIODOCKER_CONNECT_FAILED:
                raise EngineUnavailable(f"the Docker engine is not reachable ({what})") from exc
            raise EngineError(f"{what}: {exc.message}", exc.status) from exc
        except TimeoutError as exc:
            raise EngineUnavailable(
                f"the Docker engine did not answer {what} within {self._timeout:g} s"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineUnavailable(f"the Docker engine is not reachable ({what})") from exc

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        async with self._translated(what):
            return await call
        raise AssertionError("unreachable")  # pragma: no cover  (mypy: the block may swallow)

    async def negotiate(self) -> dict[str, Any]:
        """Checks the engine answers and learns the API version to speak (never pinned)."""
        version: dict[str, Any] = await self._call("version", self._client.version())
        self._api_version = "v" + str(version["ApiVersion"])
        return version

    async def ping(self) -> None:
        await self._call("ping", self._client._query_json("_ping", versioned_api=False))

    async def info(self) -> dict[str, Any]:
        info = await self._call("info", self._client.system.info())
        return dict(info)

    async def image_exists(self, image: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = await self._call(
                "image inspect", self._client.images.inspect(image)
            )
        except EngineError as exc:
            if exc.status == 404:
                raise ImageNotFound(image) from exc
            raise
        return found

    async def create(self, config: dict[str, Any]) -> str:
        try:
            container = await self._call("create", self._client.containers.create(config))
        except EngineError as exc:
            if exc.status == 404:
                raise ImageNotFound(str(config.get("Image"))) from exc
            raise
        return str(container.id)

    async def attach(self, container_id: str) -> AttachedStream:
        async with self._translated("attach"):
            return await AttachedStream.open(self._socket, self._api_version, container_id)
        raise AssertionError("unreachable")  # pragma: no cover

    async def start(self, container_id: str) -> None:
        await self._call("start", self._container(container_id).start())

    async def kill(self, container_id: str) -> None:
        """SIGKILL; a container that already stopped or is gone is not an error."""
        try:
            await self._call("kill", self._container(container_id).kill(signal="SIGKILL"))
        except EngineError as exc:
            if exc.status not in (404, 409):
                raise

    async def wait(self, container_id: str) -> int:
        result: dict[str, Any] = await self._call("wait", self._container(container_id).wait())
        return int(result["StatusCode"])

    async def inspect(self, container_id: str) -> dict[str, Any]:
        return await self._call(
            "inspect", self._client._query_json(f"containers/{container_id}/json")
        )

    async def remove(self, container_id: str) -> None:
        """Force-removes (kills first); one already gone is not an error."""
        try:
            await self._call("remove", self._container(container_id).delete(force=True, v=True))
        except EngineError as exc:
            if exc.status != 404:
                raise

    async def list_containers(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}

        return await self._call(
            "list",
            self._client._query_json(
                "containers/json", params={"all": "1", "filters": json.dumps(filters)}
            ),
        )

    def _container(self, container_id: str) -> aiodocker.containers.DockerContainer:
        return aiodocker.containers.DockerContainer(self._client, id=container_id)
