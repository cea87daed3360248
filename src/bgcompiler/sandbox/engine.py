"""The Docker Engine API client we use, and the one place its errors become ours.

Every call has a deadline (a hung engine must not hang a worker), and every foreign
error (aiodocker, aiohttp, OSError, timeouts) is translated here:
no answer -> EngineUnavailable, an error status -> EngineError(status).

Two deadlines: `quick_timeout` for calls the engine answers from memory (ping, list,
kill), so a hung engine is noticed within seconds; a longer one for calls that do real
work (create, start, remove), which take seconds under load, especially under gVisor. An
inspect waits for the container's lock: it gets the longer one while the engine answers
pings.
Read-only calls are retried once on a broken connection: after an engine restart, pooled
connections are stale and the first call on each fails although the engine is back.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiodocker
import aiohttp

from bgcompiler.errors import (
    EngineError,
    EngineUnavailable,
    ImageNotFound,
    InvalidRequest,
    StartupError,
)
from bgcompiler.sandbox.attach import AttachedStream

T = TypeVar("T")
DEFAULT_SOCKET = "/var/run/docker.sock"
# aiodocker reports a failed connection as a DockerError with this pseudo-status.
_AIODOCKER_CONNECT_FAILED = 900
# Work calls get this many times the quick deadline.
WORK_CALL_FACTOR = 5
# A container's file system is read from the engine in pieces of this size.
EXPORT_CHUNK = 1 << 20


def socket_path(docker_host: str | None) -> str:
    """The engine's unix socket path from an address like `unix:///var/run/docker.sock`."""
    host = docker_host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    if not host.startswith("unix://"):
        raise StartupError(f"only unix-socket engines are supported, not {host!r}")
    return host.removeprefix("unix://")


class _StaleConnection(EngineUnavailable):
    """The connection broke under a call: after an engine restart, a pooled one was stale."""


def _stale(error: BaseException | None) -> bool:
    return isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)


def _label_filter(labels: dict[str, str]) -> str:
    return json.dumps({"label": [f"{key}={value}" for key, value in labels.items()]})


