"""Which distributed task queue carries the distributed mode's job ids: Dramatiq (RedisBroker,
async actors), Taskiq (taskiq-redis RedisStreamBroker, which acknowledges) and Celery (the Redis
transport with acks_late), each on the same real Redis server (the test fixture's), each with
one consumer process of concurrency 4.

Measured for each:
- latency of a no-op task, one at a time: enqueue to handler start, and enqueue to the
  acknowledgement reaching Redis (recorded in the consumer right after the engine's ack call);
- throughput: N no-op tasks sent back to back, first send to last ack (which the producer's
  own rate may bound), and the consumer alone: a queue filled first, emptied by a consumer;
- what one idle consumer costs the Redis server in CPU;
- a consumer SIGKILLed in the middle of a task: is the task delivered again to another consumer,
  after how long (with the engine's re-delivery timeout set to --redelivery-s), and does it
  need new traffic to notice;
- a consumer frozen with SIGSTOP: does another one get the task, and once thawed, does the
  frozen one also finish and acknowledge it (a duplicate the store must ignore);
- routing: one consumer of two queues gets the tasks of both and none of a third.

Timestamps are CLOCK_MONOTONIC (one clock for every process of the machine); the consumer
pushes them to Redis lists the driver reads. Not part of `make test`: run
`make bench-queues` (installs the bench extra) or
`.venv/bin/python benchmarks/queue_engines.py [--engines dramatiq,taskiq,celery]`.
It prints Markdown and writes benchmarks/results/queue_engines.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.redis_server import redis_server

from benchmarks.bench import RESULTS, free_port

# Dramatiq's Redis consumer polls (no blocking read): after a miss it sleeps 5-10 ms, doubling
# up to worker_timeout (1000 ms by default). dramatiq-poll20: worker_timeout 20 ms.
# dramatiq-fast: also a first sleep of 1-2 ms (its backoff's factor, 5 ms in Dramatiq).
ENGINES = ("dramatiq", "dramatiq-poll20", "dramatiq-fast", "taskiq", "celery")
QUEUE = "jobs"
ROUTED = ("runc", "runsc")  # a worker of both capabilities
OTHER = "crun"  # a capability it lacks
STARTS = "bench:starts"
ACKS = "bench:acks"
READY = "bench:ready"
CONCURRENCY = 4
IDLE_TASKS = 10
IDLE_PAUSE_S = 1.5
IDLE_COST_S = 5.0


# ---------------------------------------------------------------- consumer side (a subprocess)


def _record(client: redis.Redis, key: str, seq: int, sent_ns: int) -> None:
    """Pushes `consumer seq latency_ns` (`BENCH_CONSUMER` names this process)."""
    name = os.environ["BENCH_CONSUMER"]
    client.rpush(key, f"{name} {seq} {time.monotonic_ns() - sent_ns}")


async def _arecord(client: Any, key: str, seq: int, sent_ns: int) -> None:
    name = os.environ["BENCH_CONSUMER"]
    await client.rpush(key, f"{name} {seq} {time.monotonic_ns() - sent_ns}")


def _dramatiq_broker(url: str, redelivery_ms: int, maintenance_chance: int) -> Any:
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware.asyncio import AsyncIO

    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=url, heartbeat_timeout=redelivery_ms, maintenance_chance=maintenance_chance
    )
    broker.add_middleware(AsyncIO())
    return broker


def _dramatiq_actors(broker: Any, queues: list[str]) -> dict[str, Any]:
    import dramatiq
    import redis.asyncio

    clients: list[Any] = []

    async def noop(seq: int, sent_ns: int, sleep_s: float) -> None:
        if not clients:  # made on the worker's event loop, the one it is used on
            clients.append(redis.asyncio.Redis.from_url(os.environ["BENCH_REDIS"]))
        await _arecord(clients[0], STARTS, seq, sent_ns)
        if sleep_s:
            await asyncio.sleep(sleep_s)

    return {
        queue: dramatiq.actor(
            actor_name=f"noop_{queue}", queue_name=queue, broker=broker, max_retries=0
        )(noop)
        for queue in queues
    }


def _consume_dramatiq(
    url: str, queues: list[str], redelivery_ms: int, chance: int, poll_ms: int
) -> None:
    import dramatiq
    from dramatiq.middleware import Middleware

    broker = _dramatiq_broker(url, redelivery_ms, chance)
    sync_client = redis.Redis.from_url(url)

    class AckTimes(Middleware):
        def after_ack(self, broker: Any, message: Any) -> None:
            seq, sent_ns, _ = message.args
            _record(sync_client, ACKS, seq, sent_ns)

    broker.add_middleware(AckTimes())
    _dramatiq_actors(broker, queues)
    worker = dramatiq.Worker(
        broker, queues=set(queues), worker_threads=CONCURRENCY, worker_timeout=poll_ms
    )
    worker.start()
    sync_client.rpush(READY, os.environ["BENCH_CONSUMER"])
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    worker.stop(timeout=5000)


def _taskiq_broker(url: str, queues: list[str], redelivery_ms: int) -> Any:
    from taskiq_redis import RedisStreamBroker

    first, *more = queues
    return RedisStreamBroker(
        url,
        queue_name=first,
        # Its group reads from the stream's start: tasks sent before any consumer are kept.
        consumer_id="0",
        idle_timeout=redelivery_ms,
        xread_block=1000,
        additional_streams=dict.fromkeys(more, ">"),
    )


def _taskiq_task(broker: Any) -> Any:
    import redis.asyncio

    clients: list[Any] = []

    async def noop(seq: int, sent_ns: int, sleep_s: float) -> None:
        if not clients:
            clients.append(redis.asyncio.Redis.from_url(os.environ["BENCH_REDIS"]))
        await _arecord(clients[0], STARTS, seq, sent_ns)
        if sleep_s:
            await asyncio.sleep(sleep_s)

    return broker.task(task_name="noop")(noop)


def _consume_taskiq(url: str, queues: list[str], redelivery_ms: int) -> None:
    import redis.asyncio
    from taskiq.acks import AckableMessage
    from taskiq.api import run_receiver_task

    broker = _taskiq_broker(url, queues, redelivery_ms)
    listen = broker.listen

    async def listen_recording_acks() -> Any:
        client = redis.asyncio.Redis.from_url(url)
        async for message in listen():
            seq, sent_ns, _ = json.loads(message.data)["args"]

            async def ack(ack: Any = message.ack, seq: int = seq, sent_ns: int = sent_ns) -> None:
                await ack()
                await _arecord(client, ACKS, seq, sent_ns)

            yield AckableMessage(data=message.data, ack=ack)

    broker.listen = listen_recording_acks
    _taskiq_task(broker)

    async def main() -> None:
        await broker.startup()
        receiver = asyncio.create_task(
            run_receiver_task(broker, max_async_tasks=CONCURRENCY, max_prefetch=CONCURRENCY)
        )
        await redis.asyncio.Redis.from_url(url).rpush(READY, os.environ["BENCH_CONSUMER"])
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()
        receiver.cancel()
        await broker.shutdown()

    asyncio.run(main())


def _celery_app(url: str, redelivery_s: float) -> Any:
    from celery import Celery

    app = Celery("bench", broker=url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        # Its defaults: 3600 s, and a sweep for expired ones about every 10 x 10 s.
        broker_transport_options={
            "visibility_timeout": redelivery_s,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


def _celery_task(app: Any) -> Any:
    clients: list[redis.Redis] = []

    def noop(seq: int, sent_ns: int, sleep_s: float) -> None:
        if not clients:
            clients.append(redis.Redis.from_url(os.environ["BENCH_REDIS"]))
        _record(clients[0], STARTS, seq, sent_ns)
        if sleep_s:
            time.sleep(sleep_s)

    return app.task(name="noop")(noop)


def _consume_celery(url: str, queues: list[str], redelivery_s: float) -> None:
    from celery.signals import worker_ready
    from celery.worker.request import Request

    app = _celery_app(url, redelivery_s)
    _celery_task(app)
    client = redis.Redis.from_url(url)
    acknowledge = Request.acknowledge

    def acknowledge_recording(self: Any) -> None:
        acknowledge(self)
        seq, sent_ns, _ = self.args
        _record(client, ACKS, seq, sent_ns)

    Request.acknowledge = acknowledge_recording

    @worker_ready.connect  # type: ignore[untyped-decorator]
    def ready(**_: Any) -> None:
        client.rpush(READY, os.environ["BENCH_CONSUMER"])

    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={CONCURRENCY}",
            f"--queues={','.join(queues)}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
        ]
    )


def consume(args: argparse.Namespace) -> None:
    queues = args.queues.split(",")
    redelivery_ms = int(args.redelivery_s * 1000)
    if args.engine == "dramatiq-fast":
        from dramatiq.brokers import redis as dramatiq_redis
        from dramatiq.common import compute_backoff

        # The consumer's module calls it by this name; a consumer subclass would do the same.
        vars(dramatiq_redis)["compute_backoff"] = partial(compute_backoff, factor=1)
    if args.engine.startswith("dramatiq"):
        poll_ms = 1000 if args.engine == "dramatiq" else 20
        _consume_dramatiq(args.url, queues, redelivery_ms, args.maintenance_chance, poll_ms)
    elif args.engine == "taskiq":
        _consume_taskiq(args.url, queues, redelivery_ms)
    else:
        _consume_celery(args.url, queues, args.redelivery_s)


# ---------------------------------------------------------------- driver side


class Producer:
    """Sends `noop(seq, sent_ns, sleep_s)` to a queue with one engine's own client."""

    def __init__(self, engine: str, url: str, redelivery_s: float) -> None:
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        redelivery_ms = int(redelivery_s * 1000)
        if engine.startswith("dramatiq"):
            broker = _dramatiq_broker(url, redelivery_ms, 1000)
            self.actors = _dramatiq_actors(broker, [QUEUE, *ROUTED, OTHER])
        elif engine == "taskiq":
            self.broker = _taskiq_broker(url, [QUEUE], redelivery_ms)
            self.task = _taskiq_task(self.broker)
            self.loop.run_until_complete(self.broker.startup())
        else:
            self.app = _celery_app(url, redelivery_s)
            self.task = _celery_task(self.app)

    def send(self, seq: int, sleep_s: float = 0.0, queue: str = QUEUE) -> None:
        sent_ns = time.monotonic_ns()
        if self.engine.startswith("dramatiq"):
            self.actors[queue].send(seq, sent_ns, sleep_s)
        elif self.engine == "taskiq":
            kicker = self.task.kicker().with_labels(queue_name=queue)
            self.loop.run_until_complete(kicker.kiq(seq, sent_ns, sleep_s))
        else:
            self.task.apply_async((seq, sent_ns, sleep_s), queue=queue)

    def close(self) -> None:
        if self.engine == "taskiq":
            self.loop.run_until_complete(self.broker.shutdown())
        self.loop.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class Record:
    consumer: str
    seq: int
    latency_ns: int
    at_ns: int  # when the driver read it (CLOCK_MONOTONIC)


