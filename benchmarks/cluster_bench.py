"""What the distributed mode costs and what it scales to, on one machine.

- p50 of a one-run job (submit to done through `?wait`): a single node with PostgreSQL
  against an API node + one worker node (same PostgreSQL server, Redis), alternating one
  request to each, so that the machine's drift hits both alike;
- saturation through jobs: the single node against the cluster with one worker (same
  `--workers`), and with two worker nodes (the second on a second dockerd of its own);
- the CPU each part spends per run (API node, Redis, PostgreSQL, worker, engine), and the
  throughput those costs predict for N machines.

Run with `make bench`. It writes benchmarks/results/cluster.md and cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.postgres import postgres_cluster
from tests.redis_server import redis_server
from tests.second_engine import second_engine

from benchmarks.bench import RESULTS, Service, free_port, proc_cpu_s, throughput, timed
from benchmarks.jobs_bench import through_job_at_once, through_jobs

TARGET_ADDED_P50_MS = 5.0
TARGET_SATURATION = 0.9
BUSYBOX = "bgc/busybox:latest"
WAYS = {"two_requests": through_jobs, "one_request": through_job_at_once}
WAY_NAMES = {"two_requests": "POST + GET ?wait", "one_request": "POST ?wait"}


class WorkerProcess:
    """A `bg-compiler worker` process."""

    def __init__(self, name: str, flags: list[str], state: Path) -> None:
        log = (state / f"worker-{name}.log").open("wb")
        command = [sys.executable, "-m", "bgcompiler", "worker", "--worker-id", name, *flags]
        self.log_path = state / f"worker-{name}.log"
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    async def ready(self) -> None:
        for _ in range(600):
            if "worker ready" in self.log_path.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        raise RuntimeError(self.log_path.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def pids_of(predicate: Callable[[str, int], bool]) -> list[int]:
    """Processes whose command line (and uid) match."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            uid = int((entry / "status").read_text().split("Uid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if predicate(command, uid):
            found.append(int(entry.name))
    return found


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        # One that ended meanwhile is not counted (a PostgreSQL backend, say).
        with contextlib.suppress(OSError):
            total += proc_cpu_s(pid)
    return total


def engine_pids() -> list[int]:
    """The first engine: dockerd, containerd and the shims of its containers."""
    return pids_of(
        lambda command, _: (
            (
                command.startswith(("dockerd ", "containerd ", "/usr/bin/dockerd"))
                and "--data-root" not in command
            )
            or "containerd-shim" in command
        )
    )


async def cpu_per_run(
    parts: dict[str, Callable[[], list[int]]], run: Callable[[], Any], total: int
) -> dict[str, float]:
    """CPU ms per run each part spent while `total` runs went through."""
    before = {name: cpu_of(pids()) for name, pids in parts.items()}
    await run()
    after = {name: cpu_of(pids()) for name, pids in parts.items()}
    return {name: (after[name] - before[name]) * 1000 / total for name in parts}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    state = RESULTS / "state"
    state.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    flags = ["--backlog", "5000", "--max-count", "100"]
    worker_flags = ["--workers", str(args.workers), "--state-dir", str(state)]
    with (
        postgres_cluster(free_port()) as database,
        redis_server(free_port()) as redis,
        second_engine([BUSYBOX]) as other_engine,
    ):
        shared = ["--queue-url", redis.url, "--database-url", database.url]
        single = Service(
            "runc", [*flags, "--workers", str(args.workers), "--database-url", database.url]
        )
        api = Service("runc", [*flags, *shared])
        first = WorkerProcess("bench-1", [*shared, *worker_flags], state)
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=600)
        ) as session:
            try:
                await single.start(state)
                await first.ready()
                await api.start(state)  # an API node answers GET / once a worker is alive
                local = partial(through_jobs, session, single.url)
                distributed = partial(through_jobs, session, api.url)
                # Each way of waiting (two requests, or POST ?wait), on each side, in turn.
                calls = {
                    (way, side): partial(call, session, service.url)
                    for way, call in WAYS.items()
                    for side, service in (("single", single), ("cluster", api))
                }
                for _ in range(10):
                    for call in calls.values():
                        await call()
                # At rest (each request after a pause: the engine's work of the one before
                # it done), then back to back.
                for prefix, pause in (("", args.pause), ("back_to_back_", 0.0)):
                    times: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
                    for _ in range(args.samples):
                        for key, call in calls.items():
                            await asyncio.sleep(pause)
                            times[key].append(await timed(call))
                    for way in WAYS:
                        singles, clustered = times[way, "single"], times[way, "cluster"]
                        data[f"{prefix}{way}_single_p50_ms"] = statistics.median(singles)
                        data[f"{prefix}{way}_cluster_p50_ms"] = statistics.median(clustered)
                        data[f"{prefix}{way}_paired_added_ms"] = statistics.median(
                            c - s for s, c in zip(singles, clustered, strict=True)
                        )
                saturation: dict[str, list[float]] = {"single": [], "one_worker": []}
                for _ in range(args.rounds):
                    saturation["single"].append(
                        await throughput(local, args.concurrency, args.total)
                    )
                    saturation["one_worker"].append(
                        await throughput(distributed, args.concurrency, args.total)
                    )
                data["single_per_s"] = statistics.median(saturation["single"])
                data["one_worker_per_s"] = statistics.median(saturation["one_worker"])
                # Each round measures both one after the other: a round's ratio is taken
                # within it, so that the machine's drift between rounds stays out of it.
                rounds = zip(saturation["one_worker"], saturation["single"], strict=True)
                data["saturation_ratio"] = statistics.median(one / single for one, single in rounds)
                parts = {
                    "api_node": lambda: [api.pid],
                    "redis": lambda: pids_of(lambda command, _: "redis-server" in command),
                    "postgresql": lambda: pids_of(lambda _, uid: uid == postgres_uid()),
                    "worker": lambda: [first.process.pid],
                    "engine": engine_pids,
                }
                data["cpu_ms_per_run"] = await cpu_per_run(
                    parts,
                    partial(throughput, distributed, args.concurrency, args.total),
                    args.total,
                )
                second = WorkerProcess(
                    "bench-2",
                    [*shared, *worker_flags, "--docker-host", other_engine.host],
                    state,
                )
                await second.ready()
                try:
                    two = [
                        await throughput(distributed, args.concurrency * 2, args.total)
                        for _ in range(args.rounds)
                    ]
                    data["two_workers_per_s"] = statistics.median(two)
                finally:
                    second.stop()
            finally:
                first.stop()
                api.stop()
                single.stop()
    data["cpus"] = os.cpu_count()
    return data


