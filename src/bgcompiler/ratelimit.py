"""A key's allowance of runs: its token bucket and its day, how much of each is left, and
how both are told to the client (the IETF RateLimit header fields, draft 7, and
Retry-After).

The bucket holds `burst` runs and gains `rate` runs a second; a request is admitted when
the bucket holds all of its runs (count=5 costs 5), and the day's runs (UTC) stay within
`runs_per_day`. The store keeps both (store/keys.py), so they hold across processes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from bgcompiler.keys import ApiKey

DAY_S = 86400
RATELIMIT_HEADERS = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
)


@dataclass(frozen=True, slots=True)
class Allowance:
    """A key's bucket (runs in it) and day (runs admitted) at `now`."""

    tokens: float
    used_today: int
    now: float


def refilled(key: ApiKey, tokens: float, updated_at: float, now: float) -> float:
    return min(float(key.burst), tokens + max(now - updated_at, 0.0) * key.rate)


def day_of(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def until_tomorrow(now: float) -> int:
    """Seconds until the next UTC midnight, when the day's runs start again from 0."""
    return max(DAY_S - int(now) % DAY_S, 1)


def retry_after(key: ApiKey, allowance: Allowance, runs: int, reason: str) -> int:
    """Whole seconds until `runs` runs could be admitted (at least 1)."""
    if reason == "quota":
        return until_tomorrow(allowance.now)
    return max(math.ceil((runs - allowance.tokens) / key.rate), 1)


def headers(key: ApiKey, allowance: Allowance) -> list[tuple[bytes, bytes]]:
    """RateLimit-Limit, -Remaining and -Reset of the policy nearest to running out, and
    RateLimit-Policy listing both (the bucket as its size over the seconds it takes to
    fill; the day as 86400 seconds)."""
    window = max(math.ceil(key.burst / key.rate), 1)
    limit, remaining = key.burst, math.floor(allowance.tokens)
    reset = math.ceil((key.burst - allowance.tokens) / key.rate)
    policy = f"{key.burst};w={window}"
    if key.runs_per_day is not None:
        policy += f", {key.runs_per_day};w={DAY_S}"
        left_today = max(key.runs_per_day - allowance.used_today, 0)
        if left_today < remaining:
            limit, remaining = key.runs_per_day, left_today
            reset = until_tomorrow(allowance.now)
    return [
        (b"ratelimit-limit", str(limit).encode()),
        (b"ratelimit-remaining", str(remaining).encode()),
        (b"ratelimit-reset", str(max(reset, 0)).encode()),
        (b"ratelimit-policy", policy.encode()),
    ]
