"""API keys: what a key grants (its caps, its rate, its daily runs), its secret and the
hash the store keeps of it, and the one place its caps clamp a plan.

A secret is `bgc_` and 43 URL-safe characters (32 random bytes). The store keeps its
SHA-256 only: for a secret of 256 random bits a fast unsalted hash is enough (nobody can
guess it by trying; salting and slow hashes are for secrets people choose). Its first
`PREFIX_CHARS` characters find the row; the hashes are then compared in constant time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from bgcompiler.core.plan import Plan
from bgcompiler.errors import Forbidden, InvalidRequest
from bgcompiler.models import RunSpec

SECRET_PREFIX = "bgc_"
PREFIX_CHARS = 12  # "bgc_" and 8 random characters (48 bits): finds the row, shown by list
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RATE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the store holds it, less its secret. `rate` is runs per second."""

    name: str
    rate: float
    burst: int
    admin: bool = False
    runs_per_day: int | None = None
    max_count: int | None = None
    max_memory_mb: int | None = None
    max_time_ms: int | None = None
    prefix: str = ""
    created_at: float = 0.0
    revoked_at: float | None = None

    def clamp(self, plan: Plan) -> Plan:
        """The plan within this key's caps: memory and time lowered to them (as a request
        asking for more than the server allows is lowered to the server's), and Forbidden
        when it needs more runs than the key may ask for at once, than its bucket holds or
        than its day allows (such a request could never be admitted: a 429 would have it
        retried forever)."""
        if self.max_count is not None and plan.total_runs > self.max_count:
            raise Forbidden(
                f"this request needs {plan.total_runs} runs; this API key may ask for at most "
                f"{self.max_count} at once"
            )
        if plan.total_runs > self.burst:
            raise Forbidden(
                f"this request needs {plan.total_runs} runs; this API key's bucket holds "
                f"{self.burst}"
            )
        if self.runs_per_day is not None and plan.total_runs > self.runs_per_day:
            raise Forbidden(
                f"this request needs {plan.total_runs} runs; this API key may run "
                f"{self.runs_per_day} a day"
            )
        compile_spec = self._clamped(plan.compile) if plan.compile is not None else None
        return dataclasses.replace(plan, run=self._clamped(plan.run), compile=compile_spec)

    def _clamped(self, spec: RunSpec) -> RunSpec:
        limits = spec.limits
        if self.max_memory_mb is not None:
            limits = dataclasses.replace(
                limits, memory_mb=min(limits.memory_mb, self.max_memory_mb)
            )
        if self.max_time_ms is not None:
            timeout_s = min(limits.timeout_s, self.max_time_ms / 1000)
            limits = dataclasses.replace(limits, timeout_s=timeout_s)
        return dataclasses.replace(spec, limits=limits)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_of(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def prefix_of(secret: str) -> str:
    return secret[:PREFIX_CHARS]


def matches(secret: str, stored_hash: str) -> bool:
    """Whether the secret is the one whose hash is stored, in time independent of where
    they differ."""
    return hmac.compare_digest(hash_of(secret).encode(), stored_hash.encode())


def check_name(name: str) -> str:
    """A key's name goes into logs and a database column: letters, digits, `._-`."""
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            "a key's name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit",
            "name",
        )
    return name


def parse_rate(text: str) -> float:
    """`20/s`, `600/m`, `1000/h` or a bare number (per second), as runs per second."""
    found = _RATE.fullmatch(text)
    if found is None or float(found.group(1)) <= 0:
        raise InvalidRequest(f"--rate must be like 20/s, 600/m or 1000/h, not {text!r}", "rate")
    return float(found.group(1)) / _PER[found.group(2) or "s"]