def postgres_uid() -> int:
    import pwd

    return pwd.getpwnam("postgres").pw_uid


def report(data: dict[str, Any], args: argparse.Namespace) -> str:
    ratio = data["saturation_ratio"]
    cpu = data["cpu_ms_per_run"]
    central = cpu["api_node"] + cpu["redis"] + cpu["postgresql"]
    per_worker_machine = cpu["worker"] + cpu["engine"]
    cores = data["cpus"]
    lines = [
        "# Distributed mode: what it adds and what it scales to",
        "",
        f"Measured {data['measured_at']} on this {cores}-core machine; busybox `echo hi`, runc, "
        f"`--workers {args.workers}` on the single node and on each worker node; PostgreSQL "
        f"for both. Latency at rest: {args.samples} one-run jobs each way, one of each in turn, "
        f"each after a pause of {args.pause:g} s (the engine's work of the job before it done; "
        "waited for in two requests, POST then GET ?wait, or in one, POST ?wait). Saturation "
        "(two requests): "
        f"{args.total} one-run jobs at concurrency {args.concurrency}, {args.rounds} rounds, "
        "each measuring both one after the other: jobs/s is the median of the rounds, the "
        "ratio the median of the rounds' own ratios.",
        "",
        "| | single node | API node + 1 worker | difference | target |",
        "|---|---|---|---|---|",
        *(latency_row(data, way) for way in WAYS),
        *(latency_row(data, way, "back_to_back_") for way in WAYS),
        f"| saturation, jobs/s | {data['single_per_s']:.1f} | {data['one_worker_per_s']:.1f} "
        f"| **{ratio:.2f}x** | >= {TARGET_SATURATION}x "
        f"{'met' if ratio >= TARGET_SATURATION else 'missed'} |",
        "",
        f"With two worker nodes (the second on a dockerd of its own, same machine, concurrency "
        f"{args.concurrency * 2}): **{data['two_workers_per_s']:.1f} jobs/s** against "
        f"{data['one_worker_per_s']:.1f} with one. Both engines share these {cores} cores, so "
        "this is not what two machines give; the CPU each part spends per run says that:",
        "",
        "| part | CPU ms per run |",
        "|---|---|",
        *(f"| {name} | {value:.2f} |" for name, value in cpu.items()),
        "",
        f"Each worker machine spends {per_worker_machine:.1f} ms of CPU per run (worker + "
        f"engine), so a {cores}-core worker machine tops out near "
        f"{1000 * cores / per_worker_machine:.0f} runs/s. The central parts (API node, Redis, "
        f"PostgreSQL) spend {central:.1f} ms per run: one {cores}-core machine for them serves "
        f"about {1000 * cores / central:.0f} runs/s, i.e. about "
        f"{per_worker_machine / central:.1f} worker machines of the same size before the "
        "central machine is the bottleneck. Predicted for N worker machines: "
        f"min(N x {1000 * cores / per_worker_machine:.0f}, "
        f"{1000 * cores / central:.0f}) runs/s; API nodes can be added (they are stateless), "
        "PostgreSQL then becomes the bottleneck.",
    ]
    return "\n".join(lines) + "\n"


def latency_row(data: dict[str, Any], way: str, prefix: str = "") -> str:
    single, cluster = data[f"{prefix}{way}_single_p50_ms"], data[f"{prefix}{way}_cluster_p50_ms"]
    added = cluster - single
    paired = data[f"{prefix}{way}_paired_added_ms"]
    if prefix:  # back to back: reported, not the target's figure
        return (
            f"| back to back: one-run job p50 ({WAY_NAMES[way]}) | {single:.1f} ms "
            f"| {cluster:.1f} ms | {added:+.1f} ms (paired {paired:+.1f} ms) | |"
        )
    return (
        f"| one-run job p50, submit -> done ({WAY_NAMES[way]}) | {single:.1f} ms "
        f"| {cluster:.1f} ms | **{added:+.1f} ms** (paired {paired:+.1f} ms) "
        f"| <= {TARGET_ADDED_P50_MS:g} ms {'met' if added <= TARGET_ADDED_P50_MS else 'missed'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument(
        "--pause", type=float, default=0.3, help="seconds before each request at rest"
    )
    parser.add_argument("--total", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=6)
    args = parser.parse_args()
    data = asyncio.run(bench(args))
    data["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(data, indent=1))
    (RESULTS / "cluster.md").write_text(report(data, args))
    print((RESULTS / "cluster.md").read_text())


if __name__ == "__main__":
    main()
