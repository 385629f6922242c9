"""onboarding task notes: why a task was done or skipped, and the text it was created with

``onboarding_tasks.note`` is what the person who marked a task done or skipped wrote
(``PATCH /api/v1/onboarding/tasks/{id}``); ``detail`` is the text the plan gave the task (the
``handover_complete`` task lists the missing handover fields, domain.md 6.3);
``status_changed_at`` is when it was last marked. ``onboarding_plans`` gains an index on
(status, started_on) for the overdue listing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("onboarding_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detail", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("status_changed_at", app.db.types.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("onboarding_plans", schema=None) as batch_op:
        batch_op.create_index(
            "ix_onboarding_plans_status_started_on", ["status", "started_on"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("onboarding_plans", schema=None) as batch_op:
        batch_op.drop_index("ix_onboarding_plans_status_started_on")
    with op.batch_alter_table("onboarding_tasks", schema=None) as batch_op:
        batch_op.drop_column("status_changed_at")
        batch_op.drop_column("note")
        batch_op.drop_column("detail")
