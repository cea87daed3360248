"""The Docker implementation of Sandbox: one fresh, hardened container per run."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time

import structlog

from bgcompiler.errors import BgcError, EngineUnavailable, SandboxError, StartupError
from bgcompiler.metrics import Metrics
from bgcompiler.models import Limits, RunResult, RunSpec
from bgcompiler.sandbox.base import check_proof, proof_spec
from bgcompiler.sandbox.engine import Engine
from bgcompiler.sandbox.exchange import exchange
from bgcompiler.sandbox.hardening import container_config
from bgcompiler.sandbox.housekeeping import Housekeeping
from bgcompiler.sandbox.live import Live
from bgcompiler.sandbox.monitor import ContainerWatch, EngineMonitor
from bgcompiler.sandbox.outcome import EngineState, build_result
from bgcompiler.sandbox.ownership import LABEL_INSTANCE, InstanceLease
from bgcompiler.sandbox.pool import Started, WarmPool

log = structlog.get_logger(__name__)


class Verify(enum.Enum):
    """What is left to check, after a run, to know that its end was the program's own."""

    NOTHING = "nothing"  # the helper saw a clean exit and nothing touched the container
    AFTER_DIE = "after die"  # the engine's events up to the container's death
    NOW = "now"  # the container is still coming down: what the engine has said so far


# A removal that fails while the engine answers is tried again for this long (the container
# may still be coming down); while the engine does not answer, three tries. What is left
# carries this instance's labels: the next start removes it.
REMOVAL_PATIENCE_S = 300.0
REMOVAL_TRIES_UNANSWERED = 3
# A container's exit code when its main process (the helper, or the program through it)
# died of SIGKILL.
SIGKILL_EXIT = 128 + 9
# How long a present image is taken to be still present without asking the engine, and how
# recent the engine's last answer must be for that.
IMAGE_CACHE_S = 2.0
ALIVE_S = 1.0
# A quiet run waits at most this long for background engine work to finish.
QUIET_WAIT_S = 5.0


