"""Admission of a plan, for every API: within the caller's caps, room in the backlog, then
the caller's runs charged. The one place a key's caps and rate apply, so that /compile,
v1, jobs, Piston (HTTP and WebSocket) and Judge0 all pay alike."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from bgcompiler.api.auth import caller_of
from bgcompiler.core.plan import Plan
from bgcompiler.errors import RateLimited
from bgcompiler.ratelimit import retry_after
from bgcompiler.services import Services
from bgcompiler.store.keys import KeyStore

_MESSAGES = {
    "rate_limited": "this API key's runs per second are spent: {runs} runs need {wait} s more",
    "quota": "this API key's runs for today are spent; the day (UTC) turns in {wait} s",
}


async def admit(connection: HTTPConnection, svc: Services, plan: Plan) -> Plan:
    """The plan as it will run. Forbidden past the key's caps, Busy (or ShuttingDown) when
    the backlog cannot hold it, RateLimited when the key's bucket or day is short; its runs
    are charged only when it is admitted."""
    caller = caller_of(connection)
    if caller is not None:
        plan = caller.key.clamp(plan)
    svc.scheduler.check_room(plan.total_runs)
    if caller is None:
        return plan
    keys: KeyStore = connection.app.state.keys
    charge = await keys.charge(caller.key, plan.total_runs)
    caller.allowance = charge.allowance
    if charge.refusal is not None:
        connection.app.state.metrics.rejected(429, charge.refusal)
        wait = retry_after(caller.key, charge.allowance, plan.total_runs, charge.refusal)
        message = _MESSAGES[charge.refusal].format(runs=plan.total_runs, wait=wait)
        raise RateLimited(message, reason=charge.refusal, retry_after=wait)
    return plan
