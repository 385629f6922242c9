"""Signed-in web console clients, for tests (docs/console.md).

``console_client(app, role)`` stores a key of that role, signs in through ``/console/sign-in``
as a browser would (the sign-in form's CSRF cookie, then the session cookie) and returns the
:class:`TestClient` with the session; ``csrf_token(client)`` is the token its forms carry::

    with console_client(app, "operator", name="fixer") as client:
        client.post("/console/runs/3/cancel", data={"csrf_token": csrf_token(client)})

``won_deal_plan(session, account_id, start)`` gives an account the onboarding plan the CS pages
list (a won deal and its plan).
"""

from __future__ import annotations

import re
from datetime import date

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.core.access import Role
from app.db.models import Opportunity
from app.db.onboarding_store import create_plan_once
from app.domain.onboarding import build_plan
from tests.support.api import make_key

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(client: TestClient, key: str) -> None:
    """Sign ``client`` in with ``key`` (asserts it worked)."""
    page = client.get("/console/sign-in")
    token = _TOKEN.search(page.text)
    assert token, page.text
    answer = client.post(
        "/console/sign-in",
        data={"api_key": key, "csrf_token": token.group(1), "next": "/console/status"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


def console_client(
    app: FastAPI, role: Role | str = Role.OPERATOR, *, name: str | None = None
) -> TestClient:
    """A TestClient signed in to the console with a fresh key of ``role``."""
    client = TestClient(app)
    sign_in(client, make_key(app, role, name=name))
    return client


def csrf_token(client: TestClient) -> str:
    """The signed-in session's CSRF token, as the pages' forms carry it."""
    page = client.get("/console/status")
    token = _TOKEN.search(page.text)
    assert token, page.text
    return token.group(1)


def won_deal_plan(
    session: Session,
    account_id: int,
    start: date,
    *,
    csm_id: int | None = None,
    deal: str = "deal",
) -> int:
    """A won new-business deal named ``deal`` on ``account_id`` and its high-tier onboarding
    plan begun on ``start`` (weeks ago: late tasks), with ``csm_id``; the plan's id."""
    opp = Opportunity(name=deal, account_id=account_id, is_won=True, is_closed=True)
    session.add(opp)
    session.flush()
    return create_plan_once(
        session,
        account_id=account_id,
        opportunity_id=opp.id,
        decision=build_plan("high", "new_business", start, start, handover=None),
        csm_id=csm_id,
    ).plan_id