class Engine:
    """A thin, typed, deadline-bound wrapper over the Engine API calls a run needs."""

    def __init__(self, docker_host: str | None, quick_timeout: float) -> None:
        self._socket = socket_path(docker_host)
        self._quick = quick_timeout
        self._work = quick_timeout * WORK_CALL_FACTOR
        self._docker: aiodocker.Docker | None = None
        self._api_version = "v1.41"
        self.last_answer = 0.0  # time.monotonic() of the engine's last answer to any call

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
    async def _translated(self, what: str, deadline_s: float | None) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(deadline_s):
                yield
        except aiodocker.DockerError as exc:
            if exc.status == _AIODOCKER_CONNECT_FAILED:
                # aiodocker drops the cause; the error it was handling is the context.
                unavailable = _StaleConnection if _stale(exc.__context__) else EngineUnavailable
                raise unavailable(f"the Docker engine is not reachable ({what})") from exc
            raise EngineError(f"{what}: {exc.message}", exc.status) from exc
        except TimeoutError as exc:
            raise EngineUnavailable(
                f"the Docker engine did not answer {what} within {deadline_s:g} s"
            ) from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            unavailable = _StaleConnection if _stale(exc) else EngineUnavailable
            raise unavailable(f"the Docker engine is not reachable ({what})") from exc
        except aiohttp.ClientError as exc:  # an answer we cannot use (a redirect, a bad URL)
            raise EngineError(f"{what}: unusable answer from the engine: {exc}", 0) from exc

    async def _call(
        self, what: str, call: Callable[[], Awaitable[T]], *, work: bool = False, read: bool = False
    ) -> T:
        attempts = 2 if read else 1
        for attempt in range(attempts):
            try:
                async with self._translated(what, self._work if work else self._quick):
                    answer = await call()
                    self.last_answer = time.monotonic()
                    return answer
            except _StaleConnection:
                if attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the engine as a whole --------------------------------------------------------------

    async def negotiate(self) -> dict[str, Any]:
        """Checks the engine answers and learns the API version to speak (never pinned)."""
        version: dict[str, Any] = await self._call("version", self._client.version, read=True)
        self._api_version = "v" + str(version["ApiVersion"])
        return version

    async def ping(self) -> None:
        await self._call(
            "ping", lambda: self._client._query_json("_ping", versioned_api=False), read=True
        )

    async def info(self) -> dict[str, Any]:
        return dict(await self._call("info", self._client.system.info, read=True))

    async def image_exists(self, image: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = await self._call(
                "image inspect", lambda: self._client.images.inspect(image), read=True
            )
        except EngineError as exc:
            if exc.status == 404:
                raise ImageNotFound(image) from exc
            if exc.status == 400:  # the engine could not parse the reference
                raise InvalidRequest(f"{image!r} is not a valid image reference", "image") from exc
            raise
        return found

    async def follow_events(
        self,
        labels: dict[str, str],
        on_open: Callable[[], None],
        on_event: Callable[[dict[str, Any]], None],
    ) -> None:
        """Follows the engine's container events for our containers until the stream ends.

        Calls `on_open` once the engine has accepted the stream, then `on_event` for each
        event. Returns or raises EngineUnavailable when the stream ends: the engine went away.
        """
        params = {"filters": _label_filter(labels)}
        no_read_deadline = aiohttp.ClientTimeout(total=None, sock_read=None, connect=self._quick)
        async with self._translated("events", self._quick):
            response = await self._client._do_query(
                "events", method="GET", params=params, timeout=no_read_deadline
            )
        try:
            on_open()
            async with self._translated("events", None):
                async for line in response.content:
                    if line.strip():
                        on_event(json.loads(line))
        finally:
            response.close()

    # --- one container ------------------------------------------------------------------

    async def create(self, config: dict[str, Any]) -> str:
        try:
            container = await self._call(
                "create", lambda: self._client.containers.create(config), work=True
            )
        except EngineError as exc:
            if exc.status == 404:
                raise ImageNotFound(str(config.get("Image"))) from exc
            raise
        return str(container.id)

    async def attach(self, container_id: str) -> AttachedStream:
        async with self._translated("attach", self._quick):
            return await AttachedStream.open(self._socket, self._api_version, container_id)
        raise AssertionError("unreachable")  # pragma: no cover

    async def start(self, container_id: str) -> None:
        await self._call("start", lambda: self._container(container_id).start(), work=True)

    async def kill(self, container_id: str) -> None:
        """SIGKILL; a container that already stopped or is gone is not an error."""
        try:
            # Work: killing a busy gVisor sandbox took over 2 s here under load.
            await self._call(
                "kill", lambda: self._container(container_id).kill(signal="SIGKILL"), work=True
            )
        except EngineError as exc:
            if exc.status not in (404, 409):
                raise

    async def wait(self, container_id: str) -> int:
        """The exit code of a container whose output has already ended."""
        # Work: after a kill, a gVisor sandbox may take seconds to come down under load.
        result: dict[str, Any] = await self._call(
            "wait", lambda: self._container(container_id).wait(), work=True
        )
        return int(result["StatusCode"])

    async def inspect(self, container_id: str) -> dict[str, Any]:
        """The container's state. dockerd holds a container's lock while it handles its
        exit, and under gVisor, with thousands of processes to tear down, that takes
        seconds: a slow inspect is no sign of a hung engine as long as the engine answers a
        ping, so it is given the work deadline, and the engine is pinged if it has not
        answered within the quick one."""
        answer: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(
            self._call(
                "inspect",
                lambda: self._client._query_json(f"containers/{container_id}/json"),
                read=True,
                work=True,
            )
        )
        try:
            done, _ = await asyncio.wait({answer}, timeout=self._quick)
            if not done:
                await self.ping()  # EngineUnavailable within the quick deadline if it hangs
            return await answer
        finally:
            answer.cancel()

    async def remove(self, container_id: str) -> None:
        """Force-removes (kills first); one already gone is not an error."""
        try:
            await self._call(
                "remove",
                lambda: self._container(container_id).delete(force=True, v=True),
                work=True,
            )
        except EngineError as exc:
            if exc.status not in (404, 409):  # 409: removal already in progress
                raise

    async def export(self, container_id: str, sink: Callable[[bytes], Awaitable[None]]) -> None:
        """Streams the container's file system, a tar, to `sink` chunk by chunk."""
        deadline = aiohttp.ClientTimeout(total=None, sock_read=self._work, connect=self._quick)
        async with self._translated("export", None):
            response = await self._client._do_query(
                f"containers/{container_id}/export", method="GET", timeout=deadline
            )
            try:
                async for chunk in response.content.iter_chunked(EXPORT_CHUNK):
                    await sink(chunk)
            finally:
                response.close()
            self.last_answer = time.monotonic()

    async def image_ids(self) -> set[str]:
        """The ids of every image in the engine's store."""
        images: list[dict[str, Any]] = await self._call(
            "image list", lambda: self._client.images.list(all=True), read=True
        )
        return {str(image["Id"]) for image in images}

    async def list_containers(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        return await self._call(
            "list",
            lambda: self._client._query_json(
                "containers/json", params={"all": "1", "filters": _label_filter(labels)}
            ),
            read=True,
        )

    def _container(self, container_id: str) -> aiodocker.containers.DockerContainer:
        return aiodocker.containers.DockerContainer(self._client, id=container_id)
