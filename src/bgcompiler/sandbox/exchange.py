"""One run's exchange with its started container, the same on both engines.

The archive goes in (or an interactive run's feed begins), the output is read until it is
over (collect.py), and a run that did not end by itself is killed by its engine while what
is still on its way is read. Only the kill and, after this, the engine's account of the
container's end differ between the engines (docker.py, oci/sandbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bgcompiler.models import RunSpec
from bgcompiler.sandbox.capture import Capture, Collected
from bgcompiler.sandbox.collect import collect
from bgcompiler.sandbox.live import Live
from bgcompiler.sandbox.measure import new_nonce
from bgcompiler.sandbox.outcome import Ending
from bgcompiler.sandbox.payload import build_payload
from bgcompiler.sandbox.stream import RunStream

# After a kill, output already in flight is still collected for at most this long.
DRAIN_AFTER_KILL_S = 1.0
# The helper kills at the time limit; the container is killed from outside this much later.
HELPER_GRACE_S = 1.0
# How long a run whose program has ended (or was killed) waits for its container to come
# down. An engine answers a kill or a wait only once the container is down, and a gVisor
# sandbox (ptrace platform) killing a fork bomb's processes under CPU contention took from
# 1 s to over 30 s here. Past this, the run's result is given without the container's exit
# code, and the removal goes on waiting in the background.
EXIT_PATIENCE_S = 3.0


@dataclass(frozen=True, slots=True)
class Exchange:
    """What the exchange gave: the output and the helper's record, how it ended, the time
    seen from outside, and until when (the loop's time) the engine may be waited for."""

    collected: Collected
    ending: Ending
    outside_ms: float
    patience: float

    @property
    def clean(self) -> bool:
        """The helper saw the program exit 0 by itself, and everything arrived."""
        measured = self.collected.measurement
        return (
            measured is not None
            and self.ending is Ending.ENDED
            and os.WIFEXITED(measured.wait_status)
            and os.WEXITSTATUS(measured.wait_status) == 0
        )


async def exchange(
    stream: RunStream,
    spec: RunSpec,
    live: Live | None,
    *,
    artifact_bytes: int,
    kill: Callable[[], Awaitable[None]],
) -> Exchange:
    """Runs `spec` in a started container whose stdio is `stream`; `kill` is the engine's
    kill of that container. With `live`, the program's input comes from it and its output
    goes to it as it arrives, every byte of it before this returns."""
    loop = asyncio.get_running_loop()
    nonce = new_nonce()
    capture = Capture(
        spec.limits.output_bytes, nonce, artifact_bytes=artifact_bytes if spec.artifacts else None
    )
    payload = build_payload(
        spec.files, None if live is not None else spec.stdin, nonce, spec.command
    )
    begun = loop.time()
    if live is None:
        feeder = asyncio.create_task(stream.send_stdin(payload))
    else:
        live.begin()
        feeder = asyncio.create_task(
            live.feed(stream, payload, nonce, takes_stdin=not spec.artifacts)
        )
    try:
        # The helper enforces the time limit itself, and reports; this deadline is the
        # backstop for a run that keeps its container alive past the helper.
        deadline = begun + spec.limits.timeout_s + HELPER_GRACE_S
        ending = await collect(stream, capture, deadline=deadline, live=live)
        finished = loop.time()
        patience = loop.time() + EXIT_PATIENCE_S
        if ending is not Ending.ENDED:
            await _kill_draining(kill, stream, capture, until=patience)
    finally:
        feeder.cancel()
        if live is not None:
            live.end()
        # Before asking the engine anything more: it cannot finish a container's exit
        # while a flood of its output waits for a reader that stopped reading.
        stream.close()
    if live is not None:  # what was held back as a possible mark was the program's
        for kind, data in capture.fresh(final=True):
            live.output(kind, data)
    return Exchange(capture.collected(), ending, (finished - begun) * 1000, patience)


async def _kill_draining(
    kill: Callable[[], Awaitable[None]], stream: RunStream, capture: Capture, *, until: float
) -> None:
    """Kills the container while reading what is still on its way. Reading is not only for
    the output already in flight: dockerd finishes a container's exit (and so answers the
    kill) only once the container's output has been delivered to every attached client,
    and a flood keeps ours full (docs/architecture.md). The kill's answer is awaited until
    `until` (EXIT_PATIENCE_S); the engine goes on killing after."""
    killing = asyncio.ensure_future(kill())
    try:
        drain_until = min(until, asyncio.get_running_loop().time() + DRAIN_AFTER_KILL_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(drain_until):
                while (frame := await stream.read_frame()) is not None:
                    capture.feed(*frame)
        stream.close()  # ended or not: closing also lets the engine's copy end
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                await asyncio.shield(killing)
    finally:
        if not killing.done():  # the engine kills it anyway; the removal waits for it
            killing.cancel()
