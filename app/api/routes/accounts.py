"""Accounts with their health, tier, renewal and lifecycle (issue #18 item 7).

* ``GET /api/v1/accounts``: filtered by ``band``, ``tier``, ``renewal_window``,
  ``lifecycle_stage`` and ``csm_id`` (each repeatable: any of the values) and searched with ``q``
  (a case-insensitive prefix of the name or of the domain), ordered by id, keyset paginated:
  ``next_cursor`` is opaque; pass it back as ``cursor`` with the same filters.
* ``GET /api/v1/accounts/{id}``: one account: the health components with the numbers each read,
  the reasons (code and text), trend, loyalty, tier, renewal and lifecycle (with its history).
* ``GET /api/v1/accounts/{id}/health/history``: the daily snapshots, newest first.

Values come from the last recompute (``accounts`` columns and the day's ``health_snapshots``
row); nothing is computed on read except the days to renewal and the renewal prep date, which
move with the date. Bad input answers 422 in FastAPI's validation shape naming the parameter
(``{"detail": [{"loc": ["query", "cursor"], "msg": ..., "type": ...}]}``); an unknown account
404 ``{"detail": "account 7 not found"}``.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import Field
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from app.api.auth import needs
from app.api.deps import SessionDep
from app.api.paging import decode_cursor, encode_cursor, invalid
from app.core.access import Role
from app.db.models import Account, AccountEvent, HealthSnapshot
from app.domain.lifecycle import LIFECYCLE_STAGE_ENTERED
from app.domain.renewal import prep_start_on
from app.domain.values import TIERS, Tier

router = APIRouter(prefix="/api/v1/accounts", tags=["accounts"])

BandIn = Literal["green", "yellow", "red", "unknown"]
TierIn = Literal["key", "high", "low", "tech"]
WindowIn = Literal["none", "outside", "upcoming", "in_window", "overdue", "ended"]
StageIn = Literal["trial", "onboarding", "adoption", "steady", "renewal", "expansion", "churned"]


_invalid = invalid  # the API's 422 naming the parameter (app.api.paging)


def _days_to(renewal_on: date | None, today: date) -> int | None:
    return None if renewal_on is None else (renewal_on - today).days


def _summary(a: Account, today: date) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "domain": a.domain,
        "sf_id": a.sf_id,
        "hs_id": a.hs_id,
        "csm_id": a.csm_id,
        "tier": a.tier,
        "health": {
            "score": a.health_score,
            "band": a.health_band,
            "trend": a.health_trend,
            "reasons": a.health_reasons,
            "coverage": a.health_coverage,
            "loyalty_type": a.loyalty_type,
            "false_loyalty": a.false_loyalty,
            "computed_at": a.health_computed_at,
        },
        "renewal": {
            "renewal_on": a.renewal_on,
            "days_to_renewal": _days_to(a.renewal_on, today),
            "window": a.renewal_status,
            "risk": a.renewal_risk,
        },
        "lifecycle": {"stage": a.lifecycle_stage, "entered_at": a.lifecycle_entered_at},
    }


def _json(data: Any) -> Any:
    return json.loads(json.dumps(data, default=_encode))


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


#: Above every character: ``x >= q AND x < q + TOP`` is "x starts with q" in a binary collation.
_TOP = "\U0010ffff"


def search_terms(q: str) -> tuple[str, str]:
    """The name prefix and the domain prefix ``q`` stands for: lower case; for the domain also
    without ``https://``, ``www.`` and a path (``https://www.Acme.com/x`` -> ``acme.com``)."""
    name = q.strip().lower()
    domain = name.split("://", 1)[-1].removeprefix("www.").split("/", 1)[0]
    return name, domain or name


def _prefix(column: Any, prefix: str, dialect: str) -> ColumnElement[bool]:
    """``lower(column)`` starts with ``prefix``, in the form its index serves (migration 0009):
    a range on SQLite (its LIKE never uses an expression index), ``LIKE 'p%'`` on PostgreSQL
    (the index has ``text_pattern_ops``)."""
    lowered = func.lower(column)
    if dialect == "postgresql":
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return lowered.like(escaped + "%", escape="\\")
    return (lowered >= prefix) & (lowered < prefix + _TOP)


def search_clause(q: str, dialect: str) -> ColumnElement[bool]:
    """Accounts whose name or domain starts with ``q`` (case-insensitive)."""
    name, domain = search_terms(q)
    return or_(_prefix(Account.name, name, dialect), _prefix(Account.domain, domain, dialect))


