"""What durable jobs cost: a one-run job from submit to done (through `?wait`, in two
requests or in one) against the same run through `POST /api/v1/runs`, and saturation
through each, with the embedded SQLite store and with a real PostgreSQL server. All paths
run in the same service, one request of each in turn, so that the machine's drift hits
them alike (a run's own time drifted by 30 ms between minutes here, ten times the
difference measured).

Latency is measured at rest: each request comes after a pause (--pause), once the engine's
work of the request before it (removing its container, warming a replacement) is done, as
for a request that finds the service idle. Back to back, each request would run beside the
previous one's engine work; those figures are printed too (not the target's).

Run with `make bench` (after bench.py). It writes benchmarks/results/jobs.md and jobs.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.postgres import postgres_server

from benchmarks.bench import RESULTS, Service, free_port, percentile, throughput, timed

BODY = {"image": "bgc/busybox:latest", "run": "echo hi", "script": ""}
TARGET_P50_MS = 3.0
TARGET_SATURATION = 0.9


async def through_runs(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(f"{url}/api/v1/runs", json=BODY) as response:
        answer = await response.json()
    if response.status != 200 or answer["runs"][0]["status"] != "ok":
        raise RuntimeError(f"a run failed: {response.status} {answer}")


async def through_jobs(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(f"{url}/api/v1/jobs", json=BODY) as response:
        job = await response.json()
    if response.status != 202:
        raise RuntimeError(f"a job was refused: {response.status} {job}")
    async with session.get(f"{url}/api/v1/jobs/{job['id']}", params={"wait": "60"}) as response:
        done = await response.json()
    if done["status"] != "done" or done["result"]["runs"][0]["status"] != "ok":
        raise RuntimeError(f"a job failed: {done}")


async def through_job_at_once(session: aiohttp.ClientSession, url: str) -> None:
    """The job submitted and waited for in one request (`POST ?wait`)."""
    async with session.post(f"{url}/api/v1/jobs", json=BODY, params={"wait": "60"}) as response:
        done = await response.json()
    if response.status != 201 or done["result"]["runs"][0]["status"] != "ok":
        raise RuntimeError(f"a job failed: {response.status} {done}")


# The three ways, measured one request of each in turn.
PATHS = {"runs": through_runs, "jobs": through_jobs, "at_once": through_job_at_once}


async def paired(
    session: aiohttp.ClientSession, url: str, samples: int, pause: float
) -> dict[str, list[float]]:
    """Each way's times, one request of each in turn, `pause` seconds before each."""
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    for _ in range(samples):
        for path, call in PATHS.items():
            await asyncio.sleep(pause)
            times[path].append(await timed(partial(call, session, url)))
    return times


def latency(times: dict[str, list[float]], prefix: str = "") -> dict[str, float]:
    """p50 and p99 of each way; for the jobs, the median of each job's time less the run's
    just before it (the difference with the drift out)."""
    runs = times["runs"]
    entry: dict[str, float] = {}
    for path, measured in times.items():
        entry[f"{prefix}{path}_p50_ms"] = statistics.median(measured)
        entry[f"{prefix}{path}_p99_ms"] = percentile(measured, 0.99)
        if path != "runs":
            added = (j - r for r, j in zip(runs, measured, strict=True))
            entry[f"{prefix}{path}_paired_added_ms"] = statistics.median(added)
    return entry


async def measure(service: Service, args: argparse.Namespace) -> dict[str, Any]:
    saturation: dict[str, list[float]] = {path: [] for path in PATHS}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=600)
    ) as session:
        for _ in range(10):  # warm: the pool filled, the store's file and caches in use
            for call in PATHS.values():
                await call(session, service.url)
        at_rest = await paired(session, service.url, args.samples, args.pause)
        back_to_back = await paired(session, service.url, args.samples, 0.0)
        for _ in range(args.rounds):
            for path, call in PATHS.items():
                saturation[path].append(
                    await throughput(
                        partial(call, session, service.url), args.concurrency, args.total
                    )
                )
    entry: dict[str, Any] = {"samples": args.samples, "pause_s": args.pause}
    entry |= latency(at_rest) | latency(back_to_back, "back_to_back_")
    for path in PATHS:
        entry[f"{path}_per_s"] = statistics.median(saturation[path])
        entry[f"{path}_rounds_per_s"] = saturation[path]
        # Each round measures the three ways one after the other: the ratio of a round is
        # taken within it, so that the machine's drift between rounds stays out of it.
        rounds = zip(saturation[path], saturation["runs"], strict=True)
        entry[f"{path}_ratio"] = statistics.median(way / runs for way, runs in rounds)
    return entry


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    state = RESULTS / "state"
    state.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"stores": {}}
    data_dir = Path(tempfile.mkdtemp(prefix="bgc-jobs-bench-"))
    try:
        with postgres_server(free_port()) as postgres:
            stores = {
                "sqlite": ["--data-dir", str(data_dir)],
                "postgresql": ["--database-url", postgres],
            }
            for name, flags in stores.items():
                service = Service("runc", [*args.service_args, *flags, "--backlog", "5000"])
                await service.start(state)
                try:
                    data["stores"][name] = await measure(service, args)
                finally:
                    service.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return data


