"""api limits: each CRM's daily API limit as last reported, for the budget guard

crmsync's own calls per rolling 24 h are counted from ``sync_runs.api_calls``; this table keeps
the other half of the budget: the org's daily limit (``/limits``, ``Sforce-Limit-Info``,
HubSpot's daily headers, or ``CRMSYNC_<CRM>__DAILY_LIMIT``) and the org's usage when it was read.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_limits",
        sa.Column("crm", sa.String(length=16), nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=True),
        sa.Column("org_used", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("observed_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("crm", name=op.f("pk_api_limits")),
    )


def downgrade() -> None:
    op.drop_table("api_limits")
