"""api usage: CRM calls made outside any run, for the budget guard

crmsync's own calls per rolling 24 h were counted from ``sync_runs.api_calls`` only; calls made
outside a run (a webhook's CRM reads, the guard's limit read, a backfill's count calls) went
uncounted. Each process now stores them here as it makes them (per CRM, a row per batch of
calls), and the guard adds them to the runs'.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_usage",
        sa.Column("crm", sa.String(length=16), nullable=False),
        sa.Column("at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_usage")),
    )
    with op.batch_alter_table("api_usage", schema=None) as batch_op:
        batch_op.create_index("ix_api_usage_crm_at", ["crm", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_usage", schema=None) as batch_op:
        batch_op.drop_index("ix_api_usage_crm_at")
    op.drop_table("api_usage")
