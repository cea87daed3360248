"""Which API took a job, and its request as that API received it (for APIs that answer with
the request's own fields, as Judge0 does).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("api", sa.String(16), nullable=False, server_default="v1"))
        batch.add_column(sa.Column("request", sa.LargeBinary))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("request")
        batch.drop_column("api")
