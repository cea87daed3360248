"""Worker nodes (what each can run, its load, its last heartbeat) and, on each job, the
worker that holds it, the queue it was routed to and when it was last handed to the queue.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("images", sa.Text, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("busy", sa.Integer, nullable=False),
        sa.Column("pool", sa.Text, nullable=False),
        sa.Column("draining", sa.Boolean, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("worker", sa.String(64)))
        batch.add_column(sa.Column("route", sa.String(200)))
        batch.add_column(sa.Column("sent_at", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("sent_at")
        batch.drop_column("route")
        batch.drop_column("worker")
    op.drop_table("workers")
