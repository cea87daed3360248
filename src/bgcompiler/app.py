"""create_app(settings): the FastAPI application; its lifespan owns the sandbox and scheduler."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.engine import Engine as SqlEngine
from starlette.routing import Match
from starlette.types import Scope

from bgcompiler import __version__
from bgcompiler.api.auth import ApiKeys, document_keys
from bgcompiler.api.docs_assets import install_docs
from bgcompiler.api.errors import RequestBodyLimit, install_error_handlers
from bgcompiler.api.health import readiness
from bgcompiler.api.health import router as health_router
from bgcompiler.api.jobs_render import job_document
from bgcompiler.api.jobs_routes import router as jobs_router
from bgcompiler.api.judge0_plan import judge0_languages
from bgcompiler.api.judge0_render import JUDGE0, judge0_callback
from bgcompiler.api.judge0_routes import router as judge0_router
from bgcompiler.api.metrics_routes import RequestMetrics
from bgcompiler.api.metrics_routes import router as metrics_router
from bgcompiler.api.piston_routes import router as piston_router
from bgcompiler.api.piston_ws import router as piston_ws_router
from bgcompiler.api.play import install_play
from bgcompiler.api.request_id import RequestId
from bgcompiler.api.routes import router
from bgcompiler.api.v1_routes import router as v1_router
from bgcompiler.api.workers_routes import router as workers_router
from bgcompiler.cluster.api_node import Cluster, ClusterExecutor, ClusterJobs, ClusterView
from bgcompiler.cluster.notify import Listener
from bgcompiler.cluster.queue import JobQueue
from bgcompiler.cluster.watchdog import Watchdog
from bgcompiler.errors import BgcError, StartupError
from bgcompiler.executor import Executor
from bgcompiler.jobs.service import JobService
from bgcompiler.jobs.webhooks import Callback, Webhooks
from bgcompiler.languages import Language, load_languages
from bgcompiler.metrics import Metrics
from bgcompiler.ratelimit import RATELIMIT_HEADERS
from bgcompiler.sandbox.base import Sandbox
from bgcompiler.sandbox.docker import DockerSandbox
from bgcompiler.sandbox.engine import Engine
from bgcompiler.sandbox.measure import ensure_helper
from bgcompiler.sandbox.oci.sandbox import OciSandbox
from bgcompiler.sandbox.ownership import InstanceLease
from bgcompiler.scheduler import Scheduler
from bgcompiler.services import Services, limits_from
from bgcompiler.settings import Settings
from bgcompiler.store.cluster import ClusterStore
from bgcompiler.store.database import database_url, open_database
from bgcompiler.store.ends import ENDS_CHANNEL
from bgcompiler.store.jobs import JOBS_CHANNEL, JobStore
from bgcompiler.store.keys import KeyStore

log = structlog.get_logger(__name__)

DESCRIPTION = """
Runs untrusted code, each run in a fresh hardened Docker container (optionally under
gVisor), `count` times, and reports each run's output, exit status and duration.

`POST /compile` is byte-compatible with the original bg-compiler.
Every error answer is JSON: `{"error": <code>, "message": <text>}`.
"""


def docker_sandbox(settings: Settings, metrics: Metrics) -> DockerSandbox:
    helper = ensure_helper(settings.helper, Path(settings.cache_dir))
    return DockerSandbox(
        Engine(settings.docker_host, settings.engine_timeout),
        InstanceLease(settings.state_dir),
        check_runtime=settings.runtime_name,
        check_image=settings.check_image,
        check_limits=limits_from(settings),
        helper=str(helper),
        artifact_bytes=settings.artifacts * 1024 * 1024,
        pool_budget=settings.pool_budget,
        pool_idle_s=settings.pool_idle,
        metrics=metrics,
    )


def oci_sandbox(settings: Settings, metrics: Metrics) -> OciSandbox:
    helper = ensure_helper(settings.helper, Path(settings.cache_dir))
    return OciSandbox(
        Engine(settings.docker_host, settings.engine_timeout),
        InstanceLease(settings.state_dir),
        state_dir=Path(settings.state_dir),
        cache_dir=Path(settings.cache_dir),
        check_runtime=settings.runtime_name,
        check_image=settings.check_image,
        check_limits=limits_from(settings),
        helper=str(helper),
        artifact_bytes=settings.artifacts * 1024 * 1024,
        metrics=metrics,
    )


def started_scheduler(box: Sandbox, settings: Settings, metrics: Metrics) -> Scheduler:
    """A node's scheduler over its sandbox, its workers started."""
    scheduler = Scheduler(
        box,
        workers=settings.workers,
        backlog=settings.backlog,
        pin_cpus=settings.pin_cpus,
        metrics=metrics,
    )
    scheduler.start()
    return scheduler