def report(data: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# Jobs: what durability costs",
        "",
        f"Measured {data['measured_at']}, service flags `{' '.join(args.service_args)}`, busybox "
        f"`echo hi`, runc. Latency at rest: {data['stores']['sqlite']['samples']} one-run "
        f"requests each way per store, one of each way in turn, each after a pause of "
        f"{args.pause:g} s (the engine's work of the request before done; added: the "
        f"difference of the p50s with `POST /api/v1/runs`; paired: the median of each job's "
        f"time less the run's just before it). A job is waited for in two requests (`POST`, "
        f"then `GET ?wait`) or in one (`POST ?wait`). Saturation: {args.total} runs at "
        f"concurrency {args.concurrency}, {args.rounds} rounds, each measuring the three ways "
        f"one after the other: runs/s is the median of the rounds, the ratio the median of "
        f"the rounds' own ratios.",
        "",
        "| store | way | p50 | added | paired | target | runs/s | ratio | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ways = {
        "runs": "POST /api/v1/runs",
        "jobs": "job: POST + GET ?wait",
        "at_once": "job: POST ?wait",
    }
    for name, entry in data["stores"].items():
        for path, way in ways.items():
            p50, per_s = entry[f"{path}_p50_ms"], entry[f"{path}_per_s"]
            if path == "runs":
                lines.append(f"| {name} | {way} | {p50:.1f} ms | | | | {per_s:.1f} | | |")
                continue
            added = p50 - entry["runs_p50_ms"]
            ratio = entry[f"{path}_ratio"]
            lines.append(
                f"| {name} | {way} | {p50:.1f} ms | **{added:+.1f} ms** "
                f"| {entry[f'{path}_paired_added_ms']:+.1f} ms "
                f"| <= {TARGET_P50_MS:g} ms {'met' if added <= TARGET_P50_MS else 'missed'} "
                f"| {per_s:.1f} | **{ratio:.2f}x** "
                f"| >= {TARGET_SATURATION}x {'met' if ratio >= TARGET_SATURATION else 'missed'} |"
            )
    lines += [
        "",
        "Back to back (no pause: each request runs beside the engine's work of the one before "
        "it; not the target's figure):",
        "",
        "| store | way | p50 | added | paired |",
        "|---|---|---|---|---|",
    ]
    for name, entry in data["stores"].items():
        for path, way in ways.items():
            p50 = entry[f"back_to_back_{path}_p50_ms"]
            if path == "runs":
                lines.append(f"| {name} | {way} | {p50:.1f} ms | | |")
                continue
            added = p50 - entry["back_to_back_runs_p50_ms"]
            paired = entry[f"back_to_back_{path}_paired_added_ms"]
            lines.append(f"| {name} | {way} | {p50:.1f} ms | {added:+.1f} ms | {paired:+.1f} ms |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=150)
    parser.add_argument(
        "--pause", type=float, default=0.3, help="seconds before each request at rest"
    )
    parser.add_argument("--total", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--service-args",
        type=shlex.split,
        default=["--workers", "6"],
        help='the service\'s flags, as one string: --service-args "--engine oci --workers 6"',
    )
    args = parser.parse_args()
    data = asyncio.run(bench(args))
    data["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "jobs.json").write_text(json.dumps(data, indent=1))
    (RESULTS / "jobs.md").write_text(report(data, args))
    print((RESULTS / "jobs.md").read_text())


if __name__ == "__main__":
    main()
