"""API keys (a hash of each secret, its caps and its token bucket), the runs each key was
admitted for per day, and the key that submitted each job.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("rate", sa.Float, nullable=False),
        sa.Column("burst", sa.Integer, nullable=False),
        sa.Column("runs_per_day", sa.Integer),
        sa.Column("max_count", sa.Integer),
        sa.Column("max_memory_mb", sa.Integer),
        sa.Column("max_time_ms", sa.Integer),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])
    op.create_table(
        "key_usage",
        sa.Column(
            "name",
            sa.String(64),
            sa.ForeignKey("api_keys.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("runs", sa.Integer, nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(64)))
    op.create_index("jobs_by_owner_time", "jobs", ["owner", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("jobs_by_owner_time", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("owner")
    op.drop_table("key_usage")
    op.drop_index("ix_api_keys_prefix", "api_keys")
    op.drop_table("api_keys")
