"""onboarding notices as an outbox on the plan: due, attempts, sent or failed

A new plan that should be announced (``CRMSYNC_WEBHOOKS__NOTICE_URL`` set) is stored with
``notice_status = 'pending'`` in the plan's own transaction, so a process killed after the
commit and before the POST loses no notice: the sweeper enqueues the ``crmsync.notice`` job for
every pending notice whose ``notice_due_at`` has come. ``notice_status`` is NULL for plans
without a notice.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("onboarding_plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notice_status", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("notice_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("notice_due_at", app.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("notice_error", sa.String(length=255), nullable=True))
        batch_op.create_index(
            "ix_onboarding_plans_notice", ["notice_status", "notice_due_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("onboarding_plans", schema=None) as batch_op:
        batch_op.drop_index("ix_onboarding_plans_notice")
        batch_op.drop_column("notice_error")
        batch_op.drop_column("notice_due_at")
        batch_op.drop_column("notice_attempts")
        batch_op.drop_column("notice_status")
