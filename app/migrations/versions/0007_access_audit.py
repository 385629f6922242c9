"""access: API key roles and expiry, errors resolved by hand, the audit log

``admin_api_keys`` gains ``role`` (viewer, operator or admin; keys stored before this revision,
if any, become viewers: least privilege) and ``expires_at``. ``sync_errors`` gains
``resolved_by`` and ``resolution_note`` (an error resolved by hand, with its comment).
``audit_log`` records who did what through the admin API and CLI (docs/admin-api.md).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 19:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("admin_api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=16), server_default="viewer", nullable=False)
        )
        batch_op.add_column(
            sa.Column("expires_at", app.db.types.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("sync_errors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resolved_by", sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column("resolution_note", sa.Text(), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=160), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_at")
    op.drop_table("audit_log")
    with op.batch_alter_table("sync_errors", schema=None) as batch_op:
        batch_op.drop_column("resolution_note")
        batch_op.drop_column("resolved_by")
    with op.batch_alter_table("admin_api_keys", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("role")