@router.get(
    "",
    summary="Accounts by band, tier, renewal window, lifecycle stage and CSM",
    **needs(Role.VIEWER),
)
def list_accounts(
    session: SessionDep,
    band: Annotated[list[BandIn] | None, Query(description="Health band(s).")] = None,
    tier: Annotated[list[TierIn] | None, Query(description="Tier(s).")] = None,
    renewal_window: Annotated[
        list[WindowIn] | None, Query(description="Renewal window status(es), domain.md 5.2.")
    ] = None,
    lifecycle_stage: Annotated[
        list[StageIn] | None, Query(description="Lifecycle stage(s), domain.md 2.")
    ] = None,
    csm_id: Annotated[
        list[Annotated[int, Field(ge=1)]] | None, Query(description="CSM id(s).")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=255,
            description="Search: the start of the name or of the domain (case-insensitive).",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Accounts per page.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page.")
    ] = None,
) -> Any:
    """One page of live accounts, by id; ``next_cursor`` is null on the last page."""
    if q is not None and not q.strip():
        q = None
    filters: dict[str, Any] = {
        "band": sorted(band or []),
        "tier": sorted(tier or []),
        "renewal_window": sorted(renewal_window or []),
        "lifecycle_stage": sorted(lifecycle_stage or []),
        "csm_id": sorted(csm_id or []),
    }
    if q is not None:  # only when given: cursors made before q existed stay valid
        filters["q"] = search_terms(q)[0]
    after = 0
    if cursor is not None:
        try:
            after = decode_cursor(cursor, filters)
        except ValueError as exc:
            return _invalid("cursor", str(exc), cursor)
    stmt = select(Account).where(Account.deleted_at.is_(None), Account.id > after)
    if band:
        stmt = stmt.where(Account.health_band.in_(band))
    if tier:
        stmt = stmt.where(Account.tier.in_(tier))
    if renewal_window:
        stmt = stmt.where(Account.renewal_status.in_(renewal_window))
    if lifecycle_stage:
        stmt = stmt.where(Account.lifecycle_stage.in_(lifecycle_stage))
    if csm_id:
        stmt = stmt.where(Account.csm_id.in_(csm_id))
    if q is not None:
        stmt = stmt.where(search_clause(q, session.get_bind().dialect.name))
    found = list(session.scalars(stmt.order_by(Account.id).limit(limit + 1)))
    page = found[:limit]
    today = datetime.now(UTC).date()
    next_cursor = encode_cursor(page[-1].id, filters) if len(found) > limit else None
    return _json({"items": [_summary(a, today) for a in page], "next_cursor": next_cursor})


def _account(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None or account.deleted_at is not None:
        raise HTTPException(status_code=404, detail=f"account {account_id} not found")
    return account


@router.get(
    "/{account_id}",
    summary="One account: health components, reasons, tier, renewal",
    **needs(Role.VIEWER),
)
def get_account(account_id: Annotated[int, Path(ge=1)], session: SessionDep) -> Any:
    account = _account(session, account_id)
    today = datetime.now(UTC).date()
    snapshot = session.scalars(
        select(HealthSnapshot)
        .where(HealthSnapshot.account_id == account_id)
        .order_by(HealthSnapshot.computed_on.desc())
        .limit(1)
    ).first()
    doc: dict[str, Any] = dict(snapshot.components) if snapshot is not None else {}
    history = session.scalars(
        select(AccountEvent)
        .where(AccountEvent.account_id == account_id, AccountEvent.kind == LIFECYCLE_STAGE_ENTERED)
        .order_by(AccountEvent.occurred_at, AccountEvent.id)
    )
    out = _summary(account, today)
    out["flags"] = list(account.flags or [])
    out["health"].update(
        {
            "computed_on": snapshot.computed_on if snapshot is not None else None,
            "model_version": snapshot.model_version if snapshot is not None else None,
            "uncapped_band": doc.get("uncapped_band"),
            "caps": doc.get("caps", []),
            "trend_delta": doc.get("trend_delta"),
            "reasons_detail": doc.get("reasons", []),
            "components": doc.get("components", {}),
        }
    )
    tier: Tier = "low"  # the prep date of an account never tiered: tiering.unknown_arr_tier
    for known in TIERS:
        if account.tier == known:
            tier = known
    out["tier_detail"] = {
        "tier": account.tier,
        "arr": account.arr,
        "mrr": account.mrr,
        "potential_arr": account.potential_arr,
        "growth_focus": account.growth_focus,
        "strategic_account": account.strategic_account,
        "override": (
            {
                "tier": account.tier_override,
                "reason": account.tier_override_reason,
                "until": account.tier_override_until,
            }
            if account.tier_override
            else None
        ),
    }
    out["renewal"]["prep_on"] = (
        prep_start_on(account.renewal_on, tier)
        if account.renewal_on is not None and account.renewal_status != "ended"
        else None
    )
    out["lifecycle"]["history"] = [
        {
            "stage": e.payload.get("stage"),
            "entered_at": e.occurred_at,
            "reason": e.payload.get("reason"),
        }
        for e in history
    ]
    return _json(out)


@router.get(
    "/{account_id}/health/history",
    summary="The account's daily health snapshots",
    **needs(Role.VIEWER),
)
def health_history(
    account_id: Annotated[int, Path(ge=1)],
    session: SessionDep,
    since: Annotated[date | None, Query(description="First day (inclusive).")] = None,
    until: Annotated[date | None, Query(description="Last day (inclusive).")] = None,
    limit: Annotated[int, Query(ge=1, le=400, description="Snapshots, newest first.")] = 90,
) -> Any:
    """Snapshots newest first: day, score, band, coverage, flags, reasons, model version."""
    if since is not None and until is not None and since > until:
        return _invalid("since", "since is after until", since.isoformat())
    _account(session, account_id)
    stmt = select(HealthSnapshot).where(HealthSnapshot.account_id == account_id)
    if since is not None:
        stmt = stmt.where(HealthSnapshot.computed_on >= since)
    if until is not None:
        stmt = stmt.where(HealthSnapshot.computed_on <= until)
    snapshots = session.scalars(stmt.order_by(HealthSnapshot.computed_on.desc()).limit(limit))
    return _json(
        {
            "account_id": account_id,
            "items": [
                {
                    "computed_on": s.computed_on,
                    "computed_at": s.computed_at,
                    "score": s.score,
                    "band": s.band,
                    "coverage": s.coverage,
                    "trend_delta": (s.components or {}).get("trend_delta"),
                    "flags": list(s.flags or []),
                    "reasons": s.reasons,
                    "model_version": s.model_version,
                }
                for s in snapshots
            ],
        }
    )
