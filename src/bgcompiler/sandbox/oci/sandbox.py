"""The OCI implementation of Sandbox: one fresh container per run, started by runc (or runsc)
straight from a bundle, without dockerd, containerd or a shim in the run's path.

Docker remains the image store: an image is checked and unpacked from the local engine
(rootfs.py), then every run of it is a runtime process of ours (runtime.py) whose container
has the Docker path's isolation (config.py), the same helper, archive and nonce scheme, and
whose output is read and judged by the same code (collect.py, capture.py, outcome.py).

What is ours on the host, all named after this instance's id so that it can be counted and
reaped (ownership.py's lease): the runtimes' state under `<runtime>/` (container ids
`bgc-<instance>-<hostname>`) and the bundles under `runs/<instance>/`, both in a tmpfs
directory of the state directory's own (volatile.py); the runs' hostname files under
`<state_dir>/oci/hostnames/<instance>/`; the cgroups `/bgc-oci/<instance>/<container>` under
each controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import time
from pathlib import Path

import structlog

from bgcompiler.errors import BgcError, EngineUnavailable, StartupError
from bgcompiler.metrics import Metrics
from bgcompiler.models import Limits, RunResult, RunSpec
from bgcompiler.sandbox.base import check_proof, proof_spec
from bgcompiler.sandbox.engine import Engine
from bgcompiler.sandbox.exchange import exchange
from bgcompiler.sandbox.housekeeping import Housekeeping
from bgcompiler.sandbox.live import Live
from bgcompiler.sandbox.oci.config import bundle_config
from bgcompiler.sandbox.oci.rootfs import RootfsCache
from bgcompiler.sandbox.oci.runtime import CGROUP_ROOT, Runtime, RuntimeProcess
from bgcompiler.sandbox.oci.seccomp_filter import runc_filter
from bgcompiler.sandbox.oci.volatile import make_volatile_dir, remove_if_empty, volatile_dir
from bgcompiler.sandbox.outcome import EngineState, build_result
from bgcompiler.sandbox.ownership import LABEL_INSTANCE, InstanceLease

log = structlog.get_logger(__name__)

CGROUP_BASE = "bgc-oci"
CONTAINER_PREFIX = "bgc-"
IMAGE_CACHE_S = 2.0
QUIET_WAIT_S = 5.0
# A removal that fails is tried this many times; what is left is removed at close, or by
# the next start on this host after a crash.
REMOVAL_TRIES = 3
# How long a removal waits for the runtime process to end by itself before deleting.
FINISH_WAIT_S = 10.0


def container_owner(container_id: str) -> str | None:
    """The instance id in one of our container ids (`bgc-<instance>-<hostname>`)."""
    if not container_id.startswith(CONTAINER_PREFIX):
        return None
    owner = container_id[len(CONTAINER_PREFIX) :].split("-", 1)[0]
    return owner if owner.isalnum() else None


class OciSandbox:
    """Runs each RunSpec in a new container started by runc or runsc from a bundle."""

    def __init__(
        self,
        engine: Engine,
        lease: InstanceLease,
        *,
        state_dir: Path,
        cache_dir: Path,
        check_runtime: str | None,
        check_image: str,
        check_limits: Limits,
        helper: str,
        artifact_bytes: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._lease = lease
        self._state = volatile_dir(state_dir)
        self._runs = self._state / "runs" / lease.instance_id
        # Each run's /etc/hostname, bind-mounted: on the state directory's filesystem, not
        # the tmpfs, because a program sees the filesystem of its mounts (as under dockerd,
        # whose hostname files are on its disk), and the tmpfs's would show its size.
        self._hostname_files = state_dir / "oci" / "hostnames"
        self._rootfs = RootfsCache(
            engine, cache_dir / "oci-rootfs", lease.labels, lease.instance_id
        )
        self._check_runtime = check_runtime
        self._check_image = check_image
        self._check_limits = check_limits
        self._helper = helper
        self._artifact_bytes = artifact_bytes
        self._metrics = metrics
        self._init = ""
        self._seccomp_filter: bytes | None = None
        self._runtimes: dict[str | None, Runtime] = {}
        self._images: dict[str, tuple[str, list[str], float]] = {}
        self._removals: set[asyncio.Task[None]] = set()
        self._housekeeping = Housekeeping()

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self._lease.acquire()
        log.info("starting", instance=self._lease.instance_id, engine="oci")
        try:
            self._init = _find_init()
            make_volatile_dir(self._state)
            (self._hostname_files / self._lease.instance_id).mkdir(parents=True, exist_ok=True)
            self._runtimes[None] = Runtime.find("runc", self._state / "runc")
            if self._check_runtime:
                self._runtimes[self._check_runtime] = Runtime.find(
                    self._check_runtime, self._state / Path(self._check_runtime).name
                )
            for runtime in self._runtimes.values():
                runtime.root.mkdir(parents=True, exist_ok=True)
            self._runs.mkdir(parents=True, exist_ok=True)
            await self._engine.negotiate()
            await self.remove_orphans()
            self._seccomp_filter = await self._runc_filter()
            await self._prove_runtime(self._check_runtime)
        except EngineUnavailable as exc:
            await self._abandon()
            raise StartupError(
                f"{exc.message}; the oci engine takes its images from dockerd"
            ) from exc
        except StartupError:
            await self._abandon()
            raise
        except (BgcError, OSError) as exc:
            await self._abandon()
            message = exc.message if isinstance(exc, BgcError) else str(exc)
            raise StartupError(f"the oci engine failed a start-up check: {message}") from exc

    async def _abandon(self) -> None:
        if self._removals:  # a start-up run's (the runtime's proof)
            await asyncio.gather(*self._removals, return_exceptions=True)
        await self._remove_own()
        await self._engine.close()
        self._lease.release()
        remove_if_empty(self._state)

    async def close(self) -> None:
        """Waits for pending removals, then removes anything of this instance still there."""
        if self._removals:
            await asyncio.gather(*self._removals, return_exceptions=True)
        await self._remove_own()
        await self._engine.close()
        self._lease.release()
        remove_if_empty(self._state)

    async def _remove_own(self) -> None:
        instance = self._lease.instance_id
        for runtime in self._runtimes.values():
            with contextlib.suppress(BgcError, OSError, TimeoutError):
                for container_id in await runtime.containers():
                    if container_owner(container_id) == instance:
                        await runtime.delete(container_id)
        shutil.rmtree(self._runs, ignore_errors=True)
        shutil.rmtree(self._hostname_files / instance, ignore_errors=True)
        _remove_cgroups(instance)
        with contextlib.suppress(BgcError):  # an image export cut short
            for container in await self._engine.list_containers(self._lease.labels):
                await self._engine.remove(container["Id"])

    async def remove_orphans(self) -> int:
        """Removes what dead instances of ours on this host left: containers, bundles,
        cgroups, image exports and half-unpacked roots. Returns how many containers."""
        removed = 0
        dead: set[str] = set()
        for runtime in self._runtimes.values():
            for container_id in await runtime.containers():
                owner = container_owner(container_id)
                if owner is not None and self._lease.is_dead(owner):
                    await runtime.delete(container_id)
                    dead.add(owner)
                    removed += 1
        for per_instance in (self._state / "runs", self._hostname_files):
            for entry in per_instance.iterdir() if per_instance.is_dir() else ():
                if entry.name.isalnum() and self._lease.is_dead(entry.name):
                    shutil.rmtree(entry, ignore_errors=True)
                    dead.add(entry.name)
        for container in await self._engine.list_containers(self._lease.host_labels):
            owner = container.get("Labels", {}).get(LABEL_INSTANCE, "")
            if owner.isalnum() and self._lease.is_dead(owner):
                await self._engine.remove(container["Id"])
                dead.add(owner)
        self._rootfs.remove_partial(self._lease.is_dead)
        await self._rootfs.remove_stale()
        for owner in dead:
            _remove_cgroups(owner)
            self._lease.forget(owner)
        if removed:
            log.info("removed leftover containers", count=removed, instances=sorted(dead))
        return removed

    async def _runc_filter(self) -> bytes:
        """Docker's profile as runc compiles it, taken once (seccomp_filter.py)."""
        container_id = f"{CONTAINER_PREFIX}{self._lease.instance_id}-seccomp"
        return await runc_filter(
            self._runtimes[None],
            self._helper,
            self._runs / container_id,
            container_id,
            self._cgroups_path(container_id),
        )

    async def _prove_runtime(self, runtime: str | None) -> None:
        spec = proof_spec(self._check_image, self._check_limits, runtime)
        await self.check_image(self._check_image)
        result = await self._run(spec)
        check_proof(result, f"{runtime or 'runc'} could not run a container from a bundle")

    # --- the Sandbox protocol --------------------------------------------------------------

    async def ping(self) -> None:
        await self._engine.ping()

    def status(self) -> dict[str, int | str]:
        return {
            "instance": self._lease.instance_id,
            "pool_ready": 0,
            "pool_starting": 0,
            "removing": len(self._removals),
        }

    async def check_image(self, image: str) -> str:
        return (await self._image(image))[0]

    async def _image(self, image: str) -> tuple[str, list[str]]:
        """The image's id and environment; a present image is remembered for a moment."""
        now = time.monotonic()
        known = self._images.get(image)
        if known is not None and now - known[2] < IMAGE_CACHE_S:
            return known[0], known[1]
        found = await self._engine.image_exists(image)
        image_id = str(found.get("Id", ""))
        env = [str(entry) for entry in (found.get("Config") or {}).get("Env") or []]
        self._images[image] = (image_id, env, now)
        return image_id, env

    async def run(self, spec: RunSpec) -> RunResult:
        return await self._run(spec)

    async def run_live(self, spec: RunSpec, live: Live) -> RunResult:
        return await self._run(spec, live=live)

    async def _run(self, spec: RunSpec, *, live: Live | None = None) -> RunResult:
        # The hostname is in the container's id, as under dockerd (its first 12 characters),
        # so a host process of the run (a gVisor sandbox's) can be told by it.
        hostname = secrets.token_hex(6)
        container_id = f"{CONTAINER_PREFIX}{self._lease.instance_id}-{hostname}"
        runtime = self._runtimes.get(spec.runtime)
        if runtime is None:
            return RunResult.internal(f"this service was not started with runtime {spec.runtime!r}")
        started: RuntimeProcess | None = None
        try:
            with self._housekeeping.running():
                if spec.quiet:
                    await self._settle()
                begun = time.monotonic()
                started = await self._launch(
                    runtime, container_id, hostname, spec, live=live is not None
                )
                if self._metrics is not None:
                    self._metrics.container_started(time.monotonic() - begun)
                return await self._execute(started, spec, live)
        except BgcError as exc:
            log.warning("run failed", error=exc.message, container=container_id)
            return RunResult.internal(exc.message)
        finally:
            # Whatever happened (a cancellation during the start included), the container
            # may exist: its removal is by id, and a container never made is no error.
            self._remove_later(runtime, container_id, started)

    # --- one run ---------------------------------------------------------------------------

    def _cgroups_path(self, container_id: str) -> str:
        return f"/{CGROUP_BASE}/{self._lease.instance_id}/{container_id}"

    async def _launch(
        self, runtime: Runtime, container_id: str, hostname: str, spec: RunSpec, *, live: bool
    ) -> RuntimeProcess:
        image_id, image_env = await self._image(spec.image)
        rootfs = await self._rootfs.rootfs(image_id)
        bundle = self._runs / container_id
        bundle.mkdir()
        hostname_file = self._hostname_files / self._lease.instance_id / container_id
        hostname_file.write_text(hostname + "\n")
        config = bundle_config(
            spec,
            rootfs=rootfs,
            image_env=image_env,
            helper=self._helper,
            init=self._init,
            hostname=hostname,
            hostname_file=hostname_file,
            cgroups_path=self._cgroups_path(container_id),
            seccomp_filter=self._seccomp_filter,
            live=live,
        )
        (bundle / "config.json").write_text(json.dumps(config, separators=(",", ":")))
        return RuntimeProcess.start(runtime, container_id, bundle, self._helper)

    async def _settle(self) -> None:
        """Waits (a bounded time) for our removals under way to finish (those that wait
        for a pause in the runs wait for this one too)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(QUIET_WAIT_S):
                await self._housekeeping.settled()

    async def _execute(
        self, started: RuntimeProcess, spec: RunSpec, live: Live | None
    ) -> RunResult:
        """Runs the spec in a started container (exchange.py); the runtime's word on its end
        is asked only when the helper's record is missing (the helper was killed)."""
        done = await exchange(
            started.stream, spec, live, artifact_bytes=self._artifact_bytes, kill=started.kill
        )
        cgroups_path = self._cgroups_path(started.container_id)
        if done.collected.measurement is not None:
            # The record says how the program ended (its exit status is the result's), and
            # the kernel's OOM counter is final once it has ended: the runtime's exit code
            # would go unused, and the answer need not wait for the container to be down.
            engine = EngineState(exit_code=None, oom_killed=started.oom_killed(cgroups_path))
        else:
            exit_code: int | None = None
            try:
                async with asyncio.timeout_at(done.patience):
                    exit_code = await started.exit_code()
            except TimeoutError:
                log.warning("container slow to come down", container=started.container_id)
            engine = EngineState(exit_code, started.oom_killed(cgroups_path))
        return build_result(
            done.collected,
            ending=done.ending,
            outside_ms=done.outside_ms,
            engine=engine,
            artifact_mb=self._artifact_bytes // (1024 * 1024),
        )

    def _remove_later(
        self, runtime: Runtime, container_id: str, started: RuntimeProcess | None
    ) -> None:
        """Removal is off the request's path but tracked, so shutdown waits for it."""
        task = asyncio.create_task(self._remove(runtime, container_id, started))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def _remove(
        self, runtime: Runtime, container_id: str, started: RuntimeProcess | None
    ) -> None:
        async with self._housekeeping.work():  # no answer waits for it: after a pause
            await self._remove_now(runtime, container_id, started)

    async def _remove_now(
        self, runtime: Runtime, container_id: str, started: RuntimeProcess | None
    ) -> None:
        """Deletes the container (killing what is left of it), its bundle and cgroups."""
        fast = started is not None and await started.remove_stopped(
            self._cgroups_path(container_id)
        )
        for attempt in range(0 if fast else REMOVAL_TRIES):
            with contextlib.suppress(OSError):
                if await runtime.delete(container_id):
                    break
            await asyncio.sleep(0.5 * (attempt + 1))
        if started is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FINISH_WAIT_S):
                    await started.finish()
        shutil.rmtree(self._runs / container_id, ignore_errors=True)
        (self._hostname_files / self._lease.instance_id / container_id).unlink(missing_ok=True)


def _find_init() -> str:
    """dockerd's init (tini, static), which Docker's `Init` runs as each container's pid 1."""
    found = shutil.which("docker-init")
    if found is None:
        raise StartupError("the oci engine needs docker-init (tini) on PATH, as dockerd does")
    return str(Path(found).resolve())


def _remove_cgroups(instance: str) -> None:
    """Removes an instance's (empty) cgroup directories under every controller."""
    for controller in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else ():
        base = controller / CGROUP_BASE / instance
        if not base.is_dir():
            continue
        for leftover in sorted(base.iterdir(), reverse=True):
            if leftover.is_dir():
                with contextlib.suppress(OSError):
                    leftover.rmdir()
        with contextlib.suppress(OSError):
            base.rmdir()
