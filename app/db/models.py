"""The CS database: SQLAlchemy 2 typed models.

Four groups of tables:

* **CRM-mirrored records** (``accounts``, ``opportunities``, ``handover_notes``, ``contacts``):
  each carries ``sf_id`` / ``hs_id`` (unique when present), the CRM's last-modified stamp per CRM,
  a soft-delete timestamp, and ``field_stamps`` (per-field last change on the CS side, for the
  ``newest_wins`` conflict policy). Parent links are nullable and the CRM parent id is kept beside
  them, so a child that arrives before its parent is stored and linked later.
* **Signals** the health score reads (``usage_snapshots``, ``support_tickets``, ``nps_responses``,
  ``survey_responses``, ``touchpoints``, ``invoices``, ``success_criteria``).
* **Computed and workflow state** (``health_snapshots``, ``account_events``, ``onboarding_plans``,
  ``onboarding_tasks``, ``csms``).
* **Sync bookkeeping** (``sync_cursors``, ``sync_runs``, ``sync_errors``, ``push_ledger``,
  ``webhook_inbox``, ``job_leases``, ``api_limits``, ``admin_api_keys``).
  ``webhook_inbox``, ``job_leases``, ``admin_api_keys``, ``audit_log``).

Enumerated values are plain strings validated in code (listed in :mod:`app.db.enums`), so a new
value never needs a table rebuild on SQLite. Datetimes are aware UTC and end in ``_at``; dates end
in ``_on``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from app.db.base import Base, IdMixin, TimestampMixin, utcnow
from app.db.types import JSONDoc, JSONText, UTCDateTime

Money = Numeric(18, 2)


class CrmMirrorMixin:
    """Columns shared by every record mirrored from a CRM."""

    sf_id: Mapped[str | None] = mapped_column(String(18), unique=True)
    hs_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    sf_modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hs_modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    field_stamps: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict, nullable=False)
    #: When a CS-side write last changed a mapped column (the newest of ``field_stamps``); the
    #: push streams over it (ADR 0006). A pull never sets it.
    cs_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: crmsync's own external id of the record (a UUID), set and committed before the record is
    #: first created in a CRM, so a create whose answer was lost is matched again (ADR 0006).
    crmsync_id: Mapped[str | None] = mapped_column(String(36))

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        """Partial indexes: pulled rows (``cs_changed_at`` and ``crmsync_id`` null) add no index
        entry, so the pull's inserts pay nothing for the push's indexes. ``x > :cursor`` implies
        ``x IS NOT NULL``, so both databases use the index for the push stream."""
        table = cls.__tablename__  # type: ignore[attr-defined]
        changed = text("cs_changed_at IS NOT NULL")
        with_id = text("crmsync_id IS NOT NULL")
        return (
            Index(
                f"ix_{table}_cs_changed_at",
                "cs_changed_at",
                "id",
                sqlite_where=changed,
                postgresql_where=changed,
            ),
            Index(
                f"uq_{table}_crmsync_id",
                "crmsync_id",
                unique=True,
                sqlite_where=with_id,
                postgresql_where=with_id,
            ),
        )


# --------------------------------------------------------------------------------------------
# People on the CS side
# --------------------------------------------------------------------------------------------


class Csm(IdMixin, TimestampMixin, Base):
    """A customer success manager (or a pool/queue user) who can own accounts."""

    __tablename__ = "csms"

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    sf_user_id: Mapped[str | None] = mapped_column(String(18), unique=True)
    hs_owner_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    tiers: Mapped[list[str]] = mapped_column(JSONDoc, default=list, nullable=False)
    capacity_units: Mapped[int] = mapped_column(Integer, default=100, nullable=False)
    region: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(16))
    is_pool: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    out_of_office_until: Mapped[date | None] = mapped_column(Date)


# --------------------------------------------------------------------------------------------
# CRM-mirrored records
# --------------------------------------------------------------------------------------------


class Account(IdMixin, CrmMirrorMixin, TimestampMixin, Base):
    """The CS side of a Salesforce Account / HubSpot company."""

    __tablename__ = "accounts"

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    domain: Mapped[str | None] = mapped_column(String(255), index=True)
    sales_owner: Mapped[str | None] = mapped_column(String(64))
    #: Indexed: the accounts list filters by CSM (the console's "my accounts").
    csm_id: Mapped[int | None] = mapped_column(
        ForeignKey("csms.id", ondelete="SET NULL"), index=True
    )
    backup_csm_id: Mapped[int | None] = mapped_column(ForeignKey("csms.id", ondelete="SET NULL"))
    #: The assigned CSM's e-mail, written back onto the CRM account (#20).
    csm_email: Mapped[str | None] = mapped_column(String(255))
    #: The onboarding's state for the CRM account (``active``, ``complete``, ...; #20).
    onboarding_status: Mapped[str | None] = mapped_column(String(16))
    industry: Mapped[str | None] = mapped_column(String(128))
    currency: Mapped[str | None] = mapped_column(String(3))
    arr: Mapped[Decimal | None] = mapped_column(Money)
    mrr: Mapped[Decimal | None] = mapped_column(Money)
    potential_arr: Mapped[Decimal | None] = mapped_column(Money)
    licensed_seats: Mapped[int | None] = mapped_column(Integer)
    plan: Mapped[str | None] = mapped_column(String(128))
    lifecycle_stage: Mapped[str | None] = mapped_column(String(32))
    lifecycle_entered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    customer_since_on: Mapped[date | None] = mapped_column(Date)
    contract_start_on: Mapped[date | None] = mapped_column(Date)
    contract_end_on: Mapped[date | None] = mapped_column(Date)
    auto_renew: Mapped[bool | None] = mapped_column(Boolean)
    strategic_account: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    churn_reason: Mapped[str | None] = mapped_column(String(255))
    churned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Tier (domain.md 3.3): computed tier, the manual override and what it flagged.
    tier: Mapped[str | None] = mapped_column(String(16))
    tier_override: Mapped[str | None] = mapped_column(String(16))
    tier_override_reason: Mapped[str | None] = mapped_column(String(255))
    tier_override_until: Mapped[date | None] = mapped_column(Date)
    growth_focus: Mapped[str | None] = mapped_column(String(16))

    # Current health (domain.md 4.9); history lives in health_snapshots.
    health_score: Mapped[int | None] = mapped_column(Integer)
    health_band: Mapped[str | None] = mapped_column(String(16))
    health_trend: Mapped[str | None] = mapped_column(String(8))
    health_reasons: Mapped[str | None] = mapped_column(String(255))
    health_coverage: Mapped[int | None] = mapped_column(Integer)
    loyalty_type: Mapped[str | None] = mapped_column(String(16))
    false_loyalty: Mapped[bool | None] = mapped_column(Boolean)
    health_computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Renewal (domain.md 5): the date is stored; days-to-renewal is derived on the day of writing.
    renewal_on: Mapped[date | None] = mapped_column(Date)
    renewal_status: Mapped[str | None] = mapped_column(String(16))
    renewal_risk: Mapped[str | None] = mapped_column(String(16))

    flags: Mapped[list[str]] = mapped_column(JSONDoc, default=list, nullable=False)

    #: When a signal (usage, ticket, NPS, survey, touchpoint, invoice, success criterion) about
    #: this account was last stored or changed; every ingestion stamps it for the accounts it
    #: touched, so the recompute finds the accounts whose inputs changed (docs/signals.md).
    signals_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    opportunities: Mapped[list[Opportunity]] = relationship(back_populates="account")


# The accounts list's search (``GET /api/v1/accounts?q=``, the console): a case-insensitive prefix
# of the name or the domain, by an index on the lower-cased column. SQLite reads it with a range
# (``lower(name) >= :q AND < :q || U+10FFFF``: its LIKE cannot use an expression index);
# PostgreSQL with ``LIKE 'q%'``, which needs ``text_pattern_ops`` under a non-C collation.
for _column in ("name", "domain"):
    Index(
        f"ix_accounts_{_column}_lower",
        func.lower(Account.__table__.c[_column]).label(f"{_column}_lower"),
        postgresql_ops={f"{_column}_lower": "text_pattern_ops"},
    )

# The push's creates (``SqlPushStore.rows_to_create``): accounts with no id in either CRM, by
# id. Partial, so it holds only those (a handful); the columns are in the order both CRMs'
# queries test them, which makes it the planner's choice over the ``sf_id`` / ``hs_id`` unique
# indexes (a walk through every account of the other CRM). Migration 0012.
_no_crm_id = text("hs_id IS NULL AND sf_id IS NULL")
Index(
    "ix_accounts_no_crm_id",
    Account.__table__.c.hs_id,
    Account.__table__.c.sf_id,
    Account.__table__.c.id,
    sqlite_where=_no_crm_id,
    postgresql_where=_no_crm_id,
)


class Opportunity(IdMixin, CrmMirrorMixin, TimestampMixin, Base):
    """A Salesforce Opportunity / HubSpot deal."""

    __tablename__ = "opportunities"

    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    # The CRM's parent reference, kept so the link can be made when the parent arrives.
    sf_account_id: Mapped[str | None] = mapped_column(String(18), index=True)
    hs_company_id: Mapped[str | None] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    stage: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[Decimal | None] = mapped_column(Money)
    currency: Mapped[str | None] = mapped_column(String(3))
    close_on: Mapped[date | None] = mapped_column(Date)
    is_closed: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    is_won: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    type: Mapped[str | None] = mapped_column(String(32))
    contract_term_months: Mapped[int | None] = mapped_column(Integer)
    term_start_on: Mapped[date | None] = mapped_column(Date)
    sales_owner: Mapped[str | None] = mapped_column(String(64))
    preassigned_csm_email: Mapped[str | None] = mapped_column(String(320))

    account: Mapped[Account | None] = relationship(back_populates="opportunities")


class HandoverNote(IdMixin, CrmMirrorMixin, TimestampMixin, Base):
    """Sales-to-CS handover: a CRM note (Salesforce Note / HubSpot note) plus structured fields.

    The structured fields follow domain.md 6.2; the body is the human-readable note as it
    appears in the CRM. ``origin`` says which side wrote it first.
    """

    __tablename__ = "handover_notes"

    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    opportunity_id: Mapped[int | None] = mapped_column(
        ForeignKey("opportunities.id", ondelete="SET NULL"), index=True
    )
    sf_parent_id: Mapped[str | None] = mapped_column(String(18), index=True)
    hs_company_id: Mapped[str | None] = mapped_column(String(32), index=True)
    hs_deal_id: Mapped[str | None] = mapped_column(String(32), index=True)
    author: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[str | None] = mapped_column(Text)
    sold: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict, nullable=False)
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc, default=list, nullable=False)
    goals: Mapped[list[str]] = mapped_column(JSONDoc, default=list, nullable=False)
    success_criteria: Mapped[list[str]] = mapped_column(JSONDoc, default=list, nullable=False)
    special_terms: Mapped[str | None] = mapped_column(Text)
    risks: Mapped[list[str]] = mapped_column(JSONDoc, default=list, nullable=False)
    fit: Mapped[str | None] = mapped_column(String(16))
    timeline: Mapped[str | None] = mapped_column(Text)
    completeness: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(8), default="crm", nullable=False)


class Contact(IdMixin, CrmMirrorMixin, TimestampMixin, Base):
    """A customer-side person; roles feed the relationship and sentiment components."""

    __tablename__ = "contacts"

    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    email: Mapped[str | None] = mapped_column(String(320))
    title: Mapped[str | None] = mapped_column(String(255))
    roles: Mapped[list[str]] = mapped_column(JSONDoc, default=list, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    left_on: Mapped[date | None] = mapped_column(Date)


# --------------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------------


class UsageSnapshot(IdMixin, Base):
    """One day of product usage for an account (product usage feed); one row per
    (account, day), so a snapshot sent again replaces the stored one."""

    __tablename__ = "usage_snapshots"
    __table_args__ = (UniqueConstraint("account_id", "observed_on"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
    )
    observed_on: Mapped[date] = mapped_column(Date, nullable=False)
    active_users_30d: Mapped[int] = mapped_column(Integer, nullable=False)
    licensed_seats: Mapped[int | None] = mapped_column(Integer)
    logins_30d: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    key_features_used_30d: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    key_features_defined: Mapped[int | None] = mapped_column(Integer)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


# The event-like signals below are each keyed by (source, external_id): the sending system's
# own id of the row, or, when it gives none, one crmsync derives from the row's natural key
# (app.domain.signal_rows, docs/signals.md). A row sent twice is then stored once; sent again
# with changed values it updates the stored row. ``received_at`` is when crmsync last
# received the row.


class SupportTicket(IdMixin, Base):
    """A helpdesk ticket (support component): sent again when it changes (closed, escalated)."""

    __tablename__ = "support_tickets"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    source: Mapped[str] = mapped_column(String(32), default="cs", nullable=False)
    external_id: Mapped[str] = mapped_column(String(64), nullable=False)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    priority: Mapped[str] = mapped_column(String(8), default="P3", nullable=False)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    first_contact_resolved: Mapped[bool | None] = mapped_column(Boolean)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class NpsResponse(IdMixin, Base):
    """One NPS answer (0-10). ``contact_email`` is the respondent as the survey tool names
    them; ``contact_id`` the synced contact it matched, if any."""

    __tablename__ = "nps_responses"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    respondent_role: Mapped[str | None] = mapped_column(String(32))
    score: Mapped[int] = mapped_column(Integer, nullable=False)
    responded_on: Mapped[date] = mapped_column(Date, nullable=False)
    comment: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32), default="survey", nullable=False)
    external_id: Mapped[str] = mapped_column(String(64), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class SurveyResponse(IdMixin, Base):
    """CSAT and CES answers, each with its own scale (domain.md 4.3 sentiment)."""

    __tablename__ = "survey_responses"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    topic: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[Decimal] = mapped_column(Numeric(6, 2), nullable=False)
    scale_min: Mapped[int] = mapped_column(Integer, nullable=False)
    scale_max: Mapped[int] = mapped_column(Integer, nullable=False)
    responded_on: Mapped[date] = mapped_column(Date, nullable=False)
    contact_email: Mapped[str | None] = mapped_column(String(320))
    source: Mapped[str] = mapped_column(String(32), default="survey", nullable=False)
    external_id: Mapped[str] = mapped_column(String(64), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class Touchpoint(IdMixin, Base):
    """A contact with the customer (engagement, relationship). ``direction``: ``out`` from the
    vendor, ``in`` from the customer; ``two_way``: the customer answered or attended;
    ``scheduled``: a planned meeting (attended when ``two_way``)."""

    __tablename__ = "touchpoints"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    direction: Mapped[str | None] = mapped_column(String(8))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    two_way: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    scheduled: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    source: Mapped[str] = mapped_column(String(32), default="cs", nullable=False)
    external_id: Mapped[str] = mapped_column(String(64), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class Invoice(IdMixin, Base):
    """Billing feed, for the payment component."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    source: Mapped[str] = mapped_column(String(32), default="billing", nullable=False)
    external_id: Mapped[str] = mapped_column(String(64), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    due_on: Mapped[date] = mapped_column(Date, nullable=False)
    paid_on: Mapped[date | None] = mapped_column(Date)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class SuccessCriterion(IdMixin, TimestampMixin, Base):
    """A success criterion (value component): its status is sent again when assessed."""

    __tablename__ = "success_criteria"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    handover_note_id: Mapped[int | None] = mapped_column(
        ForeignKey("handover_notes.id", ondelete="SET NULL")
    )
    text: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="unassessed", nullable=False)
    assessed_on: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(32), default="cs", nullable=False)
    external_id: Mapped[str] = mapped_column(String(64), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


# --------------------------------------------------------------------------------------------
# Computed state and workflow
# --------------------------------------------------------------------------------------------


class HealthSnapshot(IdMixin, Base):
    """One daily health result; the trend compares against these (domain.md 4.6)."""

    __tablename__ = "health_snapshots"
    __table_args__ = (UniqueConstraint("account_id", "computed_on"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
    )
    computed_on: Mapped[date] = mapped_column(Date, nullable=False)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    score: Mapped[int | None] = mapped_column(Integer)
    band: Mapped[str] = mapped_column(String(16), nullable=False)
    coverage: Mapped[int] = mapped_column(Integer, nullable=False)
    #: Written once a day and read whole: ``json`` on PostgreSQL, not ``jsonb`` (migration 0013).
    components: Mapped[dict[str, Any]] = mapped_column(JSONText, default=dict, nullable=False)
    flags: Mapped[list[str]] = mapped_column(JSONDoc, default=list, nullable=False)
    reasons: Mapped[str | None] = mapped_column(String(255))
    model_version: Mapped[str] = mapped_column(String(32), nullable=False)


class AccountEvent(IdMixin, Base):
    """Append-only history: lifecycle stage entries, band changes, tier changes, churn."""

    __tablename__ = "account_events"
    __table_args__ = (
        Index("ix_account_events_account_id_occurred_at", "account_id", "occurred_at"),
    )

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class OnboardingPlan(IdMixin, TimestampMixin, Base):
    """Created once per closed-won opportunity; the unique key makes webhook handling idempotent.

    ``status``: ``active``, ``completed`` (domain.md 7.4's exit criteria met) or ``closed`` (by
    hand, with ``close_reason``); ``kind``: ``full`` (7.2) or ``expansion`` (7.3).

    ``notice_*`` is the outbox of the new-onboarding notice (``app.wiring.notices``):
    ``notice_status`` NULL (none wanted), ``pending`` (to send at ``notice_due_at``), ``sent``
    or ``failed`` (refused by the receiver, or out of attempts; ``notice_error`` says why)."""

    __tablename__ = "onboarding_plans"
    __table_args__ = (
        Index("ix_onboarding_plans_status_started_on", "status", "started_on"),
        Index("ix_onboarding_plans_notice", "notice_status", "notice_due_at"),
    )

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    opportunity_id: Mapped[int | None] = mapped_column(
        ForeignKey("opportunities.id", ondelete="SET NULL"), unique=True
    )
    handover_note_id: Mapped[int | None] = mapped_column(
        ForeignKey("handover_notes.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(16), default="full", nullable=False)
    tier_at_close: Mapped[str] = mapped_column(String(16), nullable=False)
    started_on: Mapped[date] = mapped_column(Date, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    csm_id: Mapped[int | None] = mapped_column(ForeignKey("csms.id", ondelete="SET NULL"))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    close_reason: Mapped[str | None] = mapped_column(String(255))
    notice_status: Mapped[str | None] = mapped_column(String(16))
    notice_attempts: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", nullable=False
    )
    notice_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notice_error: Mapped[str | None] = mapped_column(String(255))

    tasks: Mapped[list[OnboardingTask]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", order_by="OnboardingTask.due_on"
    )


class OnboardingTask(IdMixin, TimestampMixin, Base):
    __tablename__ = "onboarding_tasks"
    __table_args__ = (UniqueConstraint("plan_id", "code"),)

    plan_id: Mapped[int] = mapped_column(
        ForeignKey("onboarding_plans.id", ondelete="CASCADE"), nullable=False
    )
    code: Mapped[str] = mapped_column(String(64), nullable=False)
    phase: Mapped[str] = mapped_column(String(32), nullable=False)
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    owner_role: Mapped[str] = mapped_column(String(32), nullable=False)
    assignee: Mapped[str | None] = mapped_column(String(320))
    automated: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    due_on: Mapped[date] = mapped_column(Date, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="open", nullable=False)
    done_on: Mapped[date | None] = mapped_column(Date)
    #: The text the plan gave the task (``handover_complete``: the missing handover fields).
    detail: Mapped[str | None] = mapped_column(Text)
    #: What the person who marked the task done or skipped wrote.
    note: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    plan: Mapped[OnboardingPlan] = relationship(back_populates="tasks")


# --------------------------------------------------------------------------------------------
# Sync bookkeeping
# --------------------------------------------------------------------------------------------


class SyncCursor(IdMixin, Base):
    """Where a stream of one CRM object stands.

    ``stream`` separates the incremental change cursor (``changes``), the delete scan
    (``deletes``) and a backfill checkpoint (``backfill``). The high-water mark is the pair
    (``watermark_at``, ``watermark_id``); ``state`` holds stream-specific extras (a Bulk job id
    and locator, a HubSpot search window) and is only written together with committed rows.
    """

    __tablename__ = "sync_cursors"
    __table_args__ = (UniqueConstraint("crm", "object", "stream"),)

    crm: Mapped[str] = mapped_column(String(16), nullable=False)
    object: Mapped[str] = mapped_column(String(32), nullable=False)
    stream: Mapped[str] = mapped_column(String(16), default="changes", nullable=False)
    watermark_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    watermark_id: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False
    )


class SyncRun(IdMixin, Base):
    """One pass of the engine over one (kind, CRM, object): its status, counts and API calls."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_crm_object_started_at", "crm", "object", "started_at"),)

    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    crm: Mapped[str] = mapped_column(String(16), nullable=False)
    object: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="running", nullable=False)
    triggered_by: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    created_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    updated_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    unchanged_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    deleted_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    failed_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    api_calls: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cursor_from: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    cursor_to: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    error: Mapped[str | None] = mapped_column(Text)


class SyncErrorRecord(IdMixin, Base):
    """A record that failed (mapping, validation, upstream): kept with its payload for retry."""

    __tablename__ = "sync_errors"
    __table_args__ = (
        Index("ix_sync_errors_crm_object_record_id", "crm", "object", "record_id"),
        Index("ix_sync_errors_resolved_at", "resolved_at"),
    )

    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("sync_runs.id", ondelete="SET NULL"), index=True
    )
    crm: Mapped[str] = mapped_column(String(16), nullable=False)
    object: Mapped[str] = mapped_column(String(32), nullable=False)
    record_id: Mapped[str | None] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8), default="pull", nullable=False)
    category: Mapped[str] = mapped_column(String(32), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    retriable: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(String(64))
    #: Who resolved it by hand (audit actor) and their comment; None when a sync resolved it.
    resolved_by: Mapped[str | None] = mapped_column(String(160))
    resolution_note: Mapped[str | None] = mapped_column(Text)


class PushLedgerEntry(IdMixin, Base):
    """Per CRM field of a record: the value both sides last agreed on (the three-way merge base
    and the echo suppressor) and the CRM value as last pulled (ADR 0006)."""

    __tablename__ = "push_ledger"
    __table_args__ = (UniqueConstraint("crm", "object", "record_id", "field"),)

    crm: Mapped[str] = mapped_column(String(16), nullable=False)
    object: Mapped[str] = mapped_column(String(32), nullable=False)
    record_id: Mapped[str] = mapped_column(String(64), nullable=False)
    field: Mapped[str] = mapped_column(String(128), nullable=False)
    value_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    #: Hash of the CRM value as last pulled (None: not pulled since the entry was made).
    crm_hash: Mapped[str | None] = mapped_column(String(64))
    #: The agreed wire value itself, for previews (old -> new).
    value: Mapped[Any | None] = mapped_column(JSONDoc)
    pushed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="SET NULL"))


class WebhookEvent(IdMixin, Base):
    """A webhook delivery as received: stored before it is acted on, deduplicated per source."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_webhook_inbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    source: Mapped[str] = mapped_column(String(16), nullable=False)
    external_id: Mapped[str] = mapped_column(String(128), nullable=False)
    event_type: Mapped[str | None] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict, nullable=False)
    raw_body: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="received", nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobLease(Base):
    """An expiring lock: one run per (kind, CRM, object); a dead worker's lease simply expires."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), nullable=False)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    fencing_token: Mapped[int] = mapped_column(BigInteger, default=1, nullable=False)


class ApiLimit(Base):
    """A CRM's daily API limit as last reported (or configured), for the budget guard.

    crmsync's own calls are counted from ``sync_runs.api_calls``; this row only says how many
    the org may make in 24 h, and how many the whole org had used when the CRM last said so.
    """

    __tablename__ = "api_limits"

    crm: Mapped[str] = mapped_column(String(16), primary_key=True)
    daily_limit: Mapped[int | None] = mapped_column(Integer)
    org_used: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class ApiUsage(IdMixin, Base):
    """CRM calls crmsync made outside any run (a webhook's CRM reads, the budget guard's limit
    read, a backfill's count calls), ``calls`` of them up to ``at``: the budget guard adds them
    to the runs' ``sync_runs.api_calls`` (:mod:`app.db.budget_store`). Rows older than two days
    are pruned as new ones are written.
    """

    __tablename__ = "api_usage"
    __table_args__ = (Index("ix_api_usage_crm_at", "crm", "at"),)

    crm: Mapped[str] = mapped_column(String(16), nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    calls: Mapped[int] = mapped_column(Integer, nullable=False)


class AdminApiKey(IdMixin, Base):
    """An API key of the admin API (``/api/v1``) with its role; only a hash is stored.

    ``role`` is ``viewer``, ``operator`` or ``admin`` (:class:`app.core.access.Role`); a key past
    ``expires_at`` or with ``revoked_at`` set is refused (401).
    """

    __tablename__ = "admin_api_keys"

    name: Mapped[str] = mapped_column(String(128), nullable=False)
    role: Mapped[str] = mapped_column(
        String(16), default="viewer", server_default="viewer", nullable=False
    )
    key_prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(IdMixin, Base):
    """Who did what to what, and when: every write of the admin API and of the admin CLI.

    ``actor`` is the API key's name (``key:<name>``), the bootstrap key (``bootstrap``) or the
    CLI user (``cli:<user>``); ``target`` names the object (``sync_error:12``, ``api_key:3``).
    Written in the same transaction as the change it records.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    actor: Mapped[str] = mapped_column(String(160), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str | None] = mapped_column(String(160))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict, nullable=False)


class ConsoleSession(IdMixin, Base):
    """A signed-in web console session (docs/adr/0007-console.md): the cookie holds a random
    token, this row only its SHA-256, so a copy of the table signs nobody in.

    ``key_id`` is the stored API key signed in with (None for the bootstrap key, whose hash is
    then kept in ``bootstrap_hash`` so that changing the bootstrap key ends its sessions). The
    key is checked again on every request: revoking it ends its sessions at once.
    """

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    key_id: Mapped[int | None] = mapped_column(Integer)
    bootstrap_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
