"""signals in: accounts.signals_changed_at, one idempotency key per signal row, received_at

Every event-like signal table is keyed by (source, external_id): the sender's id of the row, or
one derived from the row's natural key when the sender gives none (docs/signals.md). Usage
snapshots keep their (account_id, observed_on) key. Rows stored before this revision get
``row:<id>`` as their external id and the migration time as ``received_at``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 07:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Tables that gain ``source`` (with its default for old rows) and ``external_id``.
_NEW_KEYS = {"nps_responses": "survey", "survey_responses": "survey", "success_criteria": "cs"}
#: Tables that gain ``received_at``.
_RECEIVED = (
    "support_tickets",
    "nps_responses",
    "survey_responses",
    "touchpoints",
    "invoices",
    "success_criteria",
)
_KEYED = (*_NEW_KEYS, "touchpoints")


def _utc() -> app.db.types.UTCDateTime:
    return app.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signals_changed_at", _utc(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_accounts_signals_changed_at"), ["signals_changed_at"], unique=False
        )

    # 1. New columns, nullable first so that rows already stored can be filled in.
    for table in _RECEIVED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("received_at", _utc(), nullable=True))
            if table in _NEW_KEYS:
                batch_op.add_column(sa.Column("source", sa.String(length=32), nullable=True))
                batch_op.add_column(sa.Column("external_id", sa.String(length=64), nullable=True))
            if table in ("nps_responses", "survey_responses", "touchpoints"):
                batch_op.add_column(
                    sa.Column("contact_email", sa.String(length=320), nullable=True)
                )
            if table == "touchpoints":
                batch_op.add_column(sa.Column("direction", sa.String(length=8), nullable=True))

    # 2. Fill them for old rows.
    for table in _RECEIVED:
        op.execute(f"UPDATE {table} SET received_at = CURRENT_TIMESTAMP")
    for table, source in _NEW_KEYS.items():
        op.execute(f"UPDATE {table} SET source = '{source}'")
    for table in _KEYED:
        op.execute(f"UPDATE {table} SET external_id = 'row:' || id WHERE external_id IS NULL")

    # 3. Then NOT NULL and the unique keys.
    for table in _RECEIVED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("received_at", existing_type=_utc(), nullable=False)
            if table in _KEYED:
                batch_op.alter_column(
                    "source",
                    existing_type=sa.String(length=16 if table == "touchpoints" else 32),
                    type_=sa.String(length=32),
                    nullable=False,
                )
                batch_op.alter_column(
                    "external_id", existing_type=sa.String(length=64), nullable=False
                )
                batch_op.create_unique_constraint(
                    batch_op.f(f"uq_{table}_source_external_id"), ["source", "external_id"]
                )


def downgrade() -> None:
    for table in _RECEIVED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            if table in _KEYED:
                batch_op.drop_constraint(
                    batch_op.f(f"uq_{table}_source_external_id"), type_="unique"
                )
            if table == "touchpoints":
                batch_op.alter_column(
                    "source",
                    existing_type=sa.String(length=32),
                    type_=sa.String(length=16),
                    nullable=False,
                )
                batch_op.alter_column(
                    "external_id", existing_type=sa.String(length=64), nullable=True
                )
                batch_op.drop_column("direction")
            if table in ("nps_responses", "survey_responses", "touchpoints"):
                batch_op.drop_column("contact_email")
            if table in _NEW_KEYS:
                batch_op.drop_column("external_id")
                batch_op.drop_column("source")
            batch_op.drop_column("received_at")

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_signals_changed_at"))
        batch_op.drop_column("signals_changed_at")