class DockerSandbox:
    """Runs each RunSpec in a new container on a Docker engine, and removes it after."""

    def __init__(
        self,
        engine: Engine,
        lease: InstanceLease,
        *,
        check_runtime: str | None,
        check_image: str,
        check_limits: Limits,
        helper: str,
        artifact_bytes: int,
        pool_budget: int,
        pool_idle_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._lease = lease
        self._check_runtime = check_runtime
        self._check_image = check_image
        self._helper = helper
        self._artifact_bytes = artifact_bytes
        # The runtime is proven with the limits real runs get: under gVisor the pids limit
        # also bounds the sandbox's own threads, so a too-small --pids fails here, at start-up.
        self._check_limits = check_limits
        self._removals: set[asyncio.Task[None]] = set()
        self._creating: set[asyncio.Future[str]] = set()
        self._images: dict[str, tuple[str, float]] = {}
        self._monitor = EngineMonitor(engine, lease.labels)
        self._housekeeping = Housekeeping()
        self._pool = (
            WarmPool(
                self._launch,
                self._discard,
                self._monitor,
                self._housekeeping.work,
                budget=pool_budget,
                idle_s=pool_idle_s,
            )
            if pool_budget > 0
            else None
        )
        if metrics is not None and self._pool is not None:
            metrics.watch_pool(self._pool.counts)

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self._lease.acquire()
        log.info("starting", instance=self._lease.instance_id)
        try:
            await self._engine.negotiate()
            await self._monitor.start()
            await self.remove_orphans()
            if self._check_runtime:
                await self._prove_runtime(self._check_runtime)
            if self._pool is not None:
                self._pool.start()
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
        # A start-up run that failed (the runtime's proof) has its removal under way: it
        # needs the engine, so it ends before the engine is closed.
        if self._removals:
            await asyncio.gather(*self._removals, return_exceptions=True)
        await self._monitor.stop()
        await self._engine.close()
        self._lease.release()

    async def close(self) -> None:
        """Waits for pending removals, then removes anything of this instance still there."""
        if self._pool is not None:
            await self._pool.close()
        if self._creating:  # their containers are removed once made
            await asyncio.gather(*self._creating, return_exceptions=True)
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
        spec = proof_spec(self._check_image, self._check_limits, runtime)
        await self.check_image(self._check_image)
        result = await self._run(spec, warm=False)
        check_proof(result, f"runtime {runtime!r} is registered but could not run a container")

    # --- the Sandbox protocol --------------------------------------------------------------

    async def ping(self) -> None:
        await self._engine.ping()

    def status(self) -> dict[str, int | str]:
        return {
            "instance": self._lease.instance_id,
            "pool_ready": self._pool.size if self._pool else 0,
            "pool_starting": self._pool.starting if self._pool else 0,
            "removing": len(self._removals),
        }

    async def check_image(self, image: str) -> str:
        """The image's id. A present image is remembered for a moment: under load, most
        requests name the same few images, and each check is an Engine API call. The memory
        is trusted only while the engine is seen answering (its event stream is open and it
        answered a call within the last second), so that a request still learns at once,
        with a 503, that the engine is gone or hung."""
        now = time.monotonic()
        known = self._images.get(image)
        engine_alive = self._monitor.connected and now - self._engine.last_answer < ALIVE_S
        if known is not None and now - known[1] < IMAGE_CACHE_S and engine_alive:
            return known[0]
        image_id = str((await self._engine.image_exists(image)).get("Id", ""))
        self._images[image] = (image_id, now)
        return image_id

    async def run(self, spec: RunSpec) -> RunResult:
        return await self._run(spec, warm=self._pool is not None)

    async def run_live(self, spec: RunSpec, live: Live) -> RunResult:
        """An interactive run: input and signals from `live` as they come, output to it as
        it arrives. A compile stage's command differs when its input is live, so only a
        run may take a warm container."""
        warm = self._pool is not None and not spec.artifacts
        return await self._run(spec, warm=warm, live=live)

    async def _run(self, spec: RunSpec, *, warm: bool, live: Live | None = None) -> RunResult:
        started = self._pool.take(spec) if warm and self._pool is not None else None
        container_id = started.container_id if started else None
        if warm and self._metrics is not None:
            self._metrics.pool_take(warm=started is not None)
        try:
            with self._housekeeping.running():
                if started is None:  # nothing warm for this spec: start one now
                    started = await self._launch(spec, live=live is not None)
                    container_id = started.container_id
                if spec.quiet:
                    await self._settle()
                with contextlib.closing(started.stream):
                    result, verify = await self._execute(started, spec, live)
                interrupted = False
                if verify is Verify.AFTER_DIE:
                    interrupted = await self._monitor.interrupted(started.watch)
                elif verify is Verify.NOW:
                    interrupted = self._monitor.interrupted_now(started.watch)
            if interrupted:
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

    async def _launch(self, spec: RunSpec, *, live: bool = False) -> Started:
        """Creates, attaches (before start, so no output is missed) and starts a container.

        Cancelled at any point (a client gone, a shutdown), it leaves nothing behind: a
        create the engine is already carrying out is let finish, and its container removed.
        """
        begun = time.monotonic()
        creating = asyncio.ensure_future(
            self._engine.create(container_config(spec, self._lease.labels, self._helper, live=live))
        )
        self._creating.add(creating)
        creating.add_done_callback(self._creating.discard)
        try:
            container_id = await asyncio.shield(creating)
        except asyncio.CancelledError:
            creating.add_done_callback(self._remove_created)
            raise
        watch = self._monitor.watch(container_id)
        try:
            stream = await self._engine.attach(container_id)
        except BaseException:
            self._monitor.forget(container_id)
            self._remove_later(container_id)
            raise
        try:
            await self._engine.start(container_id)
        except BaseException:
            stream.close()
            self._monitor.forget(container_id)
            self._remove_later(container_id)
            raise
        if self._metrics is not None:
            self._metrics.container_started(time.monotonic() - begun)
        return Started(container_id, stream, watch)

    def _remove_created(self, creating: asyncio.Future[str]) -> None:
        """Removes the container of a create whose caller was cancelled meanwhile."""
        if not creating.cancelled() and creating.exception() is None:
            self._remove_later(creating.result())

    async def _settle(self) -> None:
        """Waits (a bounded time) for our engine work under way to finish (the work that
        waits for a pause in the runs waits for this one too)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(QUIET_WAIT_S):
                await self._housekeeping.settled()

    def _discard(self, started: Started) -> None:
        """Removes a warm container that will not be used."""
        started.stream.close()
        self._monitor.forget(started.container_id)
        self._remove_later(started.container_id)

    async def _execute(
        self, started: Started, spec: RunSpec, live: Live | None = None
    ) -> tuple[RunResult, Verify]:
        """Runs the spec in a started container. Returns the result, and what is still to be
        checked to know it is the program's own (nothing, when the helper saw the program
        exit cleanly by itself and nothing touched the container). With `live`, the
        program's input comes from it and its output goes to it as it arrives, every byte
        of it before this returns."""
        container_id, watch = started.container_id, started.watch

        async def kill() -> None:
            watch.killing = True
            await self._engine.kill(container_id)

        done = await exchange(
            started.stream, spec, live, artifact_bytes=self._artifact_bytes, kill=kill
        )
        certain = done.clean and not watch.oom and not self._monitor.interrupted_now(watch)
        if certain:  # a clean exit 0, seen by the helper: no need to ask the engine
            engine, verify = EngineState(exit_code=0, oom_killed=False), Verify.NOTHING
        else:
            engine = await self._engine_state(container_id, watch, until=done.patience)
            # A container still coming down has not died yet: what is known now is all.
            verify = Verify.NOW if engine.exit_code is None else Verify.AFTER_DIE
        result = build_result(
            done.collected,
            ending=done.ending,
            outside_ms=done.outside_ms,
            engine=engine,
            artifact_mb=self._artifact_bytes // (1024 * 1024),
        )
        return result, verify

    async def _engine_state(
        self, container_id: str, watch: ContainerWatch, *, until: float
    ) -> EngineState:
        """The container's exit code and OOM flag once it is down; if it is not down by
        `until` while the engine answers, the exit code is unknown (None) and the OOM flag
        what the engine knows so far. An engine that does not answer is an error."""
        exit_code: int | None = None
        try:
            async with asyncio.timeout_at(until):
                exit_code = await self._engine.wait(container_id)
        except TimeoutError:
            await self._engine.ping()  # EngineUnavailable when it is the engine that hangs
            log.warning("container slow to come down", container=container_id)
        state = (await self._engine.inspect(container_id)).get("State", {})
        if state.get("Error"):
            raise SandboxError(f"the engine reported: {state['Error']}")
        oom = bool(state.get("OOMKilled")) or watch.oom
        if not oom and exit_code == SIGKILL_EXIT and not watch.killing:
            # Killed, and not by us: most likely for memory, and the engine's word on it can
            # come after the container's exit.
            oom = await self._monitor.oom_reported(watch)
        return EngineState(exit_code, oom)

    def _remove_later(self, container_id: str) -> None:
        """Removal is off the request's path but tracked, so shutdown waits for it."""
        task = asyncio.create_task(self._remove(container_id))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def _remove(self, container_id: str) -> None:
        async with self._housekeeping.work():  # no answer waits for it: after a pause
            await self._remove_now(container_id)

    async def _remove_now(self, container_id: str) -> None:
        """Removes the container, patiently while the engine answers (REMOVAL_PATIENCE_S)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + REMOVAL_PATIENCE_S
        unanswered = 0
        while True:
            try:
                await self._engine.remove(container_id)
                return
            except BgcError as exc:
                log.warning("container removal failed", container=container_id, error=exc.message)
            try:
                await self._engine.ping()
            except BgcError:
                unanswered += 1
            if unanswered >= REMOVAL_TRIES_UNANSWERED or loop.time() >= give_up:
                return
            await asyncio.sleep(0.5 * (unanswered + 1))
