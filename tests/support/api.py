"""An authenticated client of the HTTP API, for tests: every ``/api/v1`` route needs a key.

``api_client(app, role="operator")`` stores a key of that role in the app's own database and
returns a :class:`TestClient` that sends it (``Authorization: Bearer``) on every request; use it
as a context manager like ``TestClient``::

    with api_client(create_app(settings), role="viewer") as client:
        client.get("/api/v1/accounts")

``make_key(app, role)`` only stores a key and returns it (to send by hand, or revoke).
The pytest fixture ``api`` (``tests/conftest.py``) gives an ``api_client`` factory.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.access import Role
from app.db.api_keys import create_key


def make_key(
    app: FastAPI,
    role: Role | str = Role.OPERATOR,
    *,
    name: str | None = None,
    expires_in_days: int | None = None,
    now: datetime | None = None,
) -> str:
    """Store a key of ``role`` in ``app``'s database; return the key."""
    with app.state.session_factory() as session:
        _row, key = create_key(
            session,
            name=name or f"test-{Role(role).value}-{uuid.uuid4().hex[:6]}",
            role=Role(role),
            expires_in_days=expires_in_days,
            now=now,
        )
        session.commit()
    return key


def api_client(
    app: FastAPI, role: Role | str = Role.OPERATOR, *, name: str | None = None
) -> TestClient:
    """A TestClient of ``app`` that sends a fresh key of ``role`` on every request."""
    key = make_key(app, role, name=name)
    return TestClient(app, headers={"Authorization": f"Bearer {key}"})