def webhooks_of(store: JobStore, settings: Settings, metrics: Metrics) -> Webhooks:
    """The callbacks of the jobs this node runs or takes, as the settings configure them."""
    return Webhooks(
        store,
        secret=settings.webhook_secret,
        retries=settings.webhook_retries,
        allow_private=settings.webhook_allow_private,
        metrics=metrics,
    )


def configured_sandbox(settings: Settings, metrics: Metrics) -> Sandbox:
    """The sandbox of the engine the settings name (--engine)."""
    make = oci_sandbox if settings.engine == "oci" else docker_sandbox
    return make(settings, metrics)


def job_callbacks(
    store: JobStore, languages: dict[str, Language]
) -> Callable[[str], Awaitable[Callback]]:
    """What a job's callback carries: the document its API answers with."""

    async def rendered(job_id: str) -> Callback:
        row = await store.get(job_id)
        assert row is not None
        if row.api == JUDGE0:
            return judge0_callback(row, judge0_languages(languages))
        deliveries = await store.deliveries(job_id)
        return Callback(json.dumps(job_document(row, deliveries)).encode())

    return rendered


def _judge0_route(scope: Scope) -> bool:
    """Whether the request is for one of Judge0's routes (they answer 401 as Judge0 does)."""
    return any(route.matches(scope)[0] is not Match.NONE for route in judge0_router.routes)


def request_stop(app: FastAPI) -> None:
    """A stop signal arrived: the grace for runs starts now (see server.StoppingServer)."""
    begin_shutdown = getattr(app.state, "begin_shutdown", None)
    if begin_shutdown is not None:
        begin_shutdown()


async def api_node(
    settings: Settings, engine: SqlEngine, metrics: Metrics, languages: dict[str, Language]
) -> tuple[
    Sandbox, Executor, JobStore, Webhooks, JobService, Callable[[], Coroutine[Any, Any, None]]
]:
    """The parts of an API node of distributed mode (no engine: runs happen on workers)."""
    assert settings.queue_url is not None
    assert settings.database_url is not None
    store = JobStore(engine, keeps_rows=False, notifies=True)
    queue = JobQueue(settings.queue_url)
    cluster = Cluster(
        ClusterStore(engine),
        store,
        queue,
        runtime=settings.runtime_name or "runc",
        visibility_s=settings.visibility_timeout,
        backlog=settings.backlog,
    )
    view = ClusterView(cluster)
    try:
        await view.open()
    except BgcError as exc:
        engine.dispose()
        log.error("cannot start", reason=exc.message)
        raise StartupError(exc.message) from exc
    executor = ClusterExecutor(cluster)
    webhooks = webhooks_of(store, settings, metrics)
    jobs = ClusterJobs(
        cluster,
        executor,
        store=store,
        webhooks=webhooks,
        document=job_callbacks(store, languages),
        retention_s=settings.retention_days * 86400,
    )
    executor.attach(jobs)
    listener = Listener(
        settings.database_url,
        {ENDS_CHANNEL: store.announced_end, JOBS_CHANNEL: store.announced},
        connected=store.announce_all,
    )
    await listener.start()
    watchdog = Watchdog(
        cluster.store,
        queue,
        visibility_s=settings.visibility_timeout,
        max_attempts=settings.max_attempts,
    )
    watchdog.start()
    freshening = asyncio.create_task(cluster.keep_fresh(), name="cluster-view")

    async def stop() -> None:
        await executor.shutdown()
        freshening.cancel()
        await asyncio.gather(freshening, return_exceptions=True)
        await watchdog.stop()
        await listener.stop()
        await view.close()

    return view, executor, store, webhooks, jobs, stop


