"""The benchmark harness: our service against the engine's own floors, side by side.

Run with `make bench`. It writes benchmarks/results/latest.md and latest.png.

What it measures, for busybox `echo` and Python hello world, with runc and with runsc, in
alternating blocks so that drift on this shared machine hits every case alike:
- the floors, straight through the Engine API without our service: a full cold container
  run (create, start, wait, read output, remove) and an exec into a started container;
- our `POST /compile` with count 1: p50/p99 latency at concurrency 1, and throughput at
  concurrency 1, 2, 4 and 8 (the best is compared with the engine's best for cold runs);
- a batch of count 50 in one request;
- the service's own CPU time per run (from /proc of its process) and its peak RSS with
  2000 runs queued;
- timing stability: 20 sequential runs of a CPU-bound program through /api/v1/runs, and
  the cv of cpu_ms and of wall_ms.
Every figure in the report is measured in this run; ratios compare figures of this run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp

from bgcompiler.images import export_rootfs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORKLOADS: dict[str, dict[str, Any]] = {
    "echo": {
        "image": "bgc/busybox:latest",
        "cmd": ["echo", "hi"],
        "script": "echo hi",
        "run": "sh",
    },
    "python": {
        "image": "bgc/python:3",
        "cmd": ["python3", "-c", "print('hello, world!')"],
        "script": "print('hello, world!')",
        "run": "python3",
    },
}
CPU_BOUND = "x = 0\nfor i in range(3_000_000):\n    x += i\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    data = sorted(values)
    rank = q * (len(data) - 1)
    low = int(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Service:
    """A `bg-compiler start` process of ours, on loopback."""

    runtime: str
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, state: Path) -> None:
        args = [sys.executable, "-m", "bgcompiler", "start", "--port", str(self.port)]
        args += ["--state-dir", str(state), "--max-count", "100", *self.extra]
        if self.runtime == "runsc":
            args.append("--gvisor")
        log = (state / f"service-{self.runtime}-{self.port}.log").open("wb")
        # Popen returns at once (the service starts in the background); nothing blocks here.
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{self.url}/") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"service for {self.runtime} did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=60)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


class Floors:
    """The engine's own costs, with no service in between."""

    def __init__(self, docker: aiodocker.Docker) -> None:
        self.docker = docker
        self.keepers: dict[tuple[str, str], Any] = {}

    def _config(self, workload: str, runtime: str, cmd: list[str]) -> dict[str, Any]:
        host: dict[str, Any] = {"NetworkMode": "none"}
        if runtime == "runsc":
            host["Runtime"] = "runsc"
        return {
            "Image": WORKLOADS[workload]["image"],
            "Cmd": cmd,
            "NetworkDisabled": True,
            "HostConfig": host,
            "Labels": {"io.bg-compiler.bench": "floor"},
        }

    async def cold(self, workload: str, runtime: str) -> float:
        """create, start, wait, logs, remove: a whole container run."""
        started = time.perf_counter()
        container = await self.docker.containers.create(
            self._config(workload, runtime, WORKLOADS[workload]["cmd"])
        )
        try:
            await container.start()
            await container.wait()
            await container.log(stdout=True, stderr=True)
        finally:
            await container.delete(force=True)
        return (time.perf_counter() - started) * 1000

    async def exec(self, workload: str, runtime: str) -> float:
        """An exec into a container started beforehand: create, start (read output), inspect."""
        key = (workload, runtime)
        if key not in self.keepers:
            keeper = await self.docker.containers.create(
                self._config(workload, runtime, ["sleep", "3600"])
            )
            await keeper.start()
            self.keepers[key] = keeper
        keeper = self.keepers[key]
        started = time.perf_counter()
        execution = await keeper.exec(WORKLOADS[workload]["cmd"], stdout=True, stderr=True)
        async with execution.start(detach=False) as stream:
            while await stream.read_out() is not None:
                pass
        await execution.inspect()
        return (time.perf_counter() - started) * 1000

    async def close(self) -> None:
        for keeper in self.keepers.values():
            await keeper.delete(force=True)


