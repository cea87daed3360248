"""The Docker implementation of Sandbox: one fresh, hardened container per run."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import structlog

from bgcompiler.errors import BgcError, EngineUnavailable, SandboxError, StartupError
from bgcompiler.models import Limits, RunResult, RunSpec, classify
from bgcompiler.sandbox.attach import STDERR, STDOUT, AttachedStream
from bgcompiler.sandbox.engine import Engine
from bgcompiler.sandbox.hardening import container_config
from bgcompiler.sandbox.monitor import ContainerWatch, EngineMonitor
from bgcompiler.sandbox.ownership import LABEL_INSTANCE, InstanceLease
from bgcompiler.sandbox.payload import build_payload

log = structlog.get_logger(__name__)

# After a kill, output already in flight is still collected for at most this long.
DRAIN_AFTER_KILL_S = 1.0


@dataclass(slots=True)
class _Capture:
    """Output of one run, each stream capped at `cap` bytes."""

    cap: int
    streams: dict[int, bytearray] = field(
        default_factory=lambda: {STDOUT: bytearray(), STDERR: bytearray()}
    )
    truncated: bool = False

    def feed(self, kind: int, data: bytes) -> bool:
        """Keeps what fits; returns False once a stream went past its cap."""
        buffer = self.streams.get(kind)
        if buffer is None:  # not an output stream: ignore
            return True
        room = self.cap - len(buffer)
        if len(data) > room:
            buffer += data[:room]
            self.truncated = True
            return False
        buffer += data
        return True


class DockerSandbox:
    """Runs each RunSpec in a new container on a Docker engine, and removes it after."""

    def __init__(
        self,
        engine: Engine,
        lease: InstanceLease,
        *,
        check_runtime: str | None = None,
        check_image: str = "bgc/busybox:latest",
        check_limits: Limits | None = None,
    ) -> None:
        self._engine = engine
        self._lease = lease
        self._check_runtime = check_runtime
        self._check_image = check_image
        # The runtime is proven with the limits real runs get: under gVisor the pids limit
        # also bounds the sandbox's own threads, so a too-small --pids fails here, at start-up.
        self._check_limits = check_limits or Limits(
            timeout_s=30,
            memory_mb=128,
            cpu_shares=1024,
            cpus=1,
            output_bytes=4096,
            pids=64,
            disk_mb=4,
        )
        self._removals: set[asyncio.Task[None]] = set()
        self._monitor = EngineMonitor(engine, lease.labels)

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self._lease.acquire()
        try:
            await self._engine.negotiate()
            await self._monitor.start()
            await self.remove_orphans()
            if self._check_runtime:
                await self._prove_runtime(self._check_runtime)
        except EngineUnavailable as exc:
            await self._abandon()
            raise StartupError(f"{exc.message}; is dockerd running?") from exc
        except StartupError:
            await self._abandon()
            raise
        except BgcError as exc:
            await self._abandon()
            raise StartupError(f"the engine refused a start-up check: {exc.message}") from exc

    async def _abandon(self) -> None:
        await self._monitor.stop()
        await self._engine.close()
        self._lease.release()

    async def close(self) -> None:
        """Waits for pending removals, then removes anything of this instance still there."""
        if self._removals:
            await asyncio.gather(*self._removals, return_exceptions=True)
        with contextlib.suppress(BgcError):
            for container in await self._engine.list_containers(self._lease.labels):
                await self._engine.remove(container["Id"])
        await self._monitor.stop()
        await self._engine.close()
        self._lease.release()

    async def remove_orphans(self) -> int:
        """Removes containers left by dead instances of ours on this host. Returns how many."""
        removed = 0
        dead: set[str] = set()
        for container in await self._engine.list_containers(self._lease.host_labels):
            owner = container.get("Labels", {}).get(LABEL_INSTANCE, "")
            if owner.isalnum() and self._lease.is_dead(owner):
                await self._engine.remove(container["Id"])
                dead.add(owner)
                removed += 1
        for owner in dead:
            self._lease.forget(owner)
        if removed:
            log.info("removed leftover containers", count=removed, instances=sorted(dead))
        return removed

    async def _prove_runtime(self, runtime: str) -> None:
        info = await self._engine.info()
        if runtime not in (info.get("Runtimes") or {}):
            raise StartupError(
                f"the engine has no runtime {runtime!r}; register it in /etc/docker/daemon.json "
                "(`make setup` does) and reload dockerd"
            )
        spec = RunSpec(
            image=self._check_image,
            command="echo ok",
            files=(),
            stdin=b"",
            limits=self._check_limits,
            runtime=runtime,
        )
        await self.check_image(self._check_image)
        result = await self.run(spec)
        if result.stdout != b"ok\n" or result.exit_code != 0:
            reason = result.error or result.stderr.decode(errors="replace")
            raise StartupError(
                f"runtime {runtime!r} is registered but could not run a container: "
                f"status {result.status.value}, {reason}"
            )

    # --- the Sandbox protocol --------------------------------------------------------------

    async def ping(self) -> None:
        await self._engine.ping()

    async def check_image(self, image: str) -> None:
        await self._engine.image_exists(image)

    async def run(self, spec: RunSpec) -> RunResult:
        container_id: str | None = None
        try:
            container_id = await self._engine.create(container_config(spec, self._lease.labels))
            watch = self._monitor.watch(container_id)
            result = await self._execute(container_id, spec, watch)
            if await self._monitor.interrupted(watch):
                # The engine stopped the container, or went away: the end we saw is not the
                # program's own, whatever its exit code says.
                return RunResult.internal(
                    "the Docker engine stopped the container or went away during the run",
                    stdout=result.stdout,
                    stderr=result.stderr,
                )
            return result
        except BgcError as exc:
            log.warning("run failed", error=exc.message, container=container_id)
            return RunResult.internal(exc.message)
        finally:
            if container_id is not None:
                self._monitor.forget(container_id)
                self._remove_later(container_id)

    # --- one run ---------------------------------------------------------------------------

    async def _execute(self, container_id: str, spec: RunSpec, watch: ContainerWatch) -> RunResult:
        limits = spec.limits
        capture = _Capture(cap=limits.output_bytes)
        async with await self._engine.attach(container_id) as stream:
            await self._engine.start(container_id)
            started = time.monotonic()
            feeder = asyncio.create_task(stream.send_stdin(build_payload(spec.files, spec.stdin)))
            try:
                timed_out, ended = await self._collect(
                    stream, capture, deadline=started + limits.timeout_s
                )
                if not ended:  # killed for time or output: keep what is already on its way
                    finished = time.monotonic()
                    watch.killing = True
                    await self._engine.kill(container_id)
                    if not capture.truncated:
                        await self._collect(
                            stream, capture, deadline=time.monotonic() + DRAIN_AFTER_KILL_S
                        )
                else:
                    finished = time.monotonic()
            finally:
                feeder.cancel()
        exit_code = await self._engine.wait(container_id)
        state = (await self._engine.inspect(container_id)).get("State", {})
        oom_killed = bool(state.get("OOMKilled"))
        if state.get("Error"):
            raise SandboxError(f"the engine reported: {state['Error']}")
        return RunResult(
            status=classify(
                exit_code=exit_code,
                timed_out=timed_out,
                oom_killed=oom_killed,
                output_truncated=capture.truncated,
            ),
            stdout=bytes(capture.streams[STDOUT]),
            stderr=bytes(capture.streams[STDERR]),
            duration_ms=round((finished - started) * 1000),
            exit_code=exit_code,
            timed_out=timed_out,
            oom_killed=oom_killed,
            output_truncated=capture.truncated,
        )

    @staticmethod
    async def _collect(
        stream: AttachedStream, capture: _Capture, *, deadline: float
    ) -> tuple[bool, bool]:
        """Reads frames until the output ends, a cap is passed, or the deadline.

        Returns (timed_out, ended): ended is True when the container's output closed by itself.
        """
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                while (frame := await stream.read_frame()) is not None:
                    if not capture.feed(*frame):
                        return False, False
                return False, True
        except TimeoutError:
            return True, False

    def _remove_later(self, container_id: str) -> None:
        """Removal is off the request's path but tracked, so shutdown waits for it."""
        task = asyncio.create_task(self._remove(container_id))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def _remove(self, container_id: str) -> None:
        for attempt in range(3):
            try:
                await self._engine.remove(container_id)
                return
            except BgcError as exc:
                log.warning("container removal failed", container=container_id, error=exc.message)
                await asyncio.sleep(0.5 * (attempt + 1))


def _loop_time(monotonic_deadline: float) -> float:
    """asyncio's clock is time.monotonic on Linux; convert for timeout_at all the same."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())
