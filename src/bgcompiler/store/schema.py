"""The tables (SQLAlchemy Core). Migrations (migrations/) create and change them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# Times are seconds since the epoch (UTC), as floats: the same in SQLite and PostgreSQL.
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("runs_total", Integer, nullable=False),
    Column("runs_done", Integer, nullable=False, default=0),
    Column("plan", LargeBinary, nullable=False),  # core.plan.Plan as JSON
    Column("outcome", LargeBinary),  # core.outcome.Outcome as JSON, once done
    Column("metadata", Text),  # the client's JSON object, as given
    Column("callback_url", Text),
    Column("error", Text),
    # The API that took the job ("v1", "judge0"), and its request as that API received it
    # when the API answers with the request's own fields (Judge0's submissions do).
    Column("api", String(16), nullable=False, server_default="v1"),
    Column("request", LargeBinary),
    # The API key that submitted it (None: keys were off); a key sees only its own jobs.
    Column("owner", String(64)),
    # Distributed mode: the worker that holds the job (its attempt is `attempts`), the queue
    # it was routed to (by what it needs), and when it was last handed to the queue.
    Column("worker", String(64)),
    Column("route", String(200)),
    Column("sent_at", Float),
)
Index("jobs_by_time", jobs.c.created_at, jobs.c.id)
Index("jobs_by_owner_time", jobs.c.owner, jobs.c.created_at, jobs.c.id)
Index("jobs_by_status_time", jobs.c.status, jobs.c.created_at, jobs.c.id)
Index("jobs_by_finish", jobs.c.finished_at)

events = Table(
    "events",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("id", BigInteger, primary_key=True),  # 1, 2, ... per job, never reused
    Column("attempt", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# A worker node: what it can run (its runtime, the images its engine has: JSON), its
# capacity and load, and its last heartbeat. A worker not seen for the visibility timeout
# is gone: its jobs are taken over.
workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", Text, nullable=False),
    Column("runtime", String(32), nullable=False),
    Column("images", Text, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("busy", Integer, nullable=False),
    Column("pool", Text, nullable=False),
    Column("draining", Boolean, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("at", Float, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
)

# An API key: only a hash of its secret is kept; `prefix` (the secret's first characters)
# finds the row, the hash is then compared in constant time. `tokens` and `updated_at` are
# its token bucket (runs), updated in one conditional UPDATE so that every process sharing
# the store draws from the same bucket.
api_keys = Table(
    "api_keys",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("prefix", String(16), nullable=False, index=True),
    Column("hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("admin", Boolean, nullable=False, default=False),
    Column("rate", Float, nullable=False),  # runs per second added to the bucket
    Column("burst", Integer, nullable=False),  # the bucket's size, in runs
    Column("runs_per_day", Integer),
    Column("max_count", Integer),
    Column("max_memory_mb", Integer),
    Column("max_time_ms", Integer),
    Column("tokens", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Runs a key was admitted for on one UTC day (YYYY-MM-DD).
key_usage = Table(
    "key_usage",
    metadata,
    Column("name", String(64), ForeignKey("api_keys.name", ondelete="CASCADE"), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("runs", Integer, nullable=False),
)
