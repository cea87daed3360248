"""Prometheus metrics of one service instance: events counted as they happen, state read
at scrape time.

Each app gets a registry of its own (never prometheus_client's global one): several apps
may live in one process (the tests start many), and a metric must count one instance only.

Every label value comes from a small set the operator controls: a language or image label
is a registry language's (anything a request names by image is `other`), a route is its
template (`/api/v1/jobs/{job_id}`), never a raw path, and no label ever holds an id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bgcompiler.errors import BgcError
from bgcompiler.languages import Language

# The label of anything that is not in the registry (an image a request named, a code we
# do not know): one value, so a client cannot create series.
OTHER = "other"
# Why a request was refused, as our error codes name it; anything else is OTHER.
REASONS = frozenset(
    {"busy", "shutting_down", "engine_unavailable", "store_unavailable", "rate_limited", "quota"}
)
# A scrape asks the engine whether it answers; a hung engine must not hang the scrape.
ENGINE_PING_S = 1.0

_QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_START_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
_RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class QueueView(Protocol):
    """What the scheduler shows of its queue (read at each scrape)."""

    @property
    def waiting_runs(self) -> int: ...
    @property
    def backlog(self) -> int: ...
    @property
    def busy_workers(self) -> int: ...
    @property
    def workers(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PoolCount:
    """The warm containers of one pool key: ready to take, and being started."""

    image: str
    runtime: str | None
    compile: bool
    ready: int
    starting: int


def stage(compile: bool) -> str:
    return "compile" if compile else "run"


def runtime_label(runtime: str | None) -> str:
    """A run's runtime (the engine's default, runc, when none is named)."""
    return runtime or "runc"


def reason_label(code: str) -> str:
    return code if code in REASONS else OTHER


class Metrics:
    """The metrics of one service instance, and what the parts that record call."""

    def __init__(self, languages: Mapping[str, Language]) -> None:
        self._languages = frozenset(languages)
        self._images = frozenset(language.image for language in languages.values())
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._runs = Counter(
            "bgc_runs",
            "Runs finished (one container each), by status, runtime, language and stage.",
            ["status", "runtime", "language", "stage"],
            registry=r,
        )
        self._run_seconds = Histogram(
            "bgc_run_duration_seconds",
            "Wall time of a run on its worker: container start (or take), program, result.",
            ["stage"],
            buckets=_RUN_BUCKETS,
            registry=r,
        )
        self._queue_wait = Histogram(
            "bgc_queue_wait_seconds",
            "Time a job waited in the backlog before a worker took it.",
            buckets=_QUEUE_BUCKETS,
            registry=r,
        )
        self._container_start = Histogram(
            "bgc_container_start_seconds",
            "Time to create, attach and start a container (warm pool fills included).",
            buckets=_START_BUCKETS,
            registry=r,
        )
        self._pool_takes = Counter(
            "bgc_pool_takes",
            "Runs that looked for a warm container: found one (warm) or started one (cold).",
            ["result"],
            registry=r,
        )
        self._requests = Histogram(
            "bgc_request_duration_seconds",
            "HTTP request latency, by method, route template and status code.",
            ["method", "route", "code"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self._rejections = Counter(
            "bgc_rejections",
            "Requests refused for the service's state (503) or the client's rate (429).",
            ["code", "reason"],
            registry=r,
        )
        self._deliveries = Counter(
            "bgc_webhook_deliveries",
            "Webhook deliveries ended: delivered (a 2xx) or failed (every retry used).",
            ["outcome"],
            registry=r,
        )
        self._attempts = Counter(
            "bgc_webhook_attempts",
            "Webhook calls: ok (2xx), error_status (another answer) or no_answer.",
            ["outcome"],
            registry=r,
        )
        self._engine_up = Gauge(
            "bgc_engine_up",
            f"1 when the container engine answered a ping within {ENGINE_PING_S} s at scrape.",
            registry=r,
        )
        self._state = _StateCollector()
        r.register(self._state)
        # The service process's own figures (memory, CPU, open files, GC), as any exporter.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        r.register(GC_COLLECTOR)

    # --- labels ------------------------------------------------------------------------

    def language_label(self, language: str | None) -> str:
        """A registry language's name; OTHER for a run that named an image instead."""
        return language if language in self._languages else OTHER

    def image_label(self, image: str) -> str:
        """A registry language's image; OTHER for any image a request named itself."""
        return image if image in self._images else OTHER

    # --- events --------------------------------------------------------------------------

    def run_finished(
        self,
        *,
        status: str,
        runtime: str | None,
        language: str | None,
        compile: bool,
        seconds: float,
    ) -> None:
        labels = (status, runtime_label(runtime), self.language_label(language), stage(compile))
        self._runs.labels(*labels).inc()
        self._run_seconds.labels(stage(compile)).observe(seconds)

    def queue_waited(self, seconds: float) -> None:
        self._queue_wait.observe(seconds)

    def container_started(self, seconds: float) -> None:
        self._container_start.observe(seconds)

    def pool_take(self, *, warm: bool) -> None:
        self._pool_takes.labels("warm" if warm else "cold").inc()

    def request(self, method: str, route: str, code: int, seconds: float) -> None:
        self._requests.labels(method, route, str(code)).observe(seconds)

    def rejected(self, code: int, reason: str) -> None:
        self._rejections.labels(str(code), reason_label(reason)).inc()

    def webhook_attempt(self, status: int | None) -> None:
        if status is None:
            outcome = "no_answer"
        elif 200 <= status < 300:
            outcome = "ok"
        else:
            outcome = "error_status"
        self._attempts.labels(outcome).inc()

    def webhook_ended(self, *, delivered: bool) -> None:
        self._deliveries.labels("delivered" if delivered else "failed").inc()

    # --- state, read at scrape time --------------------------------------------------------

    def watch_queue(self, queue: QueueView) -> None:
        self._state.queue = queue

    def watch_pool(self, counts: Callable[[], Iterable[PoolCount]]) -> None:
        self._state.pool = counts
        self._state.image_label = self.image_label

    async def scrape(self, ping: Callable[[], Awaitable[None]]) -> bytes:
        """The text exposition, after asking the engine (briefly) whether it answers."""
        try:
            async with asyncio.timeout(ENGINE_PING_S):
                await ping()
            self._engine_up.set(1)
        except (BgcError, TimeoutError):
            self._engine_up.set(0)
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Gauges of what the scheduler and the warm pool hold right now."""

    def __init__(self) -> None:
        self.queue: QueueView | None = None
        self.pool: Callable[[], Iterable[PoolCount]] | None = None
        self.image_label: Callable[[str], str] = lambda _: OTHER

    def describe(self) -> Iterable[Metric]:
        return []  # the families depend on what is watched: found at each collect

    def collect(self) -> Iterator[Metric]:
        if self.queue is not None:
            q = self.queue
            yield GaugeMetricFamily(
                "bgc_queue_waiting_runs", "Runs admitted that wait for a worker.", q.waiting_runs
            )
            yield GaugeMetricFamily(
                "bgc_queue_backlog", "At most this many runs may wait (--backlog).", q.backlog
            )
            yield GaugeMetricFamily("bgc_workers", "Workers (--workers).", q.workers)
            yield GaugeMetricFamily("bgc_workers_busy", "Workers running a job.", q.busy_workers)
        if self.pool is not None:
            labels = ["image", "runtime", "stage"]
            ready = GaugeMetricFamily(
                "bgc_pool_ready", "Warm containers ready to take.", labels=labels
            )
            starting = GaugeMetricFamily(
                "bgc_pool_starting", "Warm containers being started.", labels=labels
            )
            totals: dict[tuple[str, str, str], list[int]] = {}
            for count in self.pool():
                key = (
                    self.image_label(count.image),
                    runtime_label(count.runtime),
                    stage(count.compile),
                )
                total = totals.setdefault(key, [0, 0])
                total[0] += count.ready
                total[1] += count.starting
            for key, (n_ready, n_starting) in sorted(totals.items()):
                ready.add_metric(list(key), n_ready)
                starting.add_metric(list(key), n_starting)
            yield ready
            yield starting
