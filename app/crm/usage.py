"""CRM calls made outside any run, counted where every call is counted, until they are stored.

Every call a client makes goes through its ``_count`` (retries and token requests included).
A run records the calls of its own client with its pages (``sync_runs.api_calls``, through
``RunScope.calls_made``), so a client built for a run is marked :func:`for_runs` and counted
there only. Every other client (a webhook's CRM reads, the budget guard's limit read, a
backfill's count calls, ``crm check``) adds its calls here, per CRM, in this process.

The engine and the adapters cannot reach the database (import contracts), so the wiring takes
what is pending (:func:`take`) and stores it (``app.wiring.budget.store_usage``): after every
job, before the guard reads the budget, and, through the :func:`install`\\ ed hook, as soon as
:data:`FLUSH_EVERY` calls are pending. A process killed outright loses what it had not stored
(fewer than :data:`FLUSH_EVERY` calls, or those of the job it was running).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

#: Pending calls (all CRMs) that make :func:`count` call the installed hook.
FLUSH_EVERY = 20

_lock = threading.Lock()
_pending: dict[str, int] = {}
_hook: Callable[[], None] | None = None

T = TypeVar("T")


def for_runs(client: T) -> T:
    """Mark ``client`` as a run's own: its calls are counted by its run, not here."""
    setattr(client, "metered_by_run", True)  # noqa: B010 - any client, fakes included
    return client


def metered_by_run(client: object) -> bool:
    return bool(getattr(client, "metered_by_run", False))


def count(crm: str, calls: int = 1) -> None:
    """``calls`` more made to ``crm`` outside any run (a client's ``_count``)."""
    with _lock:
        _pending[crm] = _pending.get(crm, 0) + calls
        due = _hook is not None and sum(_pending.values()) >= FLUSH_EVERY
        hook = _hook
    if due and hook is not None:
        hook()  # never raises: what it cannot store stays pending


def take() -> dict[str, int]:
    """What is pending, per CRM; cleared (give it back with :func:`restore` if not stored)."""
    global _pending
    with _lock:
        taken, _pending = _pending, {}
    return taken


def restore(taken: dict[str, int]) -> None:
    with _lock:
        for crm, calls in taken.items():
            _pending[crm] = _pending.get(crm, 0) + calls


def pending() -> dict[str, int]:
    with _lock:
        return dict(_pending)


def install(hook: Callable[[], None] | None) -> Callable[[], None] | None:
    """Call ``hook`` (which stores what is pending) once enough is pending; returns the hook
    it replaces."""
    global _hook
    with _lock:
        previous, _hook = _hook, hook
    return previous
