"""API keys in the store: created, listed and revoked by the CLI; found and charged by the
service, on a thread (store/jobs.py says why the engine is synchronous).

A charge is one transaction: a conditional UPDATE takes the runs from the key's bucket
only if it holds them (the refill computed in the same statement), then the day's row
gains them only within `runs_per_day`; if the day refuses, the whole transaction is rolled
back. The UPDATE locks the key's row (PostgreSQL) or the database (SQLite) until the
commit, so concurrent charges of one key, from any process, are serialized and never
admit more than the bucket and the day hold.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from bgcompiler.errors import InvalidRequest, StoreUnavailable
from bgcompiler.keys import ApiKey, hash_of, matches, prefix_of
from bgcompiler.ratelimit import Allowance, day_of, refilled
from bgcompiler.store.jobs import translated
from bgcompiler.store.schema import api_keys, key_usage

_KEY_FIELDS = (
    "name",
    "rate",
    "burst",
    "admin",
    "runs_per_day",
    "max_count",
    "max_memory_mb",
    "max_time_ms",
    "prefix",
    "created_at",
    "revoked_at",
)


@dataclass(frozen=True, slots=True)
class Charge:
    """What a charge found: `refusal` is None when the runs were admitted, else
    "rate_limited" or "quota"; `allowance` is the key's state after it."""

    refusal: str | None
    allowance: Allowance


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # --- the CLI (synchronous) -----------------------------------------------------------

    def create(self, key: ApiKey, secret: str) -> ApiKey:
        """Stores the key with a full bucket; InvalidRequest if the name was ever used
        (a revoked key's name is not reused: its jobs stay its own)."""
        now = time.time()
        values = {field: getattr(key, field) for field in _KEY_FIELDS}
        values |= {
            "prefix": prefix_of(secret),
            "hash": hash_of(secret),
            "created_at": now,
            "revoked_at": None,
            "tokens": float(key.burst),
            "updated_at": now,
        }
        try:
            with translated(log_refusal=False), self._engine.begin() as connection:
                connection.execute(insert(api_keys).values(**values))
        except StoreUnavailable as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise InvalidRequest(f"a key named {key.name!r} exists already", "name") from exc
            raise
        return _key(values)

    def list(self, now: float | None = None) -> list[tuple[ApiKey, int]]:
        """Every key, revoked ones included, with the runs it was admitted for today."""
        today = day_of(time.time() if now is None else now)
        query = (
            select(api_keys, key_usage.c.runs)
            .outerjoin(
                key_usage, (key_usage.c.name == api_keys.c.name) & (key_usage.c.day == today)
            )
            .order_by(api_keys.c.name)
        )
        with translated(), self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [(_key(row._mapping), row.runs or 0) for row in rows]

    def revoke(self, name: str) -> bool:
        """Whether a live key of that name was revoked; from now on it answers 401."""
        query = (
            update(api_keys)
            .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
        with translated(), self._engine.begin() as connection:
            return bool(connection.execute(query).rowcount)

    # --- the service (on a thread) -------------------------------------------------------

    async def find(self, secret: str) -> tuple[ApiKey, Allowance] | None:
        """The live key whose secret this is, and its allowance now; None for no such key."""
        return await asyncio.to_thread(self._find, secret, time.time())

    async def charge(self, key: ApiKey, runs: int) -> Charge:
        """Takes `runs` from the key's bucket and day, or nothing if either is short."""
        return await asyncio.to_thread(self._charge, key, runs, time.time())

    def _find(self, secret: str, now: float) -> tuple[ApiKey, Allowance] | None:
        query = select(api_keys).where(
            api_keys.c.prefix == prefix_of(secret), api_keys.c.revoked_at.is_(None)
        )
        with translated(), self._engine.connect() as connection:
            for row in connection.execute(query).all():
                if matches(secret, row.hash):
                    key = _key(row._mapping)
                    tokens = refilled(key, row.tokens, row.updated_at, now)
                    return key, Allowance(tokens, _used(connection, key, now), now)
        return None

    def _charge(self, key: ApiKey, runs: int, now: float) -> Charge:
        elapsed = case((api_keys.c.updated_at < now, now - api_keys.c.updated_at), else_=0.0)
        grown = api_keys.c.tokens + elapsed * key.rate
        tokens = case((grown > key.burst, float(key.burst)), else_=grown)
        take = (
            update(api_keys)
            .where(api_keys.c.name == key.name, api_keys.c.revoked_at.is_(None), tokens >= runs)
            .values(tokens=tokens - runs, updated_at=now)
        )
        with translated(), self._engine.connect() as connection:
            refusal = None
            if not connection.execute(take).rowcount:
                refusal = "rate_limited"
            elif not _count_runs(connection, key, runs, now):
                refusal = "quota"
            if refusal is None:
                connection.commit()
            else:
                connection.rollback()
            row = connection.execute(
                select(api_keys.c.tokens, api_keys.c.updated_at).where(api_keys.c.name == key.name)
            ).one()
            allowance = Allowance(
                refilled(key, row.tokens, row.updated_at, now), _used(connection, key, now), now
            )
            connection.rollback()  # the reads' transaction
        return Charge(refusal, allowance)


def _count_runs(connection: Connection, key: ApiKey, runs: int, now: float) -> bool:
    """Adds the runs to the key's day, unless that would pass its runs_per_day."""
    day = day_of(now)
    where = [key_usage.c.name == key.name, key_usage.c.day == day]
    if key.runs_per_day is not None:
        where.append(key_usage.c.runs + runs <= key.runs_per_day)
    added = connection.execute(
        update(key_usage).where(*where).values(runs=key_usage.c.runs + runs)
    ).rowcount
    if added:
        return True
    if _used(connection, key, now) > 0:
        return False  # the day's row is there: it was refused
    # The first runs of the day (the key's row is locked: nobody inserts it meanwhile).
    if key.runs_per_day is not None and runs > key.runs_per_day:
        return False
    connection.execute(insert(key_usage).values(name=key.name, day=day, runs=runs))
    return True


def _used(connection: Connection, key: ApiKey, now: float) -> int:
    used = connection.execute(
        select(key_usage.c.runs).where(key_usage.c.name == key.name, key_usage.c.day == day_of(now))
    ).scalar()
    return int(used or 0)


def _key(row: Any) -> ApiKey:
    return ApiKey(**{field: row[field] for field in _KEY_FIELDS})
