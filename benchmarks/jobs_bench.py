"""What durable jobs cost: a one-run job from submit to done (through `?wait`, in two
requests or in one) against the same run through `POST /api/v1/runs`, and saturation
through each, with the embedded SQLite store and with a real PostgreSQL server. All paths
run in the same service, one request of each in turn, so that the machine's drift hits
them alike (a run's own time drifted by 30 ms between minutes here, ten times the
difference measured).

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


async def measure(service: Service, args: argparse.Namespace) -> dict[str, Any]:
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    saturation: dict[str, list[float]] = {path: [] for path in PATHS}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=600)
    ) as session:
        for _ in range(10):  # warm: the pool filled, the store's file and caches in use
            for call in PATHS.values():
                await call(session, service.url)
        for _ in range(args.samples):
            for path, call in PATHS.items():
                times[path].append(await timed(partial(call, session, service.url)))
        for _ in range(args.rounds):
            for path, call in PATHS.items():
                saturation[path].append(
                    await throughput(
                        partial(call, session, service.url), args.concurrency, args.total
                    )
                )
    runs = times["runs"]
    entry: dict[str, Any] = {"samples": len(runs)}
    for path, measured in times.items():
        entry[f"{path}_p50_ms"] = statistics.median(measured)
        entry[f"{path}_p99_ms"] = percentile(measured, 0.99)
        entry[f"{path}_per_s"] = statistics.median(saturation[path])
        if path != "runs":
            # Each job against the run just before it: the difference with the drift out.
            paired = (j - r for r, j in zip(runs, measured, strict=True))
            entry[f"{path}_paired_added_ms"] = statistics.median(paired)
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
        f"`echo hi`, runc. Latency: {data['stores']['sqlite']['samples']} one-run requests "
        f"each way per store, one of each way in turn (added: the difference of the p50s "
        f"with `POST /api/v1/runs`; paired: the median of each job's time less the run's "
        f"just before it). A job is waited for in two requests (`POST`, then `GET ?wait`) "
        f"or in one (`POST ?wait`). Saturation: {args.total} runs at concurrency "
        f"{args.concurrency}, median of {args.rounds} rounds.",
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
            ratio = per_s / entry["runs_per_s"]
            lines.append(
                f"| {name} | {way} | {p50:.1f} ms | **{added:+.1f} ms** "
                f"| {entry[f'{path}_paired_added_ms']:+.1f} ms "
                f"| <= {TARGET_P50_MS:g} ms {'met' if added <= TARGET_P50_MS else 'missed'} "
                f"| {per_s:.1f} | **{ratio:.2f}x** "
                f"| >= {TARGET_SATURATION}x {'met' if ratio >= TARGET_SATURATION else 'missed'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=150)
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