def create_app(settings: Settings, sandbox: Sandbox | None = None) -> FastAPI:
    """The application. `sandbox` defaults to the configured engine; unit tests pass a fake."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            languages = load_languages(settings.languages)
            url = database_url(settings.database_url, settings.data_dir)
            engine = await open_database(url, settings.data_dir)
        except StartupError as exc:
            log.error("cannot start", reason=exc.message)
            raise
        metrics = Metrics(languages)
        if settings.queue_url is not None:
            node = await api_node(settings, engine, metrics, languages)
            box, scheduler, store, webhooks, jobs, stop_node = node
            app.state.cluster = jobs.cluster if isinstance(jobs, ClusterJobs) else None
        else:
            box = sandbox if sandbox is not None else configured_sandbox(settings, metrics)
            try:
                await box.open()
            except StartupError as exc:
                engine.dispose()
                log.error("cannot start", reason=exc.message)
                raise
            local = started_scheduler(box, settings, metrics)
            scheduler = local
            store = JobStore(engine)
            webhooks = webhooks_of(store, settings, metrics)
            jobs = JobService(
                store,
                local,
                webhooks,
                document=job_callbacks(store, languages),
                retention_s=settings.retention_days * 86400,
            )

            async def stop_node() -> None:
                await local.shutdown(settings.shutdown_grace)

        await jobs.open()
        stopping: list[asyncio.Task[None]] = []

        def begin_shutdown() -> None:
            """From now on nothing is admitted; runs get --shutdown-grace, then end."""
            if not stopping:
                stopping.append(asyncio.create_task(stop_node()))

        app.state.begin_shutdown = begin_shutdown
        app.state.started_at = time.time()
        app.state.services = Services(settings, box, scheduler, languages)
        app.state.jobs = jobs
        app.state.webhooks = webhooks
        app.state.readiness = readiness(box, store, scheduler, settings.engine_timeout)
        app.state.metrics = metrics
        app.state.keys = KeyStore(engine)
        log.info(
            "ready",
            workers=settings.workers,
            backlog=settings.backlog,
            runtime=settings.runtime_name or "runc",
            store=url.split("://", 1)[0],
        )
        try:
            yield
        finally:
            begin_shutdown()
            await stopping[0]
            await jobs.close()
            await box.close()
            log.info("stopped")

    app = FastAPI(
        title="bg-compiler",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load their scripts from a CDN: install_docs
        redoc_url=None,
    )
    install_error_handlers(app)
    install_docs(app)
    install_play(app)
    app.include_router(router)
    app.include_router(health_router)
    app.include_router(v1_router)
    app.include_router(workers_router)
    app.include_router(jobs_router)
    app.include_router(piston_router)
    app.include_router(judge0_router)
    app.include_router(piston_ws_router)
    app.include_router(metrics_router)
    app.add_middleware(RequestMetrics)  # innermost: it reads the route the router chose
    app.add_middleware(RequestBodyLimit, limit=settings.max_body_bytes)
    if settings.require_api_key:
        # Outside the body cap (a request without a key is refused before its body is
        # read), inside CORS (a browser's preflight carries no key).
        app.add_middleware(ApiKeys, judge0=_judge0_route)
        document_keys(app)
    if settings.cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origin),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After", *RATELIMIT_HEADERS],
        )
    app.add_middleware(RequestId)  # outermost: whatever is logged for a request carries its id
    return app
