"""onboarding write-back: accounts.csm_email and accounts.onboarding_status

The CSM and the onboarding status are written back onto the CRM account (issue #20): the push
sends mapped columns of the account, so both live on it (``csm_email`` mirrors the assigned
CSM's e-mail; ``onboarding_status`` is the open plan's state).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("csm_email", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("onboarding_status", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("onboarding_status")
        batch_op.drop_column("csm_email")
