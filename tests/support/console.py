"""Signed-in web console clients, for tests (docs/console.md).

``console_client(app, role)`` stores a key of that role, signs in through ``/console/sign-in``
as a browser would (the sign-in form's CSRF cookie, then the session cookie) and returns the
:class:`TestClient` with the session; ``csrf_token(client)`` is the token its forms carry::

    with console_client(app, "operator", name="fixer") as client:
        client.post("/console/runs/3/cancel", data={"csrf_token": csrf_token(client)})
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.access import Role
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
