"""Web console sessions, stored server-side (docs/adr/0007-console.md).

Signing in exchanges an API key for a random session token: the browser keeps the token in an
HttpOnly cookie, the table keeps only its SHA-256. Every request looks the row up and checks the
key behind it again (:func:`load_session`), so signing out, revoking the key, letting it expire
or changing ``CRMSYNC_ADMIN_BOOTSTRAP_KEY`` ends the session at once, on every process.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.core.access import Role
from app.db.api_keys import BOOTSTRAP_ACTOR, Principal, hash_key, key_state
from app.db.base import utcnow
from app.db.models import AdminApiKey, ConsoleSession


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(
    session: Session,
    principal: Principal,
    *,
    bootstrap_key: str | None,
    hours: int,
    now: datetime | None = None,
) -> str:
    """Store a session for ``principal`` (the caller commits) and return its token, which is
    stored nowhere else. Expired sessions are deleted on the way (no sweeper needed)."""
    now = now or utcnow()
    session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            token_hash=_token_hash(token),
            key_id=principal.key_id,
            bootstrap_hash=(
                hash_key(bootstrap_key) if principal.key_id is None and bootstrap_key else None
            ),
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    session.flush()
    return token


def load_session(
    session: Session, token: str, *, bootstrap_key: str | None, now: datetime | None = None
) -> Principal | None:
    """Who is signed in with ``token``; None when the session is unknown, expired, or its key
    no longer lets anyone in (revoked, expired, bootstrap key changed or unset)."""
    now = now or utcnow()
    row = session.scalar(
        select(ConsoleSession).where(ConsoleSession.token_hash == _token_hash(token))
    )
    if row is None or row.expires_at <= now:
        return None
    if row.key_id is None:
        if not bootstrap_key or row.bootstrap_hash != hash_key(bootstrap_key):
            return None
        return Principal(name=BOOTSTRAP_ACTOR, role=Role.ADMIN, key_id=None)
    key = session.get(AdminApiKey, row.key_id)
    if key is None or key_state(key, now) != "active":
        return None
    try:
        role = Role(key.role)
    except ValueError:
        return None
    return Principal(name=key.name, role=role, key_id=key.id)


def end_session(session: Session, token: str) -> None:
    """Delete the session (sign-out); the caller commits."""
    session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == _token_hash(token)))
