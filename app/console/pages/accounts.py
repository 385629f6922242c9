"""Accounts: the server-paginated list, and one account's health, tier, renewal and onboarding.

* ``GET /console/accounts``: ``GET /api/v1/accounts``'s page (its filters, search ``q`` and keyset
  cursor, :func:`app.api.routes.accounts.list_accounts`), as a table. A bad filter shows the
  API's 422 next to its field.
* ``GET /console/accounts/{id}``: ``GET /api/v1/accounts/{id}`` (score, components with their
  inputs, reasons, loyalty, tier, renewal window and risk), the account's onboarding plans
  (``GET /api/v1/onboarding/{id}``) and the chart of the last 12 months' snapshots (the rows of
  ``/health/history``, three columns of them: :func:`chart_snapshots`) drawn on the server by
  :mod:`app.console.chart`.

Read-only pages (viewer): nothing here writes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from pydantic import Field, TypeAdapter, ValidationError
from sqlalchemy import select

from app.api.deps import SessionDep, SettingsDep
from app.api.routes.accounts import (
    BandIn,
    StageIn,
    TierIn,
    WindowIn,
    get_account,
    list_accounts,
)
from app.api.routes.onboarding import get_onboarding
from app.console.auth import Viewer
from app.console.chart import Snapshot, health_chart_svg, year_before
from app.console.pages.onboarding import order_tasks
from app.console.web import call_api, render
from app.db.models import Csm, HealthSnapshot, OnboardingPlan

router = APIRouter(prefix="/console", include_in_schema=False)

#: Accounts per page of the list.
PAGE_SIZE = 50
BANDS = ("green", "yellow", "red", "unknown")
TIERS = ("key", "high", "low", "tech")
WINDOWS = ("none", "outside", "upcoming", "in_window", "overdue", "ended")
STAGES = ("trial", "onboarding", "adoption", "steady", "renewal", "expansion", "churned")
#: The list's filters, checked with the API's own types (a route function called directly is
#: not validated by FastAPI): the same values pass, the same message when one does not.
FILTERS: dict[str, TypeAdapter[Any]] = {
    "band": TypeAdapter(list[BandIn]),
    "tier": TypeAdapter(list[TierIn]),
    "renewal_window": TypeAdapter(list[WindowIn]),
    "lifecycle_stage": TypeAdapter(list[StageIn]),
    "csm_id": TypeAdapter(list[Annotated[int, Field(ge=1)]]),
}


def _today() -> date:
    return datetime.now(UTC).date()


def _csms(session: SessionDep) -> list[tuple[int, str]]:
    """The CSM filter's choices: every CSM by name."""
    rows = session.execute(select(Csm.id, Csm.name, Csm.email).order_by(Csm.name, Csm.id))
    return [(int(i), f"{n} ({e})") for i, n, e in rows]


def _chosen(request: Request, name: str) -> list[str]:
    """A repeatable filter's values from the query string, the empty "any" left out."""
    return [v for v in request.query_params.getlist(name) if v != ""]


@router.get("/accounts", response_class=HTMLResponse)
def accounts_page(request: Request, user: Viewer, session: SessionDep) -> HTMLResponse:
    chosen = {name: _chosen(request, name) for name in FILTERS}
    q = (request.query_params.get("q") or "").strip() or None
    errors: dict[str, str] = {}
    valid: dict[str, Any] = {}
    for name, adapter in FILTERS.items():
        try:
            valid[name] = adapter.validate_python(chosen[name]) or None
        except ValidationError as exc:
            errors[name] = exc.errors()[0]["msg"]
    if q is not None and len(q) > 255:
        errors["q"] = "String should have at most 255 characters"
    page: Any = None
    status = 200
    if not errors:
        answer = call_api(
            list_accounts,
            session=session,
            band=valid["band"],
            tier=valid["tier"],
            renewal_window=valid["renewal_window"],
            lifecycle_stage=valid["lifecycle_stage"],
            csm_id=valid["csm_id"],
            q=q,
            limit=PAGE_SIZE,
            cursor=request.query_params.get("cursor") or None,
        )
        if answer.ok:
            page = answer.body
        else:
            errors, status = answer.errors or {"form": answer.message}, answer.status
    else:
        status = 422
    return render(
        request,
        "accounts/list.html",
        {
            "page": page,
            "errors": errors,
            "chosen": chosen,
            "q": q or "",
            "choices": {
                "band": BANDS,
                "tier": TIERS,
                "renewal_window": WINDOWS,
                "lifecycle_stage": STAGES,
            },
            "csms": _csms(session),
        },
        user=user,
        nav="accounts",
        status_code=status,
    )


def chart_snapshots(
    session: SessionDep, account_id: int, since: date, until: date
) -> list[Snapshot]:
    """The chart's points: day, score and band of the account's snapshots in ``[since, until]``.
    The same rows as ``GET /api/v1/accounts/{id}/health/history?since=&until=`` (which the page
    does not call: it would load and decode each day's components document, up to 365 of
    them, to draw three columns); on the ``(account_id, computed_on)`` unique index."""
    rows = session.execute(
        select(HealthSnapshot.computed_on, HealthSnapshot.score, HealthSnapshot.band).where(
            HealthSnapshot.account_id == account_id,
            HealthSnapshot.computed_on >= since,
            HealthSnapshot.computed_on <= until,
        )
    )
    return [Snapshot(day, score, band) for day, score, band in rows]


def _plans(session: SessionDep, settings: SettingsDep, account_id: int) -> list[dict[str, Any]]:
    """The account's onboarding plans, newest first, as ``GET /api/v1/onboarding/{id}``."""
    ids = session.scalars(
        select(OnboardingPlan.id)
        .where(OnboardingPlan.account_id == account_id)
        .order_by(OnboardingPlan.id.desc())
    ).all()
    plans = []
    for plan_id in ids:
        answer = call_api(get_onboarding, session=session, settings=settings, plan_id=plan_id)
        if answer.ok:
            plans.append(order_tasks(answer.body))
    return plans


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
def account_page(
    request: Request,
    user: Viewer,
    session: SessionDep,
    settings: SettingsDep,
    account_id: Annotated[int, Path(ge=1)],
) -> HTMLResponse:
    answer = call_api(get_account, account_id=account_id, session=session)
    if not answer.ok:
        return render(
            request,
            "accounts/missing.html",
            {"message": answer.message},
            user=user,
            nav="accounts",
            status_code=answer.status,
        )
    account = answer.body
    today = _today()
    snapshots = chart_snapshots(session, account_id, year_before(today), today)
    chart = health_chart_svg(
        snapshots,
        today,
        title=f"Health score of {account['name']}, last 12 months",
        id_prefix=f"health-{account_id}",
    )
    components = sorted(
        account["health"]["components"].items(),
        key=lambda kv: (-(kv[1].get("weight") or 0), kv[0]),
    )
    return render(
        request,
        "accounts/detail.html",
        {
            "a": account,
            "components": components,
            "chart": chart,
            "plans": _plans(session, settings, account_id),
            "today": today,
        },
        user=user,
        nav="accounts",
    )
