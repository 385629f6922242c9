"""account search: indexes for the accounts list's search and CSM filter

``GET /api/v1/accounts?q=`` and the console's accounts page search a case-insensitive prefix of
the name or the domain: an index on ``lower(name)`` and on ``lower(domain)`` (PostgreSQL:
``text_pattern_ops``, so ``LIKE 'q%'`` uses it whatever the database's collation). The CSM
filter gets an index on ``accounts.csm_id``. Fast at 100,000 accounts (``make bench``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 23:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    accounts = sa.table("accounts", sa.column("name"), sa.column("domain"))
    for column in ("name", "domain"):
        op.create_index(
            f"ix_accounts_{column}_lower",
            "accounts",
            [sa.func.lower(accounts.c[column]).label(f"{column}_lower")],
            unique=False,
            postgresql_ops={f"{column}_lower": "text_pattern_ops"},
        )
    op.create_index("ix_accounts_csm_id", "accounts", ["csm_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_accounts_csm_id", table_name="accounts")
    for column in ("domain", "name"):
        op.drop_index(f"ix_accounts_{column}_lower", table_name="accounts")
