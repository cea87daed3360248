"""The tables (SQLAlchemy Core). Migrations (migrations/) create and change them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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
)
Index("jobs_by_time", jobs.c.created_at, jobs.c.id)
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

deliveries = Table(
    "deliveries",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("at", Float, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
)