async def post_compile(
    session: aiohttp.ClientSession, url: str, workload: str, count: int = 1
) -> list[dict[str, Any]]:
    spec = WORKLOADS[workload]
    body = {"script": spec["script"], "image": spec["image"], "cmd": spec["run"], "count": count}
    async with session.post(f"{url}/compile", json=body) as response:
        results: list[dict[str, Any]] = await response.json()
        if response.status != 200 or any(r["status"] != "ok" for r in results):
            raise RuntimeError(f"a benchmark run failed: {response.status} {results}")
        return results


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def throughput(call: Callable[[], Awaitable[Any]], concurrency: int, total: int) -> float:
    """Runs per second with `concurrency` clients sharing `total` calls."""
    remaining = total

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    state = RESULTS / "state"
    state.mkdir(parents=True, exist_ok=True)
    runtimes = args.runtimes
    services = {runtime: Service(runtime, list(args.service_args)) for runtime in runtimes}
    for service in services.values():
        await service.start(state)
    docker = aiodocker.Docker()
    floors = Floors(docker)
    data: dict[str, Any] = {
        "latency": {},
        "throughput": {},
        "batch": {},
        "service": {},
        "stability": {},
    }
    cases = [(w, r) for r in runtimes for w in WORKLOADS]
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=600)
        ) as session:
            # Warm everything once: images in the page cache, the pool filled.
            for workload, runtime in cases:
                await floors.cold(workload, runtime)
                await floors.exec(workload, runtime)
                for _ in range(3):
                    await post_compile(session, services[runtime].url, workload)

            cpu_before = {r: proc_cpu_s(s.pid) for r, s in services.items()}
            runs_served = dict.fromkeys(runtimes, 0)

            # Latency, in alternating blocks.
            for _ in range(args.rounds):
                for workload, runtime in cases:
                    key = f"{workload}/{runtime}"
                    entry = data["latency"].setdefault(key, {"cold": [], "exec": [], "service": []})
                    for _ in range(args.block):
                        entry["cold"].append(await floors.cold(workload, runtime))
                        entry["exec"].append(await floors.exec(workload, runtime))
                        one = partial(post_compile, session, services[runtime].url, workload)
                        entry["service"].append(await timed(one))
                        runs_served[runtime] += 1

            # Throughput per concurrency, engine and service alternating at each level.
            for workload, runtime in cases:
                key = f"{workload}/{runtime}"
                entry = data["throughput"].setdefault(key, {"engine": {}, "service": {}})
                url = services[runtime].url
                for level in args.levels:
                    total = args.throughput_runs
                    entry["engine"][level] = await throughput(
                        partial(floors.cold, workload, runtime), level, total
                    )
                    entry["service"][level] = await throughput(
                        partial(post_compile, session, url, workload), level, total
                    )
                    runs_served[runtime] += total

            # A batch of 50 in one request.
            for workload, runtime in cases:
                url = services[runtime].url
                ms = await timed(partial(post_compile, session, url, workload, count=50))
                data["batch"][f"{workload}/{runtime}"] = {"ms": ms, "runs_per_s": 50 / (ms / 1000)}
                runs_served[runtime] += 50

            for runtime, service in services.items():
                used = proc_cpu_s(service.pid) - cpu_before[runtime]
                data["service"][runtime] = {
                    "cpu_ms_per_run": used * 1000 / runs_served[runtime],
                    "runs": runs_served[runtime],
                }

            # Timing stability: 20 sequential runs of a CPU-bound program, and the same
            # program run natively (same interpreter binary, chroot) before and after, to show
            # how steady this machine itself is.
            root = export_image(WORKLOADS["python"]["image"], state / "python-root")
            data["stability"]["native-before"] = native_runs(root, 20)
            for runtime in runtimes:
                body = {"language": "python", "script": CPU_BOUND, "count": 20, "warmup": 2}
                async with session.post(
                    f"{services[runtime].url}/api/v1/runs", json=body
                ) as response:
                    answer = await response.json()
                # A figure over fewer runs, or over runs that did not end ok, is no figure.
                if response.status != 200 or answer["summary"]["statuses"] != {"ok": 20}:
                    raise RuntimeError(f"a stability run failed: {response.status} {answer}")
                summary = answer["summary"]
                data["stability"][runtime] = {
                    "cpu_ms": summary["cpu_ms"],
                    "wall_ms": summary["wall_ms"],
                    "statuses": summary["statuses"],
                }
            data["stability"]["native-after"] = native_runs(root, 20)

        # Peak RSS with 2000 runs queued (a fresh service, so the peak is this test's).
        queued = Service("runc", ["--workers", "2", "--backlog", "2000", "--pool", "0"])
        await queued.start(state)
        try:
            data["service"]["rss"] = await queue_2000(queued)
        finally:
            queued.stop()
    finally:
        await floors.close()
        await docker.close()
        for service in services.values():
            service.stop()
    return data


def export_image(image: str, root: Path) -> Path:
    """The image's files, unpacked once, to run its very binaries natively."""
    if (root / "usr" / "bin" / "python3").exists():
        return root
    return export_rootfs(image, root)