class Recorder:
    """Reads the consumers' start and ack records from Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def take(self, key: str, timeout_s: float) -> Record | None:
        got = self.client.blpop([key], timeout=max(timeout_s, 0.01))
        if got is None:
            return None
        consumer, seq, latency = _text(got[1]).split()
        return Record(consumer, int(seq), int(latency), time.monotonic_ns())

    def wait_for_seq(self, key: str, seq: int, timeout_s: float) -> Record | None:
        return self.wait_for(key, lambda record: record.seq == seq, timeout_s)

    def wait_for(
        self, key: str, match: Callable[[Record], bool], timeout_s: float
    ) -> Record | None:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            record = self.take(key, left)
            if record is not None and match(record):
                return record
        return None


@dataclass
class Consumer:
    name: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Bench:
    engine: str
    url: str
    redelivery_s: float
    maintenance_chance: int
    client: redis.Redis
    recorder: Recorder
    consumers: list[Consumer] = field(default_factory=list)

    def start_consumer(self, name: str, queues: list[str]) -> Consumer:
        env = {**os.environ, "BENCH_CONSUMER": name, "BENCH_REDIS": self.url}
        command = [
            sys.executable, __file__, "consume", self.engine,
            "--url", self.url,
            "--queues", ",".join(queues),
            "--redelivery-s", str(self.redelivery_s),
            "--maintenance-chance", str(self.maintenance_chance),
        ]  # fmt: skip
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        consumer = Consumer(name, process)
        self.consumers.append(consumer)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = self.client.blpop([READY], timeout=1)
            if got is not None and _text(got[1]) == name:
                return consumer
            if process.poll() is not None:
                break
        raise RuntimeError(f"{self.engine} consumer {name} did not start")

    def reset(self) -> None:
        for consumer in self.consumers:
            consumer.stop()
        self.consumers.clear()
        self.client.flushall()


def percentiles(values_ns: list[int]) -> dict[str, float]:
    ordered = sorted(values_ns)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": statistics.median(ordered) / 1e6, "p95_ms": p95 / 1e6}


def measure_latency(bench: Bench, producer: Producer, count: int) -> dict[str, Any]:
    bench.start_consumer("A", [QUEUE])
    starts: list[int] = []
    acks: list[int] = []
    for seq in range(count + 20):  # the first 20 warm connections and code paths up
        producer.send(seq)
        start = bench.recorder.wait_for_seq(STARTS, seq, 10)
        ack = bench.recorder.wait_for_seq(ACKS, seq, 10)
        if start is None or ack is None:
            raise RuntimeError(f"{bench.engine}: task {seq} not started or not acknowledged")
        if seq >= 20:
            starts.append(start.latency_ns)
            acks.append(ack.latency_ns)
    # After a pause, as a worker between bursts sees it: an engine that polls has slowed down.
    idle: list[int] = []
    for seq in range(count + 20, count + 20 + IDLE_TASKS):
        time.sleep(IDLE_PAUSE_S)
        producer.send(seq)
        start = bench.recorder.wait_for_seq(STARTS, seq, 10)
        if start is None:
            raise RuntimeError(f"{bench.engine}: task {seq} not started")
        idle.append(start.latency_ns)
    bench.reset()
    return {
        "to_start": percentiles(starts),
        "to_ack": percentiles(acks),
        "count": count,
        "after_pause_to_start": percentiles(idle),
    }


def measure_idle_cost(bench: Bench, redis_pid: int) -> dict[str, float]:
    """CPU of the Redis server while one consumer waits with nothing to do."""
    bench.start_consumer("A", [QUEUE])
    time.sleep(1)
    before, began = _cpu_seconds(redis_pid), time.monotonic()
    time.sleep(IDLE_COST_S)
    used = _cpu_seconds(redis_pid) - before
    elapsed = time.monotonic() - began
    bench.reset()
    return {"redis_cpu_pct_one_idle_consumer": 100 * used / elapsed}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime: the 14th and 15th fields of stat, counting the pid and name
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_throughput(bench: Bench, producer: Producer, count: int) -> dict[str, float]:
    bench.start_consumer("A", [QUEUE])
    producer.send(-1)  # warm-up
    bench.recorder.wait_for(ACKS, lambda r: r.seq == -1, 10)
    began = time.monotonic()
    for seq in range(count):
        producer.send(seq)
    sent = time.monotonic()
    acked = 0
    while acked < count:
        got = bench.client.blpop([ACKS], timeout=30)
        if got is None:
            raise RuntimeError(f"{bench.engine}: only {acked} of {count} acknowledged")
        acked += 1
    ended = time.monotonic()
    bench.reset()
    # The consumer alone: a queue filled first, then emptied by a consumer started after.
    for seq in range(count):
        producer.send(seq)
    bench.start_consumer("A", [QUEUE])
    reads: list[float] = []
    for _ in range(count):
        if bench.client.blpop([ACKS], timeout=30) is None:
            raise RuntimeError(f"{bench.engine}: a pre-filled queue was not emptied")
        reads.append(time.monotonic())
    bench.reset()
    first, last = reads[0], reads[-1]
    return {
        "tasks_per_s": count / (ended - began),
        "enqueue_per_s": count / (sent - began),
        "drain_per_s": (count - 1) / (last - first),
    }


def measure_failure(
    bench: Bench, producer: Producer, how: signal.Signals, wait_s: float
) -> dict[str, Any]:
    """A consumes a 3 s task; B is started; A gets `how` right after the task started."""
    a = bench.start_consumer("A", [QUEUE])
    producer.send(1, sleep_s=3.0)
    if bench.recorder.wait_for(STARTS, lambda r: r.seq == 1, 10) is None:
        raise RuntimeError(f"{bench.engine}: consumer A never started the task")
    bench.start_consumer("B", [QUEUE])
    os.kill(a.process.pid, how)
    hit = time.monotonic()
    found: dict[str, Any] = {}
    again = bench.recorder.wait_for(STARTS, lambda r: r.consumer == "B" and r.seq == 1, wait_s)
    if again is not None:
        found["redelivered_after_s"] = round(time.monotonic() - hit, 2)
        found["needed_new_traffic"] = False
    else:
        found["redelivered_after_s"] = None
        # An engine that reclaims only while it receives new messages: send one more.
        producer.send(2)
        nudged = time.monotonic()
        again = bench.recorder.wait_for(STARTS, lambda r: r.consumer == "B" and r.seq == 1, wait_s)
        found["needed_new_traffic"] = again is not None
        if again is not None:
            found["redelivered_after_nudge_s"] = round(time.monotonic() - nudged, 2)
    if how == signal.SIGSTOP:
        os.kill(a.process.pid, signal.SIGCONT)
        acks: list[str] = []
        deadline = time.monotonic() + 3.0 + wait_s
        while time.monotonic() < deadline and len(acks) < 2:
            record = bench.recorder.take(ACKS, deadline - time.monotonic())
            if record is not None and record.seq == 1:
                acks.append(record.consumer)
        found["acked_by"] = acks
        found["thawed_consumer_also_finished"] = "A" in acks
    bench.reset()
    return found


def measure_routing(bench: Bench, producer: Producer) -> dict[str, Any]:
    """One consumer of runc and runsc: it gets both, and not a crun task."""
    bench.start_consumer("A", list(ROUTED))
    for seq, queue in enumerate((*ROUTED, OTHER)):
        producer.send(seq, queue=queue)
    got: set[int] = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        record = bench.recorder.take(STARTS, deadline - time.monotonic())
        if record is not None:
            got.add(record.seq)
    bench.reset()
    return {
        "several_queues": {0, 1} <= got,
        "took_foreign_queue": 2 in got,
    }


def measure_long_tasks(bench: Bench, producer: Producer) -> dict[str, Any]:
    """A live consumer busy with long tasks (2.5 x the re-delivery timeout), as many as it
    takes (2 x its concurrency, so that its prefetch is full): does another consumer run them
    a second time while the first still runs them? New traffic is sent half-way (an engine
    that reclaims only when it receives gets its chance)."""
    long_s = 2.5 * bench.redelivery_s
    a = bench.start_consumer("A", [QUEUE])
    tasks = 2 * CONCURRENCY
    for seq in range(tasks):
        producer.send(seq, sleep_s=long_s)
    started_by_a: set[int] = set()
    deadline = time.monotonic() + 10
    while len(started_by_a) < CONCURRENCY and time.monotonic() < deadline:
        record = bench.recorder.take(STARTS, deadline - time.monotonic())
        if record is not None:
            started_by_a.add(record.seq)
    bench.start_consumer("B", [QUEUE])
    began = time.monotonic()
    nudged = False
    twice: set[int] = set()
    while (left := began + long_s + 3 - time.monotonic()) > 0:
        if not nudged and time.monotonic() - began > 0.6 * long_s:
            producer.send(tasks + 1)
            nudged = True
        record = bench.recorder.take(STARTS, min(left, 1.0))
        if record is None:
            continue
        if record.consumer == "A":
            started_by_a.add(record.seq)
        elif record.seq in started_by_a and a.process.poll() is None:
            twice.add(record.seq)
    bench.reset()
    return {"started_by_a": len(started_by_a), "run_twice_while_alive": len(twice)}


@contextmanager
def _engine_bench(engine: str, url: str, args: argparse.Namespace) -> Iterator[Bench]:
    # redis-py 8 reads with a 5 s socket timeout by default: longer BLPOPs need none.
    client = redis.Redis.from_url(url, socket_timeout=None)
    bench = Bench(engine, url, args.redelivery_s, args.maintenance_chance, client, Recorder(client))
    try:
        yield bench
    finally:
        bench.reset()
        client.close()


def run_engine(engine: str, url: str, redis_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    producer = Producer(engine, url, args.redelivery_s)
    try:
        with _engine_bench(engine, url, args) as bench:
            result: dict[str, Any] = {"engine": engine}
            result["latency"] = measure_latency(bench, producer, args.latency_n)
            print(f"{engine}: latency {result['latency']}", file=sys.stderr)
            result["throughput"] = measure_throughput(bench, producer, args.throughput_n)
            print(f"{engine}: throughput {result['throughput']}", file=sys.stderr)
            result["idle"] = measure_idle_cost(bench, redis_pid)
            print(f"{engine}: idle {result['idle']}", file=sys.stderr)
            result["routing"] = measure_routing(bench, producer)
            print(f"{engine}: routing {result['routing']}", file=sys.stderr)
            result["long_tasks"] = measure_long_tasks(bench, producer)
            print(f"{engine}: long tasks {result['long_tasks']}", file=sys.stderr)
            for how in (signal.SIGKILL, signal.SIGSTOP):
                result[how.name] = measure_failure(bench, producer, how, args.wait_s)
                print(f"{engine}: {how.name} {result[how.name]}", file=sys.stderr)
            return result
    finally:
        producer.close()


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"One consumer process (concurrency {CONCURRENCY}) per engine, Redis on loopback; "
        f"latency over {args.latency_n} sequential no-op tasks, throughput over "
        f"{args.throughput_n}; re-delivery timeout set to {args.redelivery_s} s for each.",
        "",
        "| engine | to start p50 | p95 | to ack p50 | p95 | after a 1.5 s pause p50 | p95 "
        "| tasks/s | enqueue/s | drain/s | Redis CPU, 1 idle consumer |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lat, thr = r["latency"], r["throughput"]
        lines.append(
            f"| {r['engine']} | {lat['to_start']['p50_ms']:.2f} ms | "
            f"{lat['to_start']['p95_ms']:.2f} ms | {lat['to_ack']['p50_ms']:.2f} ms | "
            f"{lat['to_ack']['p95_ms']:.2f} ms | {lat['after_pause_to_start']['p50_ms']:.1f} ms | "
            f"{lat['after_pause_to_start']['p95_ms']:.1f} ms | {thr['tasks_per_s']:.0f} | "
            f"{thr['enqueue_per_s']:.0f} | {thr['drain_per_s']:.0f} | "
            f"{r['idle']['redis_cpu_pct_one_idle_consumer']:.1f} % |"
        )
    lines += [
        "",
        "| engine | SIGKILL: re-delivered after | needed new traffic | SIGSTOP: re-delivered after "
        "| thawed one also finished | long tasks run twice while alive | several queues "
        "| took a foreign queue |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        kill, stop, routing = r["SIGKILL"], r["SIGSTOP"], r["routing"]
        lines.append(
            f"| {r['engine']} | {kill['redelivered_after_s']} s | {kill['needed_new_traffic']} | "
            f"{stop['redelivered_after_s']} s | {stop['thawed_consumer_also_finished']} | "
            f"{r['long_tasks']['run_twice_while_alive']} of {r['long_tasks']['started_by_a']} | "
            f"{routing['several_queues']} | {routing['took_foreign_queue']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run")
    consumer = sub.add_parser("consume")
    consumer.add_argument("engine", choices=ENGINES)
    consumer.add_argument("--url", required=True)
    consumer.add_argument("--queues", required=True)
    for p in (run, consumer, parser):
        p.add_argument("--redelivery-s", type=float, default=5.0)
        p.add_argument(
            "--maintenance-chance",
            type=int,
            default=1_000_000,
            help="Dramatiq: broker commands per million that look for dead workers "
            "(its default is 1000)",
        )
    for p in (run, parser):
        p.add_argument("--engines", default=",".join(ENGINES))
        p.add_argument("--latency-n", type=int, default=300)
        p.add_argument("--throughput-n", type=int, default=2000)
        p.add_argument("--wait-s", type=float, default=30.0)
        p.add_argument("--out", type=Path, default=RESULTS / "queue_engines.json")
    args = parser.parse_args()
    if args.command == "consume":
        if args.engine.startswith("dramatiq"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        consume(args)
        return
    with redis_server(free_port()) as server:
        pid = int(server.pidfile.read_text())
        results = [run_engine(e, server.url, pid, args) for e in args.engines.split(",")]
    args.out.write_text(
        json.dumps(
            {"results": results, "args": {k: str(v) for k, v in vars(args).items()}},
            indent=2,
            default=str,
        )
        + "\n"
    )
    print(markdown(results, args))


if __name__ == "__main__":
    main()
