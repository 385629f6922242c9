"""health snapshot documents as json, not jsonb, on PostgreSQL

``health_snapshots.components`` is written once per account and day by the recompute and read
whole (the account page, the trend); nothing queries inside it. As ``jsonb`` PostgreSQL parses
and re-encodes every document on the way in: COPYing a chunk's 5,000 snapshots took 335 ms into
``jsonb`` against 68 ms into ``json`` (about 5 s of the server's time in a full recompute of
100,000 accounts). ``json`` keeps the text as written (keys in the order the recompute wrote
them). SQLite stores JSON as text either way: nothing changes there. docs/adr/0009.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 05:55:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE health_snapshots ALTER COLUMN components TYPE json USING components::json"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE health_snapshots ALTER COLUMN components TYPE jsonb "
            "USING components::jsonb"
        )
