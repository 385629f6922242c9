"""API keys of the admin API: created with a role (and maybe an expiry), shown once, stored as
a hash, listed, revoked, and checked on every ``/api/v1`` request.

A key is ``crmsync_`` plus 32 random bytes (URL-safe base64). Only its SHA-256 is stored: the key
carries 256 bits of randomness, so a slow password hash would add nothing but latency per
request. ``key_prefix`` (its first 12 characters) lets an admin tell keys apart in listings.
``CRMSYNC_ADMIN_BOOTSTRAP_KEY``, when set, is an admin key that lives in the settings, not in the
table: the way to the first stored admin key (``crmsync keys create`` needs no key at all).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.access import Role
from app.db.base import utcnow
from app.db.models import AdminApiKey

KEY_PREFIX = "crmsync_"
_PREFIX_LENGTH = 12
#: ``last_used_at`` is written at most this often per key: not one write per request.
_TOUCH_EVERY = timedelta(minutes=1)
BOOTSTRAP_ACTOR = "bootstrap"


class ApiKeyError(Exception):
    """A key operation refused (unknown id, duplicate name); the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a stored key or the bootstrap key."""

    name: str
    role: Role
    key_id: int | None

    @property
    def actor(self) -> str:
        """The audit log's name for this caller."""
        return BOOTSTRAP_ACTOR if self.key_id is None else f"key:{self.name}"


@dataclass(frozen=True)
class Refusal:
    """Why a presented key is not accepted: ``unknown``, ``revoked`` or ``expired``."""

    reason: str
    message: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(
    session: Session,
    *,
    name: str,
    role: Role,
    expires_in_days: int | None = None,
    now: datetime | None = None,
) -> tuple[AdminApiKey, str]:
    """Add a key (the caller commits) and return its row and the key itself, which is never
    stored and cannot be shown again. A name already used by a live key is refused."""
    name = name.strip()
    if not name:
        raise ApiKeyError("the key needs a name")
    if len(name) > 128:
        raise ApiKeyError("the name is longer than 128 characters")
    if expires_in_days is not None and expires_in_days < 1:
        raise ApiKeyError("expires must be at least 1 day")
    now = now or utcnow()
    taken = session.scalar(
        select(AdminApiKey.id).where(AdminApiKey.name == name, AdminApiKey.revoked_at.is_(None))
    )
    if taken is not None:
        raise ApiKeyError(f"a live key is already named {name!r} (id {taken}): pick another name")
    key = new_key()
    row = AdminApiKey(
        name=name,
        role=role.value,
        key_prefix=key[:_PREFIX_LENGTH],
        key_hash=hash_key(key),
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(row)
    session.flush()
    return row, key


def list_keys(session: Session, *, include_revoked: bool = True) -> Sequence[AdminApiKey]:
    stmt = select(AdminApiKey).order_by(AdminApiKey.id)
    if not include_revoked:
        stmt = stmt.where(AdminApiKey.revoked_at.is_(None))
    return session.scalars(stmt).all()


def revoke_key(session: Session, key_id: int, now: datetime | None = None) -> AdminApiKey:
    """Revoke a key (the caller commits); revoking a revoked key keeps its first date."""
    row = session.get(AdminApiKey, key_id)
    if row is None:
        raise ApiKeyError(f"no API key with id {key_id}")
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
    return row


def key_state(row: AdminApiKey, now: datetime) -> str:
    """``active``, ``revoked`` or ``expired``."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def key_dict(row: AdminApiKey, now: datetime | None = None) -> dict[str, object]:
    """A key as listings show it: never the hash."""
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "prefix": row.key_prefix,
        "state": key_state(row, now or utcnow()),
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


def authenticate(
    session: Session,
    presented: str,
    *,
    bootstrap_key: str | None = None,
    now: datetime | None = None,
) -> Principal | Refusal:
    """The caller behind ``presented``, or why it is refused. Touches ``last_used_at`` (and
    commits that) at most once a minute per key."""
    now = now or utcnow()
    if bootstrap_key and hmac.compare_digest(presented.encode(), bootstrap_key.encode()):
        return Principal(name=BOOTSTRAP_ACTOR, role=Role.ADMIN, key_id=None)
    row = session.scalar(select(AdminApiKey).where(AdminApiKey.key_hash == hash_key(presented)))
    if row is None:
        return Refusal("unknown", "the API key is not known: check it, or create one")
    state = key_state(row, now)
    if state == "revoked":
        return Refusal("revoked", f"the API key {row.key_prefix}... ({row.name}) was revoked")
    if state == "expired":
        assert row.expires_at is not None
        return Refusal(
            "expired",
            f"the API key {row.key_prefix}... ({row.name}) expired at {row.expires_at.isoformat()}",
        )
    try:
        role = Role(row.role)
    except ValueError:
        return Refusal("unknown", f"the API key {row.key_prefix}... has an unknown role")
    if row.last_used_at is None or now - row.last_used_at >= _TOUCH_EVERY:
        row.last_used_at = now
        session.commit()
    return Principal(name=row.name, role=role, key_id=row.id)