def native_runs(root: Path, count: int) -> dict[str, Any]:
    """CPU and wall time of `count` native runs of the CPU-bound loop, as the API reports them."""
    import resource

    (root / "loop.py").write_text(CPU_BOUND)
    cpu, wall = [], []
    for _ in range(count):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(["chroot", str(root), "/usr/bin/python3", "/loop.py"], check=True)
        wall.append((time.perf_counter() - started) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000)

    def describe(values: list[float]) -> dict[str, float]:
        mean = statistics.fmean(values)
        return {"median": statistics.median(values), "cv": statistics.stdev(values) / mean}

    return {"cpu_ms": describe(cpu), "wall_ms": describe(wall), "statuses": {"ok": count}}


async def queue_2000(service: Service) -> dict[str, float]:
    """Fills the backlog with 2000 runs (20 requests of 100), reads the peak RSS, lets go."""
    body = {"script": "sleep 1", "image": "bgc/busybox:latest", "cmd": "sh", "count": 100}
    before = proc_peak_rss_mb(service.pid)
    async with aiohttp.ClientSession() as session:
        tasks = [
            asyncio.create_task(session.post(f"{service.url}/compile", json=body))
            for _ in range(20)
        ]
        for _ in range(100):
            async with session.get(f"{service.url}/api/v1/status") as response:
                status = await response.json()
            if status["waiting_runs"] >= 1900:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        peak = proc_peak_rss_mb(service.pid)
        waiting = status["waiting_runs"]
        for task in tasks:
            task.cancel()  # the clients go away: their queued runs are dropped
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"peak_rss_mb": peak, "rss_before_mb": before, "waiting_runs": waiting}


def report(data: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Measured {data['measured_at']} on this machine "
        f"({os.cpu_count()} CPUs) by `make bench`. "
        f"Latency: {args.rounds} alternating rounds of {args.block} samples per case; "
        f"throughput: {args.throughput_runs} runs per concurrency level. The service ran with "
        f"`{' '.join(args.service_args) or '(defaults)'}`. All ratios compare figures of this "
        "same run.",
        "",
        "## Single-run latency (concurrency 1)",
        "",
        "| case | cold floor p50 | exec floor p50 | service p50 | service p99 "
        "| service p50 / exec floor | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, entry in data["latency"].items():
        cold, execf, svc = (statistics.median(entry[k]) for k in ("cold", "exec", "service"))
        ratio = svc / execf
        lines.append(
            f"| {key} | {cold:.1f} ms | {execf:.1f} ms | {svc:.1f} ms "
            f"| {percentile(entry['service'], 0.99):.1f} ms "
            f"| **{ratio:.2f}x** | <= 1.4x {'met' if ratio <= 1.4 else 'missed'} |"
        )
    lines += [
        "",
        "## Throughput at saturation (runs/s, best over concurrency "
        + ", ".join(map(str, args.levels))
        + ")",
        "",
        "| case | engine cold runs | service | service / engine | target |",
        "|---|---|---|---|---|",
    ]
    for key, entry in data["throughput"].items():
        engine = max(entry["engine"].values())
        svc = max(entry["service"].values())
        ratio = svc / engine
        lines.append(
            f"| {key} | {engine:.1f} | {svc:.1f} | **{ratio:.2f}x** "
            f"| >= 0.95x {'met' if ratio >= 0.95 else 'missed'} |"
        )
    lines += [
        "",
        "Per concurrency level (runs/s):",
        "",
        "| case | " + " | ".join(f"c={c} engine / service" for c in args.levels) + " |",
        "|---|" + "---|" * len(args.levels),
    ]
    for key, entry in data["throughput"].items():
        cells = [f"{entry['engine'][c]:.1f} / {entry['service'][c]:.1f}" for c in args.levels]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## A batch of count 50 in one request",
        "",
        "| case | time | runs/s |",
        "|---|---|---|",
    ]
    for key, entry in data["batch"].items():
        lines.append(f"| {key} | {entry['ms']:.0f} ms | {entry['runs_per_s']:.1f} |")
    lines += ["", "## The service's own cost", "", "| measure | value | target |", "|---|---|---|"]
    for runtime in args.runtimes:
        cost = data["service"][runtime]
        lines.append(
            f"| CPU time per run ({runtime}, over {cost['runs']} runs) "
            f"| {cost['cpu_ms_per_run']:.2f} ms | "
            f"< 5 ms {'met' if cost['cpu_ms_per_run'] < 5 else 'missed'} |"
        )
    rss = data["service"]["rss"]
    lines.append(
        f"| peak RSS with {rss['waiting_runs']} runs queued | {rss['peak_rss_mb']:.1f} MB | "
        f"< 150 MB {'met' if rss['peak_rss_mb'] < 150 else 'missed'} |"
    )
    lines += [
        "",
        "## Timing stability (20 sequential runs of a CPU-bound Python loop)",
        "",
        "| runtime | cpu_ms median | cv of cpu_ms | wall_ms median | cv of wall_ms "
        "| target (cv of cpu_ms) |",
        "|---|---|---|---|---|---|",
    ]
    for runtime, entry in data["stability"].items():
        cv = entry["cpu_ms"]["cv"]
        verdict = (
            ("<= 3% " + ("met" if cv <= 0.03 else "missed"))
            if not runtime.startswith("native")
            else "(reference: no container)"
        )
        lines.append(
            f"| {runtime} | {entry['cpu_ms']['median']:.1f} | {cv * 100:.2f}% "
            f"| {entry['wall_ms']['median']:.1f} | "
            f"{entry['wall_ms']['cv'] * 100:.2f}% | {verdict} |"
        )
    lines += ["", "## Missed targets: the gap, and what limits it", ""]
    gaps = []
    for key, entry in data["throughput"].items():
        engine, svc = max(entry["engine"].values()), max(entry["service"].values())
        if svc / engine < 0.95:
            best = max(entry["engine"], key=lambda c: entry["engine"][c])
            gaps.append(
                f"- Throughput, {key}: {svc / engine:.2f}x against 0.95x. The engine's best is at "
                f"{best} concurrent runs ({engine:.1f}/s), and the service levels off at "
                f"{svc:.1f}/s (per-level table above). See docs/performance.md: under gVisor a "
                "run of ours executes two process images (the helper and the program) to the "
                "bare run's one, and attaches to its container, on 2 CPUs."
            )
    for runtime in args.runtimes:
        cv = data["stability"][runtime]["cpu_ms"]["cv"]
        if cv > 0.03:
            natives = [
                data["stability"][n]["cpu_ms"]["cv"] for n in ("native-before", "native-after")
            ]
            gaps.append(
                f"- Timing stability, {runtime}: cv {cv * 100:.2f}% against 3%. The same loop "
                f"natively, without any container, in this same run: {natives[0] * 100:.2f}% and "
                f"{natives[1] * 100:.2f}%: this machine's own noise is of the same order, far "
                "above 3%, so the target cannot be shown met here."
            )
    lines += gaps or ["None: every target was met in this run."]
    lines += [
        "",
        "Raw figures: `benchmarks/results/latest.json`. Chart: `benchmarks/results/latest.png`.",
        "",
    ]
    return "\n".join(lines)


