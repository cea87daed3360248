"""Engine work that no answer waits for starts at a pause in the runs (or after a bound),
and a quiet run waits only for the work already under way."""

from __future__ import annotations

import asyncio

from bgcompiler.sandbox.housekeeping import Housekeeping


async def _work(housekeeping: Housekeeping, log: list[str], name: str) -> None:
    async with housekeeping.work():
        log.append(f"{name} began")
        await asyncio.sleep(0.05)
    log.append(f"{name} ended")


async def test_work_waits_for_the_runs_in_flight_and_a_settle_after_them() -> None:
    """Work asked for during a run begins only once the run has ended and settle_s has
    passed with no run in flight; a run that starts in the settle time defers it again."""
    housekeeping = Housekeeping(settle_s=0.1, max_wait_s=30)
    log: list[str] = []
    with housekeeping.running():
        task = asyncio.create_task(_work(housekeeping, log, "removal"))
        await asyncio.sleep(0.3)
        assert log == []  # the run is still in flight
    log.append("run ended")
    await asyncio.sleep(0.02)
    with housekeeping.running():  # another run, within the settle time
        await asyncio.sleep(0.3)
        assert log == ["run ended"]
    log.append("second run ended")
    await task
    assert log == ["run ended", "second run ended", "removal began", "removal ended"]


async def test_work_begins_after_max_wait_on_a_node_that_never_pauses() -> None:
    """A node always running something still removes and refills: after max_wait_s."""
    housekeeping = Housekeeping(settle_s=0.1, max_wait_s=0.2)
    log: list[str] = []
    with housekeeping.running():
        await _work(housekeeping, log, "removal")
        assert log == ["removal began", "removal ended"]
        assert housekeeping.runs == 1


async def test_a_quiet_run_waits_for_work_under_way_but_not_for_work_waiting_for_it() -> None:
    """settled() returns once the work that began has ended; the work waiting for the
    runs to pause does not hold it (it would wait for the quiet run itself)."""
    housekeeping = Housekeeping(settle_s=0.0, max_wait_s=30)
    log: list[str] = []
    under_way = asyncio.create_task(_work(housekeeping, log, "earlier removal"))
    await asyncio.sleep(0.01)
    assert log == ["earlier removal began"]
    with housekeeping.running():
        waiting = asyncio.create_task(_work(housekeeping, log, "refill"))
        await asyncio.wait_for(housekeeping.settled(), timeout=5)
        assert log == ["earlier removal began", "earlier removal ended"]
        assert housekeeping.working == 0
    await asyncio.gather(under_way, waiting)
    assert log[-2:] == ["refill began", "refill ended"]
