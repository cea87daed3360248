"""What a run costs under gVisor, step by step: the machine's CPU (and the wall time) of
`runsc` running variants of the OCI engine's hardened bundle, each one step more than
another, from `runsc spec`'s default bundle to the one the OCI engine runs, and what one
more program run in the sandbox costs (engines_bench.py reports them beside the engines).

Each variant runs sequentially (one run at a time) in rounds that alternate the variants,
so that the machine's drift hits them alike; a variant's figure is the median of its
rounds, and its step the difference with the variant it adds to. A step is therefore
within the rounds' spread, which the report gives with it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bgcompiler.sandbox.oci.config import docker_seccomp_profile

ECHO = ["echo", "hi"]
ROUNDS = 5  # rounds of `block` sequential runs of each variant
EXTRA_EXECS = 4  # programs the exec step runs before its `echo`, one fork + exec each


@dataclass(frozen=True)
class Variant:
    """A bundle's config derived from the hardened one, what it adds (the step) and the
    variant it adds it to."""

    name: str
    step: str
    config: dict[str, Any]
    after: int | None  # the index of the variant the step is measured against
    flags: tuple[str, ...] = ()  # runsc's, beyond --network=none
    per: int = 1  # the step is over this many of what it adds


def variants(hardened: dict[str, Any], bare: dict[str, Any]) -> list[Variant]:
    """The ladder. `hardened` is the OCI engine's bundle config running `echo hi` (the
    seccomp filter installed by the helper, tini, `echo`); `bare` is `runsc spec`'s default
    config running `echo hi`."""
    args = hardened["process"]["args"]
    init = args.index("/sbin/docker-init")

    def with_args(argv: list[str]) -> dict[str, Any]:
        config: dict[str, Any] = json.loads(json.dumps(hardened))
        config["process"]["args"] = argv
        return config

    by_runsc = with_args(args[init:])
    by_runsc["linux"]["seccomp"] = docker_seccomp_profile()
    many = "; ".join(["/bin/true"] * EXTRA_EXECS + ["echo hi"])
    return [
        Variant("bare", "a sandbox booted, `echo hi` as its init, removed", bare, None),
        Variant(
            "hardened", "Docker's config: mounts, masked paths, limits, user", with_args(ECHO), 0
        ),
        Variant("+ tini", "tini as pid 1, `echo` its child", with_args(args[init:]), 1),
        Variant("+ seccomp", "the helper installing the filter, then tini", hardened, 2),
        Variant(
            "+ seccomp by runsc",
            "instead: runsc installing Docker's profile (`--oci-seccomp`)",
            by_runsc,
            2,
            flags=("--oci-seccomp",),
        ),
        Variant(
            f"+ {EXTRA_EXECS} execs",
            "one more program run in the sandbox (fork + exec), each",
            with_args([*args[:init], "/sbin/docker-init", "--", "sh", "-c", many]),
            3,
            per=EXTRA_EXECS,
        ),
    ]


class Ladder:
    """The variants' bundles, and one timed run of any of them."""

    def __init__(self, state: Path, hardened: Path, bare: Path) -> None:
        self.state = state / "gvisor-steps"
        self.root = state / "gvisor-steps-root"
        hardened_config = json.loads((hardened / "config.json").read_text())
        bare_config = json.loads((bare / "config.json").read_text())
        bare_config["root"]["path"] = str(bare / "rootfs")  # the bundle's relative root
        self.variants = variants(hardened_config, bare_config)
        if self.state.exists():
            shutil.rmtree(self.state)
        self.root.mkdir(parents=True, exist_ok=True)
        for index, variant in enumerate(self.variants):
            bundle = self.bundle(index)
            bundle.mkdir(parents=True)
            (bundle / "config.json").write_text(json.dumps(variant.config))

    def bundle(self, index: int) -> Path:
        return self.state / str(index)

    async def run(self, index: int) -> float:
        """One run of variant `index`, checked; its wall time in ms."""
        variant = self.variants[index]
        container = f"steps-{uuid.uuid4().hex[:12]}"
        started = time.perf_counter()
        out = await self._runsc(
            *variant.flags, "run", "--bundle", str(self.bundle(index)), container
        )
        if out != b"hi\n":
            raise RuntimeError(f"{variant.name}: {out!r}")
        return (time.perf_counter() - started) * 1000

    async def _runsc(self, *args: str) -> bytes:
        process = await asyncio.create_subprocess_exec(
            "runsc", "--root", str(self.root), "--network=none", *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"runsc {' '.join(args)} failed: {err.decode(errors='replace')}")
        return out

    async def remove(self) -> None:
        """The bundles, and any sandbox a failed step left."""
        for container in (await self._runsc("list", "--quiet")).decode().split():
            await self._runsc("delete", "--force", container)
        shutil.rmtree(self.state, ignore_errors=True)


async def measure(
    ladder: Ladder,
    busy_s: Callable[[], float],
    settle: Callable[[], Any],
    block: int,
) -> list[dict[str, Any]]:
    """Each variant's machine CPU and wall time per run (median of ROUNDS rounds of `block`
    sequential runs), its step over the variant it adds to, and the rounds' spread."""
    cpu: list[list[float]] = [[] for _ in ladder.variants]
    wall: list[list[float]] = [[] for _ in ladder.variants]
    for index in range(len(ladder.variants)):
        await ladder.run(index)  # warm: page cache, the unpacked root
    for _ in range(ROUNDS):
        for index in range(len(ladder.variants)):
            await settle()
            busy = busy_s()
            times = [await ladder.run(index) for _ in range(block)]
            cpu[index].append((busy_s() - busy) * 1000 / block)
            wall[index].append(statistics.median(times))
    rows: list[dict[str, Any]] = []
    for index, variant in enumerate(ladder.variants):
        median = statistics.median(cpu[index])
        after = variant.after
        before = statistics.median(cpu[after]) if after is not None else 0.0
        rows.append(
            {
                "variant": variant.name,
                "step": variant.step,
                "after": ladder.variants[after].name if after is not None else "",
                "cpu_ms": round(median, 1),
                "cpu_spread_ms": [round(min(cpu[index]), 1), round(max(cpu[index]), 1)],
                "step_cpu_ms": round((median - before) / variant.per, 1),
                "wall_ms": round(statistics.median(wall[index]), 1),
            }
        )
    return rows


def report_lines(rows: list[dict[str, Any]], block: int) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "Under gVisor, step by step: `runsc` running variants of the hardened bundle, each",
        f"one step more than another ({ROUNDS} rounds of {block} sequential runs,",
        "alternating; the machine's CPU per run, median of the rounds, and the rounds'",
        "range). Run one at a time, they cost less than at saturation, where 4 sandboxes",
        "share 2 CPUs. The OCI engine's run is the `+ seccomp` variant with two programs",
        "more in the sandbox (the helper's measured run and `sh -c`), and the service's own",
        "CPU: under gVisor each program started costs what the exec step says.",
        "",
        "| variant | what it adds | to | machine ms/run (range) | step ms | wall p50 ms |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = row["cpu_spread_ms"]
        lines.append(
            f"| {row['variant']} | {row['step']} | {row['after']} | {row['cpu_ms']} "
            f"({low}-{high}) | {row['step_cpu_ms']:+} | {row['wall_ms']} |"
        )
    return lines