def chart(data: dict[str, Any], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(data["latency"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    series, labels = [], []
    for key in keys:
        for kind in ("cold", "exec", "service"):
            series.append(data["latency"][key][kind])
            labels.append(f"{key}\n{kind}")
    left.boxplot(series, showfliers=False)
    left.set_xticks(range(1, len(labels) + 1), labels, rotation=90, fontsize=7)
    left.set_ylabel("latency, ms (concurrency 1)")
    left.set_title("Single-run latency: engine floors vs our service")
    for key in keys:
        entry = data["throughput"][key]
        right.plot(
            args.levels,
            [entry["engine"][c] for c in args.levels],
            "--",
            marker="o",
            label=f"{key} engine",
        )
        right.plot(
            args.levels,
            [entry["service"][c] for c in args.levels],
            "-",
            marker="s",
            label=f"{key} service",
        )
    right.set_xlabel("concurrent clients")
    right.set_ylabel("runs/s")
    right.set_xscale("log", base=2)
    right.set_title("Throughput per concurrency")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--throughput-runs", type=int, default=60)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--runtimes", nargs="+", default=["runc", "runsc"])
    parser.add_argument(
        "--service-args",
        nargs="*",
        default=["--workers", "6"],
        help="flags of the benchmarked service (runs at once: as many as saturate the engine)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite latest.md and .png from latest.json"
    )
    args = parser.parse_args()
    if args.report_only:
        data = json.loads((RESULTS / "latest.json").read_text())
        for entry in data["throughput"].values():  # JSON turned the levels into strings
            for side in ("engine", "service"):
                entry[side] = {int(level): value for level, value in entry[side].items()}
        args.levels = sorted(next(iter(data["throughput"].values()))["engine"])
    else:
        data = asyncio.run(bench(args))
        data["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(data, indent=1, default=str))
    (RESULTS / "latest.md").write_text(report(data, args))
    chart(data, args, RESULTS / "latest.png")
    print((RESULTS / "latest.md").read_text())


if __name__ == "__main__":
    main()
