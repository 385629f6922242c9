"""Expiring leases: at most one run per (kind, CRM, object) at a time.

huey's ``TaskLock`` is a key that a killed worker leaves behind forever; a lease instead carries
an expiry that its holder's heartbeat extends while it works (:mod:`app.sync.run_scope`). The next
pass takes a lease over when it has expired, or at once when its holder is provably dead (a
process of this host that no longer exists, :mod:`app.sync.holder`). Each acquisition bumps a
fencing token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import JobLease


class LeaseHeld(RuntimeError):
    """Another holder has the lease; the message says who and until when."""


@dataclass(frozen=True)
class Acquired:
    """A lease we now hold; ``previous`` names the expired or dead holder we took it from."""

    token: int
    previous: str | None = None


def _never_dead(_holder: str) -> bool:
    return False


def acquire(
    session: Session,
    name: str,
    holder: str,
    now: datetime,
    ttl: timedelta,
    *,
    is_dead: Callable[[str], bool] = _never_dead,
) -> Acquired:
    """Take the lease or raise :class:`LeaseHeld`. Commits.

    A current holder is replaced when its lease has expired or ``is_dead(holder)`` says its
    process is gone. The takeover only matches that holder, so of two passes racing for the
    same stale lease exactly one wins, and a live holder that renewed meanwhile keeps it.
    """
    current = session.scalars(
        select(JobLease).where(JobLease.name == name).execution_options(populate_existing=True)
    ).one_or_none()
    if current is None:
        session.add(JobLease(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise LeaseHeld(f"{name} was taken concurrently by another holder") from None
        return Acquired(1)
    previous, until = current.holder, current.expires_at
    dead = previous != holder and is_dead(previous)
    if until > now and not dead:
        session.rollback()
        raise LeaseHeld(f"{name} is held by {previous} until {until.isoformat()}")
    stale = [JobLease.name == name, JobLease.holder == previous]
    if not dead:
        stale.append(JobLease.expires_at <= now)
    taken = session.execute(
        update(JobLease)
        .where(*stale)
        .values(
            holder=holder,
            acquired_at=now,
            expires_at=now + ttl,
            fencing_token=JobLease.fencing_token + 1,
        )
    )
    if getattr(taken, "rowcount", 0) != 1:
        session.rollback()
        raise LeaseHeld(f"{name} was taken concurrently by another holder")
    session.commit()
    token = session.scalar(select(JobLease.fencing_token).where(JobLease.name == name))
    return Acquired(int(token or 0), previous)


def renew(session: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Extend a lease we hold (inside the caller's transaction); False if it was lost."""
    result = session.execute(
        update(JobLease)
        .where(JobLease.name == name, JobLease.holder == holder)
        .values(expires_at=now + ttl)
    )
    return getattr(result, "rowcount", 0) == 1


def still_held(session: Session, name: str, holder: str) -> bool:
    """Whether ``holder`` still holds the lease, as a fence inside the caller's transaction.

    Meant as the last check before a commit by one of several processes working under one
    lease (a recompute's chunk workers; the heartbeat keeps the expiry moving). It locks nothing
    for writing, so those processes never wait for each other: on PostgreSQL it takes a share
    lock on the lease row (``FOR SHARE``), so a takeover committing meanwhile waits for this
    transaction and one committed before is seen; on SQLite the caller already holds the
    database's write lock (it has written), so the row read is the latest.
    """
    stmt = select(JobLease.holder).where(JobLease.name == name)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(read=True)
    return session.scalar(stmt) == holder


def release(session: Session, name: str, holder: str) -> None:
    session.execute(delete(JobLease).where(JobLease.name == name, JobLease.holder == holder))
    session.commit()
