"""Expiring leases: at most one run per (kind, CRM, object) at a time.

huey's ``TaskLock`` is a key that a killed worker leaves behind forever; a lease instead carries
an expiry that the holder extends while it works (heartbeat). A crashed holder's lease simply
runs out and the next run takes over. Each acquisition bumps a fencing token.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import JobLease


class LeaseHeld(RuntimeError):
    """Another holder has the lease; the message says who and until when."""


def acquire(session: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> int:
    """Take the lease or raise :class:`LeaseHeld`; returns the fencing token. Commits."""
    expires = now + ttl
    taken = session.execute(
        update(JobLease)
        .where(JobLease.name == name, JobLease.expires_at <= now)
        .values(
            holder=holder,
            acquired_at=now,
            expires_at=expires,
            fencing_token=JobLease.fencing_token + 1,
        )
    )
    if getattr(taken, "rowcount", 0) == 1:
        session.commit()
        return int(session.scalar(select(JobLease.fencing_token).where(JobLease.name == name)) or 0)
    current = session.get(JobLease, name)
    if current is not None:
        session.rollback()
        raise LeaseHeld(
            f"{name} is held by {current.holder} until {current.expires_at.isoformat()}"
        )
    session.add(JobLease(name=name, holder=holder, acquired_at=now, expires_at=expires))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise LeaseHeld(f"{name} was taken concurrently by another holder") from None
    return 1


def renew(session: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Extend a lease we hold (inside the caller's transaction); False if it was lost."""
    result = session.execute(
        update(JobLease)
        .where(JobLease.name == name, JobLease.holder == holder)
        .values(expires_at=now + ttl)
    )
    return getattr(result, "rowcount", 0) == 1


def release(session: Session, name: str, holder: str) -> None:
    session.execute(delete(JobLease).where(JobLease.name == name, JobLease.holder == holder))
    session.commit()
